"""Fixtures: one throwaway PostgreSQL cluster per session, fresh production/staging databases per test."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
import yaml
from dagster_graphql import DagsterGraphQLClient
from psycopg import sql

from sync_assets.demo.localpg import free_port
from sync_assets.demo.process import dagster_dev, start_group, stop_group
from sync_assets.engine import (
    PRODUCTION_ENV,
    STAGING_ENV,
    Endpoint,
    Observer,
    Pause,
    SyncConfig,
    SyncResult,
    change_counters,
    parse_config,
    reconciled,
    run_sync,
)
from sync_assets.engine.shadows import BOOKKEEPING_SCHEMA, SHADOW_PREFIX
from sync_assets_tests import cruise
from sync_assets_tests.pgcluster import (
    FAST_ROLE,
    PROD_OWNER,
    PROD_READER,
    STAGING_OWNER,
    SUPERUSER,
    SUPERUSER_PASSWORD,
    WRITER_ROLE,
    Cluster,
)

_counter = itertools.count()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c = Cluster.start()
    try:
        yield c
    finally:
        c.stop()


def grant_reader(conn: psycopg.Connection) -> None:
    """Give the read-only production role SELECT on everything, as a DBA would."""
    schemas = [
        r[0]
        for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
        )
    ]
    for s in schemas:
        conn.execute(f'GRANT USAGE ON SCHEMA "{s}" TO {PROD_READER[0]}')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{s}" TO {PROD_READER[0]}')


class Recorder(list, Observer):
    """The lines a run says, in order (warnings also in .warnings); pause: a failpoint to stop at."""

    def __init__(self, pause: Pause | None = None) -> None:
        list.__init__(self)
        Observer.__init__(self, pause)
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        self.append(message)

    def warning(self, message: str) -> None:
        self.append(message)
        self.warnings.append(message)


@dataclass
class Pair:
    """A production and a staging database; URLs as the tool sees them (non-superuser roles)."""

    cluster: Cluster
    prod_db: str
    staging_db: str

    @property
    def prod_url(self) -> str:
        return self.cluster.url(self.prod_db, PROD_READER)

    @property
    def staging_url(self) -> str:
        return self.cluster.url(self.staging_db, STAGING_OWNER)

    @property
    def source(self) -> Endpoint:
        return Endpoint("production", PRODUCTION_ENV, self.prod_url)

    @property
    def target(self) -> Endpoint:
        return Endpoint("staging", STAGING_ENV, self.staging_url)

    def prod(self) -> psycopg.Connection:
        """A writing session on production, as the application (not the tool) has."""
        return self.cluster.connect(self.prod_db, PROD_OWNER)

    def staging(self) -> psycopg.Connection:
        return self.cluster.connect(self.staging_db, STAGING_OWNER)

    def run_prod(self, statements: str) -> None:
        with self.prod() as conn:
            conn.execute(statements)
            grant_reader(conn)

    def run_staging(self, statements: str) -> None:
        with self.staging() as conn:
            conn.execute(statements)

    def run_both(self, statements: str) -> None:
        """The same DDL (and data) on both sides."""
        self.run_prod(statements)
        self.run_staging(statements)

    def target_as(self, role: tuple[str, str]) -> Endpoint:
        """Staging as another role sees it."""
        return Endpoint("staging", STAGING_ENV, self.cluster.url(self.staging_db, role))

    def grant_writer(self, role: tuple[str, str] = WRITER_ROLE) -> None:
        """Let a role that owns nothing read and write staging's tables and sequences, as a DBA would."""
        with self.staging() as conn:
            conn.execute(sql.SQL("GRANT CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(self.staging_db), sql.Identifier(role[0])))  # fmt: skip
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(role[0])))
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
                    sql.Identifier(role[0])
                )
            )
            conn.execute(
                sql.SQL("GRANT SELECT, UPDATE, USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(
                    sql.Identifier(role[0])
                )
            )

    def sync(
        self,
        config: SyncConfig | str | None = None,
        selection=None,
        observer: Observer | None = None,
        target: Endpoint | None = None,
        dry_run: bool = False,
    ) -> SyncResult:
        if isinstance(config, str):
            config = parse_config(yaml.safe_load(config) or {})
        target = target or self.target
        observer = Recorder() if observer is None else observer
        return run_sync(self.source, target, config or SyncConfig(), selection, observer=observer, dry_run=dry_run)

    def assert_equal(self, tables: list[str] | tuple[str, ...]) -> None:
        """Staging holds exactly production's rows in these tables, every column, duplicates counted."""
        with self.prod() as prod, self.staging() as staging:
            differ = [t for t in tables if table_rows(staging, t) != table_rows(prod, t)]
        assert differ == [], f"staging differs from production in {differ}"

    def staging_state(self, tables: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
        with self.staging() as staging:
            return snapshot_tables(staging, list(tables))

    def assert_unchanged(self, before: dict[str, list[str]]) -> None:
        """Staging's tables hold exactly the rows staging_state found before."""
        assert self.staging_state(list(before)) == before


def _new_pair(cluster: Cluster, prod_template: str = "template0", staging_template: str = "template0") -> Pair:
    n = next(_counter)
    pid = os.getpid()
    pair = Pair(cluster, f"prod_{pid}_{n}", f"staging_{pid}_{n}")
    cluster.create_database(pair.prod_db, PROD_OWNER[0], prod_template)
    cluster.create_database(pair.staging_db, STAGING_OWNER[0], staging_template)
    return pair


@pytest.fixture
def pair(cluster: Cluster) -> Iterator[Pair]:
    """Empty production and staging databases."""
    p = _new_pair(cluster)
    yield p
    cluster.drop_database(p.prod_db)
    cluster.drop_database(p.staging_db)


@pytest.fixture(scope="session")
def fast_role(cluster: Cluster) -> tuple[str, str]:
    """A staging role like staging_owner (a member of it, so it owns what that role owns), also granted
    SET on session_replication_role (PostgreSQL 15+): foreign keys checked once per key."""
    name, password = FAST_ROLE
    with cluster.connect() as su:
        su.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE {STAGING_OWNER[0]}")
        su.execute(f"GRANT SET ON PARAMETER session_replication_role TO {name}")
    return FAST_ROLE


@pytest.fixture(scope="session")
def writer_role(cluster: Cluster) -> tuple[str, str]:
    """A staging role that may read and write the tables but owns none (Pair.grant_writer gives it a
    database's tables), and may not set session_replication_role."""
    name, password = WRITER_ROLE
    with cluster.connect() as su:
        su.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    return WRITER_ROLE


@pytest.fixture(scope="session")
def cruise_templates(cluster: Cluster) -> tuple[str, str]:
    """Template databases with the cruise schema: production moved on, staging older with its own people."""
    prod, staging = "tpl_cruise_prod", "tpl_cruise_staging"
    cluster.create_database(prod, PROD_OWNER[0])
    cluster.create_database(staging, STAGING_OWNER[0])
    with cluster.connect(prod, PROD_OWNER) as conn:
        conn.execute(cruise.SCHEMA)
        conn.execute(cruise.DATA)
        conn.execute(cruise.PRODUCTION_CHANGES)
        conn.execute("ANALYZE")
        grant_reader(conn)
    with cluster.connect(staging, STAGING_OWNER) as conn:
        conn.execute(cruise.SCHEMA)
        conn.execute(cruise.DATA)
        conn.execute(cruise.STAGING_OWN)
    cluster.mark_template(prod)
    cluster.mark_template(staging)
    return prod, staging


@pytest.fixture
def cruise_pair(cluster: Cluster, cruise_templates: tuple[str, str]) -> Iterator[Pair]:
    p = _new_pair(cluster, *cruise_templates)
    yield p
    cluster.drop_database(p.prod_db)
    cluster.drop_database(p.staging_db)


def table_rows(conn: psycopg.Connection, table: str | sql.Composable, columns: list[str] | None = None) -> list[str]:
    """Every row as text, sorted: equal lists mean equal tables, duplicates included.

    table: a name as SQL spells it (`pricing`, `"Sales Data"."Order"`), or an sql.Identifier. The table's
    own rows, as the sync copies them: a partitioned table with its partitions, any other without its
    inheritance children (which are tables of their own)."""
    name = table if isinstance(table, sql.Composable) else sql.SQL(table)
    spelled = name.as_string(conn)
    if columns is None:
        columns = table_columns(conn, spelled)
    partitioned = conn.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = %s::regclass", (spelled,)).fetchone()
    rel = name if partitioned and partitioned[0] else sql.SQL("ONLY {}").format(name)
    row = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return [r[0] for r in conn.execute(sql.SQL("SELECT ROW({})::text FROM {} ORDER BY 1").format(row, rel))]


def table_columns(conn: psycopg.Connection, table: str) -> list[str]:
    """The table's columns in order; table as SQL spells its name."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum",
            (table,),
        )
    ]


def snapshot_tables(conn: psycopg.Connection, tables: list[str]) -> dict[str, list[str]]:
    return {t: table_rows(conn, t) for t in tables}


@pytest.fixture
def dagster_env(cruise_pair: Pair, tmp_path: Path) -> dict[str, str]:
    """DAGSTER_HOME with the project's dagster.yaml, its storage in a fresh database of the test cluster."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    db = f"dagster_{cruise_pair.prod_db}"
    cruise_pair.cluster.create_database(db, SUPERUSER)
    config = tmp_path / "sync.yaml"
    config.write_text(cruise.CONFIG_YAML)
    url = cruise_pair.cluster.url(db, (SUPERUSER, SUPERUSER_PASSWORD)).replace(
        "postgresql://", "postgresql+psycopg2://"
    )
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": url,
        "DATABASE_URL_PRODUCTION": cruise_pair.prod_url,
        "DATABASE_URL_STAGING": cruise_pair.staging_url,
        "SYNC_ASSETS_CONFIG": str(config),
        "SYNC_ASSETS_CATALOG_CACHE": str(tmp_path / "cache"),
    }


