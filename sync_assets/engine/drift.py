"""Drift: production's table against staging's, column by column. Which columns take production's
values, which are staging's own, and a DriftError naming the column where a table cannot be synced."""

from __future__ import annotations

from sync_assets.engine.catalog import Catalog, Column, Table
from sync_assets.engine.column_types import columns_compatible
from sync_assets.engine.errors import DriftError


def copied_columns(
    source: Table, target: Table, staging: Catalog, prod_enums: dict
) -> tuple[list[Column], list[str], list[str]]:
    """Staging's columns that take production's values, staging's own columns, and notes; DriftError
    where a column cannot take them."""
    q = source.qualified
    notes: list[str] = []
    for col in source.columns:
        if target.column(col.name) is None:
            if col.generated:
                notes.append(f"production's generated column {col.name} is not in staging")
                continue
            raise DriftError(
                f"column {q}.{col.name} ({col.type}) exists in production but not in staging: "
                "add it to staging's table, or exclude the table"
            )
    copied: list[Column] = []
    extra: list[str] = []
    for col in target.columns:
        src = source.column(col.name)
        if src is None:
            if col.not_null and not col.has_default and not col.generated and not col.identity:
                raise DriftError(
                    f"column {q}.{col.name} exists only in staging and is NOT NULL without a default, so "
                    "rows from production cannot be inserted: give it a default or drop NOT NULL"
                )
            extra.append(col.name)
            continue
        if col.generated:
            if not src.generated:
                notes.append(f"column {col.name} is generated in staging, so production's values are not copied")
            continue
        if not columns_compatible(src, col):
            raise DriftError(
                f"column {q}.{col.name} has incompatible types: {src.type} in production, {col.type} in staging"
            )
        if src.is_enum and col.is_enum:
            missing = [lb for lb in prod_enums.get(src.base_type, ()) if lb not in staging.enums.get(col.base_type, ())]
            if missing:
                raise DriftError(
                    f"column {q}.{col.name}: staging's enum type {col.base_type} lacks label(s) "
                    f"{', '.join(repr(m) for m in missing)} that production has"
                )
        copied.append(col)
    if extra:
        notes.append(f"staging-only column(s) {', '.join(extra)} keep their defaults")
    return copied, extra, notes
