"""The Dagster assets: one subsettable multi-asset for every synced table, and the preserved tables' checks.

One op syncs every selected table so that they share one production snapshot and one staging swap
transaction; each table is still its own asset with its own deps, metadata and checks. The op's body
delegates: the sync resource runs the engine, this module turns its result into events.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Backoff,
    Config,
    Failure,
    Jitter,
    MaterializeResult,
    RetryPolicy,
    multi_asset,
    multi_asset_check,
)
from dagster import AssetChecksDefinition as ChecksDefinition
from pydantic import Field

from sync_assets.defs.automation import freshness_policy
from sync_assets.defs.checks import (
    CONTENT_CHECK,
    NO_RAW_VALUES_CHECK,
    ROW_COUNT_CHECK,
    Evidence,
    content_check,
    orphans_check,
    raw_values_check,
    row_count_check,
)
from sync_assets.defs.failures import failure_for
from sync_assets.defs.metadata import orphan_summary, table_metadata
from sync_assets.defs.resources import RunLog, StagingDatabase, SyncResource
from sync_assets.defs.translator import Translator, staging_key
from sync_assets.engine import (
    Catalog,
    ConfigError,
    LoadedCatalog,
    Mask,
    Point,
    Roles,
    SyncConfig,
    SyncError,
    TableKey,
    qualified,
    resolve_masks,
    resolve_roles,
)

SYNC_OP_NAME = "sync_staging"
# Runs tagged with it queue one at a time (dagster.yaml): one sync per staging database. Not a concurrency
# pool: a run worker killed outright keeps its pool slot until the daemon's run monitoring frees it, and
# every later run launched from the command line then waits for that slot with no end (measured:
# test_dagster_faults' killed run). Past the queue, staging's advisory lock refuses a second sync.
LOCK_TAG = "sync_assets/lock"


class SyncRunConfig(Config):
    """Run config of sync_job (the launchpad shows it); every field has a default, so schedules need none."""

    reconcile: bool = Field(
        default=False,
        description="Read incremental tables whole and compare every row, instead of only the rows changed "
        "since their watermark (a full reconciliation).",
    )


@dataclass(frozen=True)
class SyncAssets:
    assets: list[AssetsDefinition | AssetSpec]
    checks: list[ChecksDefinition]
    synced: dict[TableKey, AssetKey]  # what sync_job materializes
    orphan_checks: list[AssetCheckKey]  # and the checks it runs besides the synced assets' own

    @classmethod
    def empty(cls) -> "SyncAssets":
        return cls([], [], {}, [])


@dataclass(frozen=True)
class Layout:
    """What the catalogs and config make of the tables, as the asset graph shows them."""

    catalog: Catalog  # production's
    staging: Catalog  # staging's, for the preserved tables (which production may lack)
    roles: Roles
    table_for: dict[AssetKey, TableKey]  # every asset shown, back to its table
    masked: dict[TableKey, dict[str, Mask]] = field(default_factory=dict)  # synced tables' masked columns

    @classmethod
    def build(cls, catalog: Catalog, staging: Catalog, config: SyncConfig) -> "Layout":
        roles = resolve_roles(catalog, staging, config)
        table_for: dict[AssetKey, TableKey] = {}
        for key in (*roles.synced, *roles.preserved):
            other = table_for.setdefault(staging_key(key), key)
            if other != key:
                raise ConfigError(
                    f"tables {qualified(other)} and {qualified(key)} would both be the Dagster asset "
                    f"{staging_key(key).to_user_string()}; exclude one of them"
                )
        return cls(catalog, staging, roles, table_for, resolve_masks(catalog, staging, config, roles))

    @property
    def checked_preserved(self) -> tuple[TableKey, ...]:
        """Preserved tables with foreign keys to check."""
        return tuple(k for k in self.roles.preserved if self.staging.tables[k].foreign_keys)

    def preserved_parents(self, key: TableKey) -> list[AssetKey]:
        """A preserved table's parents among the tables shown, by staging's foreign keys."""
        shown = set(self.roles.synced) | set(self.roles.preserved)
        return sorted(
            {staging_key(fk.ref) for fk in self.staging.tables[key].foreign_keys if fk.ref in shown and fk.ref != key}
        )


def build_sync_assets(
    loaded: LoadedCatalog,
    staging_catalog: Catalog,
    config: SyncConfig,
    config_loader: Callable[[], SyncConfig],
    staging_db: str | None = None,
) -> SyncAssets:
    """Assets, checks, and what sync_job runs: the synced tables and the preserved tables' checks.

    staging_catalog: staging's tables, which the preserved ones are looked up in."""
    if loaded.catalog is None:
        return SyncAssets.empty()
    layout = Layout.build(loaded.catalog, staging_catalog, config)
    note = loaded.note if loaded.source != "live" else None
    translator = Translator(freshness_policy(config), staging_db, loaded.source, note)
    roles = layout.roles
    assets: list[AssetsDefinition | AssetSpec] = [
        _sync_op(layout, translator, config, config_loader),
        *(translator.source(layout.catalog.tables[k]) for k in roles.synced),
        *(translator.preserved(layout.staging.tables[k], layout.preserved_parents(k)) for k in roles.preserved),
    ]
    checks: list[ChecksDefinition] = []
    orphan_check_keys: list[AssetCheckKey] = []
    if layout.checked_preserved:
        checks.append(_orphans_checks(layout, translator))
        orphan_check_keys = [
            translator.orphans_check(k, layout.preserved_parents(k)).key for k in layout.checked_preserved
        ]
    return SyncAssets(assets, checks, {k: staging_key(k) for k in roles.synced}, orphan_check_keys)


