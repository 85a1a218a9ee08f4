"""Stream production tables, all from one snapshot, into unlogged shadow tables in staging with COPY.

Per table, the read decided in the plan (watermarks.py): every row, or the rows changed since the
watermark. A table read partly then learns here whether production deleted rows (its key
fingerprints, fingerprints.py) and copies every key only when it did; its TableRun records which.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import psycopg
from psycopg import sql

from sync_assets.engine import compare, content, fingerprints
from sync_assets.engine.compare import Buckets
from sync_assets.engine.connections import Endpoint
from sync_assets.engine.content import Fingerprint, Fold, Method, Scope, Side
from sync_assets.engine.copy_pipe import Cancelled, CopyStats, copy_rows
from sync_assets.engine.errors import about_table
from sync_assets.engine.observe import Observer, Point
from sync_assets.engine.shadows import Keys, create_shadow
from sync_assets.engine.snapshot import join_snapshot, prepare_session
from sync_assets.engine.sql import cols
from sync_assets.engine.table_plan import TablePlan
from sync_assets.engine.table_run import TableRun


def changed_since(plan: TablePlan) -> sql.Composable:
    """WHERE clause of a partial read: rows changed since the table's watermark (minus the overlap).

    A NULL in the column says nothing about when the row changed, so such rows are always read."""
    assert plan.incremental_column is not None and plan.since is not None
    column = sql.Identifier(plan.incremental_column)
    source_column = plan.source.column(plan.incremental_column)
    since = sql.Literal(plan.since)
    kind = (source_column.underlying or source_column.base_type) if source_column is not None else ""
    if kind == "date":
        # A date holds no time of day, in no particular zone: read back a whole day more.
        since = sql.SQL("({}::date - 1)").format(since)
    elif kind.startswith("timestamp") and "with time zone" not in kind:
        # Written in whatever zone the application's sessions use: a day back covers any offset and DST.
        since = sql.SQL("({}::timestamp - interval '1 day')").format(since)
    recent = sql.SQL("{} >= {}").format(column, since)
    if source_column is not None and source_column.not_null:
        return recent
    return sql.SQL("{} OR {} IS NULL").format(recent, column)


def _every_row(plan: TablePlan) -> sql.Composable:
    """Production's rows as they go out: masked columns (masked.py) computed there, never sent raw."""
    if not plan.masked:
        return sql.SQL("SELECT {} FROM {}").format(cols(plan.columns), plan.source.relation())
    selected = [
        sql.SQL("{} AS {}").format(m, sql.Identifier(c)) if (m := plan.selected(c)) is not None else sql.Identifier(c)
        for c in plan.columns
    ]
    return sql.SQL("SELECT {} FROM {} t").format(sql.SQL(", ").join(selected), plan.source.relation())


