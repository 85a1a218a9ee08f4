"""What the run's roles may do, checked before any row moves.

A missing privilege found halfway through the swap would roll back minutes of work and name only the
first table at fault; this lists every grant the run lacks, on both sides, at once. It also warns when
production's role could write: the sync's sessions are read-only whatever the role, but a role that
cannot write is the safer thing to hand a tool.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from sync_assets.engine.catalog import qualified
from sync_assets.engine.errors import SyncError
from sync_assets.engine.plan import SyncPlan
from sync_assets.engine.table_plan import TablePlan

FIX = "grant them, or use a role that has them (README.md, 'Privileges')"


def _missing_on_table(conn: psycopg.Connection, table: str, wanted: list[str]) -> list[str]:
    return [p for p in wanted if not conn.execute("SELECT has_table_privilege(%s, %s)", (table, p)).fetchone()[0]]


def _regclass(schema: str, name: str) -> str:
    """The table's name as a regclass literal: quoted, so names with any characters resolve."""
    return sql.Identifier(schema, name).as_string(None)


def staging_needs(tp: TablePlan) -> list[str]:
    wanted = ["SELECT", "INSERT"]
    if tp.key and (tp.update_columns or tp.key_text_columns):
        wanted.append("UPDATE")
    if tp.deletes or not tp.key:
        wanted.append("DELETE")
    return wanted


def check_staging_writable(conn: psycopg.Connection) -> None:
    """Refuse a staging session that cannot write at all, before the run creates anything."""
    if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
        raise SyncError("staging is a read-only standby (in recovery); point DATABASE_URL_STAGING at its primary")
    if conn.execute("SHOW transaction_read_only").fetchone()[0] == "on":
        role = conn.execute("SELECT current_user").fetchone()[0]
        raise SyncError(
            f"staging sessions of role '{role}' are read-only (default_transaction_read_only is on); "
            "the sync must write to staging: use a role and database that allow writes"
        )


def check_staging(conn: psycopg.Connection, plan: SyncPlan, orphans_policy: str) -> None:
    """Raise, listing every missing grant, unless staging's role may write everything the run writes."""
    role = conn.execute("SELECT current_user").fetchone()[0]
    missing: list[str] = []
    if not conn.execute("SELECT has_database_privilege(current_database(), 'TEMPORARY')").fetchone()[0]:
        missing.append("database: TEMPORARY")  # the swap's row lists are temporary tables
    for tp in plan.tables:
        table = _regclass(tp.target.schema, tp.target.name)
        lacking = _missing_on_table(conn, table, staging_needs(tp))
        if lacking:
            missing.append(f"{tp.qualified}: {', '.join(lacking)}")
        for seq in tp.sequences:
            name = _regclass(seq.schema, seq.name)
            # setval() needs UPDATE; reading where the sequence stands needs SELECT.
            lacking = [
                p
                for p in ("SELECT", "UPDATE")
                if not conn.execute("SELECT has_sequence_privilege(%s, %s)", (name, p)).fetchone()[0]
            ]
            if lacking:
                missing.append(f"sequence {seq.schema}.{seq.name}: {', '.join(lacking)}")
        for seq in tp.mimicked:
            # Inserted rows draw their staging-only column's number: nextval needs USAGE (or UPDATE).
            name = _regclass(seq.schema, seq.name)
            drawn = conn.execute(
                "SELECT has_sequence_privilege(%s, 'USAGE') OR has_sequence_privilege(%s, 'UPDATE')", (name, name)
            ).fetchone()[0]
            if not drawn:
                missing.append(f"sequence {seq.schema}.{seq.name}: USAGE")
    if orphans_policy == "delete":
        seen: set[tuple[str, str]] = set()
        for ref in plan.children_outside:
            if ref.role not in ("preserve", "staging_only") or ref.table.key in seen:
                continue
            seen.add(ref.table.key)
            # Rows about to be backed up are locked FOR UPDATE first.
            lacking = _missing_on_table(conn, _regclass(*ref.table.key), ["SELECT", "UPDATE", "DELETE"])
            if lacking:
                missing.append(f"{qualified(ref.table.key)} (rows losing their parent): {', '.join(lacking)}")
            schema = ref.table.key[0]
            if not conn.execute("SELECT has_schema_privilege(%s, 'CREATE')", (schema,)).fetchone()[0]:
                backup = (schema, f"{ref.table.key[1]}_backup")
                exists = conn.execute("SELECT to_regclass(%s)", (_regclass(*backup),)).fetchone()[0]
                if exists is None:
                    missing.append(f"schema {schema} (for {qualified(backup)}): CREATE")
                elif _missing_on_table(conn, _regclass(*backup), ["INSERT"]):
                    missing.append(f"{qualified(backup)}: INSERT")
    if missing:
        raise SyncError(f"the staging role '{role}' lacks privileges the sync needs; {FIX}: " + "; ".join(missing))


def check_production(conn: psycopg.Connection, plan: SyncPlan) -> list[str]:
    """Raise unless production's role may read every copied column; return warnings (the role could write)."""
    role, superuser = conn.execute(
        "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    missing: list[str] = []
    writable: list[str] = []
    for tp in plan.tables:
        table = _regclass(tp.source.schema, tp.source.name)
        if _missing_on_table(conn, table, ["SELECT"]):
            # Column grants are enough for the columns the sync copies.
            unreadable = [
                c
                for c in tp.columns
                if not conn.execute("SELECT has_column_privilege(%s, %s, 'SELECT')", (table, c)).fetchone()[0]
            ]
            if unreadable:
                some = len(unreadable) < len(tp.columns)
                missing.append(f"{tp.qualified}: SELECT" + (f" ({', '.join(unreadable)})" if some else ""))
        if len(_missing_on_table(conn, table, ["INSERT", "UPDATE", "DELETE", "TRUNCATE"])) < 4:
            writable.append(tp.qualified)
    if missing:
        raise SyncError(f"the production role '{role}' lacks privileges the sync needs; {FIX}: " + "; ".join(missing))
    if not superuser and not writable:
        return []
    could = "is a superuser" if superuser else "could write to " + ", ".join(writable[:3])
    if not superuser and len(writable) > 3:
        could += f" and {len(writable) - 3} more table(s)"
    return [
        f"the production role '{role}' {could}; the sync's sessions are read-only, but a role that cannot "
        "write is recommended (README.md, 'Privileges')"
    ]
