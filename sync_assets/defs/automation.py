"""The schedule and the production-change sensor that run sync_job unattended."""

import json
import math
import os
import uuid
from datetime import timedelta

from dagster import (
    AssetKey,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    EnvVar,
    FreshnessPolicy,
    JobDefinition,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from sync_assets.defs.resources import ProductionDatabase
from sync_assets.engine import PRODUCTION_ENV, Endpoint, SyncConfig, SyncError, change_counters, changed_tables

SCHEDULE_NAME = "sync_every_6_hours"
SCHEDULE_HOURS = 6
SCHEDULE_CRON = f"0 */{SCHEDULE_HOURS} * * *"
# Runs of the schedule may wait in the queue a little before they start.
QUEUE_GRACE = timedelta(minutes=5)
SENSOR_NAME = "production_changes"
SENSOR_INTERVAL_SECONDS = 120
REQUEST_TAG = "sync_assets/sensor_request"
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
        cron_schedule=SCHEDULE_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description="Full sync of every table, four times a day.",
    )


def freshness_policy(config: SyncConfig) -> FreshnessPolicy:
    """Derived from the schedule: by each tick plus the longest a run may take (max_runtime) plus a little
    queueing, the tick's sync must have materialized the table; the UI marks it stale otherwise."""
    allowed = (config.max_runtime or timedelta(minutes=55)) + QUEUE_GRACE
    minutes = min(59, math.ceil(allowed.total_seconds() / 60))
    return FreshnessPolicy.cron(
        deadline_cron=f"{minutes} */{SCHEDULE_HOURS} * * *",
        lower_bound_delta=timedelta(hours=SCHEDULE_HOURS),
        timezone="UTC",
    )


def build_sensor(
    job: UnresolvedAssetJobDefinition | JobDefinition,
    synced: dict[tuple[str, str], AssetKey],
    config: SyncConfig,
    production: ProductionDatabase,
    problem: str | None = None,
):
    """Requests a sync of exactly the tables whose production write counters moved since the last look.

    problem: why the code location cannot sync. Then the first write to any table of the configured
    schemas requests a run of the whole job, which fails with the reason (and the failure sensor reports
    it): production moved on, and staging is not following. One such run per problem: a busy production
    would otherwise start a failing run at every evaluation; the schedule's runs keep failing meanwhile.

    production: the definitions' own resource. The sensor takes it as a plain value rather than as a
    Dagster resource argument, so that it evaluates the same under the daemon and under Dagster's
    testing API (build_sensor_context with definitions=), which binds no resources; a `production`
    resource given to the context still wins."""
    by_name = {f"{schema}.{name}": key for (schema, name), key in synced.items()}

    @sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.STOPPED,
        description="Syncs the tables production wrote to since the last look (pg_stat_user_tables counters).",
    )
    def production_changes(context: SensorEvaluationContext):
        return _evaluate(context, job.name, by_name, config, production, problem)

    return production_changes


def _evaluate(
    context: SensorEvaluationContext,
    job_name: str,
    by_name: dict[str, AssetKey],
    config: SyncConfig,
    production: ProductionDatabase,
    problem: str | None,
) -> SensorResult | SkipReason:
    """One look at production's write counters (build_sensor says what follows from it)."""
    given = getattr(context.resources, "production", None)
    try:
        endpoint = _endpoint(given if isinstance(given, ProductionDatabase) else production)
        with endpoint.connect(timeout=10) as conn:
            current = change_counters(conn, config.schemas)
    except SyncError as exc:
        return SkipReason(f"cannot read production's counters: {exc}")
    if not context.cursor:
        return SensorResult(skip_reason="first look: counters recorded", cursor=_cursor(current, {}))
    state = json.loads(context.cursor)
    if "counters" not in state:  # a cursor written before runs were followed up
        state = {"counters": state, "pending": {}}
    pending, retry = _follow_up(context, state.get("pending", {}))
    if problem is not None:
        if state.get("problem") == problem:
            return SensorResult(skip_reason=f"cannot sync, a run already failed saying why: {problem}")
        if not changed_tables(state["counters"], current):
            return SensorResult(skip_reason=f"no table changed (and cannot sync: {problem})", cursor=context.cursor)
        request = RunRequest(tags={"sync_assets/trigger": SENSOR_NAME})
        return SensorResult(run_requests=[request], cursor=_cursor(current, pending, problem))
    names = sorted((set(changed_tables(state["counters"], current)) | retry) & set(by_name))
    if not names:
        # Counters of tables the sensor does not sync may still move: keep them current.
        return SensorResult(skip_reason="no synced table changed", cursor=_cursor(current, pending))
    active = context.instance.get_run_records(filters=RunsFilter(job_name=job_name, statuses=ACTIVE_STATUSES), limit=1)
    if active:
        # Keep the old cursor, so these changes are picked up once that run is done.
        return SkipReason(f"a sync is running ({active[0].dagster_run.run_id}); will look again")
    token = uuid.uuid4().hex
    request = RunRequest(
        asset_selection=[by_name[n] for n in names],
        tags={"sync_assets/trigger": SENSOR_NAME, REQUEST_TAG: token},
    )
    return SensorResult(run_requests=[request], cursor=_cursor(current, {**pending, token: names}))


def _endpoint(resource: ProductionDatabase) -> Endpoint:
    """The resource's endpoint, its EnvVar read now (a resource Dagster did not initialize holds the name)."""
    url = resource.url
    if isinstance(url, EnvVar):
        url = os.environ.get(str(url), "")
    return Endpoint("production", PRODUCTION_ENV, url)


def _cursor(counters: dict, pending: dict[str, list[str]], problem: str | None = None) -> str:
    """problem: why the code location could not sync when the sensor last requested a run over it."""
    state: dict = {"counters": counters, "pending": pending}
    if problem is not None:
        state["problem"] = problem
    return json.dumps(state)


def _follow_up(
    context: SensorEvaluationContext, pending: dict[str, list[str]]
) -> tuple[dict[str, list[str]], set[str]]:
    """Runs this sensor requested: a finished one is forgotten; a failed or canceled one hands its
    tables back, so their changes are not lost until the schedule's next run."""
    still: dict[str, list[str]] = {}
    retry: set[str] = set()
    for token, names in pending.items():
        records = context.instance.get_run_records(filters=RunsFilter(tags={REQUEST_TAG: token}), limit=1)
        status = records[0].dagster_run.status if records else None
        if status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
            retry.update(names)
        elif status != DagsterRunStatus.SUCCESS:
            still[token] = names  # queued, running, or not launched yet
    return still, retry
