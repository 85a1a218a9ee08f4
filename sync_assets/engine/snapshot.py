"""Production's one snapshot, and the session settings both ends of every read and comparison pin."""

from __future__ import annotations

import psycopg
import psycopg.sql

# Text COPY and text comparisons depend on these; pinned on both ends so neither side's defaults change a value.
SESSION_SETTINGS = (
    # Both ends speak UTF-8, whatever the databases' own encodings: the server converts on each side.
    "SET client_encoding = 'UTF8'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
    "SET TimeZone = 'UTC'",
    # Row-level security would silently filter what COPY reads; off, PostgreSQL refuses instead.
    "SET row_security = off",
)


def begin_snapshot(conn: psycopg.Connection) -> None:
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")


def export_snapshot(conn: psycopg.Connection) -> str | None:
    """Export the open snapshot for more readers; None where the server cannot (e.g. some standbys)."""
    try:
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    except (psycopg.errors.FeatureNotSupported, psycopg.errors.ObjectNotInPrerequisiteState):
        # The failed statement aborted the transaction: start a fresh snapshot for the single reader.
        conn.execute("ROLLBACK")
        begin_snapshot(conn)
        return None
    return str(row[0]) if row else None


def prepare_session(conn: psycopg.Connection) -> None:
    for stmt in SESSION_SETTINGS:
        conn.execute(stmt)


def join_snapshot(conn: psycopg.Connection, snapshot_id: str) -> None:
    """Open a transaction on another session that sees exactly the exported snapshot."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(psycopg.sql.Literal(snapshot_id)))
    prepare_session(conn)
