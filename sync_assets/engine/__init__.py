"""The sync engine: no Dagster here. This module is its face; the Dagster layer imports from it only."""

from sync_assets.engine.catalog import Catalog, Column, Identity, Table, TableKey, qualified
from sync_assets.engine.catalog_cache import LoadedCatalog, load_catalog
from sync_assets.engine.comparison import Comparison, compare_now
from sync_assets.engine.config import (
    CONFIG_ENV,
    Mode,
    OrphanPolicy,
    StagingTriggers,
    SyncConfig,
    TableRef,
)
from sync_assets.engine.config_file import load_config, parse_config
from sync_assets.engine.connections import PRODUCTION_ENV, STAGING_ENV, Endpoint, Side
from sync_assets.engine.content import Fingerprint, Unavailable
from sync_assets.engine.errors import ConfigError, SelectionError, SyncError, database_message, is_transient, redact
from sync_assets.engine.foreign_keys import OrphanCount, count_orphans
from sync_assets.engine.mask_spec import Mask
from sync_assets.engine.masked import resolve_masks
from sync_assets.engine.observe import Observer, Pause, Point
from sync_assets.engine.orphans import OrphanBackup
from sync_assets.engine.raw_values import RawValues, raw_values_now
from sync_assets.engine.roles import Roles, resolve_roles
from sync_assets.engine.run import SyncResult, TableResult, run_sync
from sync_assets.engine.table_run import TableRun
from sync_assets.engine.write_counters import change_counters, changed_tables

__all__ = [
    "CONFIG_ENV",
    "PRODUCTION_ENV",
    "STAGING_ENV",
    "Catalog",
    "Column",
    "Comparison",
    "ConfigError",
    "Endpoint",
    "Fingerprint",
    "Identity",
    "LoadedCatalog",
    "Mask",
    "Mode",
    "Observer",
    "OrphanBackup",
    "OrphanCount",
    "OrphanPolicy",
    "Pause",
    "Point",
    "RawValues",
    "Roles",
    "SelectionError",
    "Side",
    "StagingTriggers",
    "SyncConfig",
    "SyncError",
    "SyncResult",
    "Table",
    "TableKey",
    "TableRef",
    "TableResult",
    "TableRun",
    "Unavailable",
    "change_counters",
    "changed_tables",
    "compare_now",
    "count_orphans",
    "database_message",
    "is_transient",
    "load_catalog",
    "load_config",
    "parse_config",
    "qualified",
    "raw_values_now",
    "redact",
    "resolve_masks",
    "resolve_roles",
    "run_sync",
]
