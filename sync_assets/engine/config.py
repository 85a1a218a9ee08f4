"""The optional YAML config (path in SYNC_ASSETS_CONFIG): what to sync and how."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from sync_assets.engine.connections import SessionLimits
from sync_assets.engine.errors import ConfigError

CONFIG_ENV = "SYNC_ASSETS_CONFIG"
ORPHAN_POLICIES = ("delete", "fail")


class StagingTriggers(StrEnum):
    """staging_triggers: what staging's own triggers do on the rows the sync writes (write_path.py)."""

    AUTO = "auto"  # silenced where the staging role can, else they fire and the run warns
    SKIP = "skip"  # silenced, or the run is refused
    FIRE = "fire"  # they fire; foreign keys are checked row by row


TRIGGER_SETTINGS = tuple(s.value for s in StagingTriggers)
# mirror: staging equals production; merge: new and changed rows arrive, nothing is deleted;
# incremental: like mirror, but only rows changed since the last run are read (deletes found by key).
MODES = ("mirror", "merge", "incremental")
# PostgreSQL's own spelling of a duration setting: a number with an optional unit.
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|min)?\s*$")
# Longer spans (the incremental overlap, the full reconciliation period) may also count hours and days.
_SPAN = re.compile(r"^\s*(\d+)\s*(ms|s|min|h|d)\s*$")
_SPAN_UNITS = {"ms": "milliseconds", "s": "seconds", "min": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, order=True)
class TableRef:
    """A table as the config names it; schema None means "whichever configured schema has it"."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class SyncConfig:
    schemas: tuple[str, ...] = ("public",)
    preserve: tuple[TableRef, ...] = ()
    exclude: tuple[TableRef, ...] = ()
    orphans: str = "delete"
    lock_timeout: str = "2s"
    workers: int = 4
    retries: int = 3
    retry_delay_seconds: float = 2.0
    mode: str = "mirror"
    table_modes: tuple[tuple[TableRef, str], ...] = ()  # per-table exceptions to `mode`
    # Incremental mode: the column telling when a row last changed, per table where it differs.
    incremental_column: str = "updated_at"
    table_columns: tuple[tuple[TableRef, str], ...] = ()
    # Read back this much before the watermark: covers clocks of clients that set the column themselves.
    incremental_overlap: timedelta = timedelta(minutes=5)
    # An incremental table is read whole again (and compared row by row) when its last full read is older.
    reconcile_every: timedelta | None = timedelta(days=7)
    staging_triggers: StagingTriggers = StagingTriggers.AUTO
    # Limits: connecting, any one statement (None: no limit), a session idle inside a transaction, the run.
    connect_timeout: timedelta = timedelta(seconds=10)
    statement_timeout: timedelta | None = timedelta(hours=1)
    idle_in_transaction_timeout: timedelta = timedelta(minutes=5)
    max_runtime: timedelta | None = timedelta(minutes=30)
    source: str = field(default="defaults", compare=False)

    def session_limits(self) -> SessionLimits:
        ms = lambda span: int(span.total_seconds() * 1000)  # noqa: E731
        return SessionLimits(
            connect_seconds=max(2, int(self.connect_timeout.total_seconds())),
            statement_ms=ms(self.statement_timeout) if self.statement_timeout is not None else 0,
            idle_in_transaction_ms=ms(self.idle_in_transaction_timeout),
        )


_KEYS = {
    "schemas",
    "preserve",
    "exclude",
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
    "connect_timeout",
    "statement_timeout",
    "idle_in_transaction_timeout",
    "max_runtime",
}


def _str_list(value: Any, key: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of non-empty names, got {value!r}")
    return value


def _table_refs(value: Any, key: str, where: str) -> tuple[TableRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: '{key}' must be a list of table names, got {value!r}")
    refs = []
    for item in value:
        if isinstance(item, str) and item:
            schema, dot, name = item.partition(".")
            refs.append(TableRef(schema, name) if dot else TableRef(None, item))
        elif isinstance(item, dict) and set(item) == {"schema", "table"}:
            refs.append(TableRef(str(item["schema"]), str(item["table"])))
        else:
            raise ConfigError(
                f"{where}: '{key}' entry {item!r} must be 'table', 'schema.table' "
                "or a mapping with 'schema' and 'table'"
            )
    return tuple(refs)


def _mode(value: Any, what: str, where: str) -> str:
    if value not in MODES:
        raise ConfigError(f"{where}: {what} must be one of {', '.join(MODES)}, got {value!r}")
    return value


def _span(value: Any, key: str, where: str, allow_never: bool = False) -> timedelta | None:
    """'30s', '5min', '2h', '7d'; 'never' where the setting can be switched off."""
    if allow_never and value in ("never", None):
        return None
    match = _SPAN.match(value) if isinstance(value, str) else None
    if match is None:
        never = " or 'never'" if allow_never else ""
        raise ConfigError(
            f"{where}: '{key}' must be a duration such as '90s', '5min', '2h' or '7d'{never}, got {value!r}"
        )
    return timedelta(**{_SPAN_UNITS[match.group(2)]: int(match.group(1))})


def _column_name(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {what} must be a column name, got {value!r}")
    return value


def _table_settings(
    value: Any, where: str
) -> tuple[tuple[tuple[TableRef, str], ...], tuple[tuple[TableRef, str], ...]]:
    """`tables: {public.prices: {mode: incremental, column: changed_at}}`: settings of single tables."""
    if value is None:
        return (), ()
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: 'tables' must map table names to their settings, got {value!r}")
    modes, columns = [], []
    for name, settings in value.items():
        ref = _table_refs([name], "tables", where)[0]
        if not isinstance(settings, dict) or set(settings) - {"mode", "column"}:
            raise ConfigError(f"{where}: 'tables' entry {name!r} takes only 'mode' and 'column', got {settings!r}")
        if "mode" in settings:
            modes.append((ref, _mode(settings["mode"], f"the mode of {name}", where)))
        if "column" in settings:
            columns.append((ref, _column_name(settings["column"], f"the column of {name}", where)))
    return tuple(modes), tuple(columns)


def parse_config(data: Any, where: str = "config") -> SyncConfig:
    """Validate a parsed YAML document; every mistake is a ConfigError naming the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the config must be a mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting {', '.join(repr(k) for k in unknown)}; "
            f"known settings are {', '.join(sorted(_KEYS))}"
        )
    schemas = tuple(_str_list(data.get("schemas", ["public"]), "schemas", where))
    if not schemas:
        raise ConfigError(f"{where}: 'schemas' must name at least one schema")
    orphans = data.get("orphans", "delete")
    if orphans not in ORPHAN_POLICIES:
        raise ConfigError(f"{where}: 'orphans' must be 'delete' or 'fail', got {orphans!r}")
    lock_timeout = data.get("lock_timeout", "2s")
    if isinstance(lock_timeout, int) and not isinstance(lock_timeout, bool):
        lock_timeout = f"{lock_timeout}ms"
    match = _DURATION.match(lock_timeout) if isinstance(lock_timeout, str) else None
    # 0 would switch the timeout off: the swap could then wait forever behind a lock.
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(
            f"{where}: 'lock_timeout' must be a positive duration such as '2s' or '500ms', got {lock_timeout!r}"
        )
    workers = data.get("workers", 4)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise ConfigError(f"{where}: 'workers' must be a whole number from 1 to 64, got {workers!r}")
    retries = data.get("retries", 3)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 20:
        raise ConfigError(f"{where}: 'retries' must be a whole number from 0 to 20, got {retries!r}")
    delay = data.get("retry_delay_seconds", 2.0)
    if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
        raise ConfigError(f"{where}: 'retry_delay_seconds' must be a number >= 0, got {delay!r}")
    mode = _mode(data.get("mode", "mirror"), "'mode'", where)
    table_modes, table_columns = _table_settings(data.get("tables"), where)
    column = _column_name(data.get("incremental_column", "updated_at"), "'incremental_column'", where)
    overlap = _span(data.get("incremental_overlap", "5min"), "incremental_overlap", where)
    reconcile = _span(data.get("reconcile_every", "7d"), "reconcile_every", where, allow_never=True)
    triggers = data.get("staging_triggers", "auto")
    if triggers not in TRIGGER_SETTINGS:
        raise ConfigError(f"{where}: 'staging_triggers' must be one of {', '.join(TRIGGER_SETTINGS)}, got {triggers!r}")
    limits = {
        key: _span(data.get(key, default), key, where, allow_never=key in ("statement_timeout", "max_runtime"))
        for key, default in (
            ("connect_timeout", "10s"),
            ("statement_timeout", "1h"),
            ("idle_in_transaction_timeout", "5min"),
            ("max_runtime", "30min"),
        )
    }
    for key, span in limits.items():
        if span is not None and span <= timedelta(0):
            raise ConfigError(f"{where}: '{key}' must be longer than zero, got {data.get(key)!r}")
    preserve = _table_refs(data.get("preserve"), "preserve", where)
    exclude = _table_refs(data.get("exclude"), "exclude", where)
    both = sorted(set(preserve) & set(exclude))
    if both:
        raise ConfigError(f"{where}: table {both[0]} is listed under both 'preserve' and 'exclude'")
    return SyncConfig(
        schemas=schemas,
        preserve=preserve,
        exclude=exclude,
        orphans=orphans,
        lock_timeout=lock_timeout.replace(" ", ""),
        workers=workers,
        retries=retries,
        retry_delay_seconds=float(delay),
        mode=mode,
        table_modes=table_modes,
        incremental_column=column,
        table_columns=table_columns,
        incremental_overlap=overlap or timedelta(0),
        reconcile_every=reconcile,
        staging_triggers=StagingTriggers(triggers),
        connect_timeout=limits["connect_timeout"] or timedelta(seconds=10),
        statement_timeout=limits["statement_timeout"],
        idle_in_transaction_timeout=limits["idle_in_transaction_timeout"] or timedelta(minutes=5),
        max_runtime=limits["max_runtime"],
        source=where,
    )


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
