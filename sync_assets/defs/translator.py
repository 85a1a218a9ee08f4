"""Dagster's names for tables: asset keys, groups and the paths users type, made in this one place.

Dagster derives op, output and check names from asset keys and allows only letters, digits and
underscores in them; PostgreSQL names allow anything ("Sales Data", "order-items"). Every name the
UI shows or an error asks a user to type comes from here, so the two never disagree.
"""

from __future__ import annotations

import re

from dagster import AssetKey

TableKey = tuple[str, str]


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
