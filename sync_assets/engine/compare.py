"""Keyed row hashes: a resync reads from production what changed, not every row.

Where staging already holds rows of a mirror table, both databases hash every row (content.py's row
hash: equal rows give equal hashes across the two databases) and fold the hashes into buckets chosen by
a hash of the row's key: per bucket its row count and the xor of its rows' hashes. Production's buckets
(a few bytes per eight rows) are copied into a scratch table in staging and compared there with
staging's; only the rows of the buckets that differ are then read from production, under the same
snapshot, into the table's shadow. The swap's diff (diff.py) looks only at staging's rows of those
buckets: rows the shadow lacks there were deleted in production.

Why buckets of about eight rows: changes spread across a table make every large range differ (a
range-checksum bisection then reads nearly everything), while a bucket per row would send as many hashes
as rows. At 1% of rows changed about 8% of the buckets differ, so about 8% of the rows are read.

Hashes only choose what is read: the rows read are compared exactly (diff.py). A change hidden by a
collision (two 64-bit xors equal while the rows differ) would leave a bucket unread; the content check
(taken in the swap transaction, over the whole table, by another pass) then disagrees with the snapshot
and the run starts again copying the table whole (run.py), as it does when staging's rows changed
between the comparison and the swap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg
from psycopg import errors, sql

from sync_assets.engine.catalog import TableKey, qualified
from sync_assets.engine.config import Mode, Resync, SyncConfig
from sync_assets.engine.connections import Side
from sync_assets.engine.content import Method, Scope, column_expr, row_hash
from sync_assets.engine.plan import SyncPlan
from sync_assets.engine.table_plan import TablePlan

ROWS_PER_BUCKET = 8
# Each side's aggregate keeps a group per bucket in memory: at 2^20 buckets, about 130 MB.
MAX_BUCKETS = 1 << 20
# For the aggregate only: with hash_mem_multiplier 2 most of a million groups stay in memory; the rest
# spills to temp files (measured at scale 1: 131 MB in memory, 137 MB spilled, for pricing's 1 M buckets).
WORK_MEM = "64MB"
_KEY_SEED = 1  # buckets by a hash of the key other than any row hash (seed 0)
_INTEGERS = {"smallint", "integer", "bigint"}
# When two buckets differ. A test hook: compared by their counts alone, every hash collides.
BUCKETS_DIFFER = "p.n IS DISTINCT FROM s.n OR p.x IS DISTINCT FROM s.x"


def eligible(tp: TablePlan) -> str | None:
    """Why the table is read whole rather than compared by hashes, or None when it may be compared."""
    if not tp.key:
        return "no key to bucket its rows by"
    if tp.mode != Mode.MIRROR:
        return f"mode {tp.mode}"
    if any(tp.selected(k) is not None for k in tp.key):
        return "its key is masked: buckets are chosen by the key, which must not leave production raw"
    return None


def bucket_count(estimated_rows: int) -> int:
    """A power of two near a bucket per ROWS_PER_BUCKET rows, at most MAX_BUCKETS."""
    wanted = max(1, estimated_rows // ROWS_PER_BUCKET)
    return min(MAX_BUCKETS, 1 << (wanted - 1).bit_length())


def row_hash_of(tp: TablePlan, side: Side, method: Method) -> sql.Composable:
    """A row's hash over the copied columns, the same value on both sides for equal rows."""
    return row_hash([column_expr(tp, c, Scope.ACROSS, side, method) for c in tp.columns])


def _key_hash(tp: TablePlan, side: Side, method: Method) -> sql.Composable:
    """A 64-bit hash of the row's key, the same on both sides. A key of one integer or uuid column (most
    keys) is hashed by its type's own function: every scan that buckets rows (both aggregates, the fetch,
    the diff) then saves building a record per row, about a second per ten million rows."""
    if len(tp.key) == 1:
        source, target = tp.source.column(tp.key[0]), tp.target.column(tp.key[0])
        assert source is not None and target is not None
        kinds = {source.base_type, target.base_type}
        if not (source.is_array or target.is_array):
            column = sql.Identifier(tp.key[0])
            if kinds <= _INTEGERS:  # a bigint's hash of the value, whichever integer type each side has
                return sql.SQL("hashint8extended({}::bigint, {})").format(column, sql.Literal(_KEY_SEED))
            if kinds == {"uuid"}:
                return sql.SQL("uuid_hash_extended({}, {})").format(column, sql.Literal(_KEY_SEED))
    key = sql.SQL(", ").join(column_expr(tp, k, Scope.ACROSS, side, method) for k in tp.key)
    return sql.SQL("hash_record_extended(ROW({}), {})").format(key, sql.Literal(_KEY_SEED))


def bucket_of(tp: TablePlan, side: Side, method: Method, buckets: int) -> sql.Composable:
    """The row's bucket: a hash of its key, the same on both sides, masked to 0 .. buckets - 1."""
    return sql.SQL("({} & {})::integer").format(_key_hash(tp, side, method), sql.Literal(buckets - 1))


