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

from sync_assets.errors import OrphanError, SelectionError
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


def _changed(plan: TablePlan) -> sql.Composable:
    """True when the staging row t differs from the shadow row s in any copied non-key column."""
    parts = []
    if plan.exact_columns:
        parts.append(
            sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(
                _cols(plan.exact_columns, "t"), _cols(plan.exact_columns, "s")
            )
        )
    if plan.text_columns:
        as_text = lambda a: sql.SQL(", ").join(  # noqa: E731
            sql.SQL("{}::text").format(sql.Identifier(a, n)) for n in plan.text_columns
        )
        parts.append(sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(as_text("t"), as_text("s")))
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


def handle_children_outside(
    cur: psycopg.Cursor,
    plan: SyncPlan,
    shadows: dict[TableKey, sql.Identifier],
    orphans_policy: str,
    run_id: str,
    log: Log,
) -> list[OrphanBackup]:
    """Rows outside the run that point at rows the run removes: back up and delete, or fail."""
    removed: list[OrphanBackup] = []
    found: list[tuple[Reference, TablePlan, int, list[tuple]]] = []
    for ref in plan.children_outside:
        tp = plan.table(ref.fk.ref)
        if not set(ref.fk.ref_columns) <= set(tp.columns):
            continue
        counted = count_orphans(cur, ref.table.relation(), ref.fk, shadows[tp.table_key])
        if counted.rows:
            found.append((ref, tp, counted.rows, list(counted.sample)))
    blocked = [f for f in found if f[0].role in ("unselected", "exclude")]
    if blocked:
        ref, tp, count, sample = blocked[0]
        what = qualified(ref.table.key)
        if ref.role == "unselected":
            to_add = _asset_paths([f[0].table.key for f in blocked if f[0].role == "unselected"])
            fix = f"add {to_add} to the selection"
        else:
            fix = f"{what} is excluded, so its rows cannot change: preserve it instead, or sync it"
        raise SelectionError(
            f"syncing {tp.qualified} would remove rows that {count} row(s) of {what} still reference "
            f"({', '.join(ref.fk.columns)} = {_fmt_sample(sample)}); {fix}"
        )
    if found and orphans_policy == "fail":
        ref, tp, count, sample = found[0]
        raise OrphanError(
            f"{count} row(s) of preserved table {qualified(ref.table.key)} reference {tp.qualified} rows that "
            f"production no longer has ({', '.join(ref.fk.columns)} = {_fmt_sample(sample)}); 'orphans: fail' "
            "stops the run and nothing was changed; set 'orphans: delete' to back them up and remove them"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    for ref, tp, _, _ in found:
        backup = _ensure_backup_table(cur, ref.table.key, stamp)
        child = _ident(ref.table.key)
        cols = [c.name for c in ref.table.columns]
        cond = orphan_condition(ref.fk, shadows[tp.table_key])
        reason = f"{ref.fk.name}: referenced {tp.qualified} rows that production no longer has"
        cur.execute(
            sql.SQL(
                "INSERT INTO {backup} ({cols}, sync_run_id, sync_reason) SELECT {ccols}, %s, %s FROM ONLY {child} c"
                " WHERE {cond}"
            ).format(backup=_ident(backup), cols=_cols(cols), ccols=_cols(cols, "c"), child=child, cond=cond),
            (run_id, reason),
        )
        cur.execute(sql.SQL("DELETE FROM ONLY {} c WHERE {}").format(child, cond))
        removed.append(OrphanBackup(ref.table.key, tp.table_key, ref.fk.name, cur.rowcount, backup))
        log(
            f"backed up {cur.rowcount} row(s) of {qualified(ref.table.key)} to {qualified(backup)} and removed "
            f"them: they referenced {tp.qualified} rows that production no longer has"
        )
    return removed


def _upsert(cur: psycopg.Cursor, tp: TablePlan, shadow: sql.Identifier, changes: TableChanges) -> None:
    if not tp.key:
        return
    rel = tp.target.relation()
    if tp.update_columns:
        cur.execute(
            sql.SQL("UPDATE {rel} t SET {sets} FROM {shadow} s WHERE {match} AND ({changed})").format(
                rel=rel,
                sets=sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in tp.update_columns
                ),
                shadow=shadow,
                match=_match("t", tp.key, "s", tp.key),
                changed=_changed(tp),
            )
        )
        changes.updated = cur.rowcount
    cur.execute(
        sql.SQL(
            "INSERT INTO {table} ({cols}) {overriding} SELECT {scols} FROM {shadow} s"
            " WHERE NOT EXISTS (SELECT 1 FROM {rel} t WHERE {match})"
        ).format(
            table=_ident(tp.table_key),
            cols=_cols(tp.columns),
            overriding=sql.SQL("OVERRIDING SYSTEM VALUE" if tp.overriding_system_value else ""),
            scols=_cols(tp.columns, "s"),
            shadow=shadow,
            rel=rel,
            match=_match("t", tp.key, "s", tp.key),
        )
    )
    changes.inserted = cur.rowcount


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

    def upserts() -> None:
        for tp in plan.tables:
            _upsert(cur, tp, shadows[tp.table_key], changes[tp.table_key])

    def deletes() -> None:
        for tp in reversed(plan.tables):
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
    except psycopg.errors.UniqueViolation as exc:
        log(f"unique key moved between rows ({exc.diag.constraint_name}); applying deletes first instead")
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
                sql.SQL("SELECT {agg}({col})::bigint FROM {rel}").format(
                    agg=agg, col=sql.Identifier(seq.column), rel=tp.target.relation()
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
            # Deferrable constraints (cycles declared DEFERRABLE) are checked at COMMIT.
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
            check_parents_outside(cur, plan, shadows)
            result.orphans = handle_children_outside(cur, plan, shadows, orphans_policy, run_id, log)
        result.changes = apply_rows(conn, plan, shadows, log)
        with conn.cursor() as cur:
            # setval is not transactional: moving sequences last keeps the window before COMMIT short.
            result.sequences = advance_sequences(cur, plan)
    return result
