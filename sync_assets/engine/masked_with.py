"""Which masks (and key) each masked table's staged rows were written under, kept in the bookkeeping schema.

A run compares it with its own masks: where they differ (another key, another transform, masking just
switched on) every masked value is written again, and the run says so. A merge table keeps staging's
rows that production no longer has as they are, so rows copied before the change may still hold raw
values (or values masked under the old key) that no_raw_values cannot tell from staging's own rows: the
run warns, naming the table. Only a fingerprint is stored, derived from the key: it says whether the
masks changed and nothing of the key.
"""

from __future__ import annotations

import json
from dataclasses import replace

import psycopg
from psycopg import sql

from sync_assets.engine.bookkeeping import table_exists
from sync_assets.engine.catalog import TableKey
from sync_assets.engine.mask_key import MaskKey
from sync_assets.engine.plan import SyncPlan
from sync_assets.engine.shadows import BOOKKEEPING_SCHEMA
from sync_assets.engine.table_plan import TablePlan
from sync_assets.engine.table_run import TableRun

STATE_TABLE = sql.Identifier(BOOKKEEPING_SCHEMA, "masked_with")

_CREATE = """
CREATE TABLE IF NOT EXISTS {} (
    table_schema text NOT NULL,
    table_name text NOT NULL,
    masks text NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (table_schema, table_name)
)
"""

_UPSERT = """
INSERT INTO {} (table_schema, table_name, masks, run_id) VALUES (%s, %s, %s, %s)
ON CONFLICT (table_schema, table_name) DO UPDATE SET masks = excluded.masks, run_id = excluded.run_id
"""


def fingerprint(tp: TablePlan, key: MaskKey) -> str:
    """The table's masks under this key, as a fingerprint that reveals nothing of the key."""
    spec = json.dumps([[name, repr(mask)] for name, mask in tp.masks])
    return key.derived("masked_with:" + spec).hex()[:16]


def load(conn: psycopg.Connection) -> dict[TableKey, str]:
    if not table_exists(conn, STATE_TABLE):
        return {}
    rows = conn.execute(sql.SQL("SELECT table_schema, table_name, masks FROM {}").format(STATE_TABLE)).fetchall()
    return {(schema, name): masks for schema, name, masks in rows}


def compared(plan: SyncPlan, stored: dict[TableKey, str], key: MaskKey | None) -> tuple[SyncPlan, list[str]]:
    """The plan with a note on each masked table whose masks changed since its rows were staged, and a
    warning for each such merge table."""
    warnings = []
    tables = []
    for tp in plan.tables:
        before = stored.get(tp.table_key)
        if key is not None and tp.masks and before != fingerprint(tp, key):
            if before is not None:
                tp = tp.noted("masks or masking key changed since the last run: every masked value is written again")
            warnings += _orphaned(plan, tp)
            if not tp.deletes:
                warnings.append(
                    f"{tp.qualified} is in merge mode: staging's rows that production does not have are kept as they "
                    "are, and those copied before these masks (or under another key) may still hold raw values that "
                    "no_raw_values cannot tell from staging's own rows; sync it once in mirror mode, or delete them"
                )
        tables.append(tp)
    return replace(plan, tables=tuple(tables)), warnings


def _orphaned(plan: SyncPlan, tp: TablePlan) -> list[str]:
    """Staging's own rows that reference a column masked anew point at production's raw values, which
    the run replaces: they lose their parent rows, and the `orphans` setting decides what becomes of them."""
    masked = {name for name, _ in tp.masks}
    found = []
    for ref in plan.children_outside:
        if ref.fk.ref == tp.table_key and masked & set(ref.fk.ref_columns):
            found.append(
                f"staging's foreign key {ref.fk.name} links {ref.table.qualified} ({ref.role}) to columns of "
                f"{tp.qualified} masked anew ({', '.join(sorted(masked & set(ref.fk.ref_columns)))}): its rows that "
                "point at production's raw values lose their parent rows, and are backed up and removed (orphans: "
                "delete) or stop the run (orphans: fail)"
            )
    return found


def record(cur: psycopg.Cursor, runs: list[TableRun], key: MaskKey | None, run_id: str) -> None:
    """Inside the swap transaction: the masks each synced table's rows were written under; a table synced
    unmasked forgets them, so that masking it again is seen as a change."""
    masked = [run for run in runs if run.plan.masks and key is not None]
    plain = [run for run in runs if not run.plan.masks]
    if not masked and not (plain and table_exists(cur, STATE_TABLE)):
        return
    cur.execute(sql.SQL(_CREATE).format(STATE_TABLE))
    for run in masked:
        assert key is not None
        cur.execute(sql.SQL(_UPSERT).format(STATE_TABLE), (*run.key, fingerprint(run.plan, key), run_id))
    for run in plain:
        query = sql.SQL("DELETE FROM {} WHERE table_schema = %s AND table_name = %s").format(STATE_TABLE)
        cur.execute(query, run.key)
