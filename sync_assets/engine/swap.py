"""The one staging transaction that makes every table of the run equal to its shadow.

Order inside the transaction:
  1. the run's borders (outside.py): parents outside the run must hold the rows pointed at; rows
     outside the run that would lose their parent are backed up and removed, or stop the run;
  2. per table, one pass of shadow against table finds the keys to insert, update and delete (a
     temp "diff"); every later statement touches those rows only;
  3. parents first, per table: INSERT new rows, then UPDATE changed ones (new rows first, so a row
     can move under a parent that is itself new); tables without a key are replaced whole here;
  4. children first: DELETE rows production no longer has; by then no kept row points at them;
  5. deferred constraints checked, rows counted, owned sequences moved past the highest value.
Only row-level locks (ROW EXCLUSIVE) are taken, so readers are never blocked; they see the old
rows until COMMIT. When a unique value moves from a row being deleted to a new or updated row,
step 4 goes before step 3 instead (and updates before inserts), in a savepoint retried once.
Tables whose foreign keys form a cycle (even of NOT NULL, non-deferrable keys) are inserted into in
one statement, and deleted from in one: PostgreSQL checks a foreign key at the end of the statement, so
rows pointing at each other arrive, or go, together.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from sync_assets.engine import content, fingerprints
from sync_assets.engine import observe as faults
from sync_assets.engine.borders import OrphanBackup, check_parents_outside, handle_children_outside
from sync_assets.engine.catalog import ForeignKey
from sync_assets.engine.content import Fingerprint, Side, Unavailable
from sync_assets.engine.errors import TableFailure, about_table
from sync_assets.engine.extract import SESSION_SETTINGS
from sync_assets.engine.plan import SyncPlan, TableKey, TablePlan
from sync_assets.engine.replica import check_written
from sync_assets.engine.shadows import key_shadow_name
from sync_assets.engine.sql import as_text, cols, ident, match, not_null
from sync_assets.engine.write_path import WritePath

Log = Callable[[str], None]


@dataclass
class TableChanges:
    """Rows that differ between staging and the snapshot, as the swap found and applied them."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    replaced_whole: bool = False
    # Rows written by replacing a keyless table whole: more than the rows that differ.
    rewritten: int = 0


@dataclass
class SwapResult:
    changes: dict[TableKey, TableChanges] = field(default_factory=dict)
    orphans: list[OrphanBackup] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)
    staging_rows: dict[TableKey, int] = field(default_factory=dict)  # counted inside the swap
    # Staging's content fingerprints, taken just before COMMIT, to hold against the snapshot's.
    prints: dict[TableKey, Fingerprint | Unavailable] = field(default_factory=dict)
    print_seconds: float = 0.0  # spent taking them


def _changed(plan: TablePlan, columns: tuple[str, ...]) -> sql.Composable:
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


def _comparable(plan: TablePlan) -> sql.Composable:
    """The copied columns as a comparable row: text form for types without exact equality."""
    text = set(plan.text_columns)
    return sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(n)) if n in text else sql.Identifier(n) for n in plan.columns
    )


@dataclass(frozen=True)
class _Diff:
    """The keys of one table's rows to insert ('i'), update ('u') and delete ('d'), in a temp table:
    found in one pass over shadow and table, so the statements after it touch changed rows only."""

    marks: sql.Identifier | None  # None: the table is empty, every shadow row is new
    key: tuple[str, ...]

    def rows(self, op: str, alias: str) -> sql.Composable:
        """JOIN clause limiting `alias` (the shadow or the table) to the rows of one kind."""
        assert self.marks is not None
        return sql.SQL("JOIN {marks} d ON d.sync_op = {op} AND {match}").format(
            marks=self.marks, op=sql.Literal(op), match=match("d", self.key, alias, self.key)
        )


