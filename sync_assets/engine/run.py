"""One sync run: catalog, plan, extract, swap, count. No Dagster here."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import psycopg
from psycopg import sql

from sync_assets.engine import catalog as catalog_mod
from sync_assets.engine import content, incremental, privileges, write_path
from sync_assets.engine import observe as faults
from sync_assets.engine.borders import OrphanBackup
from sync_assets.engine.catalog import Table
from sync_assets.engine.config import SyncConfig
from sync_assets.engine.connections import Endpoint, refuse_same_database, same_database_message, server_identity
from sync_assets.engine.content import Fingerprint, Scope, Side, Unavailable
from sync_assets.engine.errors import BusyError, SyncError
from sync_assets.engine.extract import CopyStats, begin_snapshot, copy_rows, export_snapshot, extract, prepare_session
from sync_assets.engine.foreign_keys import count_rows
from sync_assets.engine.plan import SyncPlan, TableKey, TablePlan, build_plan
from sync_assets.engine.shadows import BOOKKEEPING_SCHEMA, SHADOW_PREFIX, ShadowName, key_shadow_name, shadow_name
from sync_assets.engine.sql import cols as sql_cols
from sync_assets.engine.sql import ident, match
from sync_assets.engine.swap import SwapResult, TableChanges, swap

# One sync at a time per staging database: a session-level advisory lock, released if the process dies.
ADVISORY_LOCK_KEY = 0x5359_4E43_4153_5354  # "SYNCASST"

Log = Callable[[str], None]


@dataclass(frozen=True)
class TableResult:
    key: TableKey
    production_rows: int  # rows in the snapshot
    staging_rows: int  # rows in staging after COMMIT
    inserted: int
    updated: int
    deleted: int
    bytes: int
    copy_seconds: float
    binary: bool
    replaced_whole: bool
    notes: tuple[str, ...] = ()
    rewritten: int = 0  # rows written by replacing a keyless table whole (inserted/deleted: rows that differ)
    read_rows: int = -1  # rows read from production: fewer than production_rows when only changes were read
    mode: str = "mirror"
    # Content fingerprints of the snapshot's rows and of staging's just before COMMIT (content.py).
    snapshot_print: Fingerprint | Unavailable | None = None
    staging_print: Fingerprint | Unavailable | None = None
    # Staging's own triggers that fired on the rows written (write_path.py).
    triggers_fired: tuple[str, ...] = ()


@dataclass
class SyncResult:
    run_id: str
    tables: dict[TableKey, TableResult] = field(default_factory=dict)
    orphans: list[OrphanBackup] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)
    swap_seconds: float = 0.0
    seconds: float = 0.0
    plan: SyncPlan | None = None
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)  # e.g. production's role could write
    # Time spent on content fingerprints: of the shadows or production (in the extract's parallel
    # readers) and of staging (in the swap transaction). Their sum: at most what the checks add.
    fingerprint_seconds: float = 0.0


WARNING_PREFIX = "warning: "


def _default_log(message: str) -> None:
    logging.getLogger("sync_assets").info(message)


def ensure_bookkeeping_schema(conn: psycopg.Connection) -> bool:
    """Create the tool's schema if needed; True when this call created it."""
    found = conn.execute(
        "SELECT pg_get_userbyid(nspowner), has_schema_privilege(oid, 'CREATE') AND has_schema_privilege(oid, 'USAGE')"
        " FROM pg_namespace WHERE nspname = %s",
        (BOOKKEEPING_SCHEMA,),
    ).fetchone()
    if found is not None:
        owner, usable = found
        if not usable:
            user = conn.info.user
            raise SyncError(
                f"the bookkeeping schema {BOOKKEEPING_SCHEMA} in staging belongs to role '{owner}', and the staging "
                f"role '{user}' may not use it (a sync ran as '{owner}' before): run once ALTER SCHEMA "
                f"{BOOKKEEPING_SCHEMA} OWNER TO {user}, or GRANT USAGE, CREATE ON SCHEMA {BOOKKEEPING_SCHEMA} TO {user}"
            )
        return False
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(BOOKKEEPING_SCHEMA)))
        return True
    except psycopg.errors.InsufficientPrivilege:
        user = conn.info.user
        raise SyncError(
            f"the staging user '{user}' may not create the bookkeeping schema {BOOKKEEPING_SCHEMA}: grant it "
            f"CREATE on the database, or run once: CREATE SCHEMA {BOOKKEEPING_SCHEMA} AUTHORIZATION {user}"
        ) from None


