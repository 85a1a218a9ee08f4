"""Opening production (read-only) and staging sessions, with errors that name the side and hide passwords."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sync_assets.engine.errors import ConfigError, ConnectError, SyncError, redact

PRODUCTION_ENV = "DATABASE_URL_PRODUCTION"
STAGING_ENV = "DATABASE_URL_STAGING"
APPLICATION_NAME = "sync_assets"
DEFAULT_CONNECT_TIMEOUT = 10


class Side(StrEnum):
    """Which database: the one read (production) or the one written (staging)."""

    PRODUCTION = "production"
    STAGING = "staging"

    @property
    def env_var(self) -> str:
        return PRODUCTION_ENV if self is Side.PRODUCTION else STAGING_ENV


@dataclass(frozen=True)
class SessionLimits:
    """Timeouts of every session the sync opens (config: connect_timeout, statement_timeout,
    idle_in_transaction_timeout; lock_timeout applies to the swap alone)."""

    connect_seconds: int = DEFAULT_CONNECT_TIMEOUT
    statement_ms: int = 3_600_000
    # A sync process that hangs mid-transaction holds row locks on staging and an old snapshot on
    # production (which keeps vacuum from removing dead rows there): the server ends such sessions.
    idle_in_transaction_ms: int = 300_000


@dataclass(frozen=True)
class Endpoint:
    """One side of the sync: where it is and how to talk about it without leaking the password."""

    side: Side
    env_var: str
    url: str = field(repr=False)  # holds the password
    limits: SessionLimits = SessionLimits()
    # Read from the URL: where the database is, and as whom the sync connects.
    host: str = field(init=False)
    port: str = field(init=False)
    dbname: str = field(init=False)
    user: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "side", Side(self.side))
        if not self.url or not self.url.strip():
            raise ConfigError(f"{self.env_var} is empty: set it to the {self.side} database's URL")
        try:
            params = conninfo_to_dict(self.url)
        except psycopg.ProgrammingError:
            raise ConfigError(
                f"{self.env_var} is not a valid PostgreSQL URL for the {self.side} database "
                "(expected postgresql://user:password@host:port/dbname)"
            ) from None
        port = str(params.get("port") or "")
        if port and not all(p.strip().isdigit() for p in port.split(",")):
            raise ConfigError(f"{self.env_var} has an invalid port for the {self.side} database: expected a number")
        object.__setattr__(self, "_params", params)
        found = {
            "host": params.get("host") or params.get("hostaddr") or "localhost",
            "port": params.get("port") or "5432",
            "dbname": params.get("dbname") or params.get("user") or "",
            "user": params.get("user") or "",
        }
        for name, value in found.items():
            object.__setattr__(self, name, str(value))

    @property
    def params(self) -> dict[str, str]:
        return dict(self._params)  # type: ignore[attr-defined]

    @property
    def secrets(self) -> list[str]:
        """The password in every spelling it may take in a message: as given, URL-decoded, and the URL."""
        password = str(self.params.get("password") or "")
        found = {self.url}
        if password:
            found |= {password, unquote(password)}
        match = re.search(r"://[^:/@]*:([^@]*)@", self.url)
        if match and match.group(1):
            found |= {match.group(1), unquote(match.group(1))}
        return sorted(found, key=len, reverse=True)

    def describe(self) -> str:
        """host:port/dbname, safe for logs and metadata."""
        return f"{self.host}:{self.port}/{self.dbname}"

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def connect(self, *, autocommit: bool = True, timeout: int | None = None) -> psycopg.Connection:
        """Open a session; production sessions are read-only before the first statement runs.

        timeout caps connecting (seconds) unless the URL sets connect_timeout itself.
        """
        extra: dict[str, str] = {"application_name": APPLICATION_NAME}
        if "connect_timeout" not in self.params:
            extra["connect_timeout"] = str(timeout or self.limits.connect_seconds)
        try:
            conn = psycopg.connect(make_conninfo(self.url, **extra), autocommit=autocommit)
        except psycopg.Error as exc:
            raise ConnectError(self._explain(exc)) from None
        try:
            # Set in the session, not the startup packet: poolers reject unknown startup options.
            conn.execute(sql.SQL("SET statement_timeout = {}").format(self.limits.statement_ms))
            conn.execute(
                sql.SQL("SET idle_in_transaction_session_timeout = {}").format(self.limits.idle_in_transaction_ms)
            )
            if self.side == Side.PRODUCTION:
                conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                conn.execute("SET default_transaction_read_only = on")
                if not autocommit:
                    conn.commit()  # a SET rolled back with its transaction would be undone
                # Verified, not assumed: nothing this session runs can write to production.
                read_only = conn.execute("SHOW transaction_read_only").fetchone()
                if not autocommit:
                    conn.rollback()
                if read_only is None or read_only[0] != "on":
                    raise SyncError(f"the production session at {self.describe()} could not be made read-only")
        except SyncError:
            conn.close()
            raise
        except psycopg.Error as exc:
            conn.close()
            raise ConnectError(self._explain(exc)) from None
        return conn

    def _explain(self, exc: psycopg.Error) -> str:
        text = self.redact(str(exc))
        where = f"the {self.side} database at {self.describe()}"
        fix = f"check {self.env_var}"
        if "password authentication failed" in text or "no password supplied" in text:
            return f"{where} rejected the password for user '{self.user}'; fix the credentials in {self.env_var}"
        if re.search(r'database "[^"]*" does not exist', text):
            return f"{where} does not exist on {self.host}:{self.port}; fix the database name in {self.env_var}"
        if re.search(r'role "[^"]*" does not exist', text):
            return f"{where} has no user '{self.user}'; fix the user name in {self.env_var}"
        if "Connection refused" in text:
            return f"{where} is unreachable (connection refused); {fix}'s host and port and that the server is running"
        if "resolve host" in text or "translate host name" in text:
            return f"{where} is unreachable (unknown host '{self.host}'); {fix}'s host name"
        if "timeout expired" in text:
            return f"{where} is unreachable (connection timed out); {fix}'s host, port and network access"
        first = text.split("\n")[0].removeprefix("connection failed: ")
        return f"cannot connect to {where}: {first}; {fix}"


def server_identity(conn: psycopg.Connection) -> tuple[str, ...]:
    """What tells two databases apart, even behind different host names or ports."""
    row = conn.execute(
        "SELECT current_database(), d.oid::text, pg_postmaster_start_time()::text"
        " FROM pg_database d WHERE d.datname = current_database()"
    ).fetchone()
    assert row is not None
    try:
        sysid = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        system = sysid[0] if sysid else ""
    except psycopg.errors.InsufficientPrivilege:
        # Some managed services revoke it; the postmaster start time still tells servers apart.
        if not conn.autocommit:
            conn.rollback()
        system = ""
    return (system, *row)


def refuse_same_database(source: Endpoint, target: Endpoint) -> None:
    """Refuse on the URLs alone when they name the same database (before connecting)."""

    def norm_host(h: str) -> str:
        return "localhost" if h in ("127.0.0.1", "::1", "localhost") else h.lower()

    if (norm_host(source.host), source.port, source.dbname) == (norm_host(target.host), target.port, target.dbname):
        raise SyncError(same_database_message(source, target))


def same_database_message(source: Endpoint, target: Endpoint) -> str:
    return (
        f"{PRODUCTION_ENV} and {STAGING_ENV} point at the same database ({source.describe()} and "
        f"{target.describe()}); refusing to sync a database onto itself"
    )


def connect_both(source: Endpoint, target: Endpoint) -> tuple[psycopg.Connection, psycopg.Connection]:
    """Open production (read-only) and staging; refuse when both are the same database."""
    refuse_same_database(source, target)
    prod = source.connect()
    try:
        staging = target.connect()
    except BaseException:
        prod.close()
        raise
    if server_identity(prod) == server_identity(staging):
        prod.close()
        staging.close()
        raise SyncError(same_database_message(source, target))
    return prod, staging
