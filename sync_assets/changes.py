"""A cheap signal that production tables changed: pg_stat_user_tables' write counters."""

from __future__ import annotations

import psycopg


def change_counters(conn: psycopg.Connection, schemas: tuple[str, ...]) -> dict[str, list[int]]:
    """schema.table -> [inserts, updates, deletes, live rows]; any change in them means new writes.

    The live-row count catches TRUNCATE, which the tuple counters miss. Readable without superuser.
    """
    rows = conn.execute(
        "SELECT schemaname, relname, n_tup_ins, n_tup_upd, n_tup_del, n_live_tup"
        " FROM pg_stat_user_tables WHERE schemaname = ANY(%s)",
        (list(schemas),),
    ).fetchall()
    return {f"{s}.{t}": [int(i), int(u), int(d), int(live)] for s, t, i, u, d, live in rows}


def changed_tables(previous: dict[str, list[int]], current: dict[str, list[int]]) -> list[str]:
    """Tables whose counters moved, appeared, or were reset (statistics reset or server restart)."""
    return sorted(name for name, counters in current.items() if previous.get(name) != counters)