def drop_shadows(conn: psycopg.Connection, only: list[ShadowName] | None = None) -> int:
    """Drop this run's shadows, or (only=None) every leftover of an interrupted run."""
    if only is None:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r' AND starts_with(c.relname, %s)",
            (BOOKKEEPING_SCHEMA, SHADOW_PREFIX),
        ).fetchall()
        only = [ShadowName(r[0]) for r in rows]
    if only:
        # One statement: each DROP scans shared_buffers for the dropped tables' pages once.
        names = [name for ident in only for name in (ident, key_shadow_name(ident))]
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(names)))
    return len(only)


def acquire_run_lock(conn: psycopg.Connection) -> None:
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
    if not got or not got[0]:
        raise BusyError("another sync is running against this staging database; try again when it has finished")


def settle_key_reads(plan: SyncPlan, copied: dict[TableKey, CopyStats]) -> SyncPlan:
    """The plan as the extract left it: tables read partly whose key fingerprints matched have no key shadow."""
    tables = []
    for tp in plan.tables:
        if not tp.partial:
            tables.append(tp)
        elif why := copied[tp.table_key].keys_copied:
            tables.append(replace(tp, notes=(*tp.notes, f"every key read to find deletes: {why}")))
        else:
            tables.append(
                replace(tp, keys_copied=False, notes=(*tp.notes, "the key fingerprints match: nothing deleted"))
            )
    return replace(plan, tables=tuple(tables))


def _dry_run_notes(plan: SyncPlan) -> SyncPlan:
    """What a dry run cannot do as the run does it, said per table."""
    tables = []
    for tp in plan.tables:
        if tp.unmimicked:
            note = (
                f"the dry run counts its inserts without making them: the default of {', '.join(tp.unmimicked)} "
                "draws from a sequence, which no rollback gives back"
            )
            tp = replace(tp, notes=(*tp.notes, note))
        tables.append(tp)
    return replace(plan, tables=tuple(tables))


def connect_both(source: Endpoint, target: Endpoint) -> tuple[psycopg.Connection, psycopg.Connection]:
    """Open production (read-only) and staging; refuse when both are the same database."""
    refuse_same_database(source, target)
    prod = source.connect()
    try:
        staging = target.connect()
    except BaseException:
        prod.close()
        raise
    if server_identity(prod) == server_identity(staging):
        prod.close()
        staging.close()
        raise SyncError(same_database_message(source, target))
    return prod, staging


