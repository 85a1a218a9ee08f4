"""Fault injection: a run struck at each named point of its phases (sync_assets/engine/observe.py, Point) by a SIGKILL,
a terminated staging or production session, or a restarted server, leaves every staging table whole (old
state before the commit, new state after it), loses no preserved row, and the next run cleans up and
succeeds.

Production lives on a server of its own here, so restarting it leaves staging's server running.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from sync_assets.engine import PRODUCTION_ENV, STAGING_ENV
from sync_assets.engine.observe import PAUSE_ENV, POINTS
from sync_assets_tests import cruise
from sync_assets_tests.conftest import (
    RUNNER,
    Pair,
    Recorder,
    grant_reader,
    mark_read_whole,
    shadow_tables,
    snapshot_tables,
    sync_backends,
    table_columns,
    table_rows,
    wait_for,
)
from sync_assets_tests.pgcluster import PROD_OWNER, PROD_READER, SUPERUSER_PASSWORD, Cluster

pytestmark = pytest.mark.faults

ALL_STAGING = [*cruise.SYNCED, *cruise.PRESERVED]
CONFIG = cruise.CONFIG_YAML + "retries: 0\n"
# Enough rows that a table's COPY sends several buffers, so a run can be struck mid-stream.
BULK = """
INSERT INTO webhook_events (received_at, source, payload)
SELECT timestamptz '2026-05-01 00:00+00' + i * interval '1 second', 'bulk',
       jsonb_build_object('n', i, 'pad', repeat('x', 200))
FROM generate_series(1, 12000) i;
"""
BIG_TEMPLATE = "tpl_fault_prod_big"
BIG = """
INSERT INTO pricing (cruise_id, cabin_category, price, currency, valid_from, valid_to)
SELECT 1 + i % 190, (ARRAY['INS', 'OCV', 'BAL', 'STE'])[1 + i % 4], 100 + i % 5000, 'USD',
       timestamptz '2025-06-01 00:00+00' + (i % 365) * interval '1 day', 'infinity'