def _compute_diff(cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier, index: str) -> _Diff:
    rel = tp.target.relation()
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(rel))
    if not cur.fetchone()[0] and not tp.partial:
        return _Diff(None, tp.key)
    marks = sql.Identifier(f"sync_diff_{index}")
    # Only what an UPDATE can write: a column it may not set (identity ALWAYS) would look changed forever.
    settable = set(tp.update_columns) | set(tp.key_text_columns)
    compared = tuple(c for c in (*tp.key_text_columns, *tp.exact_columns, *tp.text_columns) if c in settable)
    if tp.partial:
        _compute_partial_diff(cur, tp, shadow, marks, _changed(tp, compared))
        return _Diff(marks, tp.key)
    # A NULL ctid means "no such row on that side" (a key column may be NULL in staging's own rows).
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {marks} ON COMMIT DROP AS SELECT {keys},"
            " CASE WHEN t.ctid IS NULL THEN 'i' WHEN s.ctid IS NULL THEN 'd' ELSE 'u' END AS sync_op"
            " FROM {shadow} s FULL JOIN {rel} t ON {match}"
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
            rel=rel,
            match=match("s", tp.key, "t", tp.key),
            changed=_changed(tp, compared),
        )
    )
    cur.execute(sql.SQL("ANALYZE {}").format(marks))
    return _Diff(marks, tp.key)


def _compute_partial_diff(
    cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier, marks: sql.Identifier, changed: sql.Composable
) -> None:
    """The diff of a table read partly: changed rows come from the shadow, deletes from the keys of all
    production rows (none when their fingerprints matched); staging's other rows are left alone, unread."""
    deletes = sql.SQL("")
    if tp.keys_copied:
        deletes = sql.SQL(
            " UNION ALL SELECT {tkeys}, 'd' FROM {rel} t"
            " WHERE {nn} AND NOT EXISTS (SELECT 1 FROM {keys} k WHERE {kmatch})"
        ).format(
            tkeys=cols(tp.key, "t"),
            rel=tp.target.relation(),
            nn=not_null("t", tp.key),
            keys=key_shadow_name(shadow),
            kmatch=match("k", tp.key, "t", tp.key),
        )
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {marks} ON COMMIT DROP AS"
            " SELECT {skeys}, CASE WHEN t.ctid IS NULL THEN 'i' ELSE 'u' END AS sync_op"
            " FROM {shadow} s LEFT JOIN {rel} t ON {match} WHERE (t.ctid IS NULL OR ({changed})){deletes}"
        ).format(
            marks=marks,
            skeys=cols(tp.key, "s"),
            shadow=shadow,
            rel=tp.target.relation(),
            match=match("s", tp.key, "t", tp.key),
            changed=changed,
            deletes=deletes,
        )
    )
    cur.execute(sql.SQL("ANALYZE {}").format(marks))


