"""Per table, one pass of shadow against table: the keys of the rows to insert ('i'), update ('u') and
delete ('d'), kept in a temp table so that every later statement of the swap touches those rows only."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from sync_assets.engine.connections import Side
from sync_assets.engine.shadows import Keys
from sync_assets.engine.sql import as_text, cols, match, not_null
from sync_assets.engine.table_plan import TablePlan
from sync_assets.engine.table_run import TableRun


def changed(plan: TablePlan, columns: tuple[str, ...]) -> sql.Composable:
    """True when the staging row t differs from the shadow row s in any of these columns: with
    IS DISTINCT FROM where `=` means identical, through the text form elsewhere."""
    wanted = set(columns)
    exact = [c for c in plan.exact_columns if c in wanted]
    text = [c for c in (*plan.key_text_columns, *plan.text_columns) if c in wanted]
    parts = []
    if exact:
        parts.append(sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(cols(exact, "t"), cols(exact, "s")))
    if text:
        parts.append(sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(as_text(text, "t"), as_text(text, "s")))
    return sql.SQL(" OR ").join(parts) if parts else sql.SQL("false")


def comparable(plan: TablePlan) -> sql.Composable:
    """The copied columns as a comparable row: text form for types without exact equality."""
    text = set(plan.text_columns)
    return sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(n)) if n in text else sql.Identifier(n) for n in plan.columns
    )


@dataclass(frozen=True)
class Diff:
    """The keys of one table's rows to insert, update and delete, in a temp table."""

    marks: sql.Identifier | None  # None: the table is empty, every shadow row is new
    key: tuple[str, ...]

    def rows(self, op: str, alias: str) -> sql.Composable:
        """JOIN clause limiting `alias` (the shadow or the table) to the rows of one kind."""
        assert self.marks is not None
        return sql.SQL("JOIN {marks} d ON d.sync_op = {op} AND {match}").format(
            marks=self.marks, op=sql.Literal(op), match=match("d", self.key, alias, self.key)
        )

    def only(self, op: str, alias: str) -> sql.Composable:
        """rows(), or nothing where there are no marks (every shadow row is new)."""
        return self.rows(op, alias) if self.marks is not None else sql.SQL("")


def compute(cur: psycopg.Cursor, run: TableRun, index: str) -> Diff:
    tp, shadow = run.plan, run.shadow
    rel = tp.target.relation()
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(rel))
    if not cur.fetchone()[0] and not tp.partial and run.keys != Keys.BUCKETS:
        return Diff(None, tp.key)
    marks = sql.Identifier(f"sync_diff_{index}")
    # Only what an UPDATE can write: a column it may not set (identity ALWAYS) would look changed forever.
    settable = set(tp.update_columns) | set(tp.key_text_columns)
    compared = tuple(c for c in (*tp.key_text_columns, *tp.exact_columns, *tp.text_columns) if c in settable)
    if tp.partial:
        _compute_partial(cur, run, marks, changed(tp, compared))
        return Diff(marks, tp.key)
    staging: sql.Composable = sql.SQL("{} t").format(rel)
    if run.buckets is not None:
        # Only staging's rows of the buckets whose hashes differ: the shadow holds production's rows of
        # those buckets and no other, so the one join finds inserts, updates and deletes alike. Both sides
        # are about as small as the change, where a join of the shadow with the whole table would hash it.
        staging = sql.SQL("(SELECT ctid, * FROM {} t WHERE {} AND {}) t").format(
            rel, not_null("t", tp.key), run.buckets.holds(tp, Side.STAGING)
        )
    # A NULL ctid means "no such row on that side" (a key column may be NULL in staging's own rows).
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {marks} ON COMMIT DROP AS SELECT {keys},"
            " CASE WHEN t.ctid IS NULL THEN 'i' WHEN s.ctid IS NULL THEN 'd' ELSE 'u' END AS sync_op"
            " FROM {shadow} s FULL JOIN {staging} ON {match}"
            " WHERE t.ctid IS NULL OR s.ctid IS NULL OR ({changed})"
        ).format(
            marks=marks,
            keys=sql.SQL(", ").join(
                sql.SQL("coalesce({}, {}) AS {}").format(
                    sql.Identifier("s", k), sql.Identifier("t", k), sql.Identifier(k)
                )
                for k in tp.key
            ),
            shadow=shadow,
            staging=staging,
            match=match("s", tp.key, "t", tp.key),
            changed=changed(tp, compared),
        )
    )
    cur.execute(sql.SQL("ANALYZE {}").format(marks))
    return Diff(marks, tp.key)


def _compute_partial(cur: psycopg.Cursor, run: TableRun, marks: sql.Identifier, differ: sql.Composable) -> None:
    """The diff of a table read partly: changed rows come from the shadow, deletes from the keys of all
    production rows (none when their fingerprints matched); staging's other rows are left alone, unread."""
    tp = run.plan
    deletes = sql.SQL("")
    if run.keys == Keys.COPIED:  # staging's rows whose key production no longer has
        deletes = sql.SQL(
            " UNION ALL SELECT {tkeys}, 'd' FROM {rel} t"
            " WHERE {nn} AND NOT EXISTS (SELECT 1 FROM {keys} p WHERE {match})"
        ).format(
            tkeys=cols(tp.key, "t"),
            rel=tp.target.relation(),
            nn=not_null("t", tp.key),
            keys=run.key_shadow,
            match=match("p", tp.key, "t", tp.key),
        )
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {marks} ON COMMIT DROP AS"
            " SELECT {skeys}, CASE WHEN t.ctid IS NULL THEN 'i' ELSE 'u' END AS sync_op"
            " FROM {shadow} s LEFT JOIN {rel} t ON {match} WHERE (t.ctid IS NULL OR ({changed})){deletes}"
        ).format(
            marks=marks,
            skeys=cols(tp.key, "s"),
            shadow=run.shadow,
            rel=tp.target.relation(),
            match=match("s", tp.key, "t", tp.key),
            changed=differ,
            deletes=deletes,
        )
    )
    cur.execute(sql.SQL("ANALYZE {}").format(marks))
