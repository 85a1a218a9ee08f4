"""The borders of a run: references between its tables and staging tables outside it.

Parents outside the run must already hold the rows the run's new rows point at. Children outside
the run that would lose their parent are staging's own data: preserved (and staging-only) rows are
backed up to `<table>_backup`, then removed, and so are the rows pointing at those in turn; where
staging's foreign key says ON DELETE SET NULL / SET DEFAULT the row is kept, backed up as it was,
and PostgreSQL clears the reference. Rows of excluded or unselected tables are never changed: if
any would lose its parent, the run fails and names the table. With `orphans: fail` the run fails
instead of removing anything.

Children outside are handled in three steps: find the rows whose parent row the snapshot no longer
has; close over the rows pointing at those, until nothing more is marked; back them up and remove them
(children first).
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg import sql

from sync_assets.engine.catalog import TableKey, qualified
from sync_assets.engine.config import OrphanPolicy
from sync_assets.engine.errors import OrphanError, SelectionError
from sync_assets.engine.foreign_keys import count_orphans, orphan_condition
from sync_assets.engine.graph import fk_order
from sync_assets.engine.observe import Observer
from sync_assets.engine.orphans import Marks, OrphanBackup
from sync_assets.engine.plan import Reference, SyncPlan
from sync_assets.engine.roles import Role
from sync_assets.engine.sql import fmt_sample
from sync_assets.engine.table_run import TableRun

# Tables outside the run whose rows the sync must never change.
_UNTOUCHABLE = (Role.UNSELECTED, Role.EXCLUDE)


def check_parents_outside(cur: psycopg.Cursor, plan: SyncPlan, runs: dict[TableKey, TableRun]) -> None:
    """Rows of the run referencing a table outside it must find their parent rows in staging.

    Checked on the shadows, before anything is written. A foreign key declared on some partitions only
    cannot be: which partition a shadow row lands in is known once it is written, and then PostgreSQL
    (or, writing once per key, replica.check_written) checks it."""
    problems = []
    for ref in plan.parents_outside:
        run = runs[ref.table.key]
        if not set(ref.fk.columns) <= set(run.plan.columns):
            continue
        if ref.fk.declared_on is not None and not ref.fk.on_every_partition:
            continue
        counted = count_orphans(cur, run.shadow, ref.fk)
        if counted.rows:
            problems.append((ref, counted))
    if not problems:
        return
    ref, counted = problems[0]
    parent = qualified(ref.fk.ref)
    found = (
        f"{qualified(ref.table.key)} has {counted.rows} row(s) referencing {parent} rows that staging lacks "
        f"(e.g. {', '.join(ref.fk.columns)} = {fmt_sample(list(counted.sample))})"
    )
    if ref.role == Role.UNSELECTED:
        raise SelectionError(found, add=[r.fk.ref for r, _ in problems if r.role == Role.UNSELECTED])
    raise SelectionError(
        f"{found}, and {parent} is {'preserved' if ref.role == Role.PRESERVE else 'not synced'} ({ref.role}), "
        "so the sync cannot add them"
    )


def _blocked(ref: Reference, parent: str, rows: int, sample: str, also: list[TableKey]) -> SelectionError:
    what = qualified(ref.table.key)
    found = (
        f"syncing would remove {parent} rows that {rows} row(s) of {what} still reference "
        f"({', '.join(ref.fk.columns)} = {sample})"
    )
    if ref.role == Role.UNSELECTED:
        return SelectionError(found, add=[ref.table.key, *also])
    if ref.role == Role.EXCLUDE:
        return SelectionError(
            f"{found}; {what} is excluded, so its rows cannot change: preserve it instead, or sync it"
        )
    return SelectionError(f"{found}; {what} is synced by this run and cannot lose those parent rows")


class _Children:
    """The rows outside the run that lose their parent, marked per table: `doomed` go, `kept` stay with
    their reference cleared (ON DELETE SET NULL / SET DEFAULT); both are backed up."""

    def __init__(self, cur: psycopg.Cursor, plan: SyncPlan) -> None:
        self.cur, self.plan = cur, plan
        self.doomed: dict[TableKey, Marks] = {}
        self.kept: list[Marks] = []
        self.samples: dict[TableKey, str] = {}

    def marks_for(self, ref: Reference) -> tuple[Marks, str]:
        """Where rows losing their parent through ref are marked, and what then happens to them."""
        keeps = ref.fk.on_delete.keeps_row
        if not keeps and ref.table.key in self.doomed:
            return self.doomed[ref.table.key], ""
        marks = Marks.create(self.cur, ref.table, remove=not keeps)
        if not keeps:
            self.doomed[ref.table.key] = marks
            return marks, ""
        self.kept.append(marks)
        action = ref.fk.on_delete.name.replace("_", " ")
        return marks, f"; kept, staging's ON DELETE {action} clears {', '.join(ref.fk.columns)}"

    def find(self, runs: dict[TableKey, TableRun]) -> None:
        """Mark the rows pointing at rows of the run's tables that the snapshot no longer has."""
        stuck: list[tuple[Reference, str, int, str]] = []
        for ref in self.plan.children_outside:
            run = runs[ref.fk.ref]
            if not run.plan.deletes or not set(ref.fk.ref_columns) <= set(run.plan.columns):
                continue  # merge removes no row: nothing outside loses its parent
            remaining = run.in_snapshot(ref.fk.ref_columns)
            counted = count_orphans(self.cur, ref.table.fk_relation(ref.fk), ref.fk, remaining)
            if not counted.rows:
                continue
            sample = fmt_sample(list(counted.sample))
            if ref.role in _UNTOUCHABLE:
                stuck.append((ref, run.qualified, counted.rows, sample))
                continue
            marks, kept_note = self.marks_for(ref)
            reason = f"{ref.fk.name}: referenced {run.qualified} rows that production no longer has{kept_note}"
            marks.mark_orphans(self.cur, ref.fk, orphan_condition(ref.fk, remaining), run.key, reason)
            self.samples.setdefault(ref.table.key, f"{', '.join(ref.fk.columns)} = {sample}")
        if stuck:
            unselected = [r.table.key for r, *_ in stuck if r.role == Role.UNSELECTED]
            first = next((x for x in stuck if x[0].role == Role.EXCLUDE), stuck[0])
            raise _blocked(*first, also=unselected)

    def close_over(self) -> None:
        """Mark the rows pointing at rows marked for removal, until nothing more is marked."""
        frontier = list(self.doomed)
        while frontier:
            parent_key = frontier.pop(0)
            parent = self.doomed[parent_key]
            for child, fk in self.plan.staging.referencing(*parent_key):
                ref = Reference(child, fk, self.plan.role_of(child.key))
                if ref.role in (*_UNTOUCHABLE, Role.RUN):
                    query = sql.SQL("SELECT count(*) FROM {} c WHERE {}")
                    self.cur.execute(query.format(child.fk_relation(fk), parent.referencing_marked(fk)))
                    rows = self.cur.fetchone()[0]
                    if rows:
                        raise _blocked(ref, qualified(parent_key), rows, "…", [])
                    continue
                marks, kept_note = self.marks_for(ref)
                reason = f"{fk.name}: referenced {qualified(parent_key)} rows this sync removes{kept_note}"
                if marks.mark_referencing(self.cur, fk, parent, reason) and marks.remove and child.key not in frontier:
                    frontier.append(child.key)

    def refuse(self) -> None:
        """orphans: fail: stop the run, naming the first table that would lose rows."""
        first = next(m for m in (*self.doomed.values(), *self.kept) if m.rows)
        key = first.table.key
        cause, constraint, _, _ = first.groups(self.cur)[0]
        raise OrphanError(
            f"{first.rows} row(s) of preserved table {qualified(key)} reference {qualified(cause)} rows "
            f"that production no longer has ({self.samples.get(key, constraint)}); 'orphans: fail' stops the "
            "run and nothing was changed; set 'orphans: delete' to back them up and remove them"
        )

    def back_up_and_remove(self, run_id: str, observer: Observer) -> list[OrphanBackup]:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        results: list[OrphanBackup] = []

        def report(marks: Marks, backup: TableKey, verb: str) -> None:
            for cause, constraint, reason, rows in marks.groups(self.cur):
                results.append(OrphanBackup(marks.table.key, cause, constraint, rows, backup, removed=marks.remove))
                observer.info(f"{verb} {rows} row(s) of {marks.table.qualified} to {qualified(backup)} ({reason})")

        for marks in self.kept:
            if marks.rows:
                # Rows removed anyway are backed up once, below.
                unless = self.doomed.get(marks.table.key)
                report(marks, marks.back_up(self.cur, run_id, stamp, unless), "backed up")
        parents = {k: [fk.ref for fk in m.table.foreign_keys] for k, m in self.doomed.items()}
        for key in reversed(fk_order(list(self.doomed), parents)):
            marks = self.doomed[key]
            if marks.rows:
                backup = marks.back_up(self.cur, run_id, stamp, None)
                marks.remove_marked(self.cur)
                report(marks, backup, "moved")
        return results


def handle_children_outside(
    cur: psycopg.Cursor,
    plan: SyncPlan,
    runs: dict[TableKey, TableRun],
    policy: OrphanPolicy,
    run_id: str,
    observer: Observer,
) -> list[OrphanBackup]:
    """Back up and remove (or keep, per the FK's action) rows outside the run that lose their parent."""
    children = _Children(cur, plan)
    children.find(runs)
    children.close_over()
    if not any(m.rows for m in (*children.doomed.values(), *children.kept)):
        return []
    if policy == OrphanPolicy.FAIL:
        children.refuse()
    return children.back_up_and_remove(run_id, observer)
