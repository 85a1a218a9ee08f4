"""A table's mode: mirror, merge or incremental, as the config asks and as its key and columns allow."""

from __future__ import annotations

from dataclasses import replace

from sync_assets.engine.column_types import is_change_time
from sync_assets.engine.config import Mode, SyncConfig
from sync_assets.engine.errors import ConfigError, DriftError
from sync_assets.engine.table_plan import TablePlan


def _incremental_problem(tp: TablePlan, column: str) -> str | None:
    """Why the table cannot be read incrementally by this column, or None."""
    if not tp.key:
        return "needs a primary key (or unique NOT NULL key) to find deleted rows; it has none"
    src = tp.source.column(column)
    if src is None:
        return f"has no column {column} in production to tell changed rows by"
    if column not in tp.columns:
        return f"does not copy its column {column} to staging"
    if not is_change_time(src):
        return f"has column {column} of type {src.type}, not a timestamp or date"
    return None


def with_mode(tp: TablePlan, explicit: Mode | None, column: str | None, config: SyncConfig) -> TablePlan:
    """Merge and incremental need a key (incremental also its change column): asked for by name, their
    absence is an error; by the global default, the table stays in mirror mode, and the plan says so."""
    mode = explicit or config.mode
    if column is not None and mode != Mode.INCREMENTAL:
        raise ConfigError(
            f"'tables' sets the column of {tp.qualified}, which only mode incremental uses; its mode is {mode}"
        )
    if mode == Mode.MERGE and not tp.key:
        if explicit:
            raise DriftError(
                f"{tp.qualified} is set to mode merge, which needs a primary key (or unique NOT NULL key) to tell "
                "new rows from existing ones; it has none"
            )
        return tp.noted("no key to merge by: synced in mirror mode (replaced whole)")
    if mode == Mode.INCREMENTAL:
        named = explicit is not None or column is not None
        column = column or config.incremental_column
        problem = _incremental_problem(tp, column)
        if problem is not None:
            if named:
                raise DriftError(f"{tp.qualified} is set to mode incremental, but it {problem}")
            return tp.noted(f"not incremental: it {problem}; synced in mirror mode")
        return replace(tp, mode=mode, incremental_column=column)
    return replace(tp, mode=mode)
