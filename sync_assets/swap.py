"""The one staging transaction that makes every table of the run equal to its shadow.

Order inside the transaction:
  1. rows of the run that need parents outside it must find them in staging, else fail;
  2. rows outside the run that would lose their parent: preserved ones are backed up then deleted
     (or the run fails, per `orphans`), others fail the run with the tables to add;
  3. INSERT new and UPDATE changed rows, parents first, so every row finds its new parent;
  4. DELETE rows production no longer has, children first: by then no kept row points at them;
  5. owned sequences moved past the highest value.
Only row-level locks (ROW EXCLUSIVE) are taken, so readers are never blocked; they see the old
rows until COMMIT. Steps 3 and 4 swap places when a unique key moves from a deleted row to a new one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from sync_assets.catalog import Table
from sync_assets.errors import OrphanError, SelectionError, TableFailure, about_table
from sync_assets.extract import SESSION_SETTINGS
from sync_assets.graph import fk_order
from sync_assets.plan import Reference, SyncPlan, TableKey, TablePlan, qualified
from sync_assets.verify import count_orphans, orphan_condition

Log = Callable[[str], None]
MAX_IDENTIFIER = 63


@dataclass
class TableChanges:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    replaced_whole: bool = False


@dataclass(frozen=True)
class OrphanBackup:
    table: TableKey  # preserved table the rows were removed from
    references: TableKey  # synced table whose rows they pointed at
    constraint: str
    rows: int
    backup_table: TableKey


@dataclass
class SwapResult:
    changes: dict[TableKey, TableChanges] = field(default_factory=dict)
    orphans: list[OrphanBackup] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)
    staging_rows: dict[TableKey, int] = field(default_factory=dict)  # counted inside the swap


def _ident(key: TableKey) -> sql.Identifier:
    return sql.Identifier(*key)


def _cols(names: tuple[str, ...] | list[str], alias: str | None = None) -> sql.Composable:
    if alias is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(alias, n) for n in names)


def _match(left: str, left_cols: tuple[str, ...], right: str, right_cols: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(left, a), sql.Identifier(right, b))
        for a, b in zip(left_cols, right_cols, strict=True)
    )


def _as_text(columns: list[str], alias: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(alias, n)) for n in columns)


def _changed(plan: TablePlan, columns: tuple[str, ...]) -> sql.Composable:
    """True when the staging row t differs from the shadow row s in any of these columns: with
    IS DISTINCT FROM where `=` means identical, through the text form elsewhere."""
    wanted = set(columns)
    exact = [c for c in plan.exact_columns if c in wanted]
    text = [c for c in (*plan.key_text_columns, *plan.text_columns) if c in wanted]
    parts = []
    if exact:
        parts.append(sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(_cols(exact, "t"), _cols(exact, "s")))
    if text:
        parts.append(sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(_as_text(text, "t"), _as_text(text, "s")))
    return sql.SQL(" OR ").join(parts) if parts else sql.SQL("false")


def _comparable(plan: TablePlan, alias: str | None) -> sql.Composable:
    """The copied columns as a comparable row: text form for types without exact equality."""
    text = set(plan.text_columns)
    out = []
    for n in plan.columns:
        ident = sql.Identifier(alias, n) if alias else sql.Identifier(n)
        out.append(sql.SQL("{}::text").format(ident) if n in text else ident)
    return sql.SQL(", ").join(out)


def _asset_paths(keys: list[TableKey]) -> str:
    """How the Dagster UI and CLI name these tables' assets."""
    return ", ".join(f"staging/{schema}/{name}" for schema, name in sorted(set(keys)))


def _fmt_sample(rows: list[tuple]) -> str:
    return "; ".join("(" + ", ".join("NULL" if v is None else str(v) for v in r) + ")" for r in rows)


# ---------------------------------------------------------------------------------------------


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
    sample = _fmt_sample(list(counted.sample))
    if ref.role == "unselected":
        to_add = _asset_paths([r.fk.ref for r, _ in problems if r.role == "unselected"])
        raise SelectionError(
            f"{qualified(ref.table.key)} has {counted.rows} row(s) referencing {parent} rows that staging lacks "
            f"(e.g. {', '.join(ref.fk.columns)} = {sample}); add "
            f"{to_add} to the selection"
        )
    raise SelectionError(
        f"{qualified(ref.table.key)} has {counted.rows} row(s) referencing {parent} rows that staging lacks "
        f"(e.g. {', '.join(ref.fk.columns)} = {sample}), and {parent} is "
        f"{'preserved' if ref.role == 'preserve' else 'not synced'} ({ref.role}), so the sync cannot add them"
    )