def _insert_statement(
    cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier, diff: _Diff | None, dry: bool
) -> sql.Composable:
    """INSERT the shadow's new rows (all of them without a diff). In a dry run, staging-only columns that
    draw from a sequence get the numbers it would give, without drawing them (no rollback gives them back)."""
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
        overriding = overriding or (column is not None and column.identity == "a")
    return sql.SQL("INSERT INTO {table} ({cols}) {overriding} SELECT {values} FROM {shadow} s {only_new}").format(
        table=ident(tp.table_key),
        cols=sql.SQL(", ").join(columns),
        overriding=sql.SQL("OVERRIDING SYSTEM VALUE" if overriding else ""),
        values=sql.SQL(", ").join(values),
        shadow=shadow,
        only_new=diff.rows("i", "s") if diff is not None and diff.marks is not None else sql.SQL(""),
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


def _insert_new(
    cur: psycopg.Cursor,
    group: list[TablePlan],
    shadows: dict[TableKey, sql.Identifier],
    diffs: dict[TableKey, _Diff],
    changes: dict[TableKey, TableChanges],
    dry: bool,
) -> None:
    """Insert the new rows of one group of tables (one table, or the tables of a foreign-key cycle).

    A dry run inserts them too (and rolls back), so that staging's constraints judge them as in the run;
    only where a default draws from a sequence inside an expression does it count them instead."""
    if dry and any(tp.unmimicked for tp in group):
        for tp in group:
            diff = diffs[tp.table_key]
            only_new = diff.rows("i", "s") if diff.marks is not None else sql.SQL("")
            cur.execute(sql.SQL("SELECT count(*) FROM {} s {}").format(shadows[tp.table_key], only_new))
            changes[tp.table_key].inserted = int(cur.fetchone()[0])
        return
    statements = [_insert_statement(cur, tp, shadows[tp.table_key], diffs[tp.table_key], dry) for tp in group]
    for tp, rows in zip(group, _in_one_statement(cur, statements), strict=True):
        changes[tp.table_key].inserted = rows


def _update_changed(
    cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier, diff: _Diff, changes: TableChanges
) -> None:
    # A key column whose `=` ignores representation (numeric 1.0 = 1.00) is rewritten when only its text changed.
    sets = [*tp.key_text_columns, *tp.update_columns]
    if not sets or diff.marks is None:
        return
    rows = sql.SQL("{} s {}").format(shadow, diff.rows("u", "s"))
    if not _few_changed(cur, tp, diff):
        cur.execute(_update_from(tp, sets, rows))
        changes.updated += cur.rowcount
        return
    # A few rows of a big table: the planner, pricing random reads high, would hash the whole table to
    # find them; probing its key index once per changed row is several times faster. The changed rows
    # are set apart first, so that no join among the small tables loses its hash meanwhile.
    apart = sql.Identifier(f"sync_updates_{next(_temp_names)}")
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT s.* FROM {}").format(apart, rows))
    cur.execute("SET LOCAL enable_hashjoin = off")
    cur.execute("SET LOCAL enable_mergejoin = off")
    cur.execute(_update_from(tp, sets, sql.SQL("{} s").format(apart)))
    changes.updated += cur.rowcount
    cur.execute("RESET enable_hashjoin")
    cur.execute("RESET enable_mergejoin")


# Below this share of a table's rows, changed rows are found by probing its key index (see above).
PROBE_SHARE = 0.05
_temp_names = itertools.count()


def _few_changed(cur: psycopg.Cursor, tp: TablePlan, diff: _Diff) -> bool:
    if not tp.key_indexed or diff.marks is None or tp.target.partitioned:
        return False
    cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE sync_op = 'u'").format(diff.marks))
    changed = cur.fetchone()[0]
    # The planner's own estimate of the table's rows (as of its last ANALYZE or VACUUM).
    table = sql.Identifier(tp.target.schema, tp.target.name).as_string(cur)
    cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table,))
    rows = cur.fetchone()[0]
    return rows > 0 and changed < PROBE_SHARE * rows


def _update_from(tp: TablePlan, sets: list[str], rows: sql.Composable) -> sql.Composable:
    return sql.SQL("UPDATE {rel} t SET {sets} FROM {rows} WHERE {match}").format(
        rel=tp.target.relation(),
        sets=sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in sets),
        rows=rows,
        match=match("t", tp.key, "s", tp.key),
    )


def _replace_whole(
    cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier, changes: TableChanges, dry: bool
) -> None:
    """No key to match rows by: replace the table whole, unless it already holds exactly the snapshot."""
    rel = tp.target.relation()
    same = fingerprints.same_rows(cur.connection, rel, shadow, _comparable(tp))
    if same is None:
        cur.execute(
            sql.SQL(
                "SELECT NOT EXISTS (SELECT {row} FROM {rel} EXCEPT ALL SELECT {row} FROM {shadow})"
                " AND NOT EXISTS (SELECT {row} FROM {shadow} EXCEPT ALL SELECT {row} FROM {rel})"
            ).format(row=_comparable(tp), rel=rel, shadow=shadow)
        )
        same = bool(cur.fetchone()[0])
    if same:
        return
    changes.replaced_whole = True
    # The rows that really differ, duplicates counted, apart from the rows the replacement rewrites.
    cur.execute(
        sql.SQL(
            "SELECT (SELECT count(*) FROM (SELECT {row} FROM {shadow} EXCEPT ALL SELECT {row} FROM {rel}) a),"
            " (SELECT count(*) FROM (SELECT {row} FROM {rel} EXCEPT ALL SELECT {row} FROM {shadow}) b),"
            " (SELECT count(*) FROM {shadow})"
        ).format(row=_comparable(tp), rel=rel, shadow=shadow)
    )
    changes.inserted, changes.deleted, changes.rewritten = (int(n) for n in cur.fetchone())
    if dry and tp.unmimicked:
        return
    cur.execute(sql.SQL("DELETE FROM {}").format(rel))
    cur.execute(_insert_statement(cur, tp, shadow, None, dry))


