"""What the config makes of each table: synced, preserved or excluded, and which tables its per-table
settings name. Names the config gives are looked up in a catalog; one it lacks is a ConfigError."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum

from sync_assets.engine.catalog import Catalog, ForeignKey, Table, TableKey, qualified
from sync_assets.engine.config import Mode, SyncConfig, TableRef
from sync_assets.engine.connections import Side
from sync_assets.engine.errors import ConfigError
from sync_assets.engine.graph import acyclic_parents, fk_order


class Role(StrEnum):
    """What a staging table is to a run: in it, or outside it and why."""

    RUN = "run"
    PRESERVE = "preserve"  # staging's own, never overwritten
    EXCLUDE = "exclude"  # left alone
    UNSELECTED = "unselected"  # synced, but not by this run
    STAGING_ONLY = "staging_only"  # production has no such table


@dataclass(frozen=True)
class Roles:
    """What the config makes of each production table in the configured schemas."""

    synced: tuple[TableKey, ...]  # in FK order
    preserved: tuple[TableKey, ...]
    excluded: tuple[TableKey, ...]
    parents: dict[TableKey, list[TableKey]]  # synced table -> synced parents, cycle edges dropped


def _resolve(ref: TableRef, catalog: Catalog, config: SyncConfig, key: str, side: Side = Side.PRODUCTION) -> TableKey:
    """The table a config entry names, looked up in `side`'s catalog; a name it lacks is a ConfigError."""
    if ref.schema is not None:
        if ref.schema not in config.schemas:
            raise ConfigError(
                f"'{key}' names table {ref}, but schema '{ref.schema}' is not among the synced schemas "
                f"({', '.join(config.schemas)})"
            )
        if catalog.get(ref.schema, ref.name) is None:
            raise ConfigError(f"'{key}' names table {ref}, which {side} does not have")
        return (ref.schema, ref.name)
    found = [s for s in config.schemas if catalog.get(s, ref.name) is not None]
    if not found:
        names = sorted({t.name for t in catalog.in_schemas(config.schemas)})
        close = difflib.get_close_matches(ref.name, names, n=1)
        raise ConfigError(
            f"'{key}' names table '{ref.name}', which {side} does not have in schema(s) {', '.join(config.schemas)}"
            + (f"; did you mean '{close[0]}'?" if close else "")
        )
    if len(found) > 1:
        raise ConfigError(
            f"'{key}' names table '{ref.name}', which is in several schemas ({', '.join(found)}); "
            "write it as schema.table"
        )
    return (found[0], ref.name)


def must_be_set(table: Table, fk: ForeignKey) -> bool:
    """A foreign key whose row cannot be written first and linked later: NOT NULL, not deferrable."""
    return not fk.deferrable and any((c := table.column(n)) is not None and c.not_null for n in fk.columns)


def resolve_roles(catalog: Catalog, staging: Catalog, config: SyncConfig) -> Roles:
    """Split the tables into synced, preserved and excluded; unknown names are ConfigErrors.

    Preserved tables are staging's own: looked up in staging's catalog, whether or not production has
    them too. Synced and excluded tables are production's."""
    present = {t.schema for t in catalog.tables.values()}
    missing = [s for s in config.schemas if s not in present]
    if missing:
        raise ConfigError(
            f"'schemas' names {', '.join(repr(s) for s in missing)}, but production has no tables in "
            f"{'that schema' if len(missing) == 1 else 'those schemas'}"
        )
    preserved = {_resolve(r, staging, config, "preserve", Side.STAGING) for r in config.preserve}
    excluded = {_resolve(r, catalog, config, "exclude") for r in config.exclude}
    both = sorted(preserved & excluded)
    if both:
        raise ConfigError(f"table {qualified(both[0])} is listed under both 'preserve' and 'exclude'")
    synced = [t.key for t in catalog.in_schemas(config.schemas) if t.key not in preserved | excluded]
    parents = {k: [fk.ref for fk in catalog.tables[k].foreign_keys] for k in synced}
    hard = {k: [fk.ref for fk in catalog.tables[k].foreign_keys if must_be_set(catalog.tables[k], fk)] for k in synced}
    order = fk_order(synced, parents, hard)
    return Roles(
        synced=tuple(order),
        preserved=tuple(sorted(preserved)),
        excluded=tuple(sorted(excluded)),
        parents=acyclic_parents(order, parents),
    )


def _per_table(
    catalog: Catalog,
    config: SyncConfig,
    roles: Roles,
    settings: tuple[tuple[TableRef, Mode], ...] | tuple[tuple[TableRef, str], ...],
    what: str,
) -> dict:
    out = {}
    for ref, value in settings:
        key = _resolve(ref, catalog, config, "tables")
        if key not in roles.synced:
            raise ConfigError(
                f"'tables' sets the {what} of {qualified(key)}, which is preserved or excluded, not synced"
            )
        out[key] = value
    return out


def resolve_modes(catalog: Catalog, config: SyncConfig, roles: Roles) -> dict[TableKey, Mode]:
    """The tables whose mode differs from the config's default `mode`."""
    return _per_table(catalog, config, roles, config.table_modes, "mode")


def resolve_columns(catalog: Catalog, config: SyncConfig, roles: Roles) -> dict[TableKey, str]:
    """The tables whose incremental column differs from the config's `incremental_column`."""
    return _per_table(catalog, config, roles, config.table_columns, "column")
