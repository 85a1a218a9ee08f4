"""The optional YAML config (path in SYNC_ASSETS_CONFIG): what to sync and how, as one typed model.

Every setting and its default is a field of SyncConfig; unknown settings are refused. The validators
raise the sentences a user reads: each names the setting exactly as the YAML spells it (config_file.py
reads the file and turns them into ConfigErrors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from sync_assets.engine.connections import SessionLimits
from sync_assets.engine.errors import ConfigError
from sync_assets.engine.mask_spec import Mask

CONFIG_ENV = "SYNC_ASSETS_CONFIG"


class Mode(StrEnum):
    MIRROR = "mirror"  # staging equals production
    MERGE = "merge"  # new and changed rows arrive, nothing is deleted
    INCREMENTAL = "incremental"  # like mirror, but only rows changed since the last run are read


class OrphanPolicy(StrEnum):
    """orphans: what happens to staging's own rows that would lose their parent row."""

    DELETE = "delete"  # backed up, then removed
    FAIL = "fail"  # the run stops and changes nothing


class StagingTriggers(StrEnum):
    """staging_triggers: what staging's own triggers do on the rows the sync writes (write_path.py)."""

    AUTO = "auto"  # silenced where the staging role can, else they fire and the run warns
    SKIP = "skip"  # silenced, or the run is refused
    FIRE = "fire"  # they fire; foreign keys are checked row by row


class Resync(StrEnum):
    """resync: how a table staging already holds is brought up to date (compare.py)."""

    HASHES = "hashes"  # both sides hash their rows; only the rows of buckets that differ are read
    COPY = "copy"  # every row is read into staging and compared there


# PostgreSQL's own spelling of a duration setting: a number with an optional unit.
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|min)?\s*$")
# Longer spans (the incremental overlap, the full reconciliation period) may also count hours and days.
_SPAN = re.compile(r"^\s*(\d+)\s*(ms|s|min|h|d)\s*$")
_UNITS = {"ms": "milliseconds", "s": "seconds", "min": "minutes", "h": "hours", "d": "days", None: "milliseconds"}


@dataclass(frozen=True, order=True)
class TableRef:
    """A table as the config names it; schema None means "whichever configured schema has it"."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class TableSetting:
    """One entry of `tables`: a table's own mode and change column."""

    table: TableRef
    mode: Mode | None = None
    column: str | None = None


@dataclass(frozen=True)
class ColumnMask:
    """One entry of `mask`: a column (`schema.table.column` or `table.column`) and its mask."""

    table: TableRef
    column: str
    mask: Mask

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


