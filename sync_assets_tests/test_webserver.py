"""End to end through the real UI server: `dagster dev`, a run launched over GraphQL, results read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from sync_assets.localpg import free_port
from sync_assets_tests import cruise
from sync_assets_tests.conftest import ROOT, Pair, table_rows

pytestmark = pytest.mark.slow

RUN_EVENTS = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    ... on EventConnection {
      events {
        __typename
        ... on MaterializationEvent {
          assetKey { path }
          metadataEntries { label ... on IntMetadataEntry { intValue } }
        }
        ... on AssetCheckEvaluationEvent { evaluation { checkName success assetKey { path } } }
      }
    }
  }
}
"""


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


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def webserver(dagster_env: dict[str, str], tmp_path: Path) -> Iterator[Webserver]:
    port = free_port()
    log = (tmp_path / "dagster_dev.log").open("w")
    dagster = str(Path(sys.executable).with_name("dagster"))
    proc = subprocess.Popen(
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        env=dagster_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_default_signals,
    )  # fmt: skip
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
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_sync_job_launched_through_the_webserver(cruise_pair: Pair, webserver: Webserver) -> None:
    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port)
    run_id = client.submit_job_execution("sync_job", repository_location_name="sync_assets")

    deadline = time.monotonic() + 240
    status = client.get_run_status(run_id)
    while status.value not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run {run_id} still {status.value}"
        time.sleep(1)
        status = client.get_run_status(run_id)
    assert status.value == "SUCCESS"

    events = webserver.graphql(RUN_EVENTS, runId=run_id)["logsForRun"]["events"]
    materialized = {
        "/".join(e["assetKey"]["path"]): {m["label"]: m.get("intValue") for m in e["metadataEntries"]}
        for e in events
        if e["__typename"] == "MaterializationEvent"
    }
    assert set(materialized) == {f"staging/public/{t}" for t in cruise.SYNCED}
    cruises = materialized["staging/public/cruises"]
    assert (cruises["rows_inserted"], cruises["rows_updated"], cruises["rows_deleted"]) == (20, 11, 10)
    assert cruises["dagster/row_count"] == 210
    checks = {
        ("/".join(e["evaluation"]["assetKey"]["path"]), e["evaluation"]["checkName"]): e["evaluation"]["success"]
        for e in events
        if e["__typename"] == "AssetCheckEvaluationEvent"
    }
    assert checks == {
        **{(f"staging/public/{t}", "row_count_matches"): True for t in cruise.SYNCED},
        ("staging/public/quote_requests", "no_orphans"): True,
        ("staging/public/saved_searches", "no_orphans"): True,
    }
    with cruise_pair.prod() as prod, cruise_pair.staging() as staging:
        for table in cruise.SYNCED:
            assert table_rows(staging, table) == table_rows(prod, table)

    # the UI's resource view shows where the URLs come from, never the URLs
    resources = webserver.graphql(
        """{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { ... on RepositoryLocation {
           repositories { allTopLevelResourceDetails { name configuredValues { key value type } } } } } } } } }"""
    )
    text = str(resources)
    assert "DATABASE_URL_PRODUCTION" in text and "DATABASE_URL_STAGING" in text
    assert "S3cret" not in text
