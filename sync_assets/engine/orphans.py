"""Rows outside the run that lose their parent: marked in temp tables, backed up, then removed.

Each table outside the run with such rows gets a mark list (Marks): a temp table of (tableoid, ctid)
pairs (a ctid alone repeats across the partitions of a partitioned table), each with what orphaned it:
the synced table whose removed rows start its chain, the foreign key, and the reason in words. Backups
go to `<table>_backup` beside the table, one row per backed-up row.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

import psycopg
from psycopg import sql

from sync_assets.engine.catalog import ForeignKey, Table, TableKey
from sync_assets.engine.errors import about_table
from sync_assets.engine.sql import cols, ident, match, not_null

MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class OrphanBackup:
    table: TableKey  # preserved table the rows belong to
    references: TableKey  # table whose removed rows they pointed at (a synced one, first in the chain)
    constraint: str
    rows: int
    backup_table: TableKey
    removed: bool = True  # False: kept by ON DELETE SET NULL/DEFAULT, only backed up


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


_mark_lists = count()


@dataclass
class Marks:
    """The rows of one table outside the run that lose a parent, and whether they go (or, kept by
    ON DELETE SET NULL / SET DEFAULT, are only backed up)."""

    table: Table
    marks: sql.Identifier
    remove: bool
    rows: int = 0

    @classmethod
    def create(cls, cur: psycopg.Cursor, table: Table, remove: bool) -> Marks:
        marks = sql.Identifier(f"sync_rows_{next(_mark_lists)}")
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (rel oid, row_id tid, cause_schema text, cause_table text,"
                " constraint_name text, reason text) ON COMMIT DROP"
            ).format(marks)
        )
        return cls(table, marks, remove)

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

    def mark_referencing(self, cur: psycopg.Cursor, fk: ForeignKey, parent: Marks, reason: str) -> int:
        """Rows pointing at a marked row of parent: each takes its parent row's cause."""
        joins = sql.SQL(
            "JOIN {prel} p ON {match} JOIN {pmarks} pm ON pm.rel = p.tableoid AND pm.row_id = p.ctid"
        ).format(prel=parent.table.relation(), match=match("p", fk.ref_columns, "c", fk.columns), pmarks=parent.marks)
        labels = sql.SQL("pm.cause_schema, pm.cause_table, {}, {}").format(sql.Literal(fk.name), sql.Literal(reason))
        return self.mark(cur, fk, not_null("c", fk.columns), labels, joins)

    def referencing_marked(self, fk: ForeignKey) -> sql.Composable:
        """Child rows (alias c) whose foreign key fk points at a marked row of this table."""
        return sql.SQL("{nn} AND EXISTS (SELECT 1 FROM {prel} p WHERE {marked} AND {match})").format(
            nn=not_null("c", fk.columns),
            prel=self.table.relation(),
            marked=self.marked("p"),
            match=match("p", fk.ref_columns, "c", fk.columns),
        )

    def groups(self, cur: psycopg.Cursor) -> list[tuple[TableKey, str, str, int]]:
        """(cause, constraint, reason, rows) of the marked rows, most rows first."""
        cur.execute(
            sql.SQL(
                "SELECT cause_schema, cause_table, constraint_name, reason, count(*) FROM {} GROUP BY 1, 2, 3, 4"
                " ORDER BY 5 DESC, 1, 2, 3"
            ).format(self.marks)
        )
        return [((a, b), c, d, int(n)) for a, b, c, d, n in cur.fetchall()]

    def back_up(self, cur: psycopg.Cursor, run_id: str, stamp: str, unless: Marks | None) -> TableKey:
        """Copy the marked rows (but those `unless` marks) to the backup table, each with its own reason."""
        with about_table("backing up preserved rows of", self.table.qualified):
            backup = _ensure_backup_table(cur, self.table.key, stamp)
            names = [c.name for c in self.table.columns]
            cur.execute(
                sql.SQL(
                    "INSERT INTO {backup} ({cols}, sync_run_id, sync_reason) SELECT {ccols}, %s, m.reason"
                    " FROM {rel} c JOIN {marks} m ON m.rel = c.tableoid AND m.row_id = c.ctid WHERE {unless}"
                ).format(
                    backup=ident(backup),
                    cols=cols(names),
                    ccols=cols(names, "c"),
                    rel=self.table.relation(),
                    marks=self.marks,
                    unless=sql.SQL("NOT {}").format(unless.marked()) if unless is not None else sql.SQL("true"),
                ),
                (run_id,),
            )
        return backup

    def remove_marked(self, cur: psycopg.Cursor) -> None:
        with about_table("removing orphaned rows of", self.table.qualified):
            cur.execute(sql.SQL("DELETE FROM {} c WHERE {}").format(self.table.relation(), self.marked()))
