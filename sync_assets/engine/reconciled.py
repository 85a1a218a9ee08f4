"""When each mirror table was last read whole and compared row by row, kept in the bookkeeping schema.

A resync by keyed row hashes (compare.py) trusts 64-bit hashes to say which buckets are equal; a change
hidden by a collision would stay until the table is read whole again. `reconcile_every` bounds that: a
table whose last whole read is older, or unknown, is read whole once more.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql

from sync_assets.engine.bookkeeping import table_exists
from sync_assets.engine.catalog import TableKey
from sync_assets.engine.shadows import BOOKKEEPING_SCHEMA, Keys
from sync_assets.engine.table_run import TableRun

STATE_TABLE = sql.Identifier(BOOKKEEPING_SCHEMA, "whole_reads")

_CREATE = """
CREATE TABLE IF NOT EXISTS {} (
    table_schema text NOT NULL,
    table_name text NOT NULL,
    read_at timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (table_schema, table_name)
)
"""

_UPSERT = """
INSERT INTO {} (table_schema, table_name, read_at, run_id) VALUES (%s, %s, now(), %s)
ON CONFLICT (table_schema, table_name) DO UPDATE SET read_at = excluded.read_at, run_id = excluded.run_id
"""


def load(conn: psycopg.Connection) -> tuple[datetime, dict[TableKey, datetime]]:
    """Staging's clock now, and per table when it was last read whole."""
    now = conn.execute("SELECT now()").fetchone()[0]
    if not table_exists(conn, STATE_TABLE):
        return now, {}
    rows = conn.execute(sql.SQL("SELECT table_schema, table_name, read_at FROM {}").format(STATE_TABLE)).fetchall()
    return now, {(schema, name): at for schema, name, at in rows}


def record(cur: psycopg.Cursor, runs: list[TableRun], run_id: str) -> None:
    """Inside the swap transaction: the tables with a key that were read whole, in any mode (an incremental
    table read whole, then switched to mirror, was compared row by row as much as a mirror table)."""
    whole = [run for run in runs if run.plan.key and run.keys == Keys.NOT_NEEDED and not run.plan.partial]
    if not whole:
        return
    cur.execute(sql.SQL(_CREATE).format(STATE_TABLE))
    for run in whole:
        cur.execute(sql.SQL(_UPSERT).format(STATE_TABLE), (*run.key, run_id))
