"""Both sides of tables as they are now, for the checks of tables a run did not sync."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from sync_assets.engine import content
from sync_assets.engine.catalog import Table, TableKey
from sync_assets.engine.config import Mode, SyncConfig
from sync_assets.engine.connections import Endpoint, connect_both
from sync_assets.engine.content import Fingerprint, Scope, Side, Unavailable
from sync_assets.engine.copy_pipe import copy_rows
from sync_assets.engine.foreign_keys import count_rows
from sync_assets.engine.introspect import introspect
from sync_assets.engine.masked import mask_key
from sync_assets.engine.observe import Observer
from sync_assets.engine.plan import SyncPlan, build_plan
from sync_assets.engine.snapshot import begin_snapshot, prepare_session
from sync_assets.engine.sql import cols, ident, match
from sync_assets.engine.table_plan import TablePlan


@dataclass(frozen=True)
class Comparison:
    """A table as production and staging hold it now, for the checks of a table a run did not sync."""

    production_rows: int
    staging_rows: int
    snapshot_print: Fingerprint | Unavailable  # production's, in one read-only snapshot
    staging_print: Fingerprint | Unavailable  # in merge mode: of staging's rows whose key production has
    mode: Mode
    triggers_fired: tuple[str, ...] = ()  # none: nothing was written


@contextmanager
def planned_now(
    source: Endpoint, target: Endpoint, config: SyncConfig, keys: set[TableKey]
) -> Iterator[tuple[psycopg.Connection, psycopg.Connection, SyncPlan]]:
    """Both sides as they are now, for judging tables a run did not sync: production in one read-only
    snapshot, staging as it is, and the plan of those tables (masks included)."""
    limits = config.session_limits()
    prod, staging = connect_both(replace(source, limits=limits), replace(target, limits=limits))
    try:
        prepare_session(prod)
        prepare_session(staging)
        begin_snapshot(prod)
        production, held = introspect(prod, config.schemas), introspect(staging, None)
        yield prod, staging, build_plan(production, held, config, keys, mask_key(config))
    finally:
        prod.close()
        staging.close()


def compare_now(
    source: Endpoint, target: Endpoint, config: SyncConfig, keys: set[TableKey]
) -> dict[TableKey, Comparison]:
    """Count and fingerprint the tables on both sides now. Nothing is written to either side (a merge
    table's production keys go to a temp table)."""
    with planned_now(source, target, config, keys) as (prod, staging, plan):
        return {tp.table_key: _compare(prod, staging, tp, i) for i, tp in enumerate(plan.tables)}


def _compare(prod: psycopg.Connection, staging: psycopg.Connection, tp: TablePlan, i: int) -> Comparison:
    in_production = content.take(prod, tp, tp.source.relation(), Scope.ACROSS, Side.PRODUCTION)
    # Merge keeps rows production deleted: staging's rows are compared where production has the key.
    where = None if tp.deletes else _production_keys_in(prod, staging, tp, sql.Identifier(f"sync_keys_{i}"))
    method = in_production.method if isinstance(in_production, Fingerprint) else None
    rel = tp.target.relation()
    in_staging = content.take(staging, tp, rel, Scope.ACROSS, Side.STAGING, method=method, where=where)
    return Comparison(
        _rows(prod, tp.source, in_production),
        _rows(staging, tp.target, in_staging if where is None else None),
        in_production,
        in_staging,
        tp.mode,
    )


def _rows(conn: psycopg.Connection, table: Table, counted: Fingerprint | Unavailable | None) -> int:
    """The table's rows: counted by its fingerprint where it covers them all, else by a count."""
    return counted.rows if isinstance(counted, Fingerprint) else count_rows(conn, table)


def _production_keys_in(
    prod: psycopg.Connection, staging: psycopg.Connection, tp: TablePlan, keys: sql.Identifier
) -> sql.Composable:
    """Copy production's keys of the table into a temp table in staging; a filter on staging's rows (t)."""
    staging.execute(
        sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
            keys, cols(tp.key), ident(tp.table_key)
        )
    )
    # A masked key goes out masked, as the sync copied it.
    keys_out = sql.SQL(", ").join(tp.selected(k) or sql.Identifier(k) for k in tp.key)
    query = sql.SQL("SELECT {} FROM {} t").format(keys_out, tp.source.relation())
    copy_rows(prod, staging, query, keys, tp.key, tp.binary, f"the keys of {tp.qualified}", Observer())
    return sql.SQL("EXISTS (SELECT 1 FROM {} k WHERE {})").format(keys, match("k", tp.key, "t", tp.key))
