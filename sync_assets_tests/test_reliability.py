"""Limits, privileges and hostile input: each refused with a clear error that names the problem, before
anything changes; and staging's readers and writers carry on while a sync runs."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from psycopg import sql

from sync_assets.definitions import build_definitions
from sync_assets.engine import STAGING_ENV, Endpoint, Pause, Point, SyncResult, parse_config, run_sync
from sync_assets.engine.errors import SyncError, TableFailure
from sync_assets_tests import cruise
from sync_assets_tests.conftest import (
    Pair,
    Recorder,
    grant_reader,
    snapshot_tables,
    staging_row_lock,
    table_rows,
    wait_for,
)
from sync_assets_tests.cruise import ALL_STAGING, PATIENT, PRICING_LOCK
from sync_assets_tests.pgcluster import PROD_READER, STAGING_OWNER

pytestmark = pytest.mark.faults


# -- timeouts -----------------------------------------------------------------------------------------


def test_a_statement_past_statement_timeout_fails_and_changes_nothing(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    # The swap waits on this row lock; lock_timeout is long, so statement_timeout is what ends the wait.
    with staging_row_lock(cruise_pair, PRICING_LOCK), pytest.raises(TableFailure) as err:
        cruise_pair.sync(PATIENT + "statement_timeout: 700ms\n")
    assert "canceling statement due to statement timeout" in str(err.value)
    assert str(err.value).endswith("; raise 'statement_timeout' in the config if such a statement may take longer")
    assert str(err.value).startswith("applying public.pricing failed, staging left unchanged")
    cruise_pair.assert_unchanged(before)


def test_sessions_have_the_configured_timeouts_and_production_is_read_only(pair: Pair) -> None:
    limits = parse_config({"statement_timeout": "42s", "idle_in_transaction_timeout": "3min"}).session_limits()
    for endpoint in (pair.source, pair.target):
        with replace(endpoint, limits=limits).connect() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "42s"
            assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "3min"
    with pair.source.connect() as conn:
        assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"


# -- privileges, checked before any row moves -------------------------------------------------------


def _staging_as(pair: Pair, url: str) -> Endpoint:
    return Endpoint("staging", STAGING_ENV, url)


def _sync(pair: Pair, target: Endpoint, config: str = cruise.CONFIG_YAML) -> SyncResult:
    return run_sync(pair.source, target, parse_config(yaml.safe_load(config)))


def test_staging_role_missing_privileges_lists_them_all_before_anything_moves(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    role, password = f"limited_{os.getpid()}", "limited-S3cret-pw"
    with cruise_pair.cluster.connect(cruise_pair.staging_db) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), password))
        # All that staging's owner may (its member), except on pricing and its sequence, owned by another.
        admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(STAGING_OWNER[0]), sql.Identifier(role)))
        admin.execute("ALTER TABLE pricing OWNER TO postgres")
        admin.execute(sql.SQL("GRANT SELECT, INSERT ON pricing TO {}").format(sql.Identifier(role)))
    try:
        target = _staging_as(cruise_pair, cruise_pair.cluster.url(cruise_pair.staging_db, (role, password)))
        with pytest.raises(SyncError) as err:
            _sync(cruise_pair, target)
    finally:
        with cruise_pair.cluster.connect(cruise_pair.staging_db) as admin:
            admin.execute(sql.SQL("ALTER TABLE pricing OWNER TO {}").format(sql.Identifier(STAGING_OWNER[0])))
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert str(err.value) == (
        f"the staging role '{role}' lacks privileges the sync needs; grant them, or use a role that has them "
        "(README.md, 'Privileges'): public.pricing: UPDATE, DELETE; sequence public.pricing_id_seq: SELECT, UPDATE"
    )
    cruise_pair.assert_unchanged(before)


def test_read_only_staging_session_is_refused_before_anything_moves(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    url = cruise_pair.staging_url + "?options=-c%20default_transaction_read_only%3Don"
    with pytest.raises(SyncError) as err:
        _sync(cruise_pair, _staging_as(cruise_pair, url))
    assert str(err.value) == (
        "staging sessions of role 'staging_owner' are read-only (default_transaction_read_only is on); "
        "the sync must write to staging: use a role and database that allow writes"
    )
    cruise_pair.assert_unchanged(before)


def test_a_production_role_that_could_write_is_warned_about(cruise_pair: Pair) -> None:
    with cruise_pair.cluster.connect(cruise_pair.prod_db) as admin:
        admin.execute(f"GRANT INSERT, UPDATE ON cruise_lines, ports TO {PROD_READER[0]}")
    logs = Recorder()
    result = cruise_pair.sync(cruise.CONFIG_YAML, observer=logs)
    warning = (
        f"the production role '{PROD_READER[0]}' could write to public.cruise_lines, public.ports; the sync's "
        "sessions are read-only, but a role that cannot write is recommended (README.md, 'Privileges')"
    )
    assert result.warnings == [warning]
    assert warning in logs.warnings
    assert cruise_pair.sync(cruise.CONFIG_YAML).tables  # and the run itself went ahead


# -- hostile names and shifting ground --------------------------------------------------------------

EVIL = 'x"; drop table cruises; --'


def test_a_table_named_like_an_injection_syncs_and_harms_nothing(cruise_pair: Pair) -> None:
    ddl = sql.SQL("CREATE TABLE {} ({} int PRIMARY KEY, {} text)").format(
        sql.Identifier(EVIL), sql.Identifier("id'); drop table ports; --"), sql.Identifier('v" text); --')
    )
    for connect in (cruise_pair.prod, cruise_pair.staging):
        with connect() as conn:
            conn.execute(ddl)
    with cruise_pair.prod() as prod:
        prod.execute(sql.SQL("INSERT INTO {} VALUES (1, 'a'), (2, %s)").format(sql.Identifier(EVIL)), ("'); --",))
        grant_reader(prod)
    result = cruise_pair.sync(cruise.CONFIG_YAML + "preserve: [users, quote_requests, saved_searches]\n")
    assert result.tables[("public", EVIL)].inserted == 2
    with cruise_pair.prod() as prod, cruise_pair.staging() as staging:
        for table in (*cruise.SYNCED, sql.Identifier(EVIL)):
            assert table_rows(staging, table) == table_rows(prod, table), table
        assert prod.execute("SELECT count(*) FROM cruises").fetchone()[0] > 0  # nothing was dropped


def test_a_production_table_renamed_between_catalog_and_copy_fails_naming_it(
    cruise_pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    paused = Recorder(Pause(Point.PLANNED, tmp_path))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            cruise_pair.sync(cruise.CONFIG_YAML + "workers: 1\n", observer=paused)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_for(lambda: (tmp_path / "paused").exists(), "the run to plan")
    with cruise_pair.prod() as prod:
        prod.execute("ALTER TABLE ports RENAME TO harbours")
    (tmp_path / "resume").touch()
    worker.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], SyncError)
    assert str(errors[0]).startswith('copying public.ports failed, staging left unchanged: relation "public.ports"')
    cruise_pair.assert_unchanged(before)


# -- staging's readers and writers during a sync ----------------------------------------------------

WHOLE_STATE = """
SELECT (SELECT count(*) FROM cruises), (SELECT count(*) FROM pricing),
       (SELECT count(*) FROM pricing p WHERE NOT EXISTS (SELECT 1 FROM cruises c WHERE c.id = p.cruise_id)),
       (SELECT count(*) FROM quote_requests q WHERE NOT EXISTS (SELECT 1 FROM cruises c WHERE c.id = q.cruise_id))
