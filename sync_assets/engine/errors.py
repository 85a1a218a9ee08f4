"""Errors of the sync engine, split into the ones worth retrying and the ones a person must fix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors


class SyncError(Exception):
    """A permanent problem: retrying cannot help, the message says what to fix."""


class ConfigError(SyncError):
    """The YAML config or an environment variable is wrong."""


class ConnectError(SyncError):
    """A database cannot be reached or refuses the credentials."""


class DriftError(SyncError):
    """Production and staging disagree on a table's shape."""


class SelectionError(SyncError):
    """The selected tables cannot be synced on their own.

    `add`: the tables the selection must take in. The message names them as tables; the Dagster layer
    renders them as the asset paths a user selects (translator.asset_paths)."""

    def __init__(self, found: str, add: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()) -> None:
        self.found = found
        self.add = tuple(sorted(set(add)))
        tables = ", ".join(f"{schema}.{name}" for schema, name in self.add)
        super().__init__(f"{found}; add {tables} to the selection" if self.add else found)


class OrphanError(SyncError):
    """Preserved rows would lose their parent and the config says to fail."""


class TableFailure(SyncError):
    """The database refused a statement about one table; `cause` is its error."""

    def __init__(self, message: str, cause: psycopg.Error | None) -> None:
        super().__init__(message)
        self.cause = cause


class TransientError(Exception):
    """A fault that a later attempt may not meet (lost connection, lock timeout, deadlock...)."""


class BusyError(TransientError):
    """Another sync holds the staging database."""


# SQLSTATEs of faults that go away by themselves.
_TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available (lock_timeout)
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
    "53300",  # too_many_connections
    "08000",
    "08003",
    "08006",
}


def is_transient(exc: BaseException) -> bool:
    """True for faults a retry may get past: lost connections, lock timeouts, deadlocks, serialization."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, SyncError):
        return False
    if isinstance(exc, psycopg.Error):
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate in _TRANSIENT_SQLSTATES:
            return True
        # A dropped socket surfaces as OperationalError without a SQLSTATE.
        if sqlstate is None and isinstance(exc, psycopg.OperationalError | pg_errors.InterfaceError):
            return True
    return False


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret (passwords, URLs holding them) that text contains as a whole.

    A secret inside a longer word or number is left alone: a password "p" must not turn "production"
    into "***roduction", and a word that merely contains a password does not reveal it. Where a
    password does appear (a URL echoed back, a quoted value) it is delimited and replaced."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


def database_message(exc: psycopg.Error) -> str:
    """PostgreSQL's own words for an error: its message and detail, never the statement it echoes after
    them (LINE n: ..., CONTEXT: ...), which may carry what must not be shown (a masked table's statements
    hold keys derived from the masking key)."""
    diag = exc.diag
    if not diag.message_primary:  # the client's own error (a lost connection): no statement in it
        return str(exc) or type(exc).__name__
    primary = diag.message_primary
    return f"{primary} ({diag.message_detail})" if diag.message_detail else primary


@contextmanager
def about_table(action: str, table: str) -> Iterator[None]:
    """Name the table in a permanent database error (whose own text may only name a shadow table)."""
    try:
        yield
    except psycopg.Error as exc:
        if is_transient(exc):
            raise
        primary = exc.diag.message_primary or ""
        state = f" [SQLSTATE {exc.sqlstate}]" if exc.sqlstate else ""
        hint = ""
        if exc.sqlstate == "42501":
            hint = "; grant the database role the missing privilege (README.md, 'Privileges')"
        elif exc.sqlstate == "57014" and "statement timeout" in primary:
            hint = "; raise 'statement_timeout' in the config if such a statement may take longer"
        raise TableFailure(
            f"{action} {table} failed, staging left unchanged: {database_message(exc)}{state}{hint}", exc
        ) from exc