def buckets_query(tp: TablePlan, side: Side, method: Method, buckets: int) -> sql.Composable:
    """Per bucket: its number, its rows, the xor of their hashes."""
    return sql.SQL("SELECT {b} AS b, count(*) AS n, bit_xor({h}) AS x FROM {rel} t GROUP BY 1").format(
        b=bucket_of(tp, side, method, buckets),
        h=row_hash_of(tp, side, method),
        rel=(tp.source if side == Side.PRODUCTION else tp.target).relation(),
    )


def hash_method(conn: psycopg.Connection, tp: TablePlan, side: Side) -> Method | None:
    """The first method whose row hash the server can compute for this table's rows (tried on one row,
    in a savepoint), or None."""
    if conn.info.server_version < 140000:
        return None
    relation = (tp.source if side == Side.PRODUCTION else tp.target).relation()
    for method in (Method.MIXED, Method.TEXT):
        probe = sql.SQL("SELECT {}, {} FROM {} t LIMIT 1").format(
            row_hash_of(tp, side, method), bucket_of(tp, side, method, 1), relation
        )
        try:
            with conn.transaction():
                conn.execute(probe)
        except (errors.UndefinedFunction, errors.FeatureNotSupported):
            continue
        return method
    return None


@dataclass(frozen=True)
class Buckets:
    """What a table's comparison found: which of its buckets differ."""

    count: int  # a power of two
    method: Method
    differing: bytes  # a bitmap: bit b (get_bit's numbering) set where bucket b differs
    n_differing: int

    @classmethod
    def of(cls, count: int, method: Method, differing: Iterable[int]) -> Buckets:
        bitmap, n = bytearray((count + 7) // 8), 0
        for b in differing:
            bitmap[b // 8] |= 1 << (b % 8)
            n += 1
        return cls(count, method, bytes(bitmap), n)

    def holds(self, tp: TablePlan, side: Side, differ: bool = True) -> sql.Composable:
        """True for the rows (of alias-free column names) in a differing bucket (differ=False: in an equal one)."""
        return sql.SQL("get_bit({}::bytea, {}) = {}").format(
            sql.Literal(self.differing), bucket_of(tp, side, self.method, self.count), sql.Literal(1 if differ else 0)
        )


@contextmanager
def aggregating(conn: psycopg.Connection) -> Iterator[None]:
    """Session settings for a bucket aggregate: hashed in memory, not sorted on disk (the planner, without
    statistics on a computed bucket, would otherwise sort every row)."""
    conn.execute(sql.SQL("SET work_mem = {}").format(sql.Literal(WORK_MEM)))
    conn.execute("SET enable_sort = off")
    yield
    # Not in a finally: after a failure the session may be mid-COPY or gone, and the run fails anyway.
    conn.execute("RESET work_mem")
    conn.execute("RESET enable_sort")


def differing_buckets(conn: psycopg.Connection, production: sql.Identifier, staging: sql.Identifier) -> Iterator[int]:
    """The numbers of the buckets where the two scratch tables of buckets differ, streamed."""
    query = sql.SQL("SELECT coalesce(p.b, s.b) FROM {} p FULL JOIN {} s ON p.b = s.b WHERE {}").format(
        production, staging, sql.SQL(BUCKETS_DIFFER)
    )
    with conn.cursor() as cur:
        for (b,) in cur.stream(query):
            yield int(b)


class HashesDisagree(Exception):
    """Tables compared by hashes whose content, once changed, still differs from the snapshot's: staging's
    rows changed after the comparison, or a collision hid a change. The swap rolls back; run.py starts
    again, reading these tables whole."""

    def __init__(self, tables: frozenset[TableKey]) -> None:
        super().__init__(", ".join(sorted(qualified(t) for t in tables)))
        self.tables = tables


def choose(
    plan: SyncPlan,
    config: SyncConfig,
    reconcile: bool,
    whole: frozenset[TableKey],
    now: datetime,
    read_whole: dict[TableKey, datetime],
) -> SyncPlan:
    """Per table, whether a resync compares keyed row hashes (TablePlan.unhashed None) or reads it whole:
    read_whole says when each table was last read whole (reconciled.py), which reconcile_every bounds."""

    def why(tp: TablePlan) -> str | None:
        if config.resync == Resync.COPY:
            return "resync: copy"
        if reconcile:
            return "full reconciliation asked for"
        if tp.table_key in whole:
            return "its hashes disagreed with the content check in an earlier attempt"
        if (reason := eligible(tp)) is not None:
            return reason
        last = read_whole.get(tp.table_key)
        if last is None:
            return "never read whole by a run before"
        if config.reconcile_every is not None and now - last >= config.reconcile_every:
            return f"last read whole at {last:%Y-%m-%d %H:%M%z} (reconcile_every)"
        return None

    def chosen(tp: TablePlan) -> TablePlan:
        tp = replace(tp, unhashed=why(tp))
        noted = tp.table_key in whole or (tp.unhashed or "").endswith("(reconcile_every)")
        return tp.noted(f"read whole: {tp.unhashed}") if noted else tp

    return replace(plan, tables=tuple(chosen(tp) for tp in plan.tables))