"""


def test_readers_see_whole_states_and_an_application_keeps_writing_during_syncs(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        old = staging.execute(WHOLE_STATE).fetchone()
    with cruise_pair.prod() as prod:
        new = prod.execute(WHOLE_STATE).fetchone()
    halt = threading.Event()
    seen: set[tuple] = set()
    worst = [0.0]
    written: list[int] = []
    problems: list[BaseException] = []

    def reader() -> None:
        with cruise_pair.staging() as conn:
            while not halt.is_set():
                started = time.monotonic()
                seen.add(conn.execute(WHOLE_STATE).fetchone()[:3])
                worst[0] = max(worst[0], time.monotonic() - started)

    def writer() -> None:
        # The application books quotes on a cruise that production keeps.
        with cruise_pair.staging() as conn:
            while not halt.is_set():
                row = conn.execute(
                    "INSERT INTO quote_requests (user_id, cruise_id, note) VALUES (1, 5, 'during sync') RETURNING id"
                ).fetchone()
                written.append(row[0])
                time.sleep(0.005)

    def guarded(job):
        def run() -> None:
            try:
                job()
            except BaseException as exc:
                problems.append(exc)

        return run

    threads = [threading.Thread(target=guarded(reader)), threading.Thread(target=guarded(writer))]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            cruise_pair.sync(cruise.CONFIG_YAML)
    finally:
        halt.set()
        for t in threads:
            t.join(timeout=30)
    assert problems == []
    assert seen <= {old[:3], new[:3]} and new[:3] in seen, seen
    with cruise_pair.staging() as staging:
        kept = staging.execute("SELECT count(*) FROM quote_requests WHERE note = 'during sync'").fetchone()[0]
        assert staging.execute(WHOLE_STATE).fetchone()[3] == 0
    assert written and kept == len(written)
    print(f"worst staging reader latency during 3 syncs: {worst[0] * 1000:.1f} ms over {len(written)} writes")


def test_a_lock_held_past_lock_timeout_is_retried_with_backoff_until_it_goes(cruise_pair: Pair, tmp_path: Path) -> None:
    config = parse_config(
        yaml.safe_load(cruise.CONFIG_YAML + "lock_timeout: 300ms\nretries: 6\nretry_delay_seconds: 0.2\n")
    )
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, config, cache_dir=tmp_path)
    job = defs.resolve_job_def("sync_job")
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(job.execute_in_process(raise_on_error=False)))
    with cruise_pair.staging() as holder:
        holder.execute("BEGIN")
        holder.execute(PRICING_LOCK)
        worker.start()
        # While the swap keeps running into the lock and backing off, staging's readers are never held up.
        with cruise_pair.staging() as reader:
            reader.execute("SET statement_timeout = '2s'")
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                reader.execute("SELECT count(*) FROM cruises JOIN pricing ON pricing.cruise_id = cruises.id").fetchone()
        holder.execute("ROLLBACK")
    worker.join(timeout=120)
    result = outcome[0]
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried and result.success
    with cruise_pair.prod() as prod, cruise_pair.staging() as staging:
        for table in cruise.SYNCED:
            assert table_rows(staging, table) == table_rows(prod, table), table
