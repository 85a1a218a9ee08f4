"""The swap's write statements for one table or one group of tables: INSERT the new rows, UPDATE the
changed ones, DELETE the removed ones, or replace a keyless table whole (apply.py orders them)."""

from __future__ import annotations

import itertools

import psycopg
from psycopg import sql

from sync_assets.engine import diff, fingerprints
from sync_assets.engine.catalog import ForeignKey, Identity
from sync_assets.engine.diff import Diff
from sync_assets.engine.sql import ident, match
from sync_assets.engine.table_plan import TablePlan
from sync_assets.engine.table_run import TableRun

# Below this share of a table's rows, changed rows are found by probing its key index (update_changed).
PROBE_SHARE = 0.05
_temp_names = itertools.count()


def _insert_statement(cur: psycopg.Cursor, run: TableRun, only_new: sql.Composable, dry: bool) -> sql.Composable:
    """INSERT the shadow's rows that only_new selects. In a dry run, staging-only columns that draw from
    a sequence get the numbers it would give, without drawing them (no rollback gives them back)."""
    tp = run.plan
    columns = [sql.Identifier(c) for c in tp.columns]
    values = [sql.Identifier("s", c) for c in tp.columns]
    overriding = tp.overriding_system_value
    for seq in tp.mimicked if dry else ():
        cur.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(seq.schema, seq.name)))
        last, is_called = cur.fetchone()
        first = last + seq.increment if is_called else last
        columns.append(sql.Identifier(seq.column))
        values.append(sql.SQL("{} + {} * (row_number() OVER () - 1)").format(first, seq.increment))
        column = tp.target.column(seq.column)
        overriding = overriding or (column is not None and column.identity == Identity.ALWAYS)
    return sql.SQL("INSERT INTO {table} ({cols}) {overriding} SELECT {values} FROM {shadow} s {only_new}").format(
        table=ident(tp.table_key),
        cols=sql.SQL(", ").join(columns),
        overriding=sql.SQL("OVERRIDING SYSTEM VALUE" if overriding else ""),
        values=sql.SQL(", ").join(values),
        shadow=run.shadow,
        only_new=only_new,
    )


def _in_one_statement(cur: psycopg.Cursor, statements: list[sql.Composable]) -> list[int]:
    """Run the statements as one (data-modifying WITH queries), so that foreign keys between their tables
    are checked once all of them are done; the rows each changed."""
    if len(statements) == 1:
        cur.execute(statements[0])
        return [cur.rowcount]
    names = [sql.Identifier(f"sync_part_{i}") for i in range(len(statements))]
    parts = [sql.SQL("{} AS ({} RETURNING 1)").format(n, stmt) for n, stmt in zip(names, statements, strict=True)]
    cur.execute(
        sql.SQL("WITH {parts} SELECT {counts}").format(
            parts=sql.SQL(", ").join(parts),
            counts=sql.SQL(", ").join(sql.SQL("(SELECT count(*) FROM {})").format(n) for n in names),
        )
    )
    return [int(n) for n in cur.fetchone()]


def insert_new(cur: psycopg.Cursor, group: list[TableRun], diffs: dict, dry: bool) -> None:
    """Insert the new rows of one group of tables.

    A dry run inserts them too (and rolls back), so that staging's constraints judge them as in the run;
    only where a default draws from a sequence inside an expression does it count them instead."""
    if dry and any(run.plan.unmimicked for run in group):
        for run in group:
            only_new = diffs[run.key].only("i", "s")
            cur.execute(sql.SQL("SELECT count(*) FROM {} s {}").format(run.shadow, only_new))
            run.inserted = int(cur.fetchone()[0])
        return
    statements = [_insert_statement(cur, run, diffs[run.key].only("i", "s"), dry) for run in group]
    for run, rows in zip(group, _in_one_statement(cur, statements), strict=True):
        run.inserted = rows


def _few_changed(cur: psycopg.Cursor, tp: TablePlan, d: Diff) -> bool:
    if not tp.key_indexed or d.marks is None or tp.target.partitioned:
        return False
    cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE sync_op = 'u'").format(d.marks))
    count = cur.fetchone()[0]
    # The planner's own estimate of the table's rows (as of its last ANALYZE or VACUUM).
    table = sql.Identifier(tp.target.schema, tp.target.name).as_string(cur)
    cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table,))
    rows = cur.fetchone()[0]
    return rows > 0 and count < PROBE_SHARE * rows


def _update_from(tp: TablePlan, sets: list[str], rows: sql.Composable) -> sql.Composable:
    return sql.SQL("UPDATE {rel} t SET {sets} FROM {rows} WHERE {match}").format(
        rel=tp.target.relation(),
        sets=sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in sets),
        rows=rows,
        match=match("t", tp.key, "s", tp.key),
    )


