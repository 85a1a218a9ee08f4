"""Dagster runs under faults: a run terminated mid-swap rolls back and lets go of staging, and no password
reaches anything Dagster stores or prints, for failing and succeeding runs alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from dagster_graphql import DagsterGraphQLClient

from sync_assets.engine.observe import PAUSE_ENV
from sync_assets_tests import cruise
from sync_assets_tests.conftest import (
    ROOT,
    Pair,
    serve,
    shadow_tables,
    snapshot_tables,
    sync_backends,
    table_rows,
    wait_for,
)
from sync_assets_tests.cruise import ALL_STAGING
from sync_assets_tests.pgcluster import PROD_READER, STAGING_OWNER, SUPERUSER_PASSWORD

pytestmark = [pytest.mark.faults, pytest.mark.slow]

DAGSTER = str(Path(sys.executable).with_name("dagster"))
EXECUTE = [DAGSTER, "job", "execute", "-m", "sync_assets.definitions", "-j", "sync_job"]


def _run_statuses(env: dict[str, str]) -> list[str]:
    url = env["DAGSTER_POSTGRES_URL"].replace("postgresql+psycopg2://", "postgresql://")
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY create_timestamp")]


@pytest.mark.parametrize(
    ("point", "strike"), [("upserted", signal.SIGINT), ("reported", signal.SIGKILL)], ids=["interrupted", "killed"]
)
def test_a_struck_run_rolls_back_or_keeps_its_commit_and_lets_go_of_staging(
    cruise_pair: Pair, dagster_env: dict[str, str], tmp_path: Path, point: str, strike: signal.Signals
) -> None:
    """Interrupted mid-swap (what Dagster's run termination delivers to a run worker and its step
    processes), the run rolls back; killed while reporting, after its COMMIT, its swap stands. (An
    interrupt there may wait until Dagster's own code hands control back: it tests nothing of ours.)"""
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    with cruise_pair.prod() as prod:
        new = {table: table_rows(prod, table) for table in cruise.SYNCED}
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**dagster_env, PAUSE_ENV: f"{point}@{pause}"}
    log = tmp_path / "run.log"
    proc = subprocess.Popen(EXECUTE, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: (pause / "paused").exists() or proc.poll() is not None, f"the run to reach {point}", 120)
        assert (pause / "paused").exists(), log.read_text()[-3000:]
        os.killpg(proc.pid, strike)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text()
    assert proc.returncode != 0, output[-3000:]
    if strike == signal.SIGINT:
        assert _run_statuses(dagster_env) in (["CANCELED"], ["FAILURE"]), output[-3000:]
    # Its sessions end with the run: nothing keeps holding staging's row locks.
    ended = lambda: not sync_backends(cruise_pair, cruise_pair.staging_db, False)  # noqa: E731
    wait_for(ended, "the terminated run's sessions to end", 30)
    with cruise_pair.staging() as staging:
        now = snapshot_tables(staging, ALL_STAGING)
    if strike == signal.SIGINT:
        assert now == before
    else:
        assert {table: now[table] for table in cruise.SYNCED} == new

    again = subprocess.run(EXECUTE, env=dagster_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert shadow_tables(cruise_pair) == []
    with cruise_pair.prod() as prod, cruise_pair.staging() as staging:
        for table in cruise.SYNCED:
            assert table_rows(staging, table) == table_rows(prod, table), table


def test_no_password_in_dagster_storage_logs_or_output_of_failing_and_succeeding_runs(
    cruise_pair: Pair, dagster_env: dict[str, str]
) -> None:
    wrong = "wrong-S3cret-pw"
    bad_url = cruise_pair.cluster.url(cruise_pair.staging_db, (STAGING_OWNER[0], wrong))
    failing = subprocess.run(
        EXECUTE, env={**dagster_env, "DATABASE_URL_STAGING": bad_url}, cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert failing.returncode != 0
    assert "rejected the password for user 'staging_owner'" in failing.stdout + failing.stderr
    succeeding = subprocess.run(EXECUTE, env=dagster_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert succeeding.returncode == 0, (succeeding.stdout + succeeding.stderr)[-3000:]
    assert _run_statuses(dagster_env) == ["FAILURE", "SUCCESS"]

    stored = [failing.stdout, failing.stderr, succeeding.stdout, succeeding.stderr]
    url = dagster_env["DAGSTER_POSTGRES_URL"].replace("postgresql+psycopg2://", "postgresql://")
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            rows = conn.execute(
                psycopg.sql.SQL("SELECT coalesce(string_agg(t::text, ' '), '') FROM {} t").format(
                    psycopg.sql.Identifier(table)
                )
            ).fetchone()
            stored.append(rows[0])
    assert any("STEP_FAILURE" in text for text in stored) and any("ASSET_MATERIALIZATION" in text for text in stored)
    for path in Path(dagster_env["DAGSTER_HOME"]).rglob("*"):
        if path.is_file():
            stored.append(path.read_text(errors="replace"))
    passwords = (wrong, STAGING_OWNER[1], PROD_READER[1], SUPERUSER_PASSWORD)
    for secret in {*passwords, *(quote(p, safe="") for p in passwords)}:  # as typed, and as URLs spell them
        leaks = [text[max(0, text.find(secret) - 200) : text.find(secret) + 50] for text in stored if secret in text]
        assert leaks == [], f"{secret!r} leaked: {leaks[:2]}"


def test_a_run_terminated_from_dagster_mid_swap_rolls_back_promptly(
    cruise_pair: Pair, dagster_env: dict[str, str], tmp_path: Path
) -> None:
    """Through the real thing: `dagster dev`, the run launched and then terminated over GraphQL."""
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    pause = tmp_path / "pause"
    pause.mkdir()
    with serve({**dagster_env, PAUSE_ENV: f"upserted@{pause}"}, tmp_path) as server:
        client = DagsterGraphQLClient("127.0.0.1", port_number=server.port)
        run_id = client.submit_job_execution("sync_job", repository_location_name="sync_assets")
        wait_for(lambda: (pause / "paused").exists(), "the swap to write rows", 180)
        client.terminate_run(run_id)
        wait_for(lambda: client.get_run_status(run_id).value in ("CANCELED", "FAILURE"), "the run to end", 120)
        assert client.get_run_status(run_id).value == "CANCELED"
        ended = lambda: not sync_backends(cruise_pair, cruise_pair.staging_db, False)  # noqa: E731
    wait_for(ended, "the terminated run's sessions to end", 30)
    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, ALL_STAGING) == before