class _Reader:
    """One reader session and one staging writer session, copying tables into their shadows."""

    def __init__(
        self,
        source: psycopg.Connection,
        target: psycopg.Connection,
        observer: Observer,
        cancelled: threading.Event,
        staging: Endpoint,
    ) -> None:
        self.source, self.target, self.observer, self.cancelled = source, target, observer, cancelled
        self.staging = staging  # for a second staging session, which hashes staging's rows meanwhile

    def copy(
        self, run: TableRun, query: sql.Composable, into: sql.Identifier, columns: tuple[str, ...], label: str
    ) -> CopyStats:
        stats = copy_rows(
            self.source, self.target, query, into, columns, run.plan.binary, label, self.observer, self.cancelled
        )
        self.target.execute(sql.SQL("ANALYZE {}").format(into))
        return stats

    def whole(self, run: TableRun, prints: bool) -> None:
        """Every row into the shadow; which then holds exactly the snapshot's rows, in staging's types."""
        plan = run.plan
        stats = self.copy(run, _every_row(plan), run.shadow, plan.columns, plan.qualified)
        run.production_rows = run.read_rows = stats.rows
        run.bytes, run.copy_seconds = stats.bytes, stats.seconds
        if prints:
            printed = time.monotonic()
            run.snapshot_print = content.take(self.target, plan, run.shadow, Scope.STAGING, Side.STAGING)
            run.print_seconds += time.monotonic() - printed

    def changes(self, run: TableRun) -> None:
        """The rows changed since the watermark, then all keys unless their fingerprints show no deletes."""
        plan = run.plan
        changed_rows = sql.SQL("{} WHERE {}").format(_every_row(plan), changed_since(plan))
        changed = self.copy(run, changed_rows, run.shadow, plan.columns, plan.qualified)
        run.read_rows, run.bytes = changed.rows, changed.bytes
        # Only production holds every row of the snapshot: its fingerprint is taken there, in the snapshot,
        # in the same scan as the key fingerprint that tells whether rows were deleted (fingerprints.py).
        printed = time.monotonic()
        run.snapshot_print = content.take(
            self.source,
            plan,
            plan.source.relation(),
            Scope.ACROSS,
            Side.PRODUCTION,
            extra=fingerprints.key_sum(plan.key),
        )
        run.print_seconds += time.monotonic() - printed
        snapshot = run.snapshot_print
        if isinstance(snapshot, Fingerprint) and snapshot.extra:
            in_production: tuple[int, int] | None = (snapshot.rows, int(snapshot.extra[0]))
        else:
            in_production = fingerprints.production_keys(self.source, plan)
        in_staging = fingerprints.staging_keys_after(self.target, plan, run.shadow) if in_production else None
        if in_production is not None and in_production == in_staging:
            run.keys, run.production_rows = Keys.UNCHANGED, in_production[0]
            run.run_notes.append("the key fingerprints match: nothing deleted")
            return
        why = "the key fingerprints differ" if in_staging is not None else "the key columns cannot be hashed here"
        create_shadow(self.target, plan, run.key_shadow, plan.key)
        keys = sql.SQL("SELECT {} FROM {}").format(cols(plan.key), plan.source.relation())
        every = self.copy(run, keys, run.key_shadow, plan.key, f"the keys of {plan.qualified}")
        run.keys, run.keys_why, run.production_rows = Keys.COPIED, why, every.rows
        run.bytes += every.bytes
        run.run_notes.append(f"every key read to find deletes: {why}")

    def compare(self, run: TableRun) -> str | None:
        """Production's buckets compared with staging's (compare.py), then the rows of the differing
        buckets into the shadow. Returns why the table must be read whole instead, or None."""
        plan = run.plan
        target = self.target
        present = target.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(plan.target.relation()))
        if not present.fetchone()[0]:
            return "staging's table is empty"
        method = compare.hash_method(self.source, plan, Side.PRODUCTION)
        if method is None or compare.hash_method(target, plan, Side.STAGING) != method:
            return "its rows cannot be hashed alike on both servers"
        estimate = max(plan.source.estimated_rows, plan.target.estimated_rows)
        if estimate <= 0:
            estimate = target.execute(sql.SQL("SELECT count(*) FROM {}").format(plan.target.relation())).fetchone()[0]
        count = compare.bucket_count(estimate)
        scratch, staging_scratch = run.shadow.buckets, run.shadow.staging_buckets
        target.execute(sql.SQL("CREATE UNLOGGED TABLE {} (b integer, n bigint, x bigint)").format(scratch))
        # Both databases hash at once: staging's buckets in a session of their own while production's stream in.
        with self.staging.connect() as other, ThreadPoolExecutor(1, thread_name_prefix="sync-hasher") as pool:
            staged = pool.submit(self.staging_buckets, other, plan, staging_scratch, count, method)
            try:
                with compare.aggregating(self.source):
                    query = compare.buckets_query(plan, Side.PRODUCTION, method, count)
                    hashed = self.copy(run, query, scratch, ("b", "n", "x"), f"the row hashes of {plan.qualified}")
            except BaseException:
                other.cancel_safe()
                raise
            staged.result()
        run.buckets = Buckets.of(count, method, compare.differing_buckets(target, scratch, staging_scratch))
        rows, folded = target.execute(
            sql.SQL("SELECT coalesce(sum(n), 0), coalesce(bit_xor(x), 0) FROM {}").format(scratch)
        ).fetchone()
        target.execute(sql.SQL("DROP TABLE {}, {}").format(scratch, staging_scratch))
        run.keys, run.production_rows, run.bytes = Keys.BUCKETS, int(rows), hashed.bytes
        run.snapshot_print = Fingerprint(int(rows), int(folded), method, Scope.ACROSS, fold=Fold.XOR)
        self.observer.reached(Point.COMPARED)
        if run.buckets.n_differing:
            differing = sql.SQL("{} WHERE {}").format(_every_row(plan), run.buckets.holds(plan, Side.PRODUCTION))
            fetched = self.copy(run, differing, run.shadow, plan.columns, plan.qualified)
            run.read_rows, run.bytes = fetched.rows, run.bytes + fetched.bytes
        self.observer.reached(Point.FETCHED)
        run.run_notes.append(
            f"compared by keyed row hashes: {run.buckets.n_differing:,} of {count:,} buckets differ,"
            f" {run.read_rows:,} of {run.production_rows:,} rows read"
        )
        return None

    @staticmethod
    def staging_buckets(
        conn: psycopg.Connection, plan: TablePlan, into: sql.Identifier, count: int, method: Method
    ) -> None:
        prepare_session(conn)
        with compare.aggregating(conn):
            query = compare.buckets_query(plan, Side.STAGING, method, count)
            conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} AS {}").format(into, query))
            conn.execute(sql.SQL("ANALYZE {}").format(into))

    def table(self, run: TableRun, prints: bool) -> None:
        """Fill the table's shadow from the snapshot (prints: take the snapshot's content fingerprint of a
        shadow read whole; a dry run, whose checks do not run, does not)."""
        started = time.monotonic()
        with about_table("copying", run.qualified):
            create_shadow(self.target, run.plan, run.shadow)
            whole = run.plan.unhashed
            if run.plan.partial:
                self.changes(run)
                # A partial read's time is all of it: changed rows, fingerprints, keys.
                run.copy_seconds = time.monotonic() - started
            elif whole is None and (whole := self.compare(run)) is None:
                run.copy_seconds = time.monotonic() - started  # all of it: hashes and the rows read
            else:
                if run.plan.by_hashes:
                    run.run_notes.append(f"read whole, not compared by hashes: {whole}")
                self.whole(run, prints)
            self.observer.reached(Point.TABLE_COPIED)
        self.observer.info(_copied(run))