def dg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The command line README shows (`dg launch --job sync_job`), run in the project folder."""
    import sys

    exe = Path(sys.executable).with_name("dg")
    return subprocess.run([str(exe), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@dataclass
class Webserver:
    port: int
    process: subprocess.Popen

    def graphql(self, query: str, **variables: object) -> dict:
        response = requests.post(
            f"http://127.0.0.1:{self.port}/graphql", json={"query": query, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]


@pytest.fixture
def webserver(dagster_env: dict[str, str], tmp_path: Path) -> Iterator[Webserver]:
    with serve(dagster_env, tmp_path) as server:
        yield server


@contextmanager
def serve(env: dict[str, str], tmp_path: Path) -> Iterator[Webserver]:
    """`dagster dev` on a free port with this environment, until the block ends."""
    port = free_port()
    log = (tmp_path / "dagster_dev.log").open("w")
    proc = start_group(dagster_dev(port, ROOT / "workspace.yaml"), env, ROOT, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "dagster dev did not come up within 180 s"
            time.sleep(0.5)
        yield Webserver(port, proc)
    finally:
        stop_group(proc)
        log.close()


# -- helpers shared by the test modules ----------------------------------------------------------------

RUNNER = """
import sys
from sync_assets.engine import Endpoint, Observer, Pause, load_config, run_sync

