"""The catalogs the code location is built from (production's tables, and staging's for the preserved
tables that only staging has), with the last ones kept for when a database is down."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from sync_assets.engine.catalog import Catalog
from sync_assets.engine.connections import Endpoint, Side
from sync_assets.engine.errors import SyncError
from sync_assets.engine.introspect import introspect

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
    # Named after the side and where it is, never after the password.
    digest = hashlib.sha256(f"{endpoint.describe()}|{','.join(schemas)}".encode()).hexdigest()[:16]
    return (directory or cache_dir()) / f"catalog-{endpoint.side}-{digest}.json"


def load_catalog(
    url: str | None, schemas: tuple[str, ...], directory: Path | None = None, side: Side = Side.PRODUCTION
) -> LoadedCatalog:
    """Introspect one side now and refresh the cache; on any failure fall back to the cache."""
    side = Side(side)
    env = side.env_var
    if not url:
        return LoadedCatalog(None, "none", f"{env} is not set, so no tables are known yet")
    try:
        endpoint = Endpoint(side, env, url)
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
        return LoadedCatalog(catalog, "live", f"catalog read from {side} {endpoint.describe()}")
    if path.exists():
        saved = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
        try:
            cached = Catalog.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return LoadedCatalog(None, "none", f"{side} is unreachable ({reason}) and the cached catalog is unreadable")
        return LoadedCatalog(
            cached, "cache", f"{side} is unreachable ({reason}); showing the catalog cached at {saved}"
        )
    return LoadedCatalog(None, "none", f"{side} is unreachable ({reason}) and no catalog is cached yet")