def _copied(run: TableRun) -> str:
    what = f"{run.production_rows:,} rows"
    if run.keys == Keys.BUCKETS:
        assert run.buckets is not None
        what = (
            f"{run.read_rows:,} rows of the {run.buckets.n_differing:,} buckets (of {run.buckets.count:,}) whose"
            f" hashes differ, of {what}"
        )
    elif run.plan.partial:
        since = f"{run.plan.since:%Y-%m-%d %H:%M:%S%z}"
        keys = f", and all their keys ({run.keys_why})" if run.keys == Keys.COPIED else ", none deleted"
        what = f"{run.read_rows:,} rows changed since {since}, of {what}{keys}"
    return (
        f"copied {run.qualified}: {what}, {run.bytes / 1e6:,.1f} MB in {run.copy_seconds:.2f}s "
        f"({'binary' if run.plan.binary else 'text'})"
    )


# What one masked value a row adds to reading the row, in bytes of the row read plain: computing a mask
# takes production about as long as three times that (measured on the benchmark's bookings and webhooks).
_MASK_WEIGHT = 3


def _work(plan: TablePlan) -> int:
    """A table's expected reading time, in bytes read plain: its size, more for its masked values."""
    masked = sum(len(mask.paths) or 1 for name, mask in plan.masks if name in plan.columns)
    return plan.source.size_bytes * (1 + _MASK_WEIGHT * masked)


def extract(
    lead: psycopg.Connection,
    snapshot_id: str | None,
    source: Endpoint,
    target: Endpoint,
    runs: list[TableRun],
    workers: int,
    observer: Observer,
    prints: bool = True,
) -> None:
    """Copy every table of the run into its shadow; several readers share the lead's exported snapshot.

    Shadows are created and loaded in staging sessions of their own and committed there: they are
    invisible to staging's users (bookkeeping schema) and only the swap touches real tables.
    """
    # Most work first, so one long table does not start last.
    queue = sorted(runs, key=lambda r: (-_work(r.plan), r.key))
    lock = threading.Lock()
    cancelled = threading.Event()

    def load(reader: psycopg.Connection) -> None:
        with target.connect() as writer:
            prepare_session(writer)
            worker = _Reader(reader, writer, observer, cancelled, target)
            while not cancelled.is_set():
                with lock:
                    if not queue:
                        return
                    run = queue.pop(0)
                worker.table(run, prints)

    def helper() -> None:
        assert snapshot_id is not None
        reader = source.connect()
        try:
            join_snapshot(reader, snapshot_id)
            load(reader)
        finally:
            reader.close()  # no COMMIT or ROLLBACK: a failed COPY may still hold the session

    prepare_session(lead)
    # The snapshot's exporting session sits idle in its transaction while other readers finish theirs.
    lead.execute("SET idle_in_transaction_session_timeout = 0")
    n_helpers = min(workers, len(runs)) - 1 if snapshot_id else 0
    if n_helpers <= 0:
        load(lead)
        return
    with ThreadPoolExecutor(max_workers=n_helpers + 1, thread_name_prefix="sync-reader") as pool:
        futures = [pool.submit(load, lead)] + [pool.submit(helper) for _ in range(n_helpers)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in done):
            cancelled.set()
        wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        real = [e for e in errors if not isinstance(e, Cancelled)]
        if real or errors:
            raise (real or errors)[0]  # type: ignore[misc]