def update_changed(cur: psycopg.Cursor, run: TableRun, d: Diff) -> None:
    tp = run.plan
    # A key column whose `=` ignores representation (numeric 1.0 = 1.00) is rewritten when only its text changed.
    sets = [*tp.key_text_columns, *tp.update_columns]
    if not sets or d.marks is None:
        return
    rows = sql.SQL("{} s {}").format(run.shadow, d.rows("u", "s"))
    if not _few_changed(cur, tp, d):
        cur.execute(_update_from(tp, sets, rows))
        run.updated += cur.rowcount
        return
    # A few rows of a big table: the planner, pricing random reads high, would hash the whole table to
    # find them; probing its key index once per changed row is several times faster. The changed rows
    # are set apart first, so that no join among the small tables loses its hash meanwhile.
    apart = sql.Identifier(f"sync_updates_{next(_temp_names)}")
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT s.* FROM {}").format(apart, rows))
    cur.execute("SET LOCAL enable_hashjoin = off")
    cur.execute("SET LOCAL enable_mergejoin = off")
    cur.execute(_update_from(tp, sets, sql.SQL("{} s").format(apart)))
    run.updated += cur.rowcount
    cur.execute("RESET enable_hashjoin")
    cur.execute("RESET enable_mergejoin")


def replace_whole(cur: psycopg.Cursor, run: TableRun, dry: bool) -> None:
    """No key to match rows by: replace the table whole, unless it already holds exactly the snapshot."""
    tp, shadow = run.plan, run.shadow
    rel, row = tp.target.relation(), diff.comparable(tp)
    same = fingerprints.same_rows(cur.connection, rel, shadow, row)
    if same is None:
        cur.execute(
            sql.SQL(
                "SELECT NOT EXISTS (SELECT {row} FROM {rel} EXCEPT ALL SELECT {row} FROM {shadow})"
                " AND NOT EXISTS (SELECT {row} FROM {shadow} EXCEPT ALL SELECT {row} FROM {rel})"
            ).format(row=row, rel=rel, shadow=shadow)
        )
        same = bool(cur.fetchone()[0])
    if same:
        return
    run.replaced_whole = True
    # The rows that really differ, duplicates counted, apart from the rows the replacement rewrites.
    cur.execute(
        sql.SQL(
            "SELECT (SELECT count(*) FROM (SELECT {row} FROM {shadow} EXCEPT ALL SELECT {row} FROM {rel}) a),"
            " (SELECT count(*) FROM (SELECT {row} FROM {rel} EXCEPT ALL SELECT {row} FROM {shadow}) b),"
            " (SELECT count(*) FROM {shadow})"
        ).format(row=row, rel=rel, shadow=shadow)
    )
    run.inserted, run.deleted, run.rewritten = (int(n) for n in cur.fetchone())
    if dry and tp.unmimicked:
        return
    cur.execute(sql.SQL("DELETE FROM {}").format(rel))
    cur.execute(_insert_statement(cur, run, sql.SQL(""), dry))


def delete_removed(cur: psycopg.Cursor, group: list[TableRun], diffs: dict[tuple, Diff]) -> None:
    """Delete the rows production no longer has from one group of tables, in one statement."""
    doomed = [run for run in group if diffs[run.key].marks is not None]
    statements = [
        sql.SQL("DELETE FROM {rel} t USING {marks} d WHERE d.sync_op = 'd' AND {match}").format(
            rel=run.plan.target.relation(),
            marks=diffs[run.key].marks,
            match=match("t", run.plan.key, "d", run.plan.key),
        )
        for run in doomed
    ]
    if statements:
        for run, rows in zip(doomed, _in_one_statement(cur, statements), strict=True):
            run.deleted = rows
    for run in group:
        tp = run.plan
        nullable = [k for k in tp.key if (c := tp.target.column(k)) is not None and not c.not_null]
        if nullable:
            # Production's key is never NULL: staging rows with a NULL in it match nothing there.
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(
                    tp.target.relation(),
                    sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in nullable),
                )
            )
            run.deleted += cur.rowcount


def written_rows(run: TableRun, d: Diff | None, fk: ForeignKey) -> sql.Composable:
    """The rows an upsert of this table wrote that fk constrains, as a relation for FROM: the diff's
    inserted and updated keys where it has them, else (replaced whole, was empty) every row.

    Their foreign-key values are the shadow's when the sync copies every foreign-key column: read there,
    a few changed rows are checked without a pass over a large table. A foreign key declared on one
    partition constrains the rows written there: read from the partition."""
    tp = run.plan
    if d is None or d.marks is None:
        return tp.target.fk_relation(fk)
    if fk.declared_on is not None:
        rows = tp.target.fk_relation(fk)
    else:
        copied = all(c in tp.columns for f in tp.target.foreign_keys for c in f.columns)
        rows = run.shadow if copied else tp.target.relation()
    return sql.SQL("(SELECT c.* FROM {rows} c JOIN {marks} d ON d.sync_op IN ('i', 'u') AND {match})").format(
        rows=rows, marks=d.marks, match=match("d", tp.key, "c", tp.key)
    )
