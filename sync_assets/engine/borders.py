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

from sync_assets.engine.catalog import ForeignKey, Table
from sync_assets.engine.errors import OrphanError, SelectionError, about_table
from sync_assets.engine.foreign_keys import count_orphans, orphan_condition
from sync_assets.engine.graph import fk_order
from sync_assets.engine.plan import Reference, SyncPlan, TableKey, qualified
from sync_assets.engine.shadows import snapshot_rows
from sync_assets.engine.sql import cols, fmt_sample, ident, match, not_null

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
    """Rows of the run referencing a table outside it must find their parent rows in staging.

    Checked on the shadows, before anything is written. A foreign key declared on some partitions only
    cannot be: which partition a shadow row lands in is known once it is written, and then PostgreSQL
    (or, writing once per key, replica.check_written) checks it."""
    problems = []
    for ref in plan.parents_outside:
        tp = plan.table(ref.table.key)
        if not set(ref.fk.columns) <= set(tp.columns):
            continue
        if ref.fk.declared_on is not None and not ref.fk.on_every_partition:
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
    """Rows of one table outside the run that lose a parent, marked in a temp table by (tableoid, ctid)
    (a ctid alone repeats across the partitions of a partitioned table), each with what orphaned it:
    the synced table whose removed rows start its chain, the foreign key, and the reason in words."""

    table: Table
    marks: sql.Identifier
    remove: bool
    rows: int = 0

    def marked(self, alias: str = "c") -> sql.Composable:
        return sql.SQL("EXISTS (SELECT 1 FROM {} m WHERE m.rel = {} AND m.row_id = {})").format(
            self.marks, sql.Identifier(alias, "tableoid"), sql.Identifier(alias, "ctid")
        )

    def mark(
        self,
        cur: psycopg.Cursor,
        fk: ForeignKey,
        cond: sql.Composable,
        labels: sql.Composable,
        joins: sql.Composable | None = None,
    ) -> int:
        """Add (and lock) the rows (alias c) that fk constrains and that match cond, not marked yet, with
        their labels: cause schema, cause table, constraint and reason, as expressions over c and the joins."""
        cur.execute(
            sql.SQL(
                "INSERT INTO {marks} SELECT c.tableoid, c.ctid, {labels} FROM {rel} c {joins}"
                " WHERE ({cond}) AND NOT {marked} FOR UPDATE OF c"
            ).format(
                marks=self.marks,
                labels=labels,
                rel=self.table.fk_relation(fk),
                joins=joins or sql.SQL(""),
                cond=cond,
                marked=self.marked(),
            )
        )
        self.rows += cur.rowcount
        return cur.rowcount

    def mark_orphans(
        self, cur: psycopg.Cursor, fk: ForeignKey, cond: sql.Composable, cause: TableKey, reason: str
    ) -> int:
        """Rows whose parent row in the run's table `cause` is gone."""
        labels = sql.SQL(", ").join(sql.Literal(v) for v in (*cause, fk.name, reason))
        return self.mark(cur, fk, cond, labels)

    def mark_referencing(self, cur: psycopg.Cursor, fk: ForeignKey, parent: _Affected, reason: str) -> int:
        """Rows pointing at a marked row of parent: each takes its parent row's cause."""
        joins = sql.SQL(
            "JOIN {prel} p ON {match} JOIN {pmarks} pm ON pm.rel = p.tableoid AND pm.row_id = p.ctid"
        ).format(prel=parent.table.relation(), match=match("p", fk.ref_columns, "c", fk.columns), pmarks=parent.marks)
        labels = sql.SQL("pm.cause_schema, pm.cause_table, {}, {}").format(sql.Literal(fk.name), sql.Literal(reason))
        return self.mark(cur, fk, not_null("c", fk.columns), labels, joins)

    def groups(self, cur: psycopg.Cursor) -> list[tuple[TableKey, str, str, int]]:
        """(cause, constraint, reason, rows) of the marked rows, most rows first."""
        cur.execute(
            sql.SQL(
                "SELECT cause_schema, cause_table, constraint_name, reason, count(*) FROM {} GROUP BY 1, 2, 3, 4"
                " ORDER BY 5 DESC, 1, 2, 3"
            ).format(self.marks)
        )
        return [((a, b), c, d, int(n)) for a, b, c, d, n in cur.fetchall()]


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

    def entry_for(ref: Reference) -> tuple[_Affected, str]:
        """Where rows losing their parent through ref are marked, and what then happens to them."""
        action = KEEPING_ACTIONS.get(ref.fk.on_delete)
        if action is None and ref.table.key in doomed:
            return doomed[ref.table.key], ""
        marks = sql.Identifier(f"sync_rows_{len(doomed) + len(kept)}")
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (rel oid, row_id tid, cause_schema text, cause_table text,"
                " constraint_name text, reason text) ON COMMIT DROP"
            ).format(marks)
        )
        entry = _Affected(ref.table, marks, remove=action is None)
        if action is None:
            doomed[ref.table.key] = entry
            return entry, ""
        kept.append(entry)
        return entry, f"; kept, staging's ON DELETE {action} clears {', '.join(ref.fk.columns)}"

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
        counted = count_orphans(cur, ref.table.fk_relation(ref.fk), ref.fk, remaining)
        if not counted.rows:
            continue
        sample = fmt_sample(list(counted.sample))
        if ref.role in ("unselected", "exclude"):
            stuck.append((ref, tp.qualified, counted.rows, sample))
            continue
        entry, kept_note = entry_for(ref)
        reason = f"{ref.fk.name}: referenced {tp.qualified} rows that production no longer has{kept_note}"
        entry.mark_orphans(cur, ref.fk, orphan_condition(ref.fk, remaining), tp.table_key, reason)
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
                cur.execute(sql.SQL("SELECT count(*) FROM {} c WHERE {}").format(child.fk_relation(fk), cond))
                rows = cur.fetchone()[0]
                if rows:
                    raise blocked(ref, qualified(parent_key), rows, "…", [])
                continue
            entry, kept_note = entry_for(ref)
            reason = f"{fk.name}: referenced {qualified(parent_key)} rows this sync removes{kept_note}"
            if entry.mark_referencing(cur, fk, parent, reason) and entry.remove and child.key not in frontier:
                frontier.append(child.key)

    everything = [*doomed.values(), *kept]
    if not any(a.rows for a in everything):
        return []
    if orphans_policy == "fail":
        first = next(a for a in everything if a.rows)
        key = first.table.key
        cause, constraint, _, _ = first.groups(cur)[0]
        raise OrphanError(
            f"{first.rows} row(s) of preserved table {qualified(key)} reference {qualified(cause)} rows "
            f"that production no longer has ({samples.get(key, constraint)}); 'orphans: fail' stops the "
            "run and nothing was changed; set 'orphans: delete' to back them up and remove them"
        )

    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    results: list[OrphanBackup] = []

    def back_up(entry: _Affected, unless: _Affected | None) -> TableKey:
        """Copy the marked rows (but those `unless` marks) to the backup table, each with its own reason."""
        with about_table("backing up preserved rows of", entry.table.qualified):
            backup = _ensure_backup_table(cur, entry.table.key, stamp)
            names = [c.name for c in entry.table.columns]
            cur.execute(
                sql.SQL(
                    "INSERT INTO {backup} ({cols}, sync_run_id, sync_reason) SELECT {ccols}, %s, m.reason"
                    " FROM {rel} c JOIN {marks} m ON m.rel = c.tableoid AND m.row_id = c.ctid WHERE {unless}"
                ).format(
                    backup=ident(backup),
                    cols=cols(names),
                    ccols=cols(names, "c"),
                    rel=entry.table.relation(),
                    marks=entry.marks,
                    unless=sql.SQL("NOT {}").format(unless.marked()) if unless is not None else sql.SQL("true"),
                ),
                (run_id,),
            )
        return backup

    def report(entry: _Affected, backup: TableKey, verb: str) -> None:
        for cause, constraint, reason, rows in entry.groups(cur):
            results.append(OrphanBackup(entry.table.key, cause, constraint, rows, backup, removed=entry.remove))
            log(f"{verb} {rows} row(s) of {entry.table.qualified} to {qualified(backup)} ({reason})")

    for entry in kept:
        if entry.rows:
            # Rows removed anyway are backed up once, below.
            report(entry, back_up(entry, doomed.get(entry.table.key)), "backed up")

    parents = {k: [fk.ref for fk in d.table.foreign_keys] for k, d in doomed.items()}
    for key in reversed(fk_order(list(doomed), parents)):
        entry = doomed[key]
        if not entry.rows:
            continue
        backup = back_up(entry, None)
        with about_table("removing orphaned rows of", entry.table.qualified):
            cur.execute(sql.SQL("DELETE FROM {} c WHERE {}").format(entry.table.relation(), entry.marked()))
        report(entry, backup, "moved")
    return results
