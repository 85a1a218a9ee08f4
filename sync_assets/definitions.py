"""The code location: `defs`, built from production's catalog and the optional YAML config."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from dagster import AssetSelection, Definitions, EnvVar, define_asset_job

from sync_assets.assets import SyncAssets, build_sync_assets
from sync_assets.automation import build_schedule, build_sensor
from sync_assets.catalog_cache import LoadedCatalog, load_catalog
from sync_assets.config import SyncConfig, load_config
from sync_assets.connections import PRODUCTION_ENV, STAGING_ENV, Endpoint
from sync_assets.dry_run import build_dry_run_job
from sync_assets.errors import ConfigError, SyncError
from sync_assets.notify import build_notification_sensors
from sync_assets.resources import ProductionDatabase, StagingDatabase

JOB_NAME = "sync_job"
log = logging.getLogger("sync_assets")


def build_definitions(
    production_url: str | None = None,
    staging_url: str | None = None,
    config: SyncConfig | None = None,
    cache_dir: Path | None = None,
    catalog: LoadedCatalog | None = None,
) -> Definitions:
    """Build the code location. Without arguments everything comes from the environment; tests pass
    URLs and a config directly. Never raises for an unreachable production or a bad config: the UI
    must load, and a run then fails with the reason."""
    config_loader: Callable[[], SyncConfig]
    if config is not None:
        layout_config = config
        config_loader = lambda: config  # noqa: E731
    else:
        config_loader = load_config
        try:
            layout_config = load_config()
        except ConfigError as exc:
            # Lay the assets out with the defaults; every run re-reads the config and fails on it.
            log.warning("sync_assets: %s; runs will fail until it is fixed", exc)
            layout_config = SyncConfig()
    if catalog is None:
        url = production_url if production_url is not None else os.environ.get(PRODUCTION_ENV)
        catalog = load_catalog(url, layout_config.schemas, cache_dir)
    if catalog.source != "live":
        log.warning("sync_assets: %s", catalog.note)
    try:
        staging_db = Endpoint("staging", STAGING_ENV, staging_url or os.environ.get(STAGING_ENV, "")).dbname
    except SyncError:
        staging_db = None
    try:
        built = build_sync_assets(catalog, layout_config, config_loader, staging_db)
    except ConfigError as exc:
        # A config naming tables production lacks: show nothing rather than something wrong.
        log.warning("sync_assets: %s; no assets until it is fixed", exc)
        built = SyncAssets.empty()

    job = define_asset_job(
        JOB_NAME,
        selection=AssetSelection.assets(*built.synced.values()) | AssetSelection.checks(*built.orphan_checks),
        description="Sync production into staging: one snapshot, one swap transaction, then the checks.",
        # Run monitoring (dagster.yaml) terminates a run past its maximum runtime; the swap then rolls back.
        tags={"sync_assets/lock": "staging", **_max_runtime_tag(layout_config)},
    )
    dry_run = build_dry_run_job(list(built.synced), config_loader)
    production = ProductionDatabase(url=production_url if production_url is not None else EnvVar(PRODUCTION_ENV))
    staging = StagingDatabase(url=staging_url if staging_url is not None else EnvVar(STAGING_ENV))
    return Definitions(
        assets=built.assets,
        asset_checks=built.checks,
        jobs=[job, dry_run],
        schedules=[build_schedule(job)],
        sensors=[build_sensor(job, built.synced, layout_config), *build_notification_sensors([job])],
        resources={"production": production, "staging": staging},
    )


def _max_runtime_tag(config: SyncConfig) -> dict[str, str]:
    if config.max_runtime is None:
        return {}
    return {"dagster/max_runtime": str(int(config.max_runtime.total_seconds()))}


defs = build_definitions()
