"""Dagster's names for tables: asset keys, specs, groups, descriptions and check specs, made in this one place.

Dagster derives op, output and check names from asset keys and allows only letters, digits and
underscores in them; PostgreSQL names allow anything ("Sales Data", "order-items"). Every name the
UI shows or an error asks a user to type comes from here, so the two never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dagster import AssetCheckSpec, AssetKey, AssetSpec, FreshnessPolicy

from sync_assets.defs.checks import (
    CONTENT_CHECK,
    CONTENT_DESCRIPTION,
    NO_ORPHANS_CHECK,
    NO_ORPHANS_DESCRIPTION,
    NO_RAW_VALUES_CHECK,
    NO_RAW_VALUES_DESCRIPTION,
    ROW_COUNT_CHECK,
    ROW_COUNT_DESCRIPTION,
)
from sync_assets.defs.metadata import column_schema, table_name
from sync_assets.engine import Mask, Table, TableKey

KIND = "postgres"


def dagster_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def group_of(schema: str) -> str:
    return dagster_name(schema)


def staging_key(key: TableKey) -> AssetKey:
    return AssetKey(["staging", dagster_name(key[0]), dagster_name(key[1])])


def production_key(key: TableKey) -> AssetKey:
    return AssetKey(["production", dagster_name(key[0]), dagster_name(key[1])])


def asset_paths(keys: tuple[TableKey, ...] | list[TableKey]) -> str:
    """The tables' staging assets as `dagster ... --select` takes them: staging/public/Sales_Data."""
    return ", ".join(staging_key(k).to_user_string() for k in sorted(set(keys)))


@dataclass(frozen=True)
class Translator:
    """Turns tables into the specs the asset graph shows.

    staging_db: the staging database's name, for dagster/table_name. catalog_note: said in every synced
    table's description when the catalog did not come live from production (say, from the cache)."""

    freshness: FreshnessPolicy
    staging_db: str | None = None
    catalog_source: str = "live"
    catalog_note: str | None = None

    def description(self, table: Table, note: str | None = None) -> str:
        text = table.comment or f"Production table {table.qualified}, kept in step in staging by sync_assets."
        return f"{text}\n\n{note}" if note else text

    def synced(self, table: Table, parents: list[TableKey], masks: dict[str, Mask] | None = None) -> AssetSpec:
        """A synced table's staging asset: downstream of its parents' and of its production table; its
        masked columns (masks) marked in its column schema."""
        return AssetSpec(
            key=staging_key(table.key),
            deps=[staging_key(p) for p in parents] + [production_key(table.key)],
            description=self.description(table, self.catalog_note),
            group_name=group_of(table.schema),
            kinds={KIND},
            metadata={
                "dagster/table_name": table_name(self.staging_db, *table.key),
                "dagster/column_schema": column_schema(table, masks),
                "catalog": self.catalog_source,
            },
            tags={"sync_assets/role": "synced"},
            freshness_policy=self.freshness,
        )

    def source(self, table: Table) -> AssetSpec:
        """The production table a synced table is read from, as an external asset."""
        return AssetSpec(
            key=production_key(table.key),
            description=self.description(table),
            group_name=f"production_{group_of(table.schema)}",
            kinds={KIND},
            tags={"sync_assets/role": "source"},
        )

    def preserved(self, table: Table, parents: list[AssetKey]) -> AssetSpec:
        return AssetSpec(
            key=staging_key(table.key),
            deps=parents,
            description=(
                f"Staging's own {table.qualified}: preserved, never overwritten by the sync. Rows that would lose "
                "their parent are backed up to the _backup table, then removed (per the 'orphans' setting)."
            ),
            group_name=group_of(table.schema),
            kinds={KIND},
            metadata={"dagster/column_schema": column_schema(table)},
            tags={"sync_assets/role": "preserved"},
        )

    def synced_checks(self, key: TableKey, masked: bool = False) -> list[AssetCheckSpec]:
        """Counts and content; and, on a table with masked columns, the proof that no raw value is left."""
        checks = [(ROW_COUNT_CHECK, ROW_COUNT_DESCRIPTION), (CONTENT_CHECK, CONTENT_DESCRIPTION)]
        if masked:
            checks.append((NO_RAW_VALUES_CHECK, NO_RAW_VALUES_DESCRIPTION))
        return [AssetCheckSpec(name, asset=staging_key(key), description=description) for name, description in checks]

    def orphans_check(self, key: TableKey, parents: list[AssetKey]) -> AssetCheckSpec:
        return AssetCheckSpec(
            NO_ORPHANS_CHECK, asset=staging_key(key), additional_deps=parents, description=NO_ORPHANS_DESCRIPTION
        )
