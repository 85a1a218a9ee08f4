"""A run that cannot sync fails, with the reason, through the commands a data engineer types.

Wrong credentials, an unreachable production, a config naming a table no side has, a config that does
not parse: every run of sync_job and sync_dry_run fails (never RUN_SUCCESS with no step), scheduled and
sensor-requested runs too, the Slack failure message says why, and the code location still loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, RunRequest, build_schedule_context, build_sensor_context

from sync_assets.definitions import build_definitions
from sync_assets.demo.localpg import free_port
from sync_assets_tests import cruise
from sync_assets_tests.conftest import Pair, dg, snapshot_tables, wait_for_writes
from sync_assets_tests.pgcluster import PROD_OWNER, PROD_READER, STAGING_OWNER, SUPERUSER_PASSWORD

pytestmark = pytest.mark.slow

PASSWORDS = (PROD_OWNER[1], PROD_READER[1], STAGING_OWNER[1], SUPERUSER_PASSWORD)
JOBS = ("sync_job", "sync_dry_run")


def launch_fails(env: dict[str, str], job: str, reason: str) -> str:
    done = dg(env, "launch", "--job", job)
    output = done.stdout + done.stderr
    assert "RUN_SUCCESS" not in output, output[-3000:]
    assert "RUN_FAILURE" in output, output[-3000:]
    assert done.returncode != 0
    assert reason in output, output[-3000:]
    for secret in PASSWORDS:
        assert secret not in output
    return output


def wrong_password(env: dict[str, str], pair: Pair) -> dict[str, str]:
    return {**env, "DATABASE_URL_PRODUCTION": pair.cluster.url(pair.prod_db, (PROD_READER[0], "Wr0ng-pw"))}


@pytest.mark.parametrize("job", JOBS)
def test_a_wrong_production_password_with_nothing_cached_fails_the_run(
    cruise_pair: Pair, dagster_env: dict[str, str], job: str
) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, [*cruise.SYNCED, *cruise.PRESERVED])

    launch_fails(
        wrong_password(dagster_env, cruise_pair),
        job,
        f"rejected the password for user '{PROD_READER[0]}'; fix the credentials in DATABASE_URL_PRODUCTION",
    )

    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, [*cruise.SYNCED, *cruise.PRESERVED]) == before


def test_an_unreachable_production_with_nothing_cached_fails_the_run(dagster_env: dict[str, str]) -> None:
    port = free_port()
    env = {**dagster_env, "DATABASE_URL_PRODUCTION": f"postgresql://u:Unused-pw@127.0.0.1:{port}/p"}
    output = launch_fails(env, "sync_job", f"the production database at 127.0.0.1:{port}/p is unreachable")
    assert "Unused-pw" not in output


def test_a_wrong_password_with_a_cached_catalog_fails_an_asset_materialization(
    cruise_pair: Pair, dagster_env: dict[str, str]
) -> None:
    loaded = dg(dagster_env, "list", "defs")
    assert loaded.returncode == 0, loaded.stderr[-2000:]

    done = dg(wrong_password(dagster_env, cruise_pair), "launch", "--assets", "staging/public/ports")

    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "RUN_FAILURE" in output and "RUN_SUCCESS" not in output
    assert "rejected the password" in output
    assert not any(p in output for p in PASSWORDS)


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            "preserve: [users, quote_request, saved_searches]\n",
            "'preserve' names table 'quote_request', which staging does not have in schema(s) public; "
            "did you mean 'quote_requests'?",
        ),
        (
            "preserve: [users, quote_requests, saved_searches]\nexclude: [audit_log]\n",
            "'exclude' names table 'audit_log', which production does not have in schema(s) public",
        ),
    ],
    ids=["preserve-a-table-staging-lacks", "exclude-a-table-production-lacks"],
)
def test_a_config_naming_a_table_the_side_lacks_fails_naming_the_setting(
    dagster_env: dict[str, str], tmp_path: Path, job: str, config: str, reason: str
) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(config)

    launch_fails({**dagster_env, "SYNC_ASSETS_CONFIG": str(path)}, job, reason)


@pytest.mark.parametrize("job", JOBS)
def test_a_config_that_does_not_parse_fails_naming_the_file(
    dagster_env: dict[str, str], tmp_path: Path, job: str
) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("preserve: [users, quote_requests\n")

    launch_fails({**dagster_env, "SYNC_ASSETS_CONFIG": str(config)}, job, f"SYNC_ASSETS_CONFIG file {config}: is not")


def test_a_config_that_does_not_validate_fails_naming_the_setting(dagster_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("preserve: [users, quote_requests, saved_searches]\norphans: sometimes\n")

    launch_fails({**dagster_env, "SYNC_ASSETS_CONFIG": str(config)}, "sync_job", "'orphans' must be 'delete' or 'fail'")


def test_the_code_location_loads_and_says_why_it_cannot_sync(cruise_pair: Pair, dagster_env: dict[str, str]) -> None:
    done = dg(wrong_password(dagster_env, cruise_pair), "list", "defs", "--json")

    assert done.returncode == 0, done.stderr[-2000:]
    assert "sync_job" in done.stdout
    assert "Cannot sync: production is unreachable (the production database at" in done.stdout
    assert "rejected the password" in done.stdout
    assert not any(p in done.stdout + done.stderr for p in PASSWORDS)


# ---------------------------------------------------------------------------------------------------------
# Unattended: the schedule's and the sensor's runs, and the Slack message about them


def broken_defs(pair: Pair, tmp_path: Path):
    """The code location with production refusing the password and no catalog cached."""
    return build_definitions(
        pair.cluster.url(pair.prod_db, (PROD_READER[0], "Wr0ng-pw")), pair.staging_url, cache_dir=tmp_path
    )


def test_a_scheduled_run_fails_with_the_reason(cruise_pair: Pair, tmp_path: Path) -> None:
    defs = broken_defs(cruise_pair, tmp_path)
    schedule = defs.resolve_schedule_def("sync_every_6_hours")
    instance = DagsterInstance.ephemeral()

    requests = schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests

    assert requests is not None and len(requests) == 1
    result = defs.resolve_job_def("sync_job").execute_in_process(
        instance=instance, tags=requests[0].tags, raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None
    assert "rejected the password" in failure.description
    assert not any(p in failure.description for p in PASSWORDS)


def test_the_sensor_requests_a_run_that_fails_when_the_config_is_broken(
    cruise_pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("preserve: [users, quote_request]\n")
    monkeypatch.setenv("SYNC_ASSETS_CONFIG", str(config))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, cache_dir=tmp_path)
    sensor = defs.resolve_sensor_def("production_changes")
    instance = DagsterInstance.ephemeral()

    first = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor.name))
    assert first.run_requests == []
    with cruise_pair.prod() as app:
        app.execute("UPDATE ports SET name = name || '!' WHERE code = 'P01'")
    wait_for_writes(cruise_pair, json.loads(first.cursor)["counters"], ["public.ports"])

    tick = sensor.evaluate_tick(
        build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor.name, cursor=first.cursor)
    )

    assert len(tick.run_requests) == 1 and isinstance(tick.run_requests[0], RunRequest)

    result = defs.resolve_job_def("sync_job").execute_in_process(
        instance=instance, tags=tick.run_requests[0].tags, raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None
    assert "'preserve' names table 'quote_request', which staging does not have" in failure.description

    # production goes on writing: one failed run per problem says it, not one every two minutes
    with cruise_pair.prod() as app:
        app.execute("UPDATE ports SET name = name || '!' WHERE code = 'P02'")
    wait_for_writes(cruise_pair, json.loads(tick.cursor)["counters"], ["public.ports"])
    again = sensor.evaluate_tick(
        build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor.name, cursor=tick.cursor)
    )
    assert again.run_requests == []
    assert again.skip_message is not None
    assert again.skip_message.startswith("cannot sync, a run already failed saying why: 'preserve' names table")


def test_the_slack_failure_message_says_why(cruise_pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sync_assets.defs.notify import failure_message

    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/services/T0/B0/X")
    defs = broken_defs(cruise_pair, tmp_path)
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("sync_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    from dagster import build_run_status_sensor_context

    event = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
    context = build_run_status_sensor_context(
        sensor_name="slack_on_sync_failure",
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
    ).for_run_failure()

    text = failure_message(context)

    assert text.startswith(":x: *sync_job* failed.")
    assert f"rejected the password for user '{PROD_READER[0]}'; fix the credentials in DATABASE_URL_PRODUCTION" in text
    assert not any(p in text for p in PASSWORDS)
