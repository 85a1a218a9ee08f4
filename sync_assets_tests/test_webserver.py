"""End to end through the real UI server: `dagster dev`, a run launched over GraphQL, results read back."""

from __future__ import annotations

import pytest

from sync_assets_tests import cruise
from sync_assets_tests.conftest import Pair, Webserver, launch_sync, table_rows

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


CHECKS = ("row_count_matches", "content_matches")


def test_sync_job_launched_through_the_webserver(cruise_pair: Pair, webserver: Webserver) -> None:
    run_id = launch_sync(webserver)
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
        **{(f"staging/public/{t}", check): True for t in cruise.SYNCED for check in CHECKS},
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
