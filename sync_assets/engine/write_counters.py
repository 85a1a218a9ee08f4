"""A cheap signal that production tables changed: pg_stat_user_tables' write counters."""

from __future__ import annotations

import psycopg

# Partitions report their writes under their own names: add them up under the partitioned table.
# TRUNCATE moves no tuple counter (and the live-row estimate may already be 0 after a statistics
# reset), but it always gives the table a new file: the filenodes catch it.
_COUNTERS_SQL = """
SELECT n.nspname, c.relname,
       sum(s.n_tup_ins)::bigint, sum(s.n_tup_upd)::bigint, sum(s.n_tup_del)::bigint, sum(s.n_live_tup)::bigint,
       string_agg(coalesce(pg_relation_filenode(s.relid)::text, '-'), ',' ORDER BY s.relid)
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = coalesce(pg_partition_root(s.relid), s.relid)
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%s)
GROUP BY n.nspname, c.relname
"""


def change_counters(conn: psycopg.Connection, schemas: tuple[str, ...]) -> dict[str, list[int | str]]:
    """schema.table -> [inserts, updates, deletes, live rows, files]; any change means new writes.

    Readable without superuser. Statistics are flushed when a writing session goes idle, so a write
    shows up here within about a second of its commit.
    """
    rows = conn.execute(_COUNTERS_SQL, (list(schemas),)).fetchall()
    return {f"{s}.{t}": [int(i), int(u), int(d), int(live), files] for s, t, i, u, d, live, files in rows}


def changed_tables(previous: dict[str, list[int | str]], current: dict[str, list[int | str]]) -> list[str]:
    """Tables whose counters moved, appeared, or were reset (statistics reset or server restart)."""
    return sorted(name for name, counters in current.items() if previous.get(name) != counters)
