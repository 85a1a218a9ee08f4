"""The proof of masking: per masked column, staging's rows that still hold production's raw value of the
same row (same key), for the `no_raw_values` check.

Raw values never leave production and the masking key never reaches staging: production sends, in key
order, each row's key (masked, where the key is masked) and the keyed hashes (HMAC-SHA256 under a key
derived for this purpose) of its raw masked values; staging sends its rows in the same order, with the
values it holds, which are masked and so no secret; this process hashes staging's values the same way and
walks both streams together, counting equal pairs. Memory stays flat: both sides come through server-side
cursors, in an order both compute alike (each key column's text as UTF-8 bytes, compared bytewise).

A json mask is judged per path. A table without a key is judged by value alone: a staged value equal to
any raw value counts; that needs production's hashes of the column at hand (16 bytes a distinct value).
Values a transform keeps by design are not judged (masking.protected): an empty string, a value without
digits under `digits`, one no longer than what `keep_last` keeps, the constant itself. Rows only one side
has are not judged (merge keeps rows production deleted: what they hold cannot be told from staging's own
data).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass

import psycopg
from psycopg import sql

from sync_assets.engine.catalog import TableKey
from sync_assets.engine.comparison import planned_now
from sync_assets.engine.config import SyncConfig
from sync_assets.engine.connections import Endpoint
from sync_assets.engine.content import Method, Scope, Side, column_expr
from sync_assets.engine.mask_key import MaskKey
from sync_assets.engine.mask_spec import Mask, Transform
from sync_assets.engine.masked import mask_key
from sync_assets.engine.masking import protected
from sync_assets.engine.sql import not_null
from sync_assets.engine.table_plan import TablePlan

_PURPOSE = "no_raw_values"
_BATCH = 5000  # rows a server-side cursor fetches at a time
_KEPT = 16  # bytes of each production hash a keyless table's judgement holds


@dataclass(frozen=True)
class RawValues:
    """Per masked column (json: column and path), how many of staging's rows hold production's value."""

    found: dict[str, int]
    rows: int  # staging's rows judged


def _judged(tp: TablePlan) -> list[tuple[str, sql.Composable, Mask]]:
    """(label, the value as text over alias-free columns, its mask) per masked value to judge."""
    out: list[tuple[str, sql.Composable, Mask]] = []
    for name, mask in tp.masks:
        if name not in tp.columns or mask.transform == Transform.NULL:
            continue
        column = sql.Identifier(name)
        if mask.transform == Transform.JSON:
            assert mask.inner is not None
            for path in mask.paths:
                at = sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(map(sql.Literal, path)))
                value = sql.SQL("({}::jsonb #>> {})").format(column, at)
                out.append((f"{name}.{'.'.join(path)}", value, mask.inner))
        else:
            out.append((name, sql.SQL("{}::text").format(column), mask))
    return out


def _raw_hash(key: MaskKey, value: sql.Composable, mask: Mask) -> sql.Composable:
    """Production's keyed hash of a raw value the mask changes (NULL for one it keeps by design)."""
    return sql.SQL("CASE WHEN {} THEN {} END").format(protected(mask, value), key.hmac_sql(_PURPOSE, _bytes(value)))


def _bytes(value: sql.Composable) -> sql.Composable:
    return sql.SQL("convert_to(nullif({}, ''), 'UTF8')").format(value)


def _order(tp: TablePlan, side: Side) -> list[sql.Composable]:
    """Each key column as bytes both sides compute alike (a masked key as production masks it)."""
    out = []
    for k in tp.key:
        expr = column_expr(tp, k, Scope.ACROSS, side, Method.TEXT)
        out.append(expr if tp.encodings_differ else sql.SQL("convert_to({}, 'UTF8')").format(expr))
    return out


def _rows(conn: psycopg.Connection, name: str, query: sql.Composable) -> Iterator[tuple]:
    """The query's rows through a server-side cursor (in a transaction of its own where none is open)."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction() if idle else nullcontext(), conn.cursor(name=name) as cur:
        cur.itersize = _BATCH
        cur.execute(query)
        yield from cur


def _query(
    tp: TablePlan, keys: Sequence[sql.Composable], values: Sequence[sql.Composable], relation: sql.Composable
) -> sql.Composable:
    """The rows in key order; a row without its whole key (a unique key's NULLs) pairs with none."""
    if not keys:
        return sql.SQL("SELECT {} FROM {} t").format(sql.SQL(", ").join(values), relation)
    return sql.SQL("SELECT {} FROM {} t WHERE {} ORDER BY {}").format(
        sql.SQL(", ").join([*keys, *values]), relation, not_null("t", tp.key), sql.SQL(", ").join(keys)
    )


def judge(prod: psycopg.Connection, staging: psycopg.Connection, tp: TablePlan, key: MaskKey) -> RawValues:
    judged = _judged(tp)
    if not judged:
        return RawValues({}, 0)
    derived = key.derived(_PURPOSE)
    width = len(tp.key)
    theirs = _query(
        tp, _order(tp, Side.PRODUCTION), [_raw_hash(key, v, mask) for _, v, mask in judged], tp.source.relation()
    )
    ours = _query(tp, _order(tp, Side.STAGING), [_bytes(v) for _, v, _ in judged], tp.target.relation())
    # Closed however the walk ends, so that the next table's cursor of the same name can be declared.
    with closing(_rows(prod, "sync_raw_values_production", theirs)) as production:
        found, rows = _walk(production, _rows(staging, "sync_raw_values_staging", ours), width, len(judged), derived)
    return RawValues({label: n for (label, _, _), n in zip(judged, found, strict=True)}, rows)


def _walk(
    production: Iterator[tuple], staging: Iterator[tuple], width: int, values: int, derived: bytes
) -> tuple[list[int], int]:
    """Per judged value, staging's rows that hold the raw value production's hash stands for; and the
    rows judged. width: the key's columns that lead each row (none: judged by value alone)."""

    def mine(value: bytes | None) -> bytes | None:
        return None if value is None else hmac.new(derived, value, hashlib.sha256).digest()

    found = [0] * values
    rows = 0
    if not width:
        # No key to pair rows by: any staged value equal to any raw value of its column counts.
        seen: list[set[bytes]] = [set() for _ in range(values)]
        for row in production:
            for n, h in enumerate(row):
                if h is not None:
                    seen[n].add(bytes(h)[:_KEPT])
        for row in staging:
            rows += 1
            for n, v in enumerate(row):
                h = mine(v)
                found[n] += h is not None and h[:_KEPT] in seen[n]
    else:
        there = next(production, None)
        for row in staging:
            rows += 1
            at = tuple(bytes(k) for k in row[:width])
            while there is not None and tuple(bytes(k) for k in there[:width]) < at:
                there = next(production, None)
            if there is None or tuple(bytes(k) for k in there[:width]) != at:
                continue
            for n, (v, h) in enumerate(zip(row[width:], there[width:], strict=True)):
                found[n] += h is not None and mine(v) == bytes(h)
    return found, rows


def raw_values_now(
    source: Endpoint, target: Endpoint, config: SyncConfig, keys: set[TableKey]
) -> dict[TableKey, RawValues]:
    """Judge the masked tables among `keys` as both sides hold them now (production in one snapshot)."""
    key = mask_key(config)
    if key is None:  # nothing is masked
        return {}
    with planned_now(source, target, config, keys) as (prod, staging, plan):
        return {tp.table_key: judge(prod, staging, tp, key) for tp in plan.tables if tp.masks}
