"""The production catalog the code location is built from, with the last one kept for when production is down."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from sync_assets.catalog import Catalog, introspect
from sync_assets.connections import PRODUCTION_ENV, Endpoint
from sync_assets.errors import SyncError

CACHE_ENV = "SYNC_ASSETS_CATALOG_CACHE"
# Building the UI must not hang on an unreachable production server.
LOAD_CONNECT_TIMEOUT = 5


@dataclass(frozen=True)
class LoadedCatalog:
    catalog: Catalog | None
    source: str  # "live", "cache" or "none"
    note: str  # what a person should know about where the catalog came from


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]) / "sync_assets"
    return Path.home() / ".cache" / "sync_assets"


def cache_file(endpoint: Endpoint, schemas: tuple[str, ...], directory: Path | None = None) -> Path:
    # Named after where production is, never after the password.
    digest = hashlib.sha256(f"{endpoint.describe()}|{','.join(schemas)}".encode()).hexdigest()[:16]
    return (directory or cache_dir()) / f"catalog-{digest}.json"


def load_catalog(url: str | None, schemas: tuple[str, ...], directory: Path | None = None) -> LoadedCatalog:
    """Introspect production now and refresh the cache; on any failure fall back to the cache."""
    if not url:
        return LoadedCatalog(None, "none", f"{PRODUCTION_ENV} is not set, so no tables are known yet")
    try:
        endpoint = Endpoint("production", PRODUCTION_ENV, url)
    except SyncError as exc:
        return LoadedCatalog(None, "none", str(exc))
    path = cache_file(endpoint, schemas, directory)
    try:
        with endpoint.connect(timeout=LOAD_CONNECT_TIMEOUT) as conn:
            catalog = introspect(conn, schemas)
    except (SyncError, psycopg.Error) as exc:
        reason = endpoint.redact(str(exc).split("\n")[0])
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(catalog.to_json(), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass  # a read-only home only loses the fallback
        return LoadedCatalog(catalog, "live", f"catalog read from production {endpoint.describe()}")
    if path.exists():
        saved = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
        try:
            cached = Catalog.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return LoadedCatalog(
                None, "none", f"production is unreachable ({reason}) and the cached catalog is unreadable"
            )
        return LoadedCatalog(
            cached, "cache", f"production is unreachable ({reason}); showing the catalog cached at {saved}"
        )
    return LoadedCatalog(None, "none", f"production is unreachable ({reason}) and no catalog is cached yet")