def _delete_removed(
    cur: psycopg.Cursor, group: list[TablePlan], diffs: dict[TableKey, _Diff], changes: dict[TableKey, TableChanges]
) -> None:
    """Delete the rows production no longer has from one group of tables, in one statement."""
    doomed = [tp for tp in group if diffs[tp.table_key].marks is not None]
    statements = [
        sql.SQL("DELETE FROM {rel} t USING {marks} d WHERE d.sync_op = 'd' AND {match}").format(
            rel=tp.target.relation(), marks=diffs[tp.table_key].marks, match=match("t", tp.key, "d", tp.key)
        )
        for tp in doomed
    ]
    if statements:
        for tp, rows in zip(doomed, _in_one_statement(cur, statements), strict=True):
            changes[tp.table_key].deleted = rows
    for tp in group:
        nullable = [k for k in tp.key if (c := tp.target.column(k)) is not None and not c.not_null]
        if nullable:
            # Production's key is never NULL: staging rows with a NULL in it match nothing there.
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(
                    tp.target.relation(),
                    sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in nullable),
                )
            )
            changes[tp.table_key].deleted += cur.rowcount


def _written_rows(tp: TablePlan, diff: _Diff | None, shadow: sql.Identifier, fk: ForeignKey) -> sql.Composable:
    """The rows an upsert of this table wrote that fk constrains, as a relation for FROM: the diff's
    inserted and updated keys where it has them, else (replaced whole, was empty) every row.

    Their foreign-key values are the shadow's when the sync copies every foreign-key column: read there,
    a few changed rows are checked without a pass over a large table. A foreign key declared on one
    partition constrains the rows written there: read from the partition."""
    if diff is None or diff.marks is None:
        return tp.target.fk_relation(fk)
    if fk.declared_on is not None:
        rows = tp.target.fk_relation(fk)
    else:
        copied = all(c in tp.columns for f in tp.target.foreign_keys for c in f.columns)
        rows = shadow if copied else tp.target.relation()
    return sql.SQL("(SELECT c.* FROM {rows} c JOIN {marks} d ON d.sync_op IN ('i', 'u') AND {match})").format(
        rows=rows, marks=diff.marks, match=match("d", tp.key, "c", tp.key)
    )


def _apply_rows(
    cur: psycopg.Cursor,
    plan: SyncPlan,
    shadows: dict[TableKey, sql.Identifier],
    deletes_first: bool,
    dry: bool,
    replica: bool = False,
) -> dict[TableKey, TableChanges]:
    changes = {tp.table_key: TableChanges() for tp in plan.tables}
    groups = [[plan.table(k) for k in group] for group in plan.groups]

    def compute_diffs(round_: int) -> dict[TableKey, _Diff]:
        return {
            tp.table_key: _compute_diff(cur, tp, shadows[tp.table_key], f"{round_}_{i}")
            for i, tp in enumerate(plan.tables)
            if tp.key
        }

    # Taken before any row changes; after deletes (which can cascade into other tables of the run)
    # the inserts and updates take them again.
    diffs = compute_diffs(0)
    faults.reach("diffs_computed")

    def upserts() -> None:
        if replica:
            # Foreign keys are checked per key by check_written below, not per row by triggers.
            cur.execute("SET LOCAL session_replication_role = replica")
        for group in groups:
            with about_table("applying", ", ".join(tp.qualified for tp in group)):
                if not group[0].key:  # no key: not referenced, so never part of a cycle
                    _replace_whole(cur, group[0], shadows[group[0].table_key], changes[group[0].table_key], dry)
                    continue
                if not deletes_first:
                    _insert_new(cur, group, shadows, diffs, changes, dry)
                for tp in group:
                    _update_changed(cur, tp, shadows[tp.table_key], diffs[tp.table_key], changes[tp.table_key])
                if deletes_first:
                    _insert_new(cur, group, shadows, diffs, changes, dry)
        if replica:
            cur.execute("SET LOCAL session_replication_role = origin")

    def deletes() -> None:
        for group in reversed(groups):
            doomed = [tp for tp in group if tp.key and tp.deletes]
            if doomed:
                with about_table("deleting removed rows of", ", ".join(tp.qualified for tp in doomed)):
                    _delete_removed(cur, doomed, diffs, changes)

    if deletes_first:
        deletes()
        faults.reach("deleted")
        diffs = compute_diffs(1)
        upserts()
        faults.reach("upserted")
    else:
        upserts()
        faults.reach("upserted")
        deletes()
        faults.reach("deleted")
    if replica:
        updated = {k for k, c in changes.items() if c.updated or c.replaced_whole}
        check_written(
            cur,
            plan,
            lambda tp, fk: _written_rows(tp, diffs.get(tp.table_key), shadows[tp.table_key], fk),
            updated,
        )
    faults.reach("foreign_keys_checked")
    return changes


