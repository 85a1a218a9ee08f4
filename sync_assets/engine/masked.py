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

from sync_assets.engine.catalog import Catalog, TableKey, qualified
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


def resolve_masks(production: Catalog, config: SyncConfig, roles: Roles) -> Masks:
    """Every `mask` entry's table and column, as production has them; a mistake is a ConfigError that
    names the column."""
    found: Masks = {}
    for entry in config.mask:
        key = _resolve(entry.table, production, config, "mask")
        if key not in roles.synced:
            raise ConfigError(f"'mask' names column {entry}, but {qualified(key)} is preserved or excluded, not synced")
        table = production.tables[key]
        column = table.column(entry.column)
        where = f"{qualified(key)}.{entry.column}"
        if column is None:
            close = difflib.get_close_matches(entry.column, [c.name for c in table.columns], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"'mask' names column {where}, which production does not have{hint}")
        reason = unfit(entry.mask, column)
        if reason is not None:
            raise ConfigError(f"'mask' {entry.mask.transform} on column {where}: the column {reason}")
        unique = next((k for k in (table.primary_key, *table.unique_keys) if k and entry.column in k), None)
        if unique is not None and entry.mask.transform not in _UNIQUE:
            kind = "primary key" if unique == table.primary_key else f"unique key ({', '.join(unique)})"
            raise ConfigError(
                f"'mask' {entry.mask.transform} on column {where}: it is part of the {kind}, which only hash or "
                "email keep unique"
            )
        found.setdefault(key, {})[entry.column] = entry.mask
    _check_references(production, roles, found)
    return found


def _check_references(production: Catalog, roles: Roles, masks: Masks) -> None:
    """A column a foreign key links must be masked like the column at its other end, or the masked
    values would not join (and staging's foreign key would refuse them)."""
    for key in roles.synced:
        for fk in production.tables[key].foreign_keys:
            parent = (fk.ref_schema, fk.ref_table)
            if parent not in roles.synced:
                continue
            for child_col, parent_col in zip(fk.columns, fk.ref_columns, strict=True):
                child_mask = masks.get(key, {}).get(child_col)
                parent_mask = masks.get(parent, {}).get(parent_col)
                if child_mask != parent_mask:
                    child, referenced = f"{qualified(key)}.{child_col}", f"{qualified(parent)}.{parent_col}"
                    raise ConfigError(
                        f"'mask': foreign key {fk.name} links {child} to {referenced}; mask both with the same "
                        f"transform, or neither (now {_said(child_mask)} and {_said(parent_mask)})"
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