def _column_masks(value: Any) -> tuple[ColumnMask, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ValueError(f"'mask' must map columns (schema.table.column) to transforms, got {value!r}")
    found = []
    for name, spec in value.items():
        table, dot, column = str(name).rpartition(".")
        if not dot or not table or not column:
            raise ValueError(f"'mask' entry {name!r} must name a column as table.column or schema.table.column")
        try:
            found.append(ColumnMask(_table_ref(table, "mask"), column, Mask.parse(str(name), spec)))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return tuple(found)


def _one_of(value: Any, enum: type[StrEnum], what: str) -> StrEnum:
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{what} must be one of {', '.join(e.value for e in enum)}, got {value!r}") from None


def _span(value: Any, key: str, allow_never: bool = False) -> timedelta | None:
    """'30s', '5min', '2h', '7d'; 'never' where the setting can be switched off."""
    if isinstance(value, timedelta) or (allow_never and value in ("never", None)):
        return None if value == "never" else value
    match = _SPAN.match(value) if isinstance(value, str) else None
    if match is None:
        never = " or 'never'" if allow_never else ""
        raise ValueError(f"'{key}' must be a duration such as '90s', '5min', '2h' or '7d'{never}, got {value!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _table_ref(item: Any, key: str) -> TableRef:
    if isinstance(item, TableRef):
        return item
    if isinstance(item, str) and item:
        schema, dot, name = item.partition(".")
        return TableRef(schema, name) if dot else TableRef(None, item)
    if isinstance(item, dict) and set(item) == {"schema", "table"}:
        return TableRef(str(item["schema"]), str(item["table"]))
    raise ValueError(f"'{key}' entry {item!r} must be 'table', 'schema.table' or a mapping with 'schema' and 'table'")


def _column_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a column name, got {value!r}")
    return value


def _whole(value: Any, key: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"'{key}' must be a whole number from {low} to {high}, got {value!r}")
    return value


class SyncConfig(BaseModel):
    """Every setting of a sync, with its default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schemas: tuple[str, ...] = ("public",)
    preserve: tuple[TableRef, ...] = ()  # staging's own tables: never overwritten, their rows kept
    exclude: tuple[TableRef, ...] = ()
    orphans: OrphanPolicy = OrphanPolicy.DELETE
    # How long the swap waits for a row lock before it gives up (and the run is retried).
    lock_timeout: timedelta = timedelta(seconds=2)
    workers: int = 4  # parallel readers of the one snapshot
    retries: int = 3
    retry_delay_seconds: float = 2.0
    mode: Mode = Mode.MIRROR
    tables: tuple[TableSetting, ...] = ()  # per-table exceptions to `mode` and `incremental_column`
    # Incremental mode: the column telling when a row last changed.
    incremental_column: str = "updated_at"
    # Read back this much before the watermark: covers clocks of clients that set the column themselves.
    incremental_overlap: timedelta = timedelta(minutes=5)
    # An incremental table is read whole again (and compared row by row) when its last full read is older.
    reconcile_every: timedelta | None = timedelta(days=7)
    staging_triggers: StagingTriggers = StagingTriggers.AUTO
    resync: Resync = Resync.HASHES
    # Columns masked on their way out of production (masking.py); the key is in SYNC_ASSETS_MASK_KEY.
    mask: tuple[ColumnMask, ...] = ()
    # Limits: connecting, any one statement (None: no limit), a session idle inside a transaction, the run.
    connect_timeout: timedelta = timedelta(seconds=10)
    statement_timeout: timedelta | None = timedelta(hours=1)
    idle_in_transaction_timeout: timedelta = timedelta(minutes=5)
    max_runtime: timedelta | None = timedelta(minutes=30)

    @field_validator("schemas", mode="before")
    @classmethod
    def _schemas(cls, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"'schemas' must be a list of non-empty names, got {value!r}")
        if not value:
            raise ValueError("'schemas' must name at least one schema")
        return tuple(value)

    @field_validator("preserve", "exclude", mode="before")
    @classmethod
    def _tables(cls, value: Any, info: ValidationInfo) -> tuple[TableRef, ...]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise ValueError(f"'{info.field_name}' must be a list of table names, got {value!r}")
        return tuple(_table_ref(item, info.field_name) for item in value)

    @field_validator("orphans", mode="before")
    @classmethod
    def _orphans(cls, value: Any) -> OrphanPolicy:
        if value not in tuple(OrphanPolicy):
            raise ValueError(f"'orphans' must be 'delete' or 'fail', got {value!r}")
        return OrphanPolicy(value)

    @field_validator("lock_timeout", mode="before")
    @classmethod
    def _lock_timeout(cls, value: Any) -> timedelta:
        if isinstance(value, timedelta) and value > timedelta(0):
            return value
        # A bare number counts milliseconds, as PostgreSQL's own setting does.
        spelled = f"{value}ms" if isinstance(value, int) and not isinstance(value, bool) else value
        match = _DURATION.match(spelled) if isinstance(spelled, str) else None
        # 0 would switch the timeout off: the swap could then wait forever behind a lock.
        if match is None or int(match.group(1)) == 0:
            raise ValueError(f"'lock_timeout' must be a positive duration such as '2s' or '500ms', got {spelled!r}")
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> int:
        return _whole(value, "workers", 1, 64)

    @field_validator("retries", mode="before")
    @classmethod
    def _retries(cls, value: Any) -> int:
        return _whole(value, "retries", 0, 20)

    @field_validator("retry_delay_seconds", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"'retry_delay_seconds' must be a number >= 0, got {value!r}")
        return float(value)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Mode:
        return Mode(_one_of(value, Mode, "'mode'"))

    @field_validator("staging_triggers", mode="before")
    @classmethod
    def _triggers(cls, value: Any) -> StagingTriggers:
        return StagingTriggers(_one_of(value, StagingTriggers, "'staging_triggers'"))

    @field_validator("resync", mode="before")
    @classmethod
    def _resync(cls, value: Any) -> Resync:
        return Resync(_one_of(value, Resync, "'resync'"))

    @field_validator("mask", mode="before")
    @classmethod
    def _mask(cls, value: Any) -> tuple[ColumnMask, ...]:
        return value if isinstance(value, tuple) else _column_masks(value)

    @field_validator("incremental_column", mode="before")
    @classmethod
    def _column(cls, value: Any) -> str:
        return _column_name(value, "'incremental_column'")

    @field_validator("tables", mode="before")
    @classmethod
    def _table_settings(cls, value: Any) -> tuple[TableSetting, ...]:
        """`tables: {public.prices: {mode: incremental, column: changed_at}}`: settings of single tables."""
        if value is None or isinstance(value, tuple):
            return value or ()
        if not isinstance(value, dict):
            raise ValueError(f"'tables' must map table names to their settings, got {value!r}")
        found = []
        for name, settings in value.items():
            ref = _table_ref(name, "tables")
            if not isinstance(settings, dict) or set(settings) - {"mode", "column"}:
                raise ValueError(f"'tables' entry {name!r} takes only 'mode' and 'column', got {settings!r}")
            mode = settings.get("mode")
            column = settings.get("column")
            found.append(
                TableSetting(
                    ref,
                    Mode(_one_of(mode, Mode, f"the mode of {name}")) if "mode" in settings else None,
                    _column_name(column, f"the column of {name}") if "column" in settings else None,
                )
            )
        return tuple(found)

    @field_validator("incremental_overlap", "connect_timeout", "idle_in_transaction_timeout", mode="before")
    @classmethod
    def _spans(cls, value: Any, info: ValidationInfo) -> timedelta | None:
        return _positive(_span(value, info.field_name), value, info.field_name)

    @field_validator("reconcile_every", "statement_timeout", "max_runtime", mode="before")
    @classmethod
    def _span_or_never(cls, value: Any, info: ValidationInfo) -> timedelta | None:
        return _positive(_span(value, info.field_name, allow_never=True), value, info.field_name)

    @model_validator(mode="after")
    def _preserve_or_exclude(self) -> SyncConfig:
        both = sorted(set(self.preserve) & set(self.exclude))
        if both:
            raise ValueError(f"table {both[0]} is listed under both 'preserve' and 'exclude'")
        return self

    @property
    def table_modes(self) -> tuple[tuple[TableRef, Mode], ...]:
        return tuple((s.table, s.mode) for s in self.tables if s.mode is not None)

    @property
    def table_columns(self) -> tuple[tuple[TableRef, str], ...]:
        return tuple((s.table, s.column) for s in self.tables if s.column is not None)

    def session_limits(self) -> SessionLimits:
        ms = lambda span: int(span.total_seconds() * 1000)  # noqa: E731
        return SessionLimits(
            connect_seconds=max(2, int(self.connect_timeout.total_seconds())),
            statement_ms=ms(self.statement_timeout) if self.statement_timeout is not None else 0,
            idle_in_transaction_ms=ms(self.idle_in_transaction_timeout),
        )


_LIMITS = {"connect_timeout", "statement_timeout", "idle_in_transaction_timeout", "max_runtime"}


def _positive(span: timedelta | None, given: Any, key: str) -> timedelta | None:
    """The session limits must be longer than zero: a zero would switch them off, or end every statement."""
    if span is not None and key in _LIMITS and span <= timedelta(0):
        raise ValueError(f"'{key}' must be longer than zero, got {given!r}")
    return span
