"""The Dagster assets: one subsettable multi-asset for every synced table, and the preserved tables' checks.

One op syncs every selected table so that they share one production snapshot and one staging swap
transaction; each table is still its own asset with its own deps, metadata and checks.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
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
    CONTENT_DESCRIPTION,
    NO_ORPHANS_CHECK,
    NO_ORPHANS_DESCRIPTION,
    ROW_COUNT_CHECK,
    ROW_COUNT_DESCRIPTION,
    Evidence,
    content_check,
    orphans_check,
    row_count_check,
)
from sync_assets.defs.failures import failure_for
from sync_assets.defs.metadata import column_schema, orphan_summary, table_metadata, table_name
from sync_assets.defs.resources import ProductionDatabase, RunLog, StagingDatabase
from sync_assets.defs.translator import group_of, production_key, staging_key
from sync_assets.engine import (
    Catalog,
    ConfigError,
    LoadedCatalog,
    Point,
    Roles,
    SyncConfig,
    SyncError,
    SyncResult,
    Table,
    TableKey,
    compare_now,
    qualified,
    resolve_roles,
    run_sync,
)

SYNC_OP_NAME = "sync_staging"
# Runs tagged with it queue one at a time (dagster.yaml): one sync per staging database. Not a concurrency
# pool: a run worker killed outright keeps its pool slot until the daemon's run monitoring frees it, and
# every later run launched from the command line then waits for that slot with no end (measured:
# test_dagster_faults' killed run). Past the queue, staging's advisory lock refuses a second sync.
LOCK_TAG = "sync_assets/lock"
KIND = "postgres"


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
    checked_preserved: tuple[TableKey, ...]  # preserved tables with foreign keys to check

    @classmethod
    def build(cls, catalog: Catalog, staging: Catalog, config: SyncConfig) -> "Layout":
        roles = resolve_roles(catalog, staging, config)
        return cls(catalog, staging, roles, tuple(k for k in roles.preserved if staging.tables[k].foreign_keys))


def _description(table: Table, note: str | None) -> str:
    text = table.comment or f"Production table {table.qualified}, kept in step in staging by sync_assets."
    return f"{text}\n\n{note}" if note else text


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
    catalog, roles = layout.catalog, layout.roles
    table_for: dict[AssetKey, TableKey] = {}
    for key in (*roles.synced, *roles.preserved):
        other = table_for.setdefault(staging_key(key), key)
        if other != key:
            raise ConfigError(
                f"tables {qualified(other)} and {qualified(key)} would both be the Dagster asset "
                f"{staging_key(key).to_user_string()}; exclude one of them"
            )
    note = loaded.note if loaded.source != "live" else None

    fresh = freshness_policy(config)
    specs = []
    for key in roles.synced:
        table = catalog.tables[key]
        specs.append(
            AssetSpec(
                key=staging_key(key),
                deps=[staging_key(p) for p in roles.parents[key]] + [production_key(key)],
                description=_description(table, note),
                group_name=group_of(key[0]),
                kinds={KIND},
                metadata={
                    "dagster/table_name": table_name(staging_db, *key),
                    "dagster/column_schema": column_schema(table),
                    "catalog": loaded.source,
                },
                tags={"sync_assets/role": "synced"},
                freshness_policy=fresh,
            )
        )
    check_specs = [
        AssetCheckSpec(name, asset=staging_key(key), description=description)
        for key in roles.synced
        for name, description in ((ROW_COUNT_CHECK, ROW_COUNT_DESCRIPTION), (CONTENT_CHECK, CONTENT_DESCRIPTION))
    ]
    external = [
        AssetSpec(
            key=production_key(key),
            description=_description(catalog.tables[key], None),
            group_name=f"production_{group_of(key[0])}",
            kinds={KIND},
            tags={"sync_assets/role": "source"},
        )
        for key in roles.synced
    ]
    shown = set(roles.synced) | set(roles.preserved)

    def parents(key: TableKey) -> list[AssetKey]:
        """A preserved table's parents among the tables shown, by staging's foreign keys."""
        return sorted(
            {staging_key(fk.ref) for fk in layout.staging.tables[key].foreign_keys if fk.ref in shown and fk.ref != key}
        )

    preserved_specs = [
        AssetSpec(
            key=staging_key(key),
            deps=parents(key),
            description=(
                f"Staging's own {key[0]}.{key[1]}: preserved, never overwritten by the sync. Rows that would lose "
                "their parent are backed up to the _backup table, then removed (per the 'orphans' setting)."
            ),
            group_name=group_of(key[0]),
            kinds={KIND},
            metadata={"dagster/column_schema": column_schema(layout.staging.tables[key])},
            tags={"sync_assets/role": "preserved"},
        )
        for key in roles.preserved
    ]

    retry = RetryPolicy(
        max_retries=config.retries,
        delay=config.retry_delay_seconds,
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS,
    )

    @multi_asset(
        name=SYNC_OP_NAME,
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        retry_policy=retry,
        op_tags={LOCK_TAG: "staging"},
    )
    def sync_staging(
        context: AssetExecutionContext, config: SyncRunConfig, production: ProductionDatabase, staging: StagingDatabase
    ) -> Iterator[Any]:
        try:
            source, target = production.endpoint(), staging.endpoint()
            run_config = config_loader()
        except SyncError as exc:
            raise failure_for(exc) from None
        selected = {table_for[k] for k in context.selected_asset_keys}
        observer = RunLog(context)
        result: SyncResult | None = None
        try:
            if selected:
                result = run_sync(source, target, run_config, selected, observer=observer, reconcile=config.reconcile)
        except Exception as exc:
            failure = failure_for(exc, source, target)
            if isinstance(exc, SyncError):
                raise failure from None
            raise failure from exc
        if result is not None:
            assert result.plan is not None
            observer.reached(Point.REPORTED)
            if result.orphans:
                context.log.warning(orphan_summary(result.orphans))
            for tp in result.plan.tables:
                yield MaterializeResult(
                    asset_key=staging_key(tp.table_key),
                    metadata=table_metadata(
                        result.tables[tp.table_key], tp.target, target.dbname, result, source.describe()
                    ),
                )

        checks = sorted(context.selected_asset_check_keys, key=lambda k: (k.asset_key.to_string(), k.name))
        evidence = {k: Evidence.of_run(t) for k, t in (result.tables if result is not None else {}).items()}
        unsynced = {table_for[c.asset_key] for c in checks} - set(evidence)
        if unsynced:
            try:
                evidence |= {k: Evidence.now(c) for k, c in compare_now(source, target, run_config, unsynced).items()}
            except Exception as exc:
                # Every check still says something: that it could not judge, and why.
                problem = failure_for(exc, source, target).description or type(exc).__name__
                evidence |= {k: Evidence.missing(problem) for k in unsynced}
        for check_key in checks:
            judge = row_count_check if check_key.name == ROW_COUNT_CHECK else content_check
            yield judge(check_key, evidence[table_for[check_key.asset_key]])
        unread = next((e.problem for e in evidence.values() if e.problem is not None), None)
        if unread is not None:
            raise Failure(description=f"the checks could not read both sides: {unread}", allow_retries=False)

    assets: list[AssetsDefinition | AssetSpec] = [sync_staging, *external, *preserved_specs]
    checks: list[ChecksDefinition] = []
    orphan_check_keys: list[AssetCheckKey] = []
    if layout.checked_preserved:
        orphan_specs = [
            AssetCheckSpec(
                NO_ORPHANS_CHECK,
                asset=staging_key(key),
                additional_deps=parents(key),
                description=NO_ORPHANS_DESCRIPTION,
            )
            for key in layout.checked_preserved
        ]
        orphan_check_keys = [s.key for s in orphan_specs]

        @multi_asset_check(name="preserved_tables_no_orphans", specs=orphan_specs, can_subset=True)
        def preserved_no_orphans(context, staging: StagingDatabase) -> Iterator[AssetCheckResult]:
            target = staging.endpoint()
            try:
                conn = target.connect()
            except SyncError as exc:
                raise failure_for(exc) from None
            with conn:
                for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.to_string()):
                    yield orphans_check(conn, layout.staging.tables[table_for[check_key.asset_key]], check_key)

        checks.append(preserved_no_orphans)
    return SyncAssets(assets, checks, {k: staging_key(k) for k in roles.synced}, orphan_check_keys)
