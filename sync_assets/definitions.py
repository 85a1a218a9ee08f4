"""The code location: `defs`, built from production's catalog and the optional YAML config."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from dagster import AssetSelection, Definitions, EnvVar, Failure, JobDefinition, define_asset_job, job, op
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from sync_assets.defs.assets import LOCK_TAG, SYNC_OP_NAME, SyncAssets, build_sync_assets
from sync_assets.defs.automation import build_schedule, build_sensor
from sync_assets.defs.dry_run import build_dry_run_job
from sync_assets.defs.notify import build_notification_sensors
from sync_assets.defs.resources import ProductionDatabase, StagingDatabase, SyncResource
from sync_assets.engine import (
    PRODUCTION_ENV,
    STAGING_ENV,
    ConfigError,
    Endpoint,
    LoadedCatalog,
    Side,
    SyncConfig,
    SyncError,
    load_catalog,
    load_config,
)

JOB_NAME = "sync_job"
log = logging.getLogger("sync_assets")


def build_definitions(
    production_url: str | None = None,
    staging_url: str | None = None,
    config: SyncConfig | None = None,
    cache_dir: Path | None = None,
    catalog: LoadedCatalog | None = None,
    staging_catalog: LoadedCatalog | None = None,
) -> Definitions:
    """Build the code location. Without arguments everything comes from the environment; tests pass
    URLs and a config directly. Never raises for an unreachable database or a bad config: the UI must
    load. Then every job fails with the reason, and sync_job's description says it."""
    layout_config, config_loader, problem = _config(config)
    prod_url = production_url if production_url is not None else os.environ.get(PRODUCTION_ENV)
    stg_url = staging_url if staging_url is not None else os.environ.get(STAGING_ENV)
    if catalog is None:
        catalog = load_catalog(prod_url, layout_config.schemas, cache_dir)
    if catalog.source != "live":
        log.warning("sync_assets: %s", catalog.note)
    if catalog.catalog is None:
        problem = problem or catalog.note
    built = SyncAssets.empty()
    if problem is None:
        assert catalog.catalog is not None
        if staging_catalog is None:
            staging_catalog = load_catalog(stg_url, layout_config.schemas, cache_dir, side=Side.STAGING)
        # Without staging's catalog, the preserved tables are looked for in production's.
        staging_tables = staging_catalog.catalog or catalog.catalog
        try:
            built = build_sync_assets(catalog, staging_tables, layout_config, config_loader, _dbname(stg_url))
        except ConfigError as exc:
            unknown = "" if staging_catalog.catalog is not None else f" ({staging_catalog.note})"
            problem = f"{exc}{unknown}"
    job = _sync_job(built, layout_config, problem)
    production = ProductionDatabase(url=production_url if production_url is not None else EnvVar(PRODUCTION_ENV))
    staging = StagingDatabase(url=staging_url if staging_url is not None else EnvVar(STAGING_ENV))
    return Definitions(
        assets=built.assets,
        asset_checks=built.checks,
        jobs=[job, build_dry_run_job(list(built.synced), config_loader, problem)],
        schedules=[build_schedule(job)],
        sensors=[
            build_sensor(job, built.synced, layout_config, production, problem),
            *build_notification_sensors([job]),
        ],
        resources={
            "production": production,
            "staging": staging,
            "sync": SyncResource(production=production, staging=staging),
        },
    )


def _config(given: SyncConfig | None) -> tuple[SyncConfig, Callable[[], SyncConfig], str | None]:
    """The config the asset graph is laid out by, how each run reads its own, and what is wrong with it.

    Runs read the file again, so that a config fixed since the code location loaded takes effect."""
    if given is not None:
        return given, lambda: given, None
    try:
        return load_config(), load_config, None
    except ConfigError as exc:
        return SyncConfig(), load_config, str(exc)


def _sync_job(
    built: SyncAssets, config: SyncConfig, problem: str | None
) -> JobDefinition | UnresolvedAssetJobDefinition:
    if problem is not None:
        log.warning("sync_assets: cannot sync, every run fails until it is fixed: %s", problem)
        return unavailable_job(problem)
    return define_asset_job(
        JOB_NAME,
        selection=AssetSelection.assets(*built.synced.values()) | AssetSelection.checks(*built.orphan_checks),
        description="Sync production into staging: one snapshot, one swap transaction, then the checks.",
        # Run monitoring (dagster.yaml) terminates a run past its maximum runtime; the swap then rolls back.
        tags={LOCK_TAG: "staging", **_max_runtime_tag(config)},
    )


def _dbname(url: str | None) -> str | None:
    try:
        return Endpoint("staging", STAGING_ENV, url or "").dbname
    except SyncError:
        return None


def unavailable_job(problem: str) -> JobDefinition:
    """sync_job when the code location cannot lay out the sync: its one step fails with the reason, so
    a scheduled, sensor-requested or launched run fails loudly instead of succeeding with no step."""

    @op(name=SYNC_OP_NAME, description=f"Fails: {problem}", tags={LOCK_TAG: "staging"})
    def sync_staging() -> None:
        raise Failure(description=problem, allow_retries=False)

    @job(name=JOB_NAME, description=f"Cannot sync: {problem}", tags={LOCK_TAG: "staging"})
    def sync_job() -> None:
        sync_staging()

    return sync_job


def _max_runtime_tag(config: SyncConfig) -> dict[str, str]:
    if config.max_runtime is None:
        return {}
    return {"dagster/max_runtime": str(int(config.max_runtime.total_seconds()))}


defs = build_definitions()