def run_sync(
    source: Endpoint,
    target: Endpoint,
    config: SyncConfig,
    selection: set[TableKey] | None = None,
    log: Log = _default_log,
    dry_run: bool = False,
    reconcile: bool = False,
) -> SyncResult:
    """Sync the selected tables (None: all) from production into staging, atomically.

    dry_run does everything but the COMMIT, and counts the rows it would insert instead of inserting
    them (an INSERT would draw staging's own sequences, which no ROLLBACK gives back): the rest of the
    swap runs and is rolled back, and staging is left as it was, sequences included.

    reconcile reads incremental tables whole (and compares every row) instead of from their watermark.
    """
    started = time.monotonic()
    run_id = uuid.uuid4().hex
    result = SyncResult(run_id=run_id, dry_run=dry_run)
    limits = config.session_limits()
    source, target = replace(source, limits=limits), replace(target, limits=limits)
    prod, control = connect_both(source, target)
    shadows: dict[TableKey, ShadowName] = {}
    created_schema = False
    try:
        faults.reach("connected")
        if control.info.server_version >= 140000:
            # Should this process die while the swap waits on a lock, the server notices within a second
            # and rolls back, instead of holding row locks until the lock comes through.
            control.execute("SET client_connection_check_interval = '1s'")
        privileges.check_staging_writable(control)
        acquire_run_lock(control)
        faults.reach("locked")
        created_schema = ensure_bookkeeping_schema(control)
        leftovers = drop_shadows(control)
        if leftovers:
            log(f"removed {leftovers} shadow table(s) left by an interrupted run")

        # Listed before the snapshot is taken: the watermark rests on it (see incremental.py).
        production_id = incremental.production_identity(prod)
        observation = incremental.observe(prod, production_id, incremental.load_observation(control, production_id))
        begin_snapshot(prod)
        snapshot_id = export_snapshot(prod) if config.workers > 1 else None
        faults.reach("snapshot_taken")
        production = catalog_mod.introspect(prod, config.schemas)
        staging = catalog_mod.introspect(control, None)
        plan = build_plan(production, staging, config, selection)
        states = incremental.load_states(control)
        plan = incremental.plan_reads(plan, states, observation, config, reconcile)
        result.plan = plan
        result.warnings = privileges.check_production(prod, plan)
        for warning in result.warnings:
            log(f"{WARNING_PREFIX}{warning}")
        privileges.check_staging(control, plan, config.orphans)
        with control.cursor() as cur:
            path = write_path.choose(cur, plan, config.staging_triggers)
        faults.reach("planned")
        if dry_run:
            plan = _dry_run_notes(plan)
            result.plan = plan
        for note in plan.notes:
            log(note)
        if not plan.tables:
            return result
        shadows = {tp.table_key: shadow_name(run_id[:12], i) for i, tp in enumerate(plan.tables)}
        log(
            f"syncing {len(plan.tables)} table(s) from production {source.describe()} to staging "
            f"{target.describe()} in one snapshot"
        )
        for line in path.info:
            log(line)
        if path.warning is not None:
            result.warnings.append(path.warning)
            log(f"{WARNING_PREFIX}{path.warning}")
        copied: dict[TableKey, CopyStats] = extract(
            prod, snapshot_id, source, target, list(plan.tables), shadows, config.workers, log, prints=not dry_run
        )
        faults.reach("extracted")
        prod.execute("COMMIT")
        plan = settle_key_reads(plan, copied)
        result.plan = plan

        swap_started = time.monotonic()

        def bookkeeping(cur: psycopg.Cursor, swapped: SwapResult) -> None:
            counts = {k: (copied[k].rows, swapped.staging_rows[k]) for k in copied}
            incremental.record(cur, plan, observation, states, counts, run_id, log)

        swapped = swap(
            control,
            plan,
            shadows,
            config.orphans,
            config.lock_timeout,
            run_id,
            log,
            dry_run,
            bookkeeping,
            path,
            {k: c.snapshot for k, c in copied.items()},
        )
        result.swap_seconds = time.monotonic() - swap_started
        faults.reach("committed")
        result.orphans = swapped.orphans
        result.sequences = swapped.sequences
        result.fingerprint_seconds = swapped.print_seconds + sum(c.print_seconds for c in copied.values())
        done = "rolled back the dry run of" if dry_run else "committed"
        log(f"{done} the swap of {len(plan.tables)} table(s) in {result.swap_seconds:.2f}s")

        for tp in plan.tables:
            stats = copied[tp.table_key]
            changes = swapped.changes.get(tp.table_key, TableChanges())
            result.tables[tp.table_key] = TableResult(
                key=tp.table_key,
                production_rows=stats.rows,
                staging_rows=swapped.staging_rows[tp.table_key],
                inserted=changes.inserted,
                updated=changes.updated,
                deleted=changes.deleted,
                bytes=stats.bytes,
                copy_seconds=stats.seconds,
                binary=tp.binary,
                replaced_whole=changes.replaced_whole,
                rewritten=changes.rewritten,
                notes=tp.notes,
                read_rows=stats.read_rows,
                mode=tp.mode,
                snapshot_print=stats.snapshot,
                staging_print=swapped.prints.get(tp.table_key),
                triggers_fired=tuple(t.qualified for t in path.firing if t.of == tp.table_key),
            )
    finally:
        try:
            if not control.closed and shadows:
                drop_shadows(control, list(shadows.values()))
            if not control.closed and dry_run and created_schema:
                control.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(BOOKKEEPING_SCHEMA)))
        except psycopg.Error:
            pass  # the next run removes them
        prod.close()
        control.close()
    faults.reach("finished")
    result.seconds = time.monotonic() - started
    return result