FROM generate_series(1, 250000) i;
"""
COMMIT_POINT = POINTS.index("committed")
_numbers = itertools.count()


@dataclass
class SplitPair(Pair):
    """Production on a server of its own."""

    prod_cluster: Cluster | None = None

    @property
    def prod_url(self) -> str:
        assert self.prod_cluster is not None
        return self.prod_cluster.url(self.prod_db, PROD_READER)

    def prod(self) -> psycopg.Connection:
        assert self.prod_cluster is not None
        return self.prod_cluster.connect(self.prod_db, PROD_OWNER)


@pytest.fixture(scope="module")
def prod_cluster() -> Iterator[Cluster]:
    c = Cluster.start()
    template = "tpl_fault_prod"
    c.create_database(template, PROD_OWNER[0])
    with c.connect(template, PROD_OWNER) as conn:
        conn.execute(cruise.SCHEMA)
        conn.execute(cruise.DATA)
        conn.execute(cruise.PRODUCTION_CHANGES)
        conn.execute(BULK)
        grant_reader(conn)
    c.mark_template(template)
    # The same, with enough rows that a sync takes seconds: for kills at moments nobody chose.
    c.create_database(BIG_TEMPLATE, PROD_OWNER[0], template)
    with c.connect(BIG_TEMPLATE, PROD_OWNER) as conn:
        conn.execute(BIG)
        conn.execute("ANALYZE")
    c.mark_template(BIG_TEMPLATE)
    try:
        yield c
    finally:
        c.stop()


@contextmanager
def _split_pair(
    cluster: Cluster, prod_cluster: Cluster, staging_template: str, prod_template: str = "tpl_fault_prod"
) -> Iterator[SplitPair]:
    n = next(_numbers)
    pair = SplitPair(cluster, f"fault_prod_{os.getpid()}_{n}", f"fault_staging_{os.getpid()}_{n}", prod_cluster)
    prod_cluster.create_database(pair.prod_db, PROD_OWNER[0], prod_template)
    cluster.create_database(pair.staging_db, "staging_owner", staging_template)
    try:
        yield pair
    finally:
        prod_cluster.drop_database(pair.prod_db)
        cluster.drop_database(pair.staging_db)


@pytest.fixture
def split_pair(cluster: Cluster, prod_cluster: Cluster, cruise_templates: tuple[str, str]) -> Iterator[SplitPair]:
    with _split_pair(cluster, prod_cluster, cruise_templates[1]) as pair:
        yield pair


# -- the faults --------------------------------------------------------------------------------------


def _terminate(server: Cluster, dbname: str) -> None:
    with server.connect() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND application_name = 'sync_assets'",
            (dbname,),
        )


def _restart(server: Cluster) -> None:
    server.server.stop("fast")
    server.server.start()


FAULTS: dict[str, Callable[[SplitPair, subprocess.Popen], None]] = {
    "sigkill": lambda pair, proc: os.killpg(proc.pid, signal.SIGKILL),
    "staging_session_killed": lambda pair, proc: _terminate(pair.cluster, pair.staging_db),
    "production_session_killed": lambda pair, proc: _terminate(pair.prod_cluster, pair.prod_db),  # type: ignore[arg-type]
    "production_restarted": lambda pair, proc: _restart(pair.prod_cluster),  # type: ignore[arg-type]
    "staging_restarted": lambda pair, proc: _restart(pair.cluster),
}
ENGINE_POINTS = [p for p in POINTS if p != "reported"]  # "reported" is Dagster's: test_dagster_faults
HASH_POINTS = ("compared", "fetched")  # passed only by a resync that compares keyed row hashes
CASES = (
    [("sigkill", p) for p in ENGINE_POINTS]
    + [("staging_session_killed", p) for p in ENGINE_POINTS[: COMMIT_POINT + 1]]
    + [("production_session_killed", p) for p in ENGINE_POINTS[: POINTS.index("extracted") + 1]]
    + [("production_restarted", p) for p in ("copy_started", "copy_streaming", "table_copied")]
    + [("staging_restarted", p) for p in ("orphans_handled", "upserted", "bookkeeping_written")]
)


# -- what must hold afterwards -------------------------------------------------------------------------


def _preserved_rows(conn: psycopg.Connection) -> dict[str, set[str]]:
    """Each preserved table's rows, with those its backup table holds."""
    rows: dict[str, set[str]] = {}
    for table in cruise.PRESERVED:
        kept = set(table_rows(conn, table))
        columns = table_columns(conn, table)
        if conn.execute("SELECT to_regclass(%s)", (f"{table}_backup",)).fetchone()[0] is not None:
            kept |= set(table_rows(conn, f"{table}_backup", columns))
        rows[table] = kept
    return rows


def _assert_whole(pair: SplitPair, before: dict[str, list[str]], after_commit: bool) -> None:
    with pair.staging() as staging, pair.prod() as prod:
        now = snapshot_tables(staging, ALL_STAGING)
        new = snapshot_tables(prod, list(cruise.SYNCED))
        for table in cruise.SYNCED:
            expected = new[table] if after_commit else before[table]
            assert now[table] == expected, f"{table} is neither whole old nor whole new"
        if not after_commit:
            for table in cruise.PRESERVED:
                assert now[table] == before[table], table
            assert staging.execute("SELECT to_regclass('quote_requests_backup')").fetchone()[0] is None
        kept = _preserved_rows(staging)
        for table in cruise.PRESERVED:
            assert set(before[table]) <= kept[table], f"a row of {table} was lost"


def _strike(pair: SplitPair, tmp_path: Path, point: str, fault: str) -> tuple[int, str]:
    folder = tmp_path / "pause"
    folder.mkdir()
    config = tmp_path / "sync.yaml"
    config.write_text(CONFIG)
    log = tmp_path / "run.log"
    env = {**os.environ, PRODUCTION_ENV: "", STAGING_ENV: "", PAUSE_ENV: f"{point}@{folder}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, pair.prod_url, pair.staging_url, str(config)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group, as a run worker has
    )
    try:
        wait_for(lambda: (folder / "paused").exists() or proc.poll() is not None, f"the run to reach {point}", 60)
        assert (folder / "paused").exists(), f"the run ended before {point}:\n{log.read_text()}"
        FAULTS[fault](pair, proc)
        (folder / "resume").touch()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return code, log.read_text()


