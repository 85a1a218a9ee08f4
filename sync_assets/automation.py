"""The schedule and the production-change sensor that run sync_job unattended."""

import json

from dagster import (
    AssetKey,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from sync_assets.changes import change_counters, changed_tables
from sync_assets.config import SyncConfig
from sync_assets.errors import SyncError
from sync_assets.resources import ProductionDatabase

SCHEDULE_NAME = "sync_every_6_hours"
SENSOR_NAME = "production_changes"
SENSOR_INTERVAL_SECONDS = 120
# A run in any of these states is a sync under way: the sensor waits for it.
ACTIVE_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def build_schedule(job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule="0 */6 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description="Full sync of every table, four times a day.",
    )


def build_sensor(job: UnresolvedAssetJobDefinition, synced: list[AssetKey], config: SyncConfig):
    """Requests a sync of exactly the tables whose production write counters moved since the last look."""
    by_name = {f"{k.path[1]}.{k.path[2]}": k for k in synced}

    @sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.STOPPED,
        description="Syncs the tables production wrote to since the last look (pg_stat_user_tables counters).",
    )
    def production_changes(context: SensorEvaluationContext, production: ProductionDatabase):
        try:
            endpoint = production.endpoint()
            with endpoint.connect(timeout=10) as conn:
                current = change_counters(conn, config.schemas)
        except SyncError as exc:
            return SkipReason(f"cannot read production's counters: {exc}")
        if not context.cursor:
            return SensorResult(skip_reason="first look: counters recorded", cursor=json.dumps(current))
        previous = json.loads(context.cursor)
        changed = [by_name[n] for n in changed_tables(previous, current) if n in by_name]
        if not changed:
            # Counters of tables the sensor does not sync may still move: keep them current.
            return SensorResult(skip_reason="no synced table changed", cursor=json.dumps(current))
        active = context.instance.get_run_records(
            filters=RunsFilter(job_name=job.name, statuses=ACTIVE_STATUSES), limit=1
        )
        if active:
            # Keep the old cursor, so these changes are picked up once that run is done.
            return SkipReason(f"a sync is running ({active[0].dagster_run.run_id}); will look again")
        return SensorResult(
            run_requests=[RunRequest(asset_selection=changed, tags={"sync_assets/trigger": "production_changes"})],
            cursor=json.dumps(current),
        )

    return production_changes
