"""The one staging transaction that makes every table of the run equal to its shadow.

Order inside the transaction:
  1. the run's borders (borders.py): parents outside the run must hold the rows pointed at; rows
     outside the run that would lose their parent are backed up and removed, or stop the run;
  2. staging's own triggers on the run's tables silenced, where the write path says so (write_path.py);
  3. the rows written (apply.py): per table a diff (diff.py), then inserts and updates parents first,
     deletes children first; foreign keys checked per key in replica mode (replica.py);
  4. deferred constraints checked, triggers enabled again, staging's rows counted and fingerprinted;
  5. sequences moved past the highest value (sequences.py), then the bookkeeping, then COMMIT.
Only row-level locks (ROW EXCLUSIVE) are taken on tables whose triggers stay as they are, so readers
are never blocked; they see the old rows until COMMIT.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from psycopg import sql

from sync_assets.engine import apply, borders, content, sequences
from sync_assets.engine.borders import OrphanBackup
from sync_assets.engine.compare import HashesDisagree
from sync_assets.engine.config import OrphanPolicy
from sync_assets.engine.content import Fingerprint, Side, Unavailable
from sync_assets.engine.errors import about_table
from sync_assets.engine.observe import Observer, Point
from sync_assets.engine.plan import SyncPlan
from sync_assets.engine.shadows import Keys
from sync_assets.engine.snapshot import SESSION_SETTINGS
from sync_assets.engine.sql import match
from sync_assets.engine.table_run import TableRun
from sync_assets.engine.write_path import WritePath


@dataclass
class SwapResult:
    orphans: list[OrphanBackup] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)
    print_seconds: float = 0.0  # spent taking staging's fingerprints


def _begin(cur: psycopg.Cursor, lock_timeout: timedelta) -> None:
    milliseconds = max(1, int(lock_timeout / timedelta(milliseconds=1)))
    cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{milliseconds}ms")))
    # Changes are found by comparing values' text forms: pin what that text depends on.
    for setting in SESSION_SETTINGS:
        cur.execute(setting.replace("SET ", "SET LOCAL ", 1))
    # Deferrable constraints (cycles declared DEFERRABLE) are checked at the end.
    cur.execute("SET CONSTRAINTS ALL DEFERRED")


def _staging_print(cur: psycopg.Cursor, run: TableRun, snapshot: Fingerprint) -> Fingerprint | Unavailable:
    """Staging's fingerprint as the snapshot's was taken; in merge mode, of the rows the snapshot has
    (staging keeps the ones production deleted)."""
    tp = run.plan
    where = None
    if not tp.deletes:
        where = sql.SQL("EXISTS (SELECT 1 FROM {} s WHERE {})").format(run.shadow, match("s", tp.key, "t", tp.key))
    with about_table("fingerprinting", tp.qualified):
        return content.take(
            cur.connection,
            tp,
            tp.target.relation(),
            snapshot.scope,
            Side.STAGING,
            method=snapshot.method,
            where=where,
            fold=snapshot.fold,
        )


def _count(cur: psycopg.Cursor, runs: list[TableRun], dry_run: bool, result: SwapResult) -> None:
    """Staging's rows and content just before COMMIT, each held against the snapshot's by the checks.

    A table compared by hashes whose content then differs is no failed check but a run to do again
    (compare.HashesDisagree): the hashes, not the rows, said what to read."""
    disagree = set()
    for run in runs:
        snapshot = run.snapshot_print
        if isinstance(snapshot, Fingerprint) and not dry_run:
            printed = time.monotonic()
            run.staging_print = _staging_print(cur, run, snapshot)
            result.print_seconds += time.monotonic() - printed
            if run.keys == Keys.BUCKETS and not (
                isinstance(run.staging_print, Fingerprint) and run.staging_print.matches(snapshot)
            ):
                disagree.add(run.key)
        elif isinstance(snapshot, Unavailable):
            run.staging_print = snapshot
        if isinstance(run.staging_print, Fingerprint) and run.plan.deletes:
            run.staging_rows = run.staging_print.rows
        else:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(run.plan.target.relation()))
            run.staging_rows = int(cur.fetchone()[0])
    if disagree:
        raise HashesDisagree(frozenset(disagree))


def swap(
    conn: psycopg.Connection,
    plan: SyncPlan,
    runs: dict[tuple, TableRun],
    orphans: OrphanPolicy,
    lock_timeout: timedelta,
    run_id: str,
    observer: Observer,
    path: WritePath,
    dry_run: bool = False,
    before_commit: Callable[[psycopg.Cursor], None] | None = None,
) -> SwapResult:
    """Run the whole swap in ONE transaction on `conn` and commit it (dry_run: roll it back).

    path: how rows are written (write_path.choose); staging's triggers it silences are disabled for the
    writes and enabled again before COMMIT. before_commit writes the run's bookkeeping in the same
    transaction, so it lands with the rows or not at all."""
    result = SwapResult()
    ordered = [runs[tp.table_key] for tp in plan.tables]
    with conn.transaction():
        with conn.cursor() as cur:
            _begin(cur, lock_timeout)
            observer.reached(Point.SWAP_BEGUN)
            borders.check_parents_outside(cur, plan, runs)
            result.orphans = borders.handle_children_outside(cur, plan, runs, orphans, run_id, observer)
            observer.reached(Point.ORPHANS_HANDLED)
            with about_table("disabling staging's own triggers on", ", ".join(t.qualified for t in path.silenced)):
                path.disable(cur)
        apply.apply_rows(conn, plan, runs, observer, dry_run, path.replica)
        with conn.cursor() as cur:
            # Deferred constraints are checked now, so a violation fails the run before setval, which no
            # ROLLBACK undoes, moves any sequence.
            with about_table("checking deferred constraints of", ", ".join(t.qualified for t in plan.tables)):
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            observer.reached(Point.CONSTRAINTS_CHECKED)
            with about_table("enabling staging's own triggers on", ", ".join(t.qualified for t in path.silenced)):
                path.restore(cur)
            _count(cur, ordered, dry_run, result)
            result.sequences = sequences.advance(cur, ordered, apply=not dry_run)
            observer.reached(Point.SEQUENCES_ADVANCED)
            if before_commit is not None:
                before_commit(cur)
            observer.reached(Point.BOOKKEEPING_WRITTEN)
        if dry_run:
            raise psycopg.Rollback()
    return result
