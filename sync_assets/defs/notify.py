"""Slack messages (SLACK_WEBHOOK_URL) on every finished sync, failed sync and failed check.

Two run-status sensors read what the run recorded (materializations, check evaluations, the failure)
and post through slack_sdk's webhook client. They exist only when the webhook is configured, and
then start switched on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
)
from slack_sdk.webhook import WebhookClient

SLACK_ENV = "SLACK_WEBHOOK_URL"
WEBSERVER_ENV = "DAGSTER_WEBSERVER_URL"
DEFAULT_WEBSERVER = "http://127.0.0.1:3000"


def run_link(run_id: str) -> str:
    base = os.environ.get(WEBSERVER_ENV, DEFAULT_WEBSERVER).rstrip("/")
    return f"{base}/runs/{run_id}"


def post(text: str) -> None:
    # The webhook's URL is a secret: errors name the variable and the status, never the address.
    url = (os.environ.get(SLACK_ENV) or "").strip()
    if not url:
        return
    if not url.startswith(("https://", "http://")):
        raise RuntimeError(f"{SLACK_ENV} is not an http(s) URL; set it to the Slack incoming webhook's address")
    try:
        response = WebhookClient(url, timeout=10).send(text=text)
    except Exception as exc:
        raise RuntimeError(f"posting to {SLACK_ENV} failed ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise RuntimeError(f"Slack refused the notification (HTTP {response.status_code}: {response.body[:200]})")


def _events(context: RunStatusSensorContext, kind: DagsterEventType) -> list:
    records = context.instance.get_records_for_run(run_id=context.dagster_run.run_id, of_type=kind, limit=10_000)
    return [r.event_log_entry.dagster_event.event_specific_data for r in records.records]


def success_message(context: RunStatusSensorContext) -> str:
    run = context.dagster_run
    stats = context.instance.get_run_stats(run.run_id)
    seconds = (stats.end_time or 0) - (stats.start_time or 0)
    materialized = [m.materialization for m in _events(context, DagsterEventType.ASSET_MATERIALIZATION)]

    def total(key: str) -> int:
        return sum(int(m.metadata[key].value) for m in materialized if key in m.metadata)

    lines = [
        f":white_check_mark: *{run.job_name}* synced {len(materialized)} table(s) in {seconds:.0f}s: "
        f"{total('rows_inserted'):,} rows inserted, {total('rows_updated'):,} updated, "
        f"{total('rows_deleted'):,} deleted, {total('dagster/row_count'):,} rows in staging now. "
        f"<{run_link(run.run_id)}|Run {run.run_id[:8]}>"
    ]
    failed = [c for c in _events(context, DagsterEventType.ASSET_CHECK_EVALUATION) if not c.passed]
    for check in failed:
        lines.append(
            f":warning: check *{check.check_name}* on `{check.asset_key.to_user_string()}` failed: "
            f"{check.description or 'see the run'}"
        )
    return "\n".join(lines)


def failure_message(context: RunFailureSensorContext) -> str:
    run = context.dagster_run
    reasons = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        why = data.user_failure_data.description if data.user_failure_data else None
        reasons.append(f"step `{event.step_key}`: {why or (data.error.message.strip() if data.error else 'failed')}")
    if not reasons:
        reasons.append(context.failure_event.message or "the run failed")
    return "\n".join(
        [f":x: *{run.job_name}* failed. <{run_link(run.run_id)}|Run {run.run_id[:8]}>"] + [f"> {r}" for r in reasons]
    )


def build_notification_sensors(jobs: list) -> list:
    """The two sensors, or none when no webhook is configured."""
    if not os.environ.get(SLACK_ENV):
        return []

    @run_status_sensor(
        name="slack_on_sync_success",
        run_status=DagsterRunStatus.SUCCESS,
        monitored_jobs=jobs,
        default_status=DefaultSensorStatus.RUNNING,
        description="Posts a summary of every finished sync, and any failed check, to SLACK_WEBHOOK_URL.",
    )
    def slack_on_sync_success(context: RunStatusSensorContext):
        return _post_if_configured(success_message, context)

    @run_failure_sensor(
        name="slack_on_sync_failure",
        monitored_jobs=jobs,
        default_status=DefaultSensorStatus.RUNNING,
        description="Posts every failed sync, with why and a link to the run, to SLACK_WEBHOOK_URL.",
    )
    def slack_on_sync_failure(context: RunFailureSensorContext):
        return _post_if_configured(failure_message, context)

    return [slack_on_sync_success, slack_on_sync_failure]


def _post_if_configured(message: Callable[[Any], str], context: RunStatusSensorContext) -> SkipReason | None:
    if not os.environ.get(SLACK_ENV):
        return SkipReason(f"{SLACK_ENV} is not set")
    post(message(context))
    return None
