"""Incremental mode's memory: per table, the watermark its next run reads from; per production database,
which transactions were open when the last run took its snapshot.

Why the watermark is not simply the newest change time the run saw: a transaction that began before
the snapshot, set `updated_at = now()` (its *start* time) and committed after the snapshot is invisible
to the run, yet its rows carry a time older than rows the run did see. The next run must still read
them. So just before taking its snapshot, a run lists production's open transactions (pg_locks shows
every one of them to any role, even those that have not written anything yet), and the watermark is the
earliest of: the moment of that listing, and the start of every transaction open then. A row the
snapshot misses was written by a transaction open at the listing or begun after it, so its change
time, when production's clock sets it (now(), clock_timestamp(), a trigger), is at least the watermark.
The configured overlap is read on top, for clients that set the column from their own clocks.

PostgreSQL shows a transaction's start (pg_stat_activity.xact_start) only to its own role and to roles
with pg_read_all_stats. For the others, the run uses a bound it can prove: a transaction not open at
the previous run's listing began after that listing; one that was open then keeps the bound recorded
then. When no bound is known (the first run sees a stranger's transaction), the next run reads the
table whole, and the log says why.

Both records (the watermarks, watermarks.py, and the listing, here) live in the bookkeeping schema and
are written inside the swap transaction, so a run that fails or is rolled back (a dry run) leaves them
as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from sync_assets.engine.bookkeeping import table_exists
from sync_assets.engine.connections import server_identity
from sync_assets.engine.shadows import BOOKKEEPING_SCHEMA

OBSERVATION_TABLE = sql.Identifier(BOOKKEEPING_SCHEMA, "open_transactions")


@dataclass(frozen=True)
class OpenTransaction:
    ident: str  # "vxid 4/2 pid 3744", or "prepared <gid>"
    started: datetime | None  # its start, or the earliest it can have started; None: unknown
    seen_start: bool = False  # started is the transaction's own xact_start


@dataclass(frozen=True)
class Observation:
    """Production's open transactions, listed just before a run's snapshot."""

    production: str
    at: datetime  # production's clock at the listing
    open: tuple[OpenTransaction, ...]

    @property
    def watermark(self) -> datetime | None:
        """Every row the snapshot misses changed at or after this; None when that cannot be proven."""
        if any(t.started is None for t in self.open):
            return None
        return min([self.at, *(t.started for t in self.open if t.started is not None)])

    def holding_back(self) -> str | None:
        """Which open transaction keeps the watermark before the listing, in words (for the log)."""
        unknown = [t for t in self.open if t.started is None]
        if unknown:
            return (
                f"{len(unknown)} production transaction(s) of unknown age were open ({unknown[0].ident}); grant "
                "the production role pg_read_all_stats to see when they began"
            )
        oldest = min(self.open, key=lambda t: t.started or self.at, default=None)
        if oldest is None or oldest.started is None or oldest.started >= self.at:
            return None
        since = "open since" if oldest.seen_start else "possibly open since"
        return f"production transaction {oldest.ident} was {since} {oldest.started:%Y-%m-%d %H:%M:%S%z}"


def production_identity(conn: psycopg.Connection) -> str:
    """Names the production database across restarts (unlike the check that refuses same-DB runs)."""
    system, dbname, oid, _started = server_identity(conn)
    return f"{system}/{dbname}/{oid}"


# Every open transaction of this database: each holds the lock on its own virtual transaction id from
# its first statement on. Prepared transactions have no session; they are listed after the sessions,
# so one that prepares meanwhile is seen in one list or the other. Autovacuum workers are left out: they
# change no row's values, and one whose start the role may not see would hold every watermark back (a
# fresh database's catalogs get vacuumed within a minute of its creation). They are told by their user:
# none (backend_type is hidden from a role without pg_read_all_stats; the user is not), where every
# session that can write rows, parallel and replication workers included, has one.
_OPEN_TRANSACTIONS = """
SELECT 'vxid ' || l.virtualxid || ' pid ' || l.pid, a.xact_start, statement_timestamp()
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'virtualxid' AND l.virtualxid = l.virtualtransaction AND l.granted
   AND a.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND a.usesysid IS NOT NULL
   AND l.pid <> pg_backend_pid()
UNION ALL
SELECT 'prepared ' || p.gid || ' xid ' || p.transaction, NULL, statement_timestamp()
  FROM pg_prepared_xacts p WHERE p.database = current_database()
UNION ALL
SELECT NULL, NULL, statement_timestamp()
"""


def observe(conn: psycopg.Connection, production: str, previous: Observation | None) -> Observation | None:
    """List production's open transactions now (call it before taking the snapshot), with start bounds.

    None when the role may not read the lists: incremental tables are then read whole."""
    try:
        standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if standby and standby[0]:
            return None  # a standby's pg_locks does not show the primary's transactions
        rows = conn.execute(_OPEN_TRANSACTIONS).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return None
    at = rows[0][2]
    if previous is not None and previous.production != production:
        previous = None
    carried = {t.ident: t.started for t in previous.open} if previous is not None else {}
    found = []
    for ident, xact_start, _ in rows:
        if ident is None:
            continue
        if xact_start is not None:
            found.append(OpenTransaction(ident, xact_start, seen_start=True))
        elif ident in carried:
            found.append(OpenTransaction(ident, carried[ident]))
        elif ident.startswith("prepared "):
            # It may have been listed by its session last time, under another name: bound it by everything then.
            found.append(OpenTransaction(ident, previous.watermark if previous is not None else None))
        else:
            # Not open at the previous listing, so it began after it; no previous listing: unknown.
            found.append(OpenTransaction(ident, previous.at if previous is not None else None))
    return Observation(production, at, tuple(found))


def load_observation(conn: psycopg.Connection, production: str) -> Observation | None:
    if not table_exists(conn, OBSERVATION_TABLE):
        return None
    row = conn.execute(
        sql.SQL("SELECT observed_at, open FROM {} WHERE production = %s").format(OBSERVATION_TABLE), (production,)
    ).fetchone()
    if row is None:
        return None
    listed = tuple(
        OpenTransaction(t["ident"], datetime.fromisoformat(t["started"]) if t["started"] else None) for t in row[1]
    )
    return Observation(production, row[0], listed)


_CREATE_OBSERVATIONS = """
CREATE TABLE IF NOT EXISTS {} (
    production text PRIMARY KEY,
    observed_at timestamptz NOT NULL,
    open jsonb NOT NULL,
    run_id text NOT NULL
)
"""


def save_observation(cur: psycopg.Cursor, observation: Observation, run_id: str) -> None:
    """Inside the swap transaction: the listing the run's watermarks rest on, for the next run's bounds."""
    cur.execute(sql.SQL(_CREATE_OBSERVATIONS).format(OBSERVATION_TABLE))
    listed = [{"ident": t.ident, "started": t.started.isoformat() if t.started else None} for t in observation.open]
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (production, observed_at, open, run_id) VALUES (%s, %s, %s, %s) ON CONFLICT (production)"
            " DO UPDATE SET observed_at = excluded.observed_at, open = excluded.open, run_id = excluded.run_id"
        ).format(OBSERVATION_TABLE),
        (observation.production, observation.at, json.dumps(listed), run_id),
    )