def backup_table_name(key: TableKey) -> TableKey:
    suffix = "_backup"
    name = key[1]
    while len((name + suffix).encode()) > MAX_IDENTIFIER:
        name = name[:-1]
    return (key[0], name + suffix)


def _ensure_backup_table(cur: psycopg.Cursor, child: TableKey, run_stamp: str) -> TableKey:
    """`<table>_backup` beside the preserved table: its columns plus when, which run and why."""
    backup = backup_table_name(child)
    cur.execute(
        "SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (sql.Identifier(*backup).as_string(cur),),
    )
    existing = cur.fetchone()[0]
    if existing is not None:
        cur.execute(
            "SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
            (sql.Identifier(*child).as_string(cur),),
        )
        wanted = cur.fetchone()[0]
        if set(wanted) <= set(existing):
            return backup
        # The preserved table grew columns: keep the old backups under a dated name, start a new table.
        old = f"{backup[1][: MAX_IDENTIFIER - len(run_stamp) - 8]}_{run_stamp}_backup"
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(*backup), sql.Identifier(old)))
    cur.execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE {}, sync_backed_up_at timestamptz NOT NULL DEFAULT now(),"
            " sync_run_id text, sync_reason text)"
        ).format(sql.Identifier(*backup), sql.Identifier(*child))
    )
    return backup


@dataclass
class _Doomed:
    """Rows of one table outside the run that the swap must remove, marked by ctid in a temp table."""

    table: Table
    marks: sql.Identifier
    cause: TableKey  # the table whose removed rows they pointed at
    constraint: str
    reason: str
    rows: int = 0


def _mark(cur: psycopg.Cursor, doomed: _Doomed, cond: sql.Composable) -> int:
    """Add the rows of doomed.table matching cond (alias c) to its marks, locking them; new rows only."""
    cur.execute(
        sql.SQL(
            "INSERT INTO {marks} SELECT c.ctid FROM {rel} c WHERE ({cond})"
            " AND c.ctid <> ALL(ARRAY(SELECT m.row_id FROM {marks} m)) FOR UPDATE OF c"
        ).format(marks=doomed.marks, rel=doomed.table.relation(), cond=cond)
    )
    doomed.rows += cur.rowcount
    return cur.rowcount


def _marked(doomed: _Doomed, alias: str = "c") -> sql.Composable:
    return sql.SQL("{} = ANY(ARRAY(SELECT m.row_id FROM {} m))").format(sql.Identifier(alias, "ctid"), doomed.marks)


