"""Dagster metadata for what a run did: standard keys for the UI, plain numbers so it plots them."""

from __future__ import annotations

from typing import Any

import pandas as pd
from dagster import MetadataValue, TableColumn, TableColumnConstraints, TableSchema

from sync_assets.engine import Column, Identity, Mask, OrphanBackup, SyncResult, Table, TableKey, TableResult


def table_name(database: str | None, schema: str, name: str) -> str:
    """dagster/table_name: database-qualified when the staging database is known."""
    return f"{database}.{schema}.{name}" if database else f"{schema}.{name}"


def column_schema(table: Table, masks: dict[str, Mask] | None = None) -> TableSchema:
    """The table's columns; a masked one says so, and by which transform (its values are not production's)."""
    unique = {k[0] for k in (table.primary_key, *table.unique_keys) if len(k) == 1}
    masks = masks or {}

    def described(c: Column) -> str | None:
        kind = "generated" if c.generated else "identity always" if c.identity == Identity.ALWAYS else None
        masked = f"masked: {masks[c.name].transform}" if c.name in masks else None
        return "; ".join(d for d in (kind, masked) if d) or None

    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=c.type,
                description=described(c),
                constraints=TableColumnConstraints(nullable=not c.not_null, unique=c.name in unique),
            )
            for c in table.columns
        ]
    )


def table_metadata(
    table: TableResult, target: Table, staging_db: str, result: SyncResult, source: str
) -> dict[str, Any]:
    seconds = table.copy_seconds + result.swap_seconds
    rate = table.production_rows / table.copy_seconds if table.copy_seconds > 0 else 0.0
    backed_up = sum(o.rows for o in result.orphans if o.references == table.key)
    meta: dict[str, Any] = {
        "dagster/row_count": MetadataValue.int(table.staging_rows),
        "dagster/table_name": MetadataValue.text(table_name(staging_db, target.schema, target.name)),
        "dagster/column_schema": MetadataValue.table_schema(column_schema(target, dict(table.plan.masks))),
        "production_rows": MetadataValue.int(table.production_rows),
        "rows_read": MetadataValue.int(table.read_rows),
        "mode": MetadataValue.text(table.mode.value),
        "rows_inserted": MetadataValue.int(table.inserted),
        "rows_updated": MetadataValue.int(table.updated),
        "rows_deleted": MetadataValue.int(table.deleted),
        "bytes_copied": MetadataValue.int(table.bytes),
        "seconds": MetadataValue.float(round(seconds, 4)),
        "copy_seconds": MetadataValue.float(round(table.copy_seconds, 4)),
        "swap_seconds": MetadataValue.float(round(result.swap_seconds, 4)),
        "rows_per_second": MetadataValue.float(round(rate, 1)),
        "preserved_rows_backed_up": MetadataValue.int(backed_up),
        "copy_format": MetadataValue.text("binary" if table.plan.binary else "text"),
        "replaced_whole": MetadataValue.bool(table.replaced_whole),
        # A keyless table that differs is rewritten whole: rows_inserted/rows_deleted count the rows
        # that differ, this the rows written.
        "rows_rewritten": MetadataValue.int(table.rewritten),
        "source": MetadataValue.text(source),
        "sync_run_id": MetadataValue.text(result.run_id),
    }
    if table.notes:
        meta["notes"] = MetadataValue.md("\n".join(f"- {n}" for n in table.notes))
    return meta


def orphan_summary(orphans: list[OrphanBackup]) -> str:
    return "; ".join(
        f"{o.rows} row(s) of {o.table[0]}.{o.table[1]} moved to {o.backup_table[0]}.{o.backup_table[1]}"
        for o in orphans
    )


def plan_frames(result: SyncResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per synced table what the run did (or, dry, would do); per preserved table what it backed up."""
    assert result.plan is not None
    sequences: dict[TableKey, list[str]] = {}
    for tp in result.plan.tables:
        for seq in tp.sequences:
            moved = result.sequences.get(f"{seq.schema}.{seq.name}")
            if moved is not None:
                sequences.setdefault(tp.table_key, []).append(f"{seq.name} → {moved:,}")
    tables = pd.DataFrame(
        [
            {
                "table": f"{t.key[0]}.{t.key[1]}",
                "production rows": t.production_rows,
                "mode": t.mode,
                "rows read": t.read_rows,
                "insert": t.inserted,
                "update": t.updated,
                "delete": t.deleted,
                "preserved rows backed up": sum(o.rows for o in result.orphans if o.references == t.key),
                "sequences moved": ", ".join(sequences.get(t.key, [])) or "-",
                "masked columns": ", ".join(f"{c} ({m.transform})" for c, m in t.plan.masks) or "-",
            }
            for t in result.tables.values()
        ]
    )
    preserved = pd.DataFrame(
        [
            {
                "preserved table": f"{o.table[0]}.{o.table[1]}",
                "rows": o.rows,
                "then": "removed" if o.removed else "kept, reference cleared",
                "backup table": f"{o.backup_table[0]}.{o.backup_table[1]}",
                "because of": o.constraint,
            }
            for o in result.orphans
        ],
        columns=["preserved table", "rows", "then", "backup table", "because of"],
    )
    return tables, preserved


def plan_markdown(result: SyncResult) -> str:
    tables, preserved = plan_frames(result)
    verb = "would" if result.dry_run else "did"
    parts = [f"**What the sync {verb} do** (run {result.run_id[:8]})", tables.to_markdown(index=False)]
    if len(preserved):
        parts += [f"**Preserved rows it {verb} back up**", preserved.to_markdown(index=False)]
    else:
        parts.append("No preserved row loses its parent.")
    return "\n\n".join(parts)
