"""The command line a data engineer uses (`dg launch`, as README shows it) against the real dagster.yaml."""

from __future__ import annotations

import pytest

from sync_assets_tests import cruise
from sync_assets_tests.conftest import Pair, dg, snapshot_tables, table_rows
from sync_assets_tests.pgcluster import SUPERUSER_PASSWORD

pytestmark = pytest.mark.slow


def test_materialize_one_table_from_the_cli(cruise_pair: Pair, dagster_env: dict[str, str]) -> None:
    tables = [*cruise.SYNCED, *cruise.PRESERVED]
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, tables)

    done = dg(dagster_env, "launch", "--assets", "staging/public/ports")

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "RUN_SUCCESS" in output
    for secret in ("reader-S3cret", "staging-S3cret", SUPERUSER_PASSWORD):
        assert secret not in output
    with cruise_pair.staging() as staging, cruise_pair.prod() as prod:
        after = snapshot_tables(staging, tables)
        assert after["ports"] == table_rows(prod, "ports")
    assert {t for t in tables if after[t] != before[t]} == {"ports"}


def test_cli_run_with_missing_env_var_fails_clearly(cruise_pair: Pair, dagster_env: dict[str, str]) -> None:
    env = {k: v for k, v in dagster_env.items() if k != "DATABASE_URL_STAGING"}
    done = dg(env, "launch", "--assets", "staging/public/ports")
    assert done.returncode != 0
    assert "DATABASE_URL_STAGING" in done.stdout + done.stderr
