"""The borders of a run: references between its tables and staging tables outside it.

Parents outside the run must already hold the rows the run's new rows point at. Children outside
the run that would lose their parent are staging's own data: preserved (and staging-only) rows are
backed up to `<table>_backup`, then removed, and so are the rows pointing at those in turn; where
staging's foreign key says ON DELETE SET NULL / SET DEFAULT the row is kept, backed up as it was,
and PostgreSQL clears the reference. Rows of excluded or unselected tables are never changed: if
any would lose its parent, the run fails and names the table. With `orphans: fail` the run fails
instead of removing anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from sync_assets.catalog import ForeignKey, Table
from sync_assets.errors import OrphanError, SelectionError, about_table
from sync_assets.graph import fk_order
from sync_assets.plan import Reference, SyncPlan, TableKey, qualified
from sync_assets.shadows import snapshot_rows
from sync_assets.sqlparts import cols, fmt_sample, ident, match, not_null
from sync_assets.verify import count_orphans, orphan_condition

Log = Callable[[str], None]
MAX_IDENTIFIER = 63
KEEPING_ACTIONS = {"n": "SET NULL", "d": "SET DEFAULT"}


@dataclass(frozen=True)
class OrphanBackup:
    table: TableKey  # preserved table the rows belong to
    references: TableKey  # table whose removed rows they pointed at (a synced one, first in the chain)
    constraint: str
    rows: int
    backup_table: TableKey
    removed: bool = True  # False: kept by ON DELETE SET NULL/DEFAULT, only backed up


def check_parents_outside(cur: psycopg.Cursor, plan: SyncPlan, shadows: dict[TableKey, sql.Identifier]) -> None:
    """Rows of the run referencing a table outside it must find their parent rows in staging."""
    problems = []
    for ref in plan.parents_outside:
        tp = plan.table(ref.table.key)
        if not set(ref.fk.columns) <= set(tp.columns):
            continue
        counted = count_orphans(cur, shadows[tp.table_key], ref.fk)
        if counted.rows:
            problems.append((ref, counted))
    if not problems:
        return
    ref, counted = problems[0]
    parent = qualified(ref.fk.ref)
    sample = fmt_sample(list(counted.sample))
    found = (
        f"{qualified(ref.table.key)} has {counted.rows} row(s) referencing {parent} rows that staging lacks "
        f"(e.g. {', '.join(ref.fk.columns)} = {sample})"
    )
    if ref.role == "unselected":
        raise SelectionError(found, add=[r.fk.ref for r, _ in problems if r.role == "unselected"])
    raise SelectionError(
        f"{found}, and {parent} is {'preserved' if ref.role == 'preserve' else 'not synced'} ({ref.role}), "
        "so the sync cannot add them"
    )


def backup_table_name(key: TableKey) -> TableKey:
    suffix = "_backup"
    name = key[1]
    while len((name + suffix).encode()) > MAX_IDENTIFIER:
        name = name[:-1]
    return (key[0], name + suffix)


def _column_names(cur: psycopg.Cursor, key: TableKey) -> list[str] | None:
    cur.execute(
        "SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (ident(key).as_string(cur),),
    )
    return cur.fetchone()[0]


def _ensure_backup_table(cur: psycopg.Cursor, table: TableKey, run_stamp: str) -> TableKey:
    """`<table>_backup` beside the preserved table: its columns plus when, which run and why."""
    backup = backup_table_name(table)
    existing = _column_names(cur, backup)
    if existing is not None:
        if set(_column_names(cur, table) or ()) <= set(existing):
            return backup
        # The preserved table grew columns: keep the old backups under a dated name, start a new table.
        old = f"{backup[1][: MAX_IDENTIFIER - len(run_stamp) - 8]}_{run_stamp}_backup"
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(ident(backup), sql.Identifier(old)))
    cur.execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE {}, sync_backed_up_at timestamptz NOT NULL DEFAULT now(),"
            " sync_run_id text, sync_reason text)"
        ).format(ident(backup), ident(table))
    )
    return backup


@dataclass
class _Affected:
    """Rows of one table outside the run that lose a parent, marked in a temp table by (tableoid, ctid):
    a ctid alone repeats across the partitions of a partitioned table."""

    table: Table
    marks: sql.Identifier
    cause: TableKey
    constraint: str
    reason: str
    remove: bool
    rows: int = 0

    def marked(self, alias: str = "c") -> sql.Composable:
        return sql.SQL("EXISTS (SELECT 1 FROM {} m WHERE m.rel = {} AND m.row_id = {})").format(
            self.marks, sql.Identifier(alias, "tableoid"), sql.Identifier(alias, "ctid")
        )

    def mark(self, cur: psycopg.Cursor, cond: sql.Composable) -> int:
        """Add (and lock) the rows matching cond (alias c) that are not marked yet."""
        cur.execute(
            sql.SQL(
                "INSERT INTO {marks} SELECT c.tableoid, c.ctid FROM {rel} c WHERE ({cond}) AND NOT {marked}"
                " FOR UPDATE OF c"
            ).format(marks=self.marks, rel=self.table.relation(), cond=cond, marked=self.marked())
        )
        self.rows += cur.rowcount
        return cur.rowcount


def _referencing_marked(fk: ForeignKey, parent: _Affected) -> sql.Composable:
    """Child rows (alias c) whose foreign key points at a marked row of parent."""
    return sql.SQL("{nn} AND EXISTS (SELECT 1 FROM {prel} p WHERE {marked} AND {match})").format(
        nn=not_null("c", fk.columns),
        prel=parent.table.relation(),
        marked=parent.marked("p"),
        match=match("p", fk.ref_columns, "c", fk.columns),
    )


def handle_children_outside(
    cur: psycopg.Cursor,
    plan: SyncPlan,
    shadows: dict[TableKey, sql.Identifier],
    orphans_policy: str,
    run_id: str,
    log: Log,
) -> list[OrphanBackup]:
    """Back up and remove (or keep, per the FK's action) rows outside the run that lose their parent."""
    doomed: dict[TableKey, _Affected] = {}
    kept: list[_Affected] = []
    samples: dict[TableKey, str] = {}

    def affected(ref: Reference, cause: TableKey, reason: str, cond: sql.Composable) -> _Affected:
        action = KEEPING_ACTIONS.get(ref.fk.on_delete)
        remove = action is None
        if remove and ref.table.key in doomed:
            entry = doomed[ref.table.key]
        else:
            marks = sql.Identifier(f"sync_rows_{len(doomed) + len(kept)}")
            cur.execute(sql.SQL("CREATE TEMP TABLE {} (rel oid, row_id tid) ON COMMIT DROP").format(marks))
            if not remove:
                reason = f"{reason}; kept, staging's ON DELETE {action} clears {', '.join(ref.fk.columns)}"
            entry = _Affected(ref.table, marks, cause, ref.fk.name, reason, remove)
            if remove:
                doomed[ref.table.key] = entry
            else:
                kept.append(entry)
        entry.mark(cur, cond)
        return entry

    def blocked(ref: Reference, parent: str, rows: int, sample: str, also: list[TableKey]) -> SelectionError:
        what = qualified(ref.table.key)
        found = (
            f"syncing would remove {parent} rows that {rows} row(s) of {what} still reference "
            f"({', '.join(ref.fk.columns)} = {sample})"
        )
        if ref.role == "unselected":
            return SelectionError(found, add=[ref.table.key, *also])
        if ref.role == "exclude":
            return SelectionError(
                f"{found}; {what} is excluded, so its rows cannot change: preserve it instead, or sync it"
            )
        return SelectionError(f"{found}; {what} is synced by this run and cannot lose those parent rows")

    # Rows pointing at rows of the run's tables that the snapshot no longer has.
    stuck: list[tuple[Reference, str, int, str]] = []
    for ref in plan.children_outside:
        tp = plan.table(ref.fk.ref)
        if not tp.deletes or not set(ref.fk.ref_columns) <= set(tp.columns):
            continue  # merge removes no row: nothing outside loses its parent
        remaining = snapshot_rows(tp, shadows[tp.table_key], ref.fk.ref_columns)
        counted = count_orphans(cur, ref.table.relation(), ref.fk, remaining)
        if not counted.rows:
            continue
        sample = fmt_sample(list(counted.sample))
        if ref.role in ("unselected", "exclude"):
            stuck.append((ref, tp.qualified, counted.rows, sample))
            continue
        reason = f"{ref.fk.name}: referenced {tp.qualified} rows that production no longer has"
        affected(ref, tp.table_key, reason, orphan_condition(ref.fk, remaining))
        samples.setdefault(ref.table.key, f"{', '.join(ref.fk.columns)} = {sample}")
    if stuck:
        unselected = [r.table.key for r, *_ in stuck if r.role == "unselected"]
        first = next((x for x in stuck if x[0].role == "exclude"), stuck[0])
        raise blocked(*first, also=unselected)

    # Rows pointing at rows marked for removal above, until nothing more is marked.
    frontier = list(doomed)
    while frontier:
        parent_key = frontier.pop(0)
        parent = doomed[parent_key]
        for child, fk in plan.staging.referencing(*parent_key):
            ref = Reference(child, fk, plan.role_of(child.key))
            cond = _referencing_marked(fk, parent)
            if ref.role in ("unselected", "exclude", "run"):
                cur.execute(sql.SQL("SELECT count(*) FROM {} c WHERE {}").format(child.relation(), cond))
                rows = cur.fetchone()[0]
                if rows:
                    raise blocked(ref, qualified(parent_key), rows, "…", [])
                continue
            before = doomed[child.key].rows if child.key in doomed else 0
            entry = affected(
                ref, parent.cause, f"{fk.name}: referenced {qualified(parent_key)} rows this sync removes", cond
            )
            if entry.remove and entry.rows > before and child.key not in frontier:
                frontier.append(child.key)

    everything = [*doomed.values(), *kept]
    if not any(a.rows for a in everything):
        return []
    if orphans_policy == "fail":
        first = next(a for a in everything if a.rows)
        key = first.table.key
        raise OrphanError(
            f"{first.rows} row(s) of preserved table {qualified(key)} reference {qualified(first.cause)} rows "
            f"that production no longer has ({samples.get(key, first.constraint)}); 'orphans: fail' stops the "
            "run and nothing was changed; set 'orphans: delete' to back them up and remove them"
        )

    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    results: list[OrphanBackup] = []

    def back_up(entry: _Affected, where: sql.Composable) -> TableKey:
        with about_table("backing up preserved rows of", entry.table.qualified):
            backup = _ensure_backup_table(cur, entry.table.key, stamp)
            names = [c.name for c in entry.table.columns]
            cur.execute(
                sql.SQL(
                    "INSERT INTO {backup} ({cols}, sync_run_id, sync_reason) SELECT {ccols}, %s, %s FROM {rel} c"
                    " WHERE {where}"
                ).format(
                    backup=ident(backup),
                    cols=cols(names),
                    ccols=cols(names, "c"),
                    rel=entry.table.relation(),
                    where=where,
                ),
                (run_id, entry.reason),
            )
        return backup

    for entry in kept:
        if not entry.rows:
            continue
        where = entry.marked()
        if entry.table.key in doomed:  # removed anyway: backed up once, below
            where = sql.SQL("{} AND NOT {}").format(where, doomed[entry.table.key].marked())
        backup = back_up(entry, where)
        results.append(OrphanBackup(entry.table.key, entry.cause, entry.constraint, entry.rows, backup, removed=False))
        log(f"backed up {entry.rows} row(s) of {entry.table.qualified} to {qualified(backup)} ({entry.reason})")

    parents = {k: [fk.ref for fk in d.table.foreign_keys] for k, d in doomed.items()}
    for key in reversed(fk_order(list(doomed), parents)):
        entry = doomed[key]
        if not entry.rows:
            continue
        backup = back_up(entry, entry.marked())
        with about_table("removing orphaned rows of", entry.table.qualified):
            cur.execute(sql.SQL("DELETE FROM {} c WHERE {}").format(entry.table.relation(), entry.marked()))
        results.append(OrphanBackup(key, entry.cause, entry.constraint, cur.rowcount, backup))
        log(f"moved {cur.rowcount} row(s) of {qualified(key)} to {qualified(backup)} ({entry.reason})")
    return results