@pytest.mark.parametrize(("fault", "point"), CASES, ids=[f"{f}@{p}" for f, p in CASES])
def test_a_struck_run_leaves_staging_whole_and_the_next_run_succeeds(
    split_pair: SplitPair, tmp_path: Path, fault: str, point: str
) -> None:
    if point in HASH_POINTS:
        mark_read_whole(split_pair, cruise.SYNCED)  # staging as a run left it: the resync compares hashes
    with split_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    code, log = _strike(split_pair, tmp_path, point, fault)
    after_commit = POINTS.index(point) >= COMMIT_POINT
    if fault == "sigkill":
        assert code == -signal.SIGKILL
    elif not after_commit:
        # The run needed the session it lost: it fails, saying why, and names no password.
        assert code != 0, log
        assert "connection" in _final_error(log).lower(), log
    assert SUPERUSER_PASSWORD not in log and PROD_READER[1] not in log
    wait_for(lambda: not sync_backends(split_pair, split_pair.staging_db, False), "the struck run's sessions to end")
    _assert_whole(split_pair, before, after_commit)

    logs = Recorder()
    split_pair.sync(CONFIG, observer=logs)
    assert shadow_tables(split_pair) == []
    with split_pair.staging() as staging:
        assert staging.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't'").fetchone()[0] == 0
    _assert_whole(split_pair, before, after_commit=True)


def _final_error(log: str) -> str:
    """The exception a run ended with: the lines after its traceback's frames."""
    lines = log[log.rfind("Traceback") :].splitlines()[1:]
    first = next(i for i, line in enumerate(lines) if not line.startswith(" "))
    return "\n".join(lines[first:])


def test_every_point_is_struck() -> None:
    """The cases here cover every point of the engine; test_dagster_faults strikes "reported" (and
    "upserted" again, through Dagster's run termination)."""
    assert {p for _, p in CASES} == set(ENGINE_POINTS) == set(POINTS) - {"reported"}
    assert len(POINTS) == 22 and len(CASES) == 57


@pytest.mark.slow
def test_killed_at_moments_spread_over_a_sync_of_several_seconds(
    cluster: Cluster, prod_cluster: Cluster, cruise_templates: tuple[str, str], tmp_path: Path
) -> None:
    """No pause points: SIGKILLs at fractions of an uninterrupted run's duration, wherever they land."""
    config = tmp_path / "sync.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, PRODUCTION_ENV: "", STAGING_ENV: ""}

    def start(pair: SplitPair, log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", RUNNER, pair.prod_url, pair.staging_url, str(config)],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip

    with _split_pair(cluster, prod_cluster, cruise_templates[1], BIG_TEMPLATE) as pair:
        started = time.monotonic()
        assert start(pair, tmp_path / "whole.log").wait(timeout=300) == 0, (tmp_path / "whole.log").read_text()
        duration = time.monotonic() - started
    outcomes = []
    for i, share in enumerate((0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 0.97)):
        with _split_pair(cluster, prod_cluster, cruise_templates[1], BIG_TEMPLATE) as pair:
            with pair.staging() as staging:
                before = snapshot_tables(staging, ALL_STAGING)
            log = tmp_path / f"run{i}.log"
            proc = start(pair, log)
            time.sleep(duration * share)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            committed = "committed the swap" in log.read_text()
            ended = lambda pair=pair: not sync_backends(pair, pair.staging_db, False)  # noqa: E731
            wait_for(ended, "the killed run's sessions to end")
            with pair.staging() as staging:
                swapped = snapshot_tables(staging, ["pricing"]) != {"pricing": before["pricing"]}
            # Killed after COMMIT (whether or not it logged so), the new state; before, the old one.
            _assert_whole(pair, before, after_commit=swapped or committed)
            outcomes.append("new" if swapped else "old")
            pair.sync(CONFIG)
            assert shadow_tables(pair) == []
            _assert_whole(pair, before, after_commit=True)
    print(f"a whole sync took {duration:.1f}s; killed at its shares, staging held: {outcomes}")
    assert "old" in outcomes, outcomes  # the kills did land before the commit, at least sometimes
