"""The proof of masking: per masked column, staging's rows that still hold production's raw value of the
same row (same key), for the `no_raw_values` check.

Values are compared by a keyed hash (HMAC-SHA256 under a key derived for this purpose), never moved:
production sends each row's key (masked, where the key is masked) and the hashes of its raw masked
values; staging hashes its own values the same way and counts the equal pairs. A json mask is judged per
path. A table without a key is judged by value alone: a staged value equal to any raw value counts.
Empty strings count as nothing to protect.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from sync_assets.engine.catalog import TableKey
from sync_assets.engine.comparison import planned_now
from sync_assets.engine.config import SyncConfig
from sync_assets.engine.connections import Endpoint
from sync_assets.engine.copy_pipe import copy_rows
from sync_assets.engine.mask_key import MaskKey
from sync_assets.engine.mask_spec import Transform
from sync_assets.engine.masked import mask_key
from sync_assets.engine.observe import Observer
from sync_assets.engine.sql import match
from sync_assets.engine.table_plan import TablePlan

_PURPOSE = "no_raw_values"


@dataclass(frozen=True)
class RawValues:
    """Per masked column (json: column and path), how many of staging's rows hold production's value."""

    found: dict[str, int]
    rows: int  # staging's rows judged


def _judged(tp: TablePlan) -> list[tuple[str, sql.Composable]]:
    """(label, value expression over alias-free columns) per masked value to judge."""
    out: list[tuple[str, sql.Composable]] = []
    for name, mask in tp.masks:
        if name not in tp.columns or mask.transform == Transform.NULL:
            continue
        column = sql.Identifier(name)
        if mask.transform == Transform.JSON:
            for path in mask.paths:
                at = sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(map(sql.Literal, path)))
                out.append((f"{name}.{'.'.join(path)}", sql.SQL("({}::jsonb #>> {})").format(column, at)))
        else:
            out.append((name, sql.SQL("{}::text").format(column)))
    return out


def _hash(key: MaskKey, value: sql.Composable) -> sql.Composable:
    return key.hmac_sql(_PURPOSE, sql.SQL("convert_to(nullif({}, ''), 'UTF8')").format(value))


def judge(prod: psycopg.Connection, staging: psycopg.Connection, tp: TablePlan, key: MaskKey, i: int) -> RawValues:
    judged = _judged(tp)
    if not judged:
        return RawValues({}, 0)
    hashes = [sql.Identifier(f"h{n}") for n in range(len(judged))]
    scratch = sql.Identifier(f"sync_raw_values_{i}")
    keys = [tp.selected(k) or sql.Identifier(k) for k in tp.key]
    key_names = [sql.Identifier(f"k{n}") for n in range(len(tp.key))]
    # The keys in staging's own types (what the masked keys became there); the hashes as bytea.
    typed = [sql.SQL("{} AS {}").format(sql.Identifier(k), kn) for k, kn in zip(tp.key, key_names, strict=True)]
    columns = sql.SQL(", ").join([*typed, *(sql.SQL("NULL::bytea AS {}").format(h) for h in hashes)])
    staging.execute(
        sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(scratch, columns, tp.target.relation())
    )
    query = sql.SQL("SELECT {} FROM {} t").format(
        sql.SQL(", ").join([*keys, *(_hash(key, value) for _, value in judged)]), tp.source.relation()
    )
    names = tuple(f"k{n}" for n in range(len(tp.key))) + tuple(f"h{n}" for n in range(len(judged)))
    copy_rows(prod, staging, query, scratch, names, False, f"the hashes of {tp.qualified}'s masked values", Observer())
    found = {}
    by_key = match("t", tp.key, "r", tuple(f"k{n}" for n in range(len(tp.key))))
    for (label, value), h in zip(judged, hashes, strict=True):
        mine = _hash(key, value)
        if tp.key:
            counted = sql.SQL("SELECT count(*) FROM {} t JOIN {} r ON {} WHERE {} = r.{}").format(
                tp.target.relation(), scratch, by_key, mine, h
            )
        else:
            counted = sql.SQL("SELECT count(*) FROM {} t WHERE {} IN (SELECT {} FROM {})").format(
                tp.target.relation(), mine, h, scratch
            )
        found[label] = int(staging.execute(counted).fetchone()[0])
    rows = int(staging.execute(sql.SQL("SELECT count(*) FROM {}").format(tp.target.relation())).fetchone()[0])
    staging.execute(sql.SQL("DROP TABLE {}").format(scratch))
    return RawValues(found, rows)


def raw_values_now(
    source: Endpoint, target: Endpoint, config: SyncConfig, keys: set[TableKey]
) -> dict[TableKey, RawValues]:
    """Judge the masked tables among `keys` as both sides hold them now (production in one snapshot)."""
    key = mask_key(config)
    if key is None:  # nothing is masked
        return {}
    with planned_now(source, target, config, keys) as (prod, staging, plan):
        return {tp.table_key: judge(prod, staging, tp, key, i) for i, tp in enumerate(plan.tables) if tp.masks}