class Printer(Observer):
    def info(self, message):
        print(message, flush=True)

    warning = info

run_sync(Endpoint("production", "DATABASE_URL_PRODUCTION", sys.argv[1]),
         Endpoint("staging", "DATABASE_URL_STAGING", sys.argv[2]), load_config(sys.argv[3]),
         observer=Printer(Pause.from_environment()))
print("SYNC DONE", flush=True)
"""


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sync_backends(pair: Pair, dbname: str, waiting_on_lock: bool) -> list[int]:
    with pair.cluster.connect() as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'sync_assets' AND datname = %s"
            " AND (NOT %s OR wait_event_type = 'Lock')",
            (dbname, waiting_on_lock),
        ).fetchall()
    return [r[0] for r in rows]


def shadow_tables(pair: Pair) -> list[str]:
    """Relations a run left in the bookkeeping schema: shadows, scratch, their indexes (not its records)."""
    with pair.staging() as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'sync_assets' AND starts_with(c.relname, %s) ORDER BY 1",
                (SHADOW_PREFIX,),
            )
        ]


def mark_read_whole(pair: Pair, tables: tuple[str, ...] | list[str]) -> None:
    """Record in staging's bookkeeping that a run read these public tables whole just now (reconciled.py):
    the next resync compares them by keyed row hashes."""
    with pair.staging() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(BOOKKEEPING_SCHEMA)))
        conn.execute(sql.SQL(reconciled._CREATE).format(reconciled.STATE_TABLE))
        for table in tables:
            conn.execute(sql.SQL(reconciled._UPSERT).format(reconciled.STATE_TABLE), ("public", table, "test"))


@contextmanager
def staging_row_lock(pair: Pair, statement: str) -> Iterator[None]:
    """Hold a row lock in staging that the swap will need, so it pauses mid-transaction."""
    with pair.staging() as conn:
        conn.execute("BEGIN")
        conn.execute(statement)
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


def wait_for_writes(pair: Pair, before: dict[str, list[int]], tables: list[str]) -> dict[str, list[int]]:
    """Write counters reach pg_stat_user_tables when the writing backend flushes them (at the latest when it
    exits, just after its connection closed): poll for at most 10 s."""
    deadline = time.monotonic() + 10
    while True:
        with pair.source.connect() as conn:
            current = change_counters(conn, ("public",))
        if all(current.get(t) != before.get(t) for t in tables):
            return current
        assert time.monotonic() < deadline, f"the counters of {tables} did not move within 10 s"
        time.sleep(0.05)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_sync(webserver: Webserver) -> str:
    """Submit sync_job through the webserver and wait for it to finish; returns the run id."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port)
    run_id = client.submit_job_execution("sync_job", repository_location_name="sync_assets")
    deadline = time.monotonic() + 240
    status = client.get_run_status(run_id)
    while status.value not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run {run_id} still {status.value}"
        time.sleep(1)
        status = client.get_run_status(run_id)
    assert status.value == "SUCCESS"
    return run_id


def counts(result: SyncResult, table: str) -> tuple[int, int, int, int, int]:
    """A public table's (production rows, rows read, inserted, updated, deleted) in a run."""
    t = result.tables[("public", table)]
    return t.production_rows, t.read_rows, t.inserted, t.updated, t.deleted
