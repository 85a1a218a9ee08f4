"""Fingerprints of row sets: a count and sums of 64-bit hashes, taken in one scan and compared instead
of moving or joining the rows themselves.

Hashing follows each type's `=` (numeric 1.0 and 1.00 hash alike), as the joins they replace would. A
false "equal" needs two different sets with the same count and the same sums: a hash collision. A false
"different" (say a type whose hash differs between two servers) only costs the slower exact way. Servers
before PostgreSQL 14 lack hash_record_extended and always take the exact way.

Deletes of a table read partly (mode incremental) are the keys staging holds and production no longer
does. Staging holds the watermark's state; with the changed rows upserted it holds its keys plus the
changed rows' keys. Every production row not changed since the watermark was already in staging, so
production's keys are a subset of that set, and the two are equal exactly when nothing was deleted.
Only when their fingerprints differ are all of production's keys copied to find which rows went.
"""

from __future__ import annotations

import psycopg
from psycopg import errors, sql

from sync_assets.engine.sql import cols, match, not_null
from sync_assets.engine.table_plan import TablePlan


def _print(alias: str, key: tuple[str, ...]) -> sql.Composable:
    """count and hash sum of the keys under `alias`."""
    return sql.SQL("count(*), coalesce(sum(hash_record_extended(ROW({}), 0)), 0)").format(cols(key, alias))


def key_sum(key: tuple[str, ...], alias: str = "t") -> sql.Composable:
    """The hash sum of production_keys, as an aggregate to take in another scan of the table (alias)."""
    return sql.SQL("coalesce(sum(hash_record_extended(ROW({}), 0)), 0)").format(cols(key, alias))


def production_keys(conn: psycopg.Connection, plan: TablePlan) -> tuple[int, int] | None:
    """(count, hash sum) of production's keys in the open snapshot; None where the server cannot hash them."""
    if conn.info.server_version < 140000:
        return None
    query = sql.SQL("SELECT {} FROM {} k WHERE {}").format(
        _print("k", plan.key), plan.source.relation(), not_null("k", plan.key)
    )
    found = _fetch(conn, query)
    return None if found is None else (found[0], found[1])


def staging_keys_after(conn: psycopg.Connection, plan: TablePlan, shadow: sql.Identifier) -> tuple[int, int] | None:
    """(count, hash sum) of the keys staging will hold once the shadow's changed rows are upserted."""
    if conn.info.server_version < 140000:
        return None
    rel = plan.target.relation()
    query = sql.SQL(
        "SELECT held.n + new.n, held.h + new.h"
        " FROM (SELECT {tprint} FROM {rel} t WHERE {tnn}) held (n, h),"
        " (SELECT {sprint} FROM {shadow} s WHERE {snn} AND NOT EXISTS (SELECT 1 FROM {rel} t WHERE {match})) new (n, h)"
    ).format(
        tprint=_print("t", plan.key),
        rel=rel,
        tnn=not_null("t", plan.key),
        sprint=_print("s", plan.key),
        shadow=shadow,
        snn=not_null("s", plan.key),
        match=match("s", plan.key, "t", plan.key),
    )
    # The changed rows are few against the table: probe its key index for each rather than hash it whole,
    # which the planner picks on staging's stale statistics. Without such an index, the planner decides.
    probe = ("SET LOCAL enable_hashjoin = off", "SET LOCAL enable_mergejoin = off")
    found = _fetch(conn, query, probe if plan.key_indexed else ())
    return None if found is None else (found[0], found[1])


def same_rows(
    conn: psycopg.Connection, table: sql.Composable, shadow: sql.Identifier, row: sql.Composable
) -> bool | None:
    """Whether the table and the shadow hold the same rows, duplicates counted (None: cannot hash them).

    A table without a key is replaced whole when they differ: two hash sums (two seeds) guard it."""
    if conn.info.server_version < 140000:
        return None
    prints = sql.SQL(", ").join(
        [sql.SQL("count(*)")]
        + [sql.SQL("coalesce(sum(hash_record_extended(ROW({}), {})), 0)").format(row, seed) for seed in (0, 1)]
    )
    query = sql.SQL("SELECT a.*, b.* FROM (SELECT {p} FROM {table}) a, (SELECT {p} FROM {shadow}) b").format(
        p=prints, table=table, shadow=shadow
    )
    found = _fetch(conn, query)
    return None if found is None else found[:3] == found[3:]


def _fetch(conn: psycopg.Connection, query: sql.Composable, settings: tuple[str, ...] = ()) -> tuple[int, ...] | None:
    """The query's one row; None when a type in it has no extended hash function."""
    try:
        # A savepoint (or its own transaction): a failure here must not end the snapshot it runs in.
        with conn.transaction():
            for setting in settings:
                conn.execute(setting)
            row = conn.execute(query).fetchone()
    except errors.UndefinedFunction:
        return None
    assert row is not None
    return tuple(int(v) for v in row)