def _sync_op(
    layout: Layout, translator: Translator, config: SyncConfig, config_loader: Callable[[], SyncConfig]
) -> AssetsDefinition:
    roles = layout.roles
    retry = RetryPolicy(
        max_retries=config.retries,
        delay=config.retry_delay_seconds,
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS,
    )

    @multi_asset(
        name=SYNC_OP_NAME,
        specs=[
            translator.synced(layout.catalog.tables[k], roles.parents[k], layout.masked.get(k)) for k in roles.synced
        ],
        check_specs=[spec for k in roles.synced for spec in translator.synced_checks(k, k in layout.masked)],
        can_subset=True,
        retry_policy=retry,
        op_tags={LOCK_TAG: "staging"},
    )
    def sync_staging(context: AssetExecutionContext, config: SyncRunConfig, sync: SyncResource) -> Iterator[Any]:
        yield from sync_events(context, sync, layout.table_for, config_loader, config.reconcile)

    return sync_staging


def sync_events(
    context: AssetExecutionContext,
    sync: SyncResource,
    table_for: dict[AssetKey, TableKey],
    config_loader: Callable[[], SyncConfig],
    reconcile: bool,
) -> Iterator[Any]:
    """Sync the selected tables, then judge the selected checks: a materialization per table synced, a
    check result per check (on the run's evidence, or on both sides now for a table not synced)."""
    source, target = sync.endpoints()
    try:
        run_config = config_loader()
    except SyncError as exc:
        raise failure_for(exc) from None
    selected = {table_for[k] for k in context.selected_asset_keys}
    observer = RunLog(context)
    evidence: dict[TableKey, Evidence] = {}
    if selected:
        result = sync.run(run_config, selected, observer, reconcile=reconcile)
        assert result.plan is not None
        observer.reached(Point.REPORTED)
        if result.orphans:
            context.log.warning(orphan_summary(result.orphans))
        for tp in result.plan.tables:
            table = result.tables[tp.table_key]
            metadata = table_metadata(table, tp.target, target.dbname, result, source.describe())
            yield MaterializeResult(asset_key=staging_key(tp.table_key), metadata=metadata)
        evidence = {k: Evidence.of_run(t) for k, t in result.tables.items()}
    checks = sorted(context.selected_asset_check_keys, key=lambda k: (k.asset_key.to_string(), k.name))
    unsynced = {table_for[c.asset_key] for c in checks if c.name != NO_RAW_VALUES_CHECK} - set(evidence)
    if unsynced:
        evidence |= sync.evidence_now(run_config, unsynced)
    judges = {ROW_COUNT_CHECK: row_count_check, CONTENT_CHECK: content_check}
    raw = {table_for[c.asset_key] for c in checks if c.name == NO_RAW_VALUES_CHECK}
    judged = sync.raw_values_now(run_config, raw) if raw else {}
    for check_key in checks:
        table = table_for[check_key.asset_key]
        if check_key.name == NO_RAW_VALUES_CHECK:
            yield raw_values_check(check_key, judged.get(table, "the table has no masked column in the config"))
        else:
            yield judges[check_key.name](check_key, evidence[table])
    unread = next((e.problem for e in evidence.values() if e.problem is not None), None)
    if unread is not None:
        raise Failure(description=f"the checks could not read both sides: {unread}", allow_retries=False)


def _orphans_checks(layout: Layout, translator: Translator) -> ChecksDefinition:
    specs = [translator.orphans_check(k, layout.preserved_parents(k)) for k in layout.checked_preserved]

    @multi_asset_check(name="preserved_tables_no_orphans", specs=specs, can_subset=True)
    def preserved_no_orphans(context, staging: StagingDatabase) -> Iterator[AssetCheckResult]:
        try:
            conn = staging.endpoint().connect()
        except SyncError as exc:
            raise failure_for(exc) from None
        with conn:
            for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.to_string()):
                yield orphans_check(conn, layout.staging.tables[layout.table_for[check_key.asset_key]], check_key)

    return preserved_no_orphans