_UNIQUE_HINT = (
    "; a unique value moved between rows in a way no order of statements allows (e.g. two rows swapped "
    "values): make that staging constraint DEFERRABLE, which the sync then checks at the end"
)


def apply_rows(
    conn: psycopg.Connection,
    plan: SyncPlan,
    shadows: dict[TableKey, sql.Identifier],
    log: Log,
    dry: bool = False,
    replica: bool = False,
) -> dict[TableKey, TableChanges]:
    """Inserts and updates before deletes keep every foreign key satisfied; when that order trips a
    unique key (a value moving from a deleted row to a new one), deletes go first instead."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            return _apply_rows(cur, plan, shadows, deletes_first=False, dry=dry, replica=replica)
    except TableFailure as exc:
        if not isinstance(exc.cause, psycopg.errors.UniqueViolation):
            raise
        log(f"unique key moved between rows ({exc.cause.diag.constraint_name}); applying deletes first instead")
    try:
        with conn.transaction(), conn.cursor() as cur:
            return _apply_rows(cur, plan, shadows, deletes_first=True, dry=dry, replica=replica)
    except TableFailure as exc:
        if isinstance(exc.cause, psycopg.errors.UniqueViolation):
            raise TableFailure(str(exc) + _UNIQUE_HINT, exc.cause) from exc
        raise


def advance_sequences(
    cur: psycopg.Cursor, plan: SyncPlan, shadows: dict[TableKey, sql.Identifier], apply: bool = True
) -> dict[str, int]:
    """Move each owned sequence past the column's highest value (lowest for descending ones), never back.
    Returns the sequences moved (apply=False: that would move) and their new values."""
    moved: dict[str, int] = {}
    for tp in plan.tables:
        for seq in tp.sequences:
            seq_ident = sql.Identifier(seq.schema, seq.name)
            agg = sql.SQL("max" if seq.increment > 0 else "min")
            with about_table("advancing the sequences of", tp.qualified):
                # Without ONLY: inheritance children draw from the parent's sequence too. A dry run
                # inserted nothing, so the new rows are looked for in the shadow.
                col = sql.Identifier(seq.column)
                cur.execute(
                    sql.SQL("SELECT {agg}(v)::bigint FROM (SELECT {col} FROM {table} UNION ALL {extra}) x(v)").format(
                        agg=agg,
                        col=col,
                        table=ident(tp.table_key),
                        extra=sql.SQL("SELECT {} FROM {}").format(col, shadows[tp.table_key])
                        if not apply
                        else sql.SQL("SELECT NULL"),
                    )
                )
                extreme = cur.fetchone()[0]
                if extreme is None:
                    continue
                cur.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(seq_ident))
                last, is_called = cur.fetchone()
                upcoming = last + seq.increment if is_called else last
                if (upcoming > extreme) if seq.increment > 0 else (upcoming < extreme):
                    continue
                if apply:
                    cur.execute("SELECT setval(%s::regclass, %s, true)", (seq_ident.as_string(cur), extreme))
            moved[f"{seq.schema}.{seq.name}"] = int(extreme)
    return moved


def _staging_print(
    cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier, snapshot: Fingerprint
) -> Fingerprint | Unavailable:
    """Staging's fingerprint as the snapshot's was taken; in merge mode, of the rows the snapshot has
    (staging keeps the ones production deleted)."""
    where = None
    if not tp.deletes:
        where = sql.SQL("EXISTS (SELECT 1 FROM {} s WHERE {})").format(shadow, match("s", tp.key, "t", tp.key))
    with about_table("fingerprinting", tp.qualified):
        return content.take(
            cur.connection,
            tp,
            tp.target.relation(),
            snapshot.scope,
            Side.STAGING,
            utf8=tp.encodings_differ,
            method=snapshot.method,
            where=where,
        )


_LOCK_TIMEOUT = re.compile(r"^\d+(ms|s|min)?$")


def swap(
    conn: psycopg.Connection,
    plan: SyncPlan,
    shadows: dict[TableKey, sql.Identifier],
    orphans_policy: str,
    lock_timeout: str,
    run_id: str,
    log: Log,
    dry_run: bool = False,
    before_commit: Callable[[psycopg.Cursor, SwapResult], None] | None = None,
    path: WritePath | None = None,
    snapshots: dict[TableKey, Fingerprint | Unavailable | None] | None = None,
) -> SwapResult:
    """Run the whole swap in ONE transaction on `conn` and commit it (dry_run: roll it back).

    path: how rows are written (write_path.choose); staging's triggers it silences are disabled for the
    writes and enabled again before COMMIT. snapshots: the snapshot's content fingerprints, which say
    how staging's are to be taken (not in a dry run, which writes nothing it keeps). before_commit writes
    the run's bookkeeping in the same transaction, so it lands with the rows or not at all."""
    path = path or WritePath(replica=False, silenced=(), firing=(), info=())
    assert _LOCK_TIMEOUT.match(lock_timeout), lock_timeout
    result = SwapResult()
    with conn.transaction():
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
            # Changes are found by comparing values' text forms: pin what that text depends on.
            for setting in SESSION_SETTINGS:
                cur.execute(setting.replace("SET ", "SET LOCAL ", 1))
            # Deferrable constraints (cycles declared DEFERRABLE) are checked at the end.
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
            faults.reach("swap_begun")
            check_parents_outside(cur, plan, shadows)
            result.orphans = handle_children_outside(cur, plan, shadows, orphans_policy, run_id, log)
            faults.reach("orphans_handled")
            with about_table("disabling staging's own triggers on", ", ".join(t.qualified for t in path.silenced)):
                path.disable(cur)
        result.changes = apply_rows(conn, plan, shadows, log, dry_run, path.replica)
        with conn.cursor() as cur:
            # Deferred constraints are checked now, so a violation fails the run before setval, which no
            # ROLLBACK undoes, moves any sequence.
            with about_table("checking deferred constraints of", ", ".join(t.qualified for t in plan.tables)):
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            faults.reach("constraints_checked")
            with about_table("enabling staging's own triggers on", ", ".join(t.qualified for t in path.silenced)):
                path.restore(cur)
            for tp in plan.tables:
                snapshot = (snapshots or {}).get(tp.table_key)
                if isinstance(snapshot, Fingerprint) and not dry_run:
                    printed = time.monotonic()
                    result.prints[tp.table_key] = _staging_print(cur, tp, shadows[tp.table_key], snapshot)
                    result.print_seconds += time.monotonic() - printed
                elif isinstance(snapshot, Unavailable):
                    result.prints[tp.table_key] = snapshot
                counted = result.prints.get(tp.table_key)
                if isinstance(counted, Fingerprint) and tp.deletes:
                    result.staging_rows[tp.table_key] = counted.rows
                else:
                    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(tp.target.relation()))
                    result.staging_rows[tp.table_key] = int(cur.fetchone()[0])
            result.sequences = advance_sequences(cur, plan, shadows, apply=not dry_run)
            faults.reach("sequences_advanced")
            if before_commit is not None:
                before_commit(cur, result)
            faults.reach("bookkeeping_written")
        if dry_run:
            raise psycopg.Rollback()
    return result
