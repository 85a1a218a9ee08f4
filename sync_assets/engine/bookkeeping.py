"""The tool's own schema in staging (sync_assets): created once, locked per run, cleaned of leftovers.

It holds the shadows of a run under way and the incremental state (watermarks.py); one run at a time
holds the staging database, by a session-level advisory lock that the server releases if the process dies.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from sync_assets.engine.errors import BusyError, SyncError
from sync_assets.engine.shadows import BOOKKEEPING_SCHEMA, SHADOW_PREFIX, ShadowName

ADVISORY_LOCK_KEY = 0x5359_4E43_4153_5354  # "SYNCASST"


def table_exists(conn: psycopg.Connection | psycopg.Cursor, table: sql.Identifier) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),)).fetchone()
    return bool(row and row[0])


def ensure_schema(conn: psycopg.Connection) -> bool:
    """Create the tool's schema if needed; True when this call created it."""
    found = conn.execute(
        "SELECT pg_get_userbyid(nspowner), has_schema_privilege(oid, 'CREATE') AND has_schema_privilege(oid, 'USAGE')"
        " FROM pg_namespace WHERE nspname = %s",
        (BOOKKEEPING_SCHEMA,),
    ).fetchone()
    if found is not None:
        owner, usable = found
        if not usable:
            user = conn.info.user
            raise SyncError(
                f"the bookkeeping schema {BOOKKEEPING_SCHEMA} in staging belongs to role '{owner}', and the staging "
                f"role '{user}' may not use it (a sync ran as '{owner}' before): run once ALTER SCHEMA "
                f"{BOOKKEEPING_SCHEMA} OWNER TO {user}, or GRANT USAGE, CREATE ON SCHEMA {BOOKKEEPING_SCHEMA} TO {user}"
            )
        return False
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(BOOKKEEPING_SCHEMA)))
        return True
    except psycopg.errors.InsufficientPrivilege:
        user = conn.info.user
        raise SyncError(
            f"the staging user '{user}' may not create the bookkeeping schema {BOOKKEEPING_SCHEMA}: grant it "
            f"CREATE on the database, or run once: CREATE SCHEMA {BOOKKEEPING_SCHEMA} AUTHORIZATION {user}"
        ) from None


def drop_schema(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(BOOKKEEPING_SCHEMA)))


def drop_shadows(conn: psycopg.Connection, only: list[ShadowName] | None = None) -> int:
    """Drop this run's shadows, or (only=None) every leftover of an interrupted run."""
    if only is None:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r' AND starts_with(c.relname, %s)",
            (BOOKKEEPING_SCHEMA, SHADOW_PREFIX),
        ).fetchall()
        only = [ShadowName(r[0]) for r in rows]
    if only:
        # One statement: each DROP scans shared_buffers for the dropped tables' pages once.
        names = [name for shadow in only for name in shadow.companions]
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(names)))
    return len(only)


def acquire_run_lock(conn: psycopg.Connection) -> None:
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
    if not got or not got[0]:
        raise BusyError("another sync is running against this staging database; try again when it has finished")
