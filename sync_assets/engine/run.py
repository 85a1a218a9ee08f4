"""One sync run, read top to bottom as its phases. No Dagster here.

    run_sync
      1. hold staging      staging writable; the advisory lock; the bookkeeping schema; leftovers dropped
      2. take snapshot     production's open transactions listed (incremental.py), then ONE snapshot
      3. plan              both catalogs (introspect.py), the plan (plan.py), the reads (watermarks.py),
                           the grants (privileges.py), how rows are written (write_path.py)
      4. extract           every table's shadow filled from the snapshot (extract.py): every row, or where
                           staging holds the table, the rows whose keyed hashes differ (compare.py)
      5. swap              ONE staging transaction: borders, writes, checks, sequences, bookkeeping, COMMIT
      6. close             shadows dropped, sessions closed

A table goes through it as one TablePlan (frozen, from step 3) inside one TableRun (table_run.py),
which steps 4 and 5 fill in and the caller reads.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace

import psycopg

from sync_assets.engine import (
    bookkeeping,
    compare,
    incremental,
    masked,
    masked_with,
    privileges,
    reconciled,
    watermarks,
    write_path,
)
from sync_assets.engine.catalog import TableKey
from sync_assets.engine.config import SyncConfig
from sync_assets.engine.connections import Endpoint, connect_both
from sync_assets.engine.extract import extract
from sync_assets.engine.introspect import introspect
from sync_assets.engine.mask_key import MaskKey
from sync_assets.engine.observe import Observer, Point
from sync_assets.engine.orphans import OrphanBackup
from sync_assets.engine.plan import SyncPlan, build_plan
from sync_assets.engine.shadows import ShadowName
from sync_assets.engine.snapshot import begin_snapshot, export_snapshot
from sync_assets.engine.swap import swap
from sync_assets.engine.table_run import TableRun

# What the Dagster layer reads per table: the run's own record of it.
TableResult = TableRun


@dataclass
class SyncResult:
    run_id: str
    tables: dict[TableKey, TableRun] = field(default_factory=dict)
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


def run_sync(
    source: Endpoint,
    target: Endpoint,
    config: SyncConfig,
    selection: set[TableKey] | None = None,
    observer: Observer | None = None,
    dry_run: bool = False,
    reconcile: bool = False,
) -> SyncResult:
    """Sync the selected tables (None: all) from production into staging, atomically.

    dry_run does everything but the COMMIT: the swap runs and is rolled back, and staging is left as it
    was, sequences included (a dry run gives staging-only sequence columns the numbers the sequence
    would give without drawing them, or counts the inserts where it cannot).

    reconcile reads incremental tables whole (and compares every row) instead of from their watermark.
    """
    observer = Observer.from_environment() if observer is None else observer
    masked.mask_key(config)  # a missing key fails the run before it connects
    whole: frozenset[TableKey] = frozenset()  # tables whose hashes disagreed with their content check
    while True:
        run = _Run.open(source, target, config, observer, dry_run, whole)
        try:
            run.hold_staging()
            run.take_snapshot()
            run.plan(selection, reconcile)
            if run.runs:
                run.extract()
                run.swap()
        except compare.HashesDisagree as exc:
            whole |= exc.tables
            observer.warning(
                f"after the changes its keyed row hashes found, {exc} still differed from the snapshot "
                "(staging changed during the run, or hashes collided); nothing was committed: starting "
                "again, reading it whole"
            )
            continue
        finally:
            run.close()
        return run.finish()


@dataclass
class _Run:
    """The state one run carries from phase to phase."""

    source: Endpoint
    target: Endpoint
    config: SyncConfig
    observer: Observer
    prod: psycopg.Connection
    control: psycopg.Connection
    result: SyncResult
    started: float
    whole: frozenset[TableKey] = frozenset()  # read whole, not compared by hashes (compare.HashesDisagree)
    created_schema: bool = False
    observation: incremental.Observation | None = None
    states: dict[TableKey, watermarks.TableState] = field(default_factory=dict)
    snapshot_id: str | None = None
    path: write_path.WritePath | None = None
    runs: dict[TableKey, TableRun] = field(default_factory=dict)
    mask_key: MaskKey | None = None  # where the config masks columns

    @classmethod
    def open(
        cls,
        source: Endpoint,
        target: Endpoint,
        config: SyncConfig,
        observer: Observer,
        dry_run: bool,
        whole: frozenset[TableKey] = frozenset(),
    ) -> _Run:
        started = time.monotonic()
        limits = config.session_limits()
        source, target = replace(source, limits=limits), replace(target, limits=limits)
        prod, control = connect_both(source, target)
        result = SyncResult(run_id=uuid.uuid4().hex, dry_run=dry_run)
        return cls(source, target, config, observer, prod, control, result, started, whole)

    def hold_staging(self) -> None:
        """1. Staging writable and ours alone; the bookkeeping schema there; an earlier run's leftovers gone."""
        self.observer.reached(Point.CONNECTED)
        if self.control.info.server_version >= 140000:
            # Should this process die while the swap waits on a lock, the server notices within a second
            # and rolls back, instead of holding row locks until the lock comes through.
            self.control.execute("SET client_connection_check_interval = '1s'")
        privileges.check_staging_writable(self.control)
        bookkeeping.acquire_run_lock(self.control)
        self.observer.reached(Point.LOCKED)
        self.created_schema = bookkeeping.ensure_schema(self.control)
        leftovers = bookkeeping.drop_shadows(self.control)
        if leftovers:
            self.observer.info(f"removed {leftovers} shadow table(s) left by an interrupted run")

    def take_snapshot(self) -> None:
        """2. Production's open transactions listed (the watermarks rest on it), then the run's one snapshot."""
        production_id = incremental.production_identity(self.prod)
        previous = incremental.load_observation(self.control, production_id)
        self.observation = incremental.observe(self.prod, production_id, previous)
        begin_snapshot(self.prod)
        self.snapshot_id = export_snapshot(self.prod) if self.config.workers > 1 else None
        self.observer.reached(Point.SNAPSHOT_TAKEN)

    def plan(self, selection: set[TableKey] | None, reconcile: bool) -> None:
        """3. What the run does to each table, and that both roles may do it; nothing written yet."""
        production, staging = introspect(self.prod, self.config.schemas), introspect(self.control, None)
        self.mask_key = masked.mask_key(self.config)
        plan = build_plan(production, staging, self.config, selection, self.mask_key)
        masked.check_on_servers(self.prod, self.control, plan)
        plan, remasked = masked_with.compared(plan, masked_with.load(self.control), self.mask_key)
        self.states = watermarks.load_states(self.control)
        plan = watermarks.plan_reads(plan, self.states, self.observation, self.config, reconcile)
        plan = compare.choose(plan, self.config, reconcile, self.whole, *reconciled.load(self.control))
        if self.result.dry_run:
            plan = _dry_run_notes(plan)
        self.result.plan = plan
        self.result.warnings = [*privileges.check_production(self.prod, plan), *remasked]
        for warning in self.result.warnings:
            self.observer.warning(warning)
        privileges.check_staging(self.control, plan, self.config.orphans)
        with self.control.cursor() as cur:
            self.path = write_path.choose(cur, plan, self.config.staging_triggers)
        self.observer.reached(Point.PLANNED)
        for note in plan.notes:
            self.observer.info(note)
        tag = self.result.run_id[:12]
        self.runs = {tp.table_key: TableRun(tp, ShadowName.of_run(tag, i)) for i, tp in enumerate(plan.tables)}
        self.result.tables = self.runs

    def extract(self) -> None:
        """4. Every table's shadow filled from the snapshot; then the snapshot is let go."""
        assert self.path is not None and self.result.plan is not None
        self.observer.info(
            f"syncing {len(self.runs)} table(s) from production {self.source.describe()} to staging "
            f"{self.target.describe()} in one snapshot"
        )
        for line in self.path.info:
            self.observer.info(line)
        if self.path.warning is not None:
            self.result.warnings.append(self.path.warning)
            self.observer.warning(self.path.warning)
        runs = list(self.runs.values())
        prints = not self.result.dry_run
        extract(self.prod, self.snapshot_id, self.source, self.target, runs, self.config.workers, self.observer, prints)
        self.observer.reached(Point.EXTRACTED)
        self.prod.execute("COMMIT")

    def swap(self) -> None:
        """5. ONE staging transaction makes every table equal to its shadow, and records the watermarks."""
        assert self.path is not None and self.result.plan is not None
        plan, runs, result = self.result.plan, list(self.runs.values()), self.result
        for run in runs:
            run.triggers_fired = tuple(t.qualified for t in self.path.firing if t.of == run.key)
        started = time.monotonic()

        def bookkeeping_(cur: psycopg.Cursor) -> None:
            watermarks.record(cur, runs, self.observation, self.states, result.run_id, self.observer)
            reconciled.record(cur, runs, result.run_id)
            masked_with.record(cur, runs, self.mask_key, result.run_id)

        swapped = swap(
            self.control,
            plan,
            self.runs,
            self.config.orphans,
            self.config.lock_timeout,
            result.run_id,
            self.observer,
            self.path,
            result.dry_run,
            bookkeeping_,
        )
        result.swap_seconds = time.monotonic() - started
        self.observer.reached(Point.COMMITTED)
        result.orphans, result.sequences = swapped.orphans, swapped.sequences
        result.fingerprint_seconds = swapped.print_seconds + sum(run.print_seconds for run in runs)
        done = "rolled back the dry run of" if result.dry_run else "committed"
        self.observer.info(f"{done} the swap of {len(runs)} table(s) in {result.swap_seconds:.2f}s")

    def close(self) -> None:
        """6. This run's shadows dropped (and the schema a dry run created); both sessions closed."""
        try:
            if not self.control.closed and self.runs:
                bookkeeping.drop_shadows(self.control, [run.shadow for run in self.runs.values()])
            if not self.control.closed and self.result.dry_run and self.created_schema:
                bookkeeping.drop_schema(self.control)
        except psycopg.Error:
            pass  # the next run removes them
        self.prod.close()
        self.control.close()

    def finish(self) -> SyncResult:
        self.observer.reached(Point.FINISHED)
        self.result.seconds = time.monotonic() - self.started
        return self.result


def _dry_run_notes(plan: SyncPlan) -> SyncPlan:
    """What a dry run cannot do as the run does it, said per table."""
    tables = tuple(
        tp.noted(
            f"the dry run counts its inserts without making them: the default of {', '.join(tp.unmimicked)} "
            "draws from a sequence, which no rollback gives back"
        )
        if tp.unmimicked
        else tp
        for tp in plan.tables
    )
    return replace(plan, tables=tables)