def handle_children_outside(
    cur: psycopg.Cursor,
    plan: SyncPlan,
    shadows: dict[TableKey, sql.Identifier],
    orphans_policy: str,
    run_id: str,
    log: Log,
) -> list[OrphanBackup]:
    """Rows outside the run that point at rows the run removes, and rows pointing at those in turn:
    back them all up and delete them (children first), or fail. Rows of excluded or unselected tables
    are never changed: if any would be orphaned, the run fails and names them."""
    doomed: dict[TableKey, _Doomed] = {}
    first_sample: dict[TableKey, str] = {}

    def blocked(ref: Reference, parent: str, rows: int, sample: str, also: list[TableKey] = ()) -> SelectionError:
        what = qualified(ref.table.key)
        if ref.role == "unselected":
            fix = f"add {_asset_paths([ref.table.key, *also])} to the selection"
        elif ref.role == "exclude":
            fix = f"{what} is excluded, so its rows cannot change: preserve it instead, or sync it"
        else:
            fix = f"{what} is synced by this run and cannot lose those parent rows"
        return SelectionError(
            f"syncing would remove {parent} rows that {rows} row(s) of {what} still reference "
            f"({', '.join(ref.fk.columns)} = {sample}); {fix}"
        )

    def doom(ref: Reference, cause: TableKey, reason: str) -> _Doomed:
        if ref.table.key not in doomed:
            marks = sql.Identifier(f"sync_doomed_{len(doomed)}")
            cur.execute(sql.SQL("CREATE TEMP TABLE {} (row_id tid) ON COMMIT DROP").format(marks))
            doomed[ref.table.key] = _Doomed(ref.table, marks, cause, ref.fk.name, reason)
        return doomed[ref.table.key]

    # Rows pointing at rows of the run's tables that the snapshot no longer has.
    stuck: list[tuple[Reference, str, int, str]] = []
    for ref in plan.children_outside:
        tp = plan.table(ref.fk.ref)
        if not set(ref.fk.ref_columns) <= set(tp.columns):
            continue
        counted = count_orphans(cur, ref.table.relation(), ref.fk, shadows[tp.table_key])
        if not counted.rows:
            continue
        sample = _fmt_sample(list(counted.sample))
        if ref.role in ("unselected", "exclude"):
            stuck.append((ref, tp.qualified, counted.rows, sample))
            continue
        reason = f"{ref.fk.name}: referenced {tp.qualified} rows that production no longer has"
        _mark(cur, doom(ref, tp.table_key, reason), orphan_condition(ref.fk, shadows[tp.table_key]))
        first_sample.setdefault(ref.table.key, f"{', '.join(ref.fk.columns)} = {sample}")

    if stuck:
        unselected = [r.table.key for r, *_ in stuck if r.role == "unselected"]
        first = next((x for x in stuck if x[0].role == "exclude"), stuck[0])
        raise blocked(*first, also=unselected)

    # Rows pointing at rows marked above, until nothing more is marked.
    frontier = list(doomed)
    while frontier:
        parent_key = frontier.pop(0)
        parent = doomed[parent_key]
        for child, fk in plan.staging.referencing(*parent_key):
            ref = Reference(child, fk, plan.role_of(child.key))
            cond = sql.SQL("{nn} AND EXISTS (SELECT 1 FROM {prel} p WHERE {marked} AND {match})").format(
                nn=sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier("c", n)) for n in fk.columns),
                prel=parent.table.relation(),
                marked=_marked(parent, "p"),
                match=_match("p", fk.ref_columns, "c", fk.columns),
            )
            if ref.role in ("unselected", "exclude", "run"):
                cur.execute(sql.SQL("SELECT count(*) FROM {} c WHERE {}").format(child.relation(), cond))
                rows = cur.fetchone()[0]
                if rows:
                    raise blocked(ref, qualified(parent_key), rows, "…")
                continue
            reason = f"{fk.name}: referenced {qualified(parent_key)} rows this sync removes"
            if _mark(cur, doom(ref, parent.cause, reason), cond) and child.key not in frontier:
                frontier.append(child.key)

    if not doomed:
        return []
    if orphans_policy == "fail":
        key, first = next(iter(doomed.items()))
        raise OrphanError(
            f"{first.rows} row(s) of preserved table {qualified(key)} reference {qualified(first.cause)} rows "
            f"that production no longer has ({first_sample.get(key, '')}); 'orphans: fail' stops the run and "
            "nothing was changed; set 'orphans: delete' to back them up and remove them"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    removed: list[OrphanBackup] = []
    parents = {k: [fk.ref for fk in d.table.foreign_keys] for k, d in doomed.items()}
    for key in reversed(fk_order(list(doomed), parents)):
        d = doomed[key]
        backup = _ensure_backup_table(cur, key, stamp)
        cols = [c.name for c in d.table.columns]
        cur.execute(
            sql.SQL(
                "INSERT INTO {backup} ({cols}, sync_run_id, sync_reason) SELECT {ccols}, %s, %s FROM {rel} c"
                " WHERE {marked}"
            ).format(
                backup=_ident(backup),
                cols=_cols(cols),
                ccols=_cols(cols, "c"),
                rel=d.table.relation(),
                marked=_marked(d),
            ),
            (run_id, d.reason),
        )
        cur.execute(sql.SQL("DELETE FROM {} c WHERE {}").format(d.table.relation(), _marked(d)))
        removed.append(OrphanBackup(key, d.cause, d.constraint, cur.rowcount, backup))
        log(f"backed up {cur.rowcount} row(s) of {qualified(key)} to {qualified(backup)} and removed them ({d.reason})")
    return removed


def _upsert(cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier, changes: TableChanges) -> None:
    """UPDATE changed rows, INSERT new ones; columns of a non-deferrable FK cycle wait for _link_deferred."""
    if not tp.key:
        return
    rel = tp.target.relation()
    match = _match("t", tp.key, "s", tp.key)
    deferred = set(tp.deferred_columns)
    # A key column whose `=` ignores representation is rewritten when only its text changed.
    sets = [*tp.key_text_columns, *(c for c in tp.update_columns if c not in deferred)]
    if sets:
        compared = tuple(c for c in (*tp.key_text_columns, *tp.exact_columns, *tp.text_columns) if c not in deferred)
        cur.execute(
            sql.SQL("UPDATE {rel} t SET {sets} FROM {shadow} s WHERE {match} AND ({changed})").format(
                rel=rel,
                sets=sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in sets
                ),
                shadow=shadow,
                match=match,
                changed=_changed(tp, compared),
            )
        )
        changes.updated += cur.rowcount
    values = sql.SQL(", ").join(sql.SQL("NULL") if c in deferred else sql.Identifier("s", c) for c in tp.columns)
    cur.execute(
        sql.SQL(
            "INSERT INTO {table} ({cols}) {overriding} SELECT {values} FROM {shadow} s"
            " WHERE NOT EXISTS (SELECT 1 FROM {rel} t WHERE {match})"
        ).format(
            table=_ident(tp.table_key),
            cols=_cols(tp.columns),
            overriding=sql.SQL("OVERRIDING SYSTEM VALUE" if tp.overriding_system_value else ""),
            values=values,
            shadow=shadow,
            rel=rel,
            match=match,
        )
    )
    changes.inserted = cur.rowcount


