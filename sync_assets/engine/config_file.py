"""The config file: YAML read into a SyncConfig, every mistake one ConfigError naming the file and setting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sync_assets.engine.config import CONFIG_ENV, SyncConfig
from sync_assets.engine.errors import ConfigError

# The order mistakes are reported in, when a file has several: the settings one by one, then whether the
# session limits are longer than zero, then the table lists (and last, a table listed in both).
_ORDER = [
    "schemas",
    "orphans",
    "lock_timeout",
    "workers",
    "retries",
    "retry_delay_seconds",
    "mode",
    "tables",
    "incremental_column",
    "incremental_overlap",
    "reconcile_every",
    "staging_triggers",
    "resync",
    "mask",
    "connect_timeout",
    "statement_timeout",
    "idle_in_transaction_timeout",
    "max_runtime",
    "longer than zero",
    "preserve",
    "exclude",
]


def _rank(error: Any) -> int:
    if not error["loc"]:
        return len(_ORDER)
    if "must be longer than zero" in str((error.get("ctx") or {}).get("error", "")):
        return _ORDER.index("longer than zero")
    return _ORDER.index(str(error["loc"][0]))


def _first_problem(exc: ValidationError) -> str:
    """The sentence of the first mistake: unknown settings first, then in _ORDER."""
    errors = exc.errors()
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        known = ", ".join(sorted(SyncConfig.model_fields))
        return f"unknown setting {', '.join(repr(k) for k in unknown)}; known settings are {known}"
    first = min(errors, key=_rank)
    cause = (first.get("ctx") or {}).get("error")
    return str(cause) if cause is not None else f"'{'.'.join(map(str, first['loc']))}': {first['msg']}"


def parse_config(data: Any, where: str = "config") -> SyncConfig:
    """Validate a parsed YAML document; every mistake is a ConfigError naming the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the config must be a mapping of settings, got {type(data).__name__}")
    try:
        return SyncConfig.model_validate({str(k): v for k, v in data.items()})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_problem(exc)}") from None


def load_config(path: str | os.PathLike[str] | None = None) -> SyncConfig:
    """Read the config named by SYNC_ASSETS_CONFIG (or path); no file means the defaults."""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    if path is None:
        return SyncConfig()
    where = f"{CONFIG_ENV} file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: is not valid YAML{at}") from None
    return parse_config(data, where)
