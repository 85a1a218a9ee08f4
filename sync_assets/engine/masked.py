"""Which columns of the run are masked, checked against production's catalog before anything moves, and
the plan's part of it: the expressions production selects in their place (masking.py).

A masked table is never read incrementally: a change of a mask or of the key must reach every row, and
only a whole read or the comparison by keyed row hashes (which hashes production's masked values) sees
every row. A table whose key is masked is read whole: its buckets are chosen by the key, which must not
leave production raw.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from sync_assets.engine.catalog import Catalog, Table, TableKey, qualified
from sync_assets.engine.config import Mode, SyncConfig
from sync_assets.engine.errors import ConfigError
from sync_assets.engine.mask_key import MaskKey
from sync_assets.engine.mask_spec import Mask, Transform
from sync_assets.engine.masking import expression, unfit
from sync_assets.engine.roles import Roles, _resolve
from sync_assets.engine.table_plan import TablePlan

if TYPE_CHECKING:
    from sync_assets.engine.plan import SyncPlan

Masks = dict[TableKey, dict[str, Mask]]
# Keep distinct values distinct (up to a 96-bit collision); sql is the user's to judge.
_UNIQUE = (Transform.HASH, Transform.EMAIL, Transform.SQL)
_NARROW = {"smallint": 16, "integer": 32}  # too few bits for a hash to keep a key unique


def resolve_masks(production: Catalog, staging: Catalog, config: SyncConfig, roles: Roles) -> Masks:
    """Every `mask` entry's table and column, as production has them, and the tables that inherit them;
    a mistake is a ConfigError that names the column."""
    found: Masks = {}
    for entry in config.mask:
        key = _resolve(entry.table, production, config, "mask")
        if key not in roles.synced:
            raise ConfigError(f"'mask' names column {entry}, but {qualified(key)} is preserved or excluded, not synced")
        table = production.tables[key]
        if table.column(entry.column) is None:
            close = difflib.get_close_matches(entry.column, [c.name for c in table.columns], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            where = f"{qualified(key)}.{entry.column}"
            raise ConfigError(f"'mask' names column {where}, which production does not have{hint}")
        found.setdefault(key, {})[entry.column] = entry.mask
    _inherited(production, roles, found)
    for key, masks in sorted(found.items()):
        for name, mask in sorted(masks.items()):
            _check_fit(production.tables[key], name, mask)
    _check_references(production, roles, found, "")
    _check_references(staging, roles, found, "staging's ")  # staging may link synced tables on its own
    return found


def _check_fit(table: Table, name: str, mask: Mask) -> None:
    """The mask fits the column's type and keeps its table's keys unique."""
    column = table.column(name)
    assert column is not None, name
    where = f"{table.qualified}.{name}"
    reason = unfit(mask, column)
    if reason is not None:
        raise ConfigError(f"'mask' {mask.transform} on column {where}: the column {reason}")
    unique = next((k for k in (table.primary_key, *table.unique_keys) if k and name in k), None)
    if unique is None:
        return
    kind = "primary key" if unique == table.primary_key else f"unique key ({', '.join(unique)})"
    if mask.transform not in _UNIQUE:
        raise ConfigError(
            f"'mask' {mask.transform} on column {where}: it is part of the {kind}, which only hash or email keep unique"
        )
    bits = _NARROW.get(column.base_type)
    if mask.transform == Transform.HASH and bits is not None:
        # A keyed hash into n bits: distinct values collide past about 2^(n/2) rows (birthday bound).
        raise ConfigError(
            f"'mask' hash on column {where}: it is part of the {kind}, and hashed into {column.base_type}'s {bits} "
            "bits distinct values would collide; leave it unmasked or widen it to bigint"
        )


def _inherited(production: Catalog, roles: Roles, masks: Masks) -> None:
    """A table that inherits a masked column (INHERITS, at any depth) is masked alike: it is synced as a
    table of its own, and its rows of that column are the same kind of data. Its own entry wins."""

    def masks_of(key: TableKey, seen: frozenset[TableKey]) -> dict[str, Mask]:
        table = production.tables.get(key)
        if table is None or key in seen:
            return {}
        found: dict[str, Mask] = {}
        for parent in table.inherits:
            found.update(masks_of(parent, seen | {key}))
        return {**found, **masks.get(key, {})}

    for key in sorted(roles.synced):
        table = production.tables[key]
        if table.inherits:
            own = {c: m for c, m in masks_of(key, frozenset()).items() if table.column(c) is not None}
            if own:
                masks[key] = own


def _check_references(catalog: Catalog, roles: Roles, masks: Masks, whose: str) -> None:
    """A column a foreign key (of either database) links must be masked like the column at its other end,
    or the masked values would not join (and staging's foreign key would refuse them)."""
    for key in sorted(roles.synced):
        table = catalog.tables.get(key)
        for fk in table.foreign_keys if table is not None else ():
            parent = (fk.ref_schema, fk.ref_table)
            if parent not in roles.synced:
                continue
            for child_col, parent_col in zip(fk.columns, fk.ref_columns, strict=True):
                child_mask = masks.get(key, {}).get(child_col)
                parent_mask = masks.get(parent, {}).get(parent_col)
                if child_mask != parent_mask:
                    child, referenced = f"{qualified(key)}.{child_col}", f"{qualified(parent)}.{parent_col}"
                    raise ConfigError(
                        f"'mask': {whose}foreign key {fk.name} links {child} to {referenced}; mask both with the "
                        f"same transform, or neither (now {_said(child_mask)} and {_said(parent_mask)})"
                    )


def _said(mask: Mask | None) -> str:
    return "unmasked" if mask is None else str(mask.transform)


def applied(tp: TablePlan, masks: dict[str, Mask] | None, key: MaskKey | None) -> TablePlan:
    """The table's plan with its masks and the expressions production selects for them."""
    if not masks:
        return tp
    assert key is not None, "a mask without its key"
    selects = []
    for name, mask in sorted(masks.items()):
        column = tp.source.column(name)
        assert column is not None, name
        if name in tp.columns:
            selects.append((name, expression(mask, column, key)))
    tp = replace(tp, masks=tuple(sorted(masks.items())), masked=tuple(selects), binary=False)
    tp = tp.noted("masked columns: " + ", ".join(f"{name} ({mask.transform})" for name, mask in tp.masks))
    if tp.mode == Mode.INCREMENTAL:
        tp = replace(tp, mode=Mode.MIRROR, incremental_column=None).noted(
            "masked: compared by keyed row hashes or read whole, not incrementally, so that a changed mask or key"
            " reaches every row"
        )
    return tp


def mask_key(config: SyncConfig) -> MaskKey | None:
    """The key, where the config masks anything: its absence is a ConfigError before anything moves."""
    return MaskKey.from_environment() if config.mask else None


def check_on_servers(prod: psycopg.Connection, staging: psycopg.Connection, plan: SyncPlan) -> None:
    """What only the servers can tell, before anything moves: that a `constant` reads as the column's type in
    staging, and that an `sql` expression runs on production (each tried on no rows, in a savepoint)."""
    for tp in plan.tables:
        for name, mask in tp.masks:
            where = f"{tp.qualified}.{name}"
            if mask.transform == Transform.CONSTANT and mask.constant is not None and name in tp.columns:
                # The literal takes the column's type from the other arm of the UNION, as COPY would read it.
                probe = sql.SQL("SELECT {} FROM {} WHERE false UNION ALL SELECT {}").format(
                    sql.Identifier(name), tp.target.relation(), sql.Literal(mask.constant)
                )
                _try(staging, probe, f"'mask' constant on column {where}: {mask.constant!r} does not fit it")
            if mask.transform == Transform.SQL and (selected := tp.selected(name)) is not None:
                probe = sql.SQL("SELECT {} FROM {} t LIMIT 0").format(selected, tp.source.relation())
                _try(prod, probe, f"'mask' sql on column {where} does not run on production")


def _try(conn: psycopg.Connection, probe: sql.Composable, problem: str) -> None:
    try:
        with conn.transaction():
            conn.execute(probe)
    except psycopg.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{problem} ({first})") from None