def _count_only_deferred_changes(cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier) -> int:
    """Existing rows whose only change is in deferred columns: _link_deferred updates them, _upsert not."""
    others = tuple(c for c in (*tp.exact_columns, *tp.text_columns) if c not in tp.deferred_columns)
    cur.execute(
        sql.SQL("SELECT count(*) FROM {rel} t JOIN {shadow} s ON {match} WHERE NOT ({others}) AND ({deferred})").format(
            rel=tp.target.relation(),
            shadow=shadow,
            match=_match("t", tp.key, "s", tp.key),
            others=_changed(tp, others),
            deferred=_changed(tp, tp.deferred_columns),
        )
    )
    return int(cur.fetchone()[0])


def _link_deferred(cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier) -> None:
    """Set the cycle's FK columns once every table of the run holds its new rows."""
    cur.execute(
        sql.SQL("UPDATE {rel} t SET {sets} FROM {shadow} s WHERE {match} AND ({changed})").format(
            rel=tp.target.relation(),
            sets=sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in tp.deferred_columns
            ),
            shadow=shadow,
            match=_match("t", tp.key, "s", tp.key),
            changed=_changed(tp, tp.deferred_columns),
        )
    )


def _unlink_removed(cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier) -> None:
    """Clear the cycle's FK columns of rows about to be deleted, so the deletes need no order."""
    cur.execute(
        sql.SQL(
            "UPDATE {rel} t SET {nulls} WHERE NOT EXISTS (SELECT 1 FROM {shadow} s WHERE {match}) AND ({any_set})"
        ).format(
            rel=tp.target.relation(),
            nulls=sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in tp.deferred_columns),
            shadow=shadow,
            match=_match("t", tp.key, "s", tp.key),
            any_set=sql.SQL(" OR ").join(
                sql.SQL("{} IS NOT NULL").format(sql.Identifier("t", c)) for c in tp.deferred_columns
            ),
        )
    )


def _delete(cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier, changes: TableChanges) -> None:
    rel = tp.target.relation()
    if tp.key:
        cur.execute(
            sql.SQL("DELETE FROM {rel} t WHERE NOT EXISTS (SELECT 1 FROM {shadow} s WHERE {match})").format(
                rel=rel, shadow=shadow, match=_match("t", tp.key, "s", tp.key)
            )
        )
        changes.deleted = cur.rowcount
        return
    # No key to match rows by: replace the table whole, unless it already holds exactly the snapshot.
    cur.execute(
        sql.SQL(
            "SELECT NOT EXISTS (SELECT {t} FROM {rel} EXCEPT ALL SELECT {s} FROM {shadow})"
            " AND NOT EXISTS (SELECT {s} FROM {shadow} EXCEPT ALL SELECT {t} FROM {rel})"
        ).format(t=_comparable(tp, None), s=_comparable(tp, None), rel=rel, shadow=shadow)
    )
    if cur.fetchone()[0]:
        return
    cur.execute(sql.SQL("DELETE FROM {}").format(rel))
    changes.deleted = cur.rowcount
    cur.execute(
        sql.SQL("INSERT INTO {table} ({cols}) {overriding} SELECT {cols} FROM {shadow}").format(
            table=_ident(tp.table_key),
            cols=_cols(tp.columns),
            overriding=sql.SQL("OVERRIDING SYSTEM VALUE" if tp.overriding_system_value else ""),
            shadow=shadow,
        )
    )
    changes.inserted = cur.rowcount
    changes.replaced_whole = True


