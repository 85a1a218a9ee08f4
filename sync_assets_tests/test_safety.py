"""Faults at the worst moments: a killed process, a dropped connection, readers during the swap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from sync_assets.engine import PRODUCTION_ENV, STAGING_ENV, is_transient
from sync_assets_tests import cruise
from sync_assets_tests.conftest import (
    RUNNER,
    Pair,
    Recorder,
    shadow_tables,
    snapshot_tables,
    staging_row_lock,
    sync_backends,
    wait_for,
)
from sync_assets_tests.cruise import ALL_STAGING, PATIENT, PRICING_LOCK

pytestmark = pytest.mark.faults


def start_runner(pair: Pair, config_path: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, PRODUCTION_ENV: "", STAGING_ENV: ""}
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, pair.prod_url, pair.staging_url, str(config_path)],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def test_killed_during_swap_leaves_staging_unchanged_and_readers_see_old_rows(cruise_pair: Pair, tmp_path: Path):
    config = tmp_path / "sync.yaml"
    config.write_text(PATIENT)
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)

    # pricing is applied after cruises, itineraries and the orphan backup: all of those are
    # already written inside the swap transaction when it waits for this lock.
    with staging_row_lock(cruise_pair, PRICING_LOCK):
        proc = start_runner(cruise_pair, config, tmp_path / "run.log")
        try:
            wait_for(lambda: sync_backends(cruise_pair, cruise_pair.staging_db, True), "the swap to wait on the lock")
            # A reader in the middle of the swap is not blocked and sees exactly the old state.
            with cruise_pair.staging() as reader:
                reader.execute("SET statement_timeout = '5s'")
                assert snapshot_tables(reader, ALL_STAGING) == before
                assert reader.execute("SELECT to_regclass('quote_requests_backup')").fetchone()[0] is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    wait_for(lambda: not sync_backends(cruise_pair, cruise_pair.staging_db, False), "the killed sessions to end")

    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, ALL_STAGING) == before
        assert staging.execute("SELECT to_regclass('quote_requests_backup')").fetchone()[0] is None
    leftovers = shadow_tables(cruise_pair)
    assert leftovers and all(name.startswith("shadow_") for name in leftovers)

    logs = Recorder()
    cruise_pair.sync(cruise.CONFIG_YAML, observer=logs)
    assert f"removed {len(leftovers)} shadow table(s) left by an interrupted run" in logs
    assert shadow_tables(cruise_pair) == []
    with cruise_pair.prod() as prod, cruise_pair.staging() as staging:
        for table in cruise.SYNCED:
            assert snapshot_tables(staging, [table]) == snapshot_tables(prod, [table])


def test_killed_while_copying_leaves_staging_unchanged(cruise_pair: Pair, tmp_path: Path) -> None:
    config = tmp_path / "sync.yaml"
    config.write_text(PATIENT)
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    # The application holds a lock on a production table: the sync's COPY of it waits.
    with cruise_pair.prod() as app:
        app.execute("BEGIN")
        app.execute("LOCK TABLE pricing IN ACCESS EXCLUSIVE MODE")
        proc = start_runner(cruise_pair, config, tmp_path / "run.log")
        try:
            wait_for(lambda: sync_backends(cruise_pair, cruise_pair.prod_db, True), "the COPY to wait on pricing")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        app.execute("ROLLBACK")
    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, ALL_STAGING) == before
    cruise_pair.sync(cruise.CONFIG_YAML)
    assert shadow_tables(cruise_pair) == []


COUNTS = (
    "SELECT (SELECT count(*) FROM cruises), (SELECT count(*) FROM itineraries),"
    " (SELECT count(*) FROM quote_requests), (SELECT count(*) FROM cruise_lines)"
)


@contextmanager
def sync_paused_in_swap(pair: Pair) -> Iterator[list[BaseException]]:
    """A sync in a thread, paused mid-swap on a row lock the test holds; it goes on when the block ends.
    Yields the list its exception (if any) lands in."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pair.sync(PATIENT)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    try:
        with staging_row_lock(pair, PRICING_LOCK):
            worker.start()
            wait_for(lambda: sync_backends(pair, pair.staging_db, True), "the swap to wait on the lock")
            yield errors
    finally:
        worker.join(timeout=60)
    assert not worker.is_alive()