@dataclass(frozen=True)
class Comparison:
    """A table as production and staging hold it now, for the checks of a table a run did not sync."""

    production_rows: int
    staging_rows: int
    production: Fingerprint | Unavailable
    staging: Fingerprint | Unavailable  # in merge mode: of staging's rows whose key production has
    mode: str


def compare_now(
    source: Endpoint, target: Endpoint, config: SyncConfig, keys: set[TableKey]
) -> dict[TableKey, Comparison]:
    """Count and fingerprint the tables on both sides now: production in one read-only snapshot, staging
    as it is. Nothing is written to either side (a merge table's production keys go to a temp table)."""
    limits = config.session_limits()
    prod, staging = connect_both(replace(source, limits=limits), replace(target, limits=limits))
    try:
        prepare_session(prod)
        prepare_session(staging)
        begin_snapshot(prod)
        production, held = catalog_mod.introspect(prod, config.schemas), catalog_mod.introspect(staging, None)
        found = {}
        for i, tp in enumerate(build_plan(production, held, config, keys).tables):
            rel = tp.target.relation()
            utf8 = tp.encodings_differ
            in_production = content.take(prod, tp, tp.source.relation(), Scope.ACROSS, Side.PRODUCTION, utf8)
            # Merge keeps rows production deleted: staging's rows are compared where production has the key.
            where = None if tp.deletes else _production_keys_in(prod, staging, tp, sql.Identifier(f"sync_keys_{i}"))
            method = in_production.method if isinstance(in_production, Fingerprint) else None
            in_staging = content.take(staging, tp, rel, Scope.ACROSS, Side.STAGING, utf8, method=method, where=where)
            found[tp.table_key] = Comparison(
                _rows(prod, tp.source, in_production),
                _rows(staging, tp.target, in_staging if where is None else None),
                in_production,
                in_staging,
                tp.mode,
            )
        return found
    finally:
        prod.close()
        staging.close()


def _rows(conn: psycopg.Connection, table: Table, counted: Fingerprint | Unavailable | None) -> int:
    """The table's rows: counted by its fingerprint where it covers them all, else by a count."""
    return counted.rows if isinstance(counted, Fingerprint) else count_rows(conn, table)


def _production_keys_in(
    prod: psycopg.Connection, staging: psycopg.Connection, tp: TablePlan, keys: sql.Identifier
) -> sql.Composable:
    """Copy production's keys of the table into a temp table in staging; a filter on staging's rows (t)."""
    staging.execute(
        sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
            keys, sql_cols(tp.key), ident(tp.table_key)
        )
    )
    query = sql.SQL("SELECT {} FROM {}").format(sql_cols(tp.key), tp.source.relation())
    copy_rows(prod, staging, query, keys, tp.key, tp.binary, f"the keys of {tp.qualified}", _default_log)
    return sql.SQL("EXISTS (SELECT 1 FROM {} k WHERE {})").format(keys, match("k", tp.key, "t", tp.key))
