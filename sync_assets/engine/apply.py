"""The swap's writes, per group of tables (one table, or the tables of a foreign-key cycle): INSERT the
new rows and UPDATE the changed ones parents first, DELETE the removed ones children first.

Inserts and updates before deletes keep every foreign key satisfied; when that order trips a unique key
(a value moving from a row being deleted to a new or updated row), the deletes go first instead (and
updates before inserts), in a savepoint retried once. The tables of a cycle (even of NOT NULL,
non-deferrable keys) are inserted into in one statement, and deleted from in one: PostgreSQL checks a
foreign key at the end of the statement, so rows pointing at each other arrive, or go, together.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from sync_assets.engine import diff, writes
from sync_assets.engine.diff import Diff
from sync_assets.engine.errors import TableFailure, about_table
from sync_assets.engine.observe import Observer, Point
from sync_assets.engine.plan import SyncPlan
from sync_assets.engine.replica import check_written
from sync_assets.engine.table_run import TableRun

_UNIQUE_HINT = (
    "; a unique value moved between rows in a way no order of statements allows (e.g. two rows swapped "
    "values): make that staging constraint DEFERRABLE, which the sync then checks at the end"
)


@dataclass
class _Writes:
    """One attempt at the writes of the run's tables, in one order."""

    cur: psycopg.Cursor
    plan: SyncPlan
    groups: list[list[TableRun]]
    observer: Observer
    dry: bool
    replica: bool
    round: int = 0

    def diffs(self) -> dict[tuple, Diff]:
        self.round += 1
        runs = [run for group in self.groups for run in group]
        return {run.key: diff.compute(self.cur, run, f"{self.round}_{i}") for i, run in enumerate(runs) if run.plan.key}

    def upserts(self, diffs: dict[tuple, Diff], deletes_first: bool) -> None:
        if self.replica:
            # Foreign keys are checked per key by check_written, not per row by triggers.
            self.cur.execute("SET LOCAL session_replication_role = replica")
        for group in self.groups:
            with about_table("applying", ", ".join(run.qualified for run in group)):
                if not group[0].plan.key:  # no key: not referenced, so never part of a cycle
                    writes.replace_whole(self.cur, group[0], self.dry)
                    continue
                if not deletes_first:
                    writes.insert_new(self.cur, group, diffs, self.dry)
                for run in group:
                    writes.update_changed(self.cur, run, diffs[run.key])
                if deletes_first:
                    writes.insert_new(self.cur, group, diffs, self.dry)
        if self.replica:
            self.cur.execute("SET LOCAL session_replication_role = origin")

    def deletes(self, diffs: dict[tuple, Diff]) -> None:
        for group in reversed(self.groups):
            doomed = [run for run in group if run.plan.key and run.plan.deletes]
            if doomed:
                with about_table("deleting removed rows of", ", ".join(run.qualified for run in doomed)):
                    writes.delete_removed(self.cur, doomed, diffs)

    def run(self, deletes_first: bool) -> None:
        for group in self.groups:
            for run in group:
                run.forget_changes()
        # Taken before any row changes; after deletes (which can cascade into other tables of the run)
        # the inserts and updates take them again.
        diffs = self.diffs()
        self.observer.reached(Point.DIFFS_COMPUTED)
        if deletes_first:
            self.deletes(diffs)
            self.observer.reached(Point.DELETED)
            diffs = self.diffs()
            self.upserts(diffs, deletes_first)
            self.observer.reached(Point.UPSERTED)
        else:
            self.upserts(diffs, deletes_first)
            self.observer.reached(Point.UPSERTED)
            self.deletes(diffs)
            self.observer.reached(Point.DELETED)
        if self.replica:
            runs = {run.key: run for group in self.groups for run in group}
            updated = {k for k, run in runs.items() if run.updated or run.replaced_whole}
            check_written(
                self.cur,
                self.plan,
                lambda tp, fk: writes.written_rows(runs[tp.table_key], diffs.get(tp.table_key), fk),
                updated,
            )
        self.observer.reached(Point.FOREIGN_KEYS_CHECKED)


def apply_rows(
    conn: psycopg.Connection,
    plan: SyncPlan,
    runs: dict[tuple, TableRun],
    observer: Observer,
    dry: bool = False,
    replica: bool = False,
) -> None:
    """Write every table's changes (module docstring for the order); each TableRun's changes filled in."""
    groups = [[runs[k] for k in group] for group in plan.groups]
    try:
        with conn.transaction(), conn.cursor() as cur:
            return _Writes(cur, plan, groups, observer, dry, replica).run(deletes_first=False)
    except TableFailure as exc:
        if not isinstance(exc.cause, psycopg.errors.UniqueViolation):
            raise
        observer.info(
            f"unique key moved between rows ({exc.cause.diag.constraint_name}); applying deletes first instead"
        )
    try:
        with conn.transaction(), conn.cursor() as cur:
            return _Writes(cur, plan, groups, observer, dry, replica).run(deletes_first=True)
    except TableFailure as exc:
        if isinstance(exc.cause, psycopg.errors.UniqueViolation):
            raise TableFailure(str(exc) + _unique_hint(conn, plan, exc.cause), exc.cause) from exc
        raise


def _unique_hint(conn: psycopg.Connection, plan: SyncPlan, cause: psycopg.errors.UniqueViolation) -> str:
    """Why a unique key stays violated whatever the order: masks that map distinct production values to
    one (the masked columns of the violated key named), else values moved between rows."""
    diag = cause.diag
    if diag.schema_name is None or diag.table_name is None or diag.constraint_name is None:
        return _UNIQUE_HINT
    masks = next((tp.masks for tp in plan.tables if tp.table_key == (diag.schema_name, diag.table_name)), ())
    if not masks:
        return _UNIQUE_HINT
    index = sql.Identifier(diag.schema_name, diag.constraint_name).as_string(conn)
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indexrelid = to_regclass(%s) ORDER BY a.attnum",
        (index,),
    ).fetchall()
    masked = [f"{name} ({mask.transform})" for name, mask in masks if (name,) in rows]
    if not masked:
        return _UNIQUE_HINT
    return (
        f"; masked values collide: the masks of {', '.join(masked)} on {diag.schema_name}.{diag.table_name} gave "
        "distinct production values one masked value; mask key columns with hash or email, which keep distinct "
        "values distinct"
    )