def test_lost_staging_connection_mid_swap_is_transient_and_changes_nothing(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    with sync_paused_in_swap(cruise_pair) as errors, cruise_pair.cluster.connect() as admin:
        for pid in sync_backends(cruise_pair, cruise_pair.staging_db, True):
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert len(errors) == 1
    assert isinstance(errors[0], psycopg.OperationalError)
    assert is_transient(errors[0])
    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, ALL_STAGING) == before


def test_readers_see_old_state_until_commit_then_new_state(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    with sync_paused_in_swap(cruise_pair) as errors, cruise_pair.staging() as reader:
        reader.execute("SET statement_timeout = '5s'")
        # One statement reading every table at once: a torn state would show mixed counts.
        assert reader.execute(COUNTS).fetchone() == (200, 600, 25, 5)
        assert snapshot_tables(reader, ALL_STAGING) == before
    assert errors == []
    with cruise_pair.staging() as reader:
        assert reader.execute(COUNTS).fetchone() == (210, 590, 21, 6)


def test_second_concurrent_sync_is_refused_as_busy(cruise_pair: Pair) -> None:
    from sync_assets.engine.errors import BusyError

    with sync_paused_in_swap(cruise_pair) as errors, pytest.raises(BusyError, match="another sync is running"):
        cruise_pair.sync(cruise.CONFIG_YAML)
    assert errors == []


def test_production_sessions_refuse_writes(cruise_pair: Pair) -> None:
    with cruise_pair.cluster.connect(cruise_pair.prod_db) as admin:
        admin.execute("GRANT INSERT, UPDATE ON cruise_lines TO prod_reader")
    with cruise_pair.source.connect() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO cruise_lines (name) VALUES ('written by the sync?')")
    with cruise_pair.source.connect(autocommit=False) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.rollback()
        conn.execute("UPDATE cruise_lines SET name = name")


def test_dagster_retries_a_lost_connection_and_then_succeeds(cruise_pair: Pair, tmp_path: Path) -> None:
    import yaml

    from sync_assets.definitions import build_definitions
    from sync_assets.engine import parse_config

    config = parse_config(
        yaml.safe_load(cruise.CONFIG_YAML + "lock_timeout: 120s\nretries: 2\nretry_delay_seconds: 0.1\n")
    )
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, config, cache_dir=tmp_path)
    job = defs.resolve_job_def("sync_job")
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(job.execute_in_process(raise_on_error=False)))
    with staging_row_lock(cruise_pair, PRICING_LOCK):
        worker.start()
        pids = wait_for(lambda: sync_backends(cruise_pair, cruise_pair.staging_db, True), "the swap to wait")
        with cruise_pair.cluster.connect() as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    worker.join(timeout=120)
    result = outcome[0]
    events = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" in events
    assert result.success
    assert len(result.get_asset_materialization_events()) == len(cruise.SYNCED)
    with cruise_pair.prod() as prod, cruise_pair.staging() as staging:
        for table in cruise.SYNCED:
            assert snapshot_tables(staging, [table]) == snapshot_tables(prod, [table])


def test_short_lock_timeout_gives_up_as_a_transient_fault_and_changes_nothing(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    with staging_row_lock(cruise_pair, PRICING_LOCK), pytest.raises(psycopg.errors.LockNotAvailable) as err:
        cruise_pair.sync(cruise.CONFIG_YAML + "lock_timeout: 200ms\n")
    assert is_transient(err.value)
    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, ALL_STAGING) == before