def _apply_rows(
    cur: psycopg.Cursor, plan: SyncPlan, shadows: dict[TableKey, sql.Identifier], deletes_first: bool
) -> dict[TableKey, TableChanges]:
    changes = {tp.table_key: TableChanges() for tp in plan.tables}
    cyclic = [tp for tp in plan.tables if tp.deferred_columns and tp.key]

    def upserts() -> None:
        for tp in cyclic:
            changes[tp.table_key].updated = _count_only_deferred_changes(cur, tp, shadows[tp.table_key])
        for tp in plan.tables:
            with about_table("applying", tp.qualified):
                _upsert(cur, tp, shadows[tp.table_key], changes[tp.table_key])
        for tp in cyclic:
            with about_table("linking the foreign key cycle of", tp.qualified):
                _link_deferred(cur, tp, shadows[tp.table_key])

    def deletes() -> None:
        for tp in cyclic:
            _unlink_removed(cur, tp, shadows[tp.table_key])
        for tp in reversed(plan.tables):
            with about_table("deleting removed rows of", tp.qualified):
                _delete(cur, tp, shadows[tp.table_key], changes[tp.table_key])

    if deletes_first:
        deletes()
        upserts()
    else:
        upserts()
        deletes()
    return changes


def apply_rows(
    conn: psycopg.Connection, plan: SyncPlan, shadows: dict[TableKey, sql.Identifier], log: Log
) -> dict[TableKey, TableChanges]:
    """Inserts and updates before deletes keep every foreign key satisfied; when that order trips a
    unique key (a value moving from a deleted row to a new one), deletes go first instead."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            return _apply_rows(cur, plan, shadows, deletes_first=False)
    except TableFailure as exc:
        if not isinstance(exc.cause, psycopg.errors.UniqueViolation):
            raise
        log(f"unique key moved between rows ({exc.cause.diag.constraint_name}); applying deletes first instead")
    with conn.transaction(), conn.cursor() as cur:
        return _apply_rows(cur, plan, shadows, deletes_first=True)


def advance_sequences(cur: psycopg.Cursor, plan: SyncPlan) -> dict[str, int]:
    """Move each owned sequence past the column's highest value (lowest for descending ones), never back."""
    moved: dict[str, int] = {}
    for tp in plan.tables:
        for seq in tp.sequences:
            seq_ident = sql.Identifier(seq.schema, seq.name)
            agg = sql.SQL("max" if seq.increment > 0 else "min")
            cur.execute(
                # Without ONLY: inheritance children draw from the parent's sequence too.
                sql.SQL("SELECT {agg}({col})::bigint FROM {table}").format(
                    agg=agg, col=sql.Identifier(seq.column), table=_ident(tp.table_key)
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
            cur.execute("SELECT setval(%s::regclass, %s, true)", (seq_ident.as_string(cur), extreme))
            moved[f"{seq.schema}.{seq.name}"] = int(extreme)
    return moved


_LOCK_TIMEOUT = re.compile(r"^\d+(ms|s|min)?$")


def swap(
    conn: psycopg.Connection,
    plan: SyncPlan,
    shadows: dict[TableKey, sql.Identifier],
    orphans_policy: str,
    lock_timeout: str,
    run_id: str,
    log: Log,
) -> SwapResult:
    """Run the whole swap in ONE transaction on `conn` and commit it."""
    assert _LOCK_TIMEOUT.match(lock_timeout), lock_timeout
    result = SwapResult()
    with conn.transaction():
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
            # Changes are found by comparing values' text forms: pin what that text depends on.
            for setting in SESSION_SETTINGS:
                cur.execute(setting.replace("SET ", "SET LOCAL ", 1))
            # Deferrable constraints (cycles declared DEFERRABLE) are checked at COMMIT.
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
            check_parents_outside(cur, plan, shadows)
            result.orphans = handle_children_outside(cur, plan, shadows, orphans_policy, run_id, log)
        result.changes = apply_rows(conn, plan, shadows, log)
        with conn.cursor() as cur:
            # Deferred constraints are checked now, so a violation fails the run before setval, which no
            # ROLLBACK undoes, moves any sequence.
            with about_table("checking deferred constraints of", ", ".join(t.qualified for t in plan.tables)):
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for tp in plan.tables:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(tp.target.relation()))
                result.staging_rows[tp.table_key] = int(cur.fetchone()[0])
            result.sequences = advance_sequences(cur, plan)
    return result
