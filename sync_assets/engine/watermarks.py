"""Incremental tables' watermarks: where they are kept, what a run reads because of them (the read
decision: whole, or the rows changed since the watermark), and the new ones a run records.

The watermark's proof is incremental.py's; here it is stored per table, inside the swap transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import psycopg
from psycopg import sql

from sync_assets.engine.bookkeeping import table_exists
from sync_assets.engine.catalog import TableKey, qualified
from sync_assets.engine.config import Mode, SyncConfig
from sync_assets.engine.incremental import Observation, save_observation
from sync_assets.engine.observe import Observer
from sync_assets.engine.plan import SyncPlan
from sync_assets.engine.shadows import BOOKKEEPING_SCHEMA
from sync_assets.engine.table_plan import TablePlan
from sync_assets.engine.table_run import TableRun

STATE_TABLE = sql.Identifier(BOOKKEEPING_SCHEMA, "incremental_state")

_CREATE_STATE = """
CREATE TABLE IF NOT EXISTS {} (
    table_schema text NOT NULL,
    table_name text NOT NULL,
    column_name text NOT NULL,
    production text NOT NULL,
    watermark timestamptz,
    reconciled_at timestamptz NOT NULL,
    note text,
    run_id text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name)
)
"""

_UPSERT_STATE = """
INSERT INTO {} (table_schema, table_name, column_name, production, watermark, reconciled_at, note, run_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (table_schema, table_name) DO UPDATE
SET column_name = excluded.column_name, production = excluded.production, watermark = excluded.watermark,
    reconciled_at = excluded.reconciled_at, note = excluded.note, run_id = excluded.run_id, recorded_at = now()
"""


@dataclass(frozen=True)
class TableState:
    column: str
    production: str
    watermark: datetime | None
    reconciled_at: datetime
    note: str | None


def load_states(conn: psycopg.Connection) -> dict[TableKey, TableState]:
    if not table_exists(conn, STATE_TABLE):
        return {}
    rows = conn.execute(
        sql.SQL(
            "SELECT table_schema, table_name, column_name, production, watermark, reconciled_at, note FROM {}"
        ).format(STATE_TABLE)
    ).fetchall()
    return {(r[0], r[1]): TableState(*r[2:]) for r in rows}


def _full_read_reason(
    state: TableState | None, column: str, observation: Observation, config: SyncConfig, reconcile: bool
) -> str | None:
    """Why an incremental table must be read whole this time, or None when its watermark holds."""
    if reconcile:
        return "full reconciliation asked for"
    if state is None:
        return "first incremental run"
    if state.production != observation.production:
        return "production is another database than at the last run"
    if state.column != column:
        return f"the change column was {state.column} at the last run"
    if state.watermark is None:
        return state.note or "the last run could not prove a watermark"
    if config.reconcile_every is not None and observation.at - state.reconciled_at >= config.reconcile_every:
        return f"last read whole at {state.reconciled_at:%Y-%m-%d %H:%M%z} (reconcile_every)"
    return None


def plan_reads(
    plan: SyncPlan,
    states: dict[TableKey, TableState],
    observation: Observation | None,
    config: SyncConfig,
    reconcile: bool,
) -> SyncPlan:
    """Set, per incremental table, from when its rows are read (or that it is read whole, and why)."""
    tables = []
    for tp in plan.tables:
        if tp.mode != Mode.INCREMENTAL or tp.incremental_column is None:
            tables.append(tp)
            continue
        state = states.get(tp.table_key)
        if observation is None:
            reason: str | None = "the production role may not list open transactions (pg_locks)"
        else:
            reason = _full_read_reason(state, tp.incremental_column, observation, config, reconcile)
        if reason is not None or state is None or state.watermark is None:
            tables.append(replace(tp, since=None).noted(f"read whole: {reason}"))
            continue
        since = state.watermark - config.incremental_overlap
        tables.append(
            replace(tp, since=since).noted(f"reading rows with {tp.incremental_column} >= {since:%Y-%m-%d %H:%M:%S%z}")
        )
    return replace(plan, tables=tuple(tables))


def _forget(cur: psycopg.Cursor, keys: list[TableKey]) -> None:
    for key in keys:
        cur.execute(sql.SQL("DELETE FROM {} WHERE table_schema = %s AND table_name = %s").format(STATE_TABLE), key)


def _new_watermark(run: TableRun, observation: Observation, observer: Observer) -> tuple[datetime | None, str | None]:
    """The table's next watermark, or None and why the next run must read it whole."""
    if run.plan.partial and run.production_rows != run.staging_rows:
        # Staging's table did not hold the last run's state: something else changed it.
        note = (
            f"after reading only changed rows, staging had {run.staging_rows:,} rows and production "
            f"{run.production_rows:,}: staging's table was changed outside the sync"
        )
        observer.info(f"{run.qualified}: {note}; the next run reads it whole")
        return None, note
    if observation.watermark is None:
        return None, observation.holding_back()
    return observation.watermark, None


def record(
    cur: psycopg.Cursor,
    runs: list[TableRun],
    observation: Observation | None,
    states: dict[TableKey, TableState],
    run_id: str,
    observer: Observer,
) -> None:
    """Inside the swap transaction: the new watermark of each incremental table of the run, and the
    listing it rests on; tables of the run in other modes forget theirs (a later switch back to
    incremental then starts with a whole read)."""
    incremental: list[TablePlan] = [run.plan for run in runs if run.plan.mode == Mode.INCREMENTAL]
    if not incremental or observation is None:
        if table_exists(cur, STATE_TABLE):
            _forget(cur, [run.key for run in runs])
        return
    cur.execute(sql.SQL(_CREATE_STATE).format(STATE_TABLE))
    for run in runs:
        if run.plan.mode != Mode.INCREMENTAL:
            _forget(cur, [run.key])
            continue
        watermark, note = _new_watermark(run, observation, observer)
        previous = states.get(run.key)
        reconciled = previous.reconciled_at if run.plan.partial and previous is not None else observation.at
        cur.execute(
            sql.SQL(_UPSERT_STATE).format(STATE_TABLE),
            (*run.key, run.plan.incremental_column, observation.production, watermark, reconciled, note, run_id),
        )
    save_observation(cur, observation, run_id)
    held = observation.holding_back()
    if held:
        names = ", ".join(qualified(tp.table_key) for tp in incremental)
        observer.info(f"incremental watermark of {names} held back: {held}")
