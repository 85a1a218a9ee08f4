"""content_matches: staging's rows against the snapshot's, content and not just count. It passes after
every sync that made staging equal, and fails exactly where content differs: a trigger that rewrote a
column, a row changed by hand in staging, an incremental table whose unread rows drifted."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetCheckEvaluation, AssetKey, DagsterInstance

from sync_assets.definitions import build_definitions
from sync_assets.engine import SyncConfig, SyncResult, parse_config
from sync_assets.engine.content import Fingerprint, Method, Scope
from sync_assets_tests.conftest import Pair

T = ("public", "t")
CONTENT = "content_matches"
ROW_COUNT = "row_count_matches"


def prints(result: SyncResult, key: tuple[str, str] = T) -> tuple[Fingerprint, Fingerprint]:
    table = result.tables[key]
    assert isinstance(table.snapshot_print, Fingerprint), table.snapshot_print
    assert isinstance(table.staging_print, Fingerprint), table.staging_print
    return table.snapshot_print, table.staging_print


def evaluations(pair: Pair, tmp_path: Path, config: str = "", checks_only: bool = False) -> dict:
    """{(table, check): evaluation} of a sync_job run (or of a run of the checks alone)."""
    defs = build_definitions(pair.prod_url, pair.staging_url, parse_config({}) if not config else _config(config),
                             cache_dir=tmp_path)  # fmt: skip
    job = defs.resolve_job_def("sync_job")
    if checks_only:
        job = job.get_subset(asset_check_selection=set(defs.resolve_asset_graph().asset_check_keys))
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    found: list[AssetCheckEvaluation] = result.get_asset_check_evaluations()
    return {(e.asset_key.path[-1], e.check_name): e for e in found}


def _config(text: str) -> SyncConfig:
    import yaml

    return parse_config(yaml.safe_load(text))


KITCHEN = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE t (
    id int PRIMARY KEY, m mood, ms mood[], n numeric, f float8, js json, jb jsonb, p point, ts tsvector,
    money money, b bit(3), iv interval, s text COLLATE "C", stamp timestamptz, updated_at timestamptz
);
"""
KITCHEN_ROWS = """
INSERT INTO t SELECT i, 'ok', '{sad,happy}', i * 1.50, i / 3.0, '{"a": 1,  "b": [1]}', '{"x": 2}', point(i, -i),
       to_tsvector('simple', 'row ' || i), i * 2.5, B'101', i * interval '1 day 2 hours', 'text ' || i,
       timestamptz '2024-01-01 00:00+00' + i * interval '1 minute', timestamptz '2024-01-01 00:00+00'
FROM generate_series(1, 50) i;
"""


def test_every_type_is_fingerprinted_and_matches_after_a_sync(pair: Pair) -> None:
    pair.run_both(KITCHEN)
    pair.run_prod(KITCHEN_ROWS)

    snapshot, staging = prints(pair.sync())

    assert staging.matches(snapshot)
    assert (snapshot.rows, snapshot.scope) == (50, Scope.STAGING)


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE t SET n = 1.500 WHERE id = 1",  # equal as numbers, another representation
        'UPDATE t SET js = \'{"a": 1, "b": [1]}\' WHERE id = 2',  # equal as json values, other text
        "UPDATE t SET m = 'happy' WHERE id = 3",
        "UPDATE t SET f = f + 1e-12 WHERE id = 4",
        "UPDATE t SET p = point(0, 0) WHERE id = 5",
        "UPDATE t SET ts = to_tsvector('simple', 'other') WHERE id = 6",
        "UPDATE t SET b = B'111' WHERE id = 7",
        "UPDATE t SET s = s || ' ' WHERE id = 8",
        "UPDATE t SET ms = NULL WHERE id = 9",
        "DELETE FROM t WHERE id = 10; INSERT INTO t (id) VALUES (1000)",  # as many rows, other ones
    ],
)
def test_a_row_changed_by_hand_in_staging_fails_the_check_of_a_run_that_did_not_sync_it(
    pair: Pair, tmp_path: Path, edit: str
) -> None:
    pair.run_both(KITCHEN)
    pair.run_prod(KITCHEN_ROWS)
    assert evaluations(pair, tmp_path)[("t", CONTENT)].passed
    assert evaluations(pair, tmp_path, checks_only=True)[("t", CONTENT)].passed

    pair.run_staging(edit)
    found = evaluations(pair, tmp_path, checks_only=True)

    assert found[("t", ROW_COUNT)].passed
    check = found[("t", CONTENT)]
    assert not check.passed
    assert check.description.startswith(
        "staging's rows differ from production now (this run did not sync the table) in content: as many rows (50)"
    )
    # the next sync repairs the row, and says so
    assert evaluations(pair, tmp_path)[("t", CONTENT)].passed


LAST_UPDATE = """
CREATE TABLE t (id int PRIMARY KEY, name text, last_update timestamptz NOT NULL DEFAULT '2020-01-01');
"""
STAGING_TRIGGER = """
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.last_update = now(); RETURN NEW; END $$;
CREATE TRIGGER t_stamp BEFORE INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION stamp();
"""


def test_a_staging_trigger_that_rewrote_a_column_fails_the_check_naming_it(pair: Pair, tmp_path: Path) -> None:
    pair.run_both(LAST_UPDATE)
    pair.run_prod("INSERT INTO t (id, name) SELECT i, 'n' || i FROM generate_series(1, 5) i")
    pair.run_staging(STAGING_TRIGGER)

    found = evaluations(pair, tmp_path, "staging_triggers: fire\n")

    assert found[("t", ROW_COUNT)].passed
    check = found[("t", CONTENT)]
    assert not check.passed
    assert check.description == (
        "staging's rows differ from the snapshot this run copied in content: as many rows (5), other values in "
        "some; staging's own triggers public.t.t_stamp fired on the rows the sync wrote and may have changed "
        "them (staging_triggers)"
    )
    # by default the trigger does not fire on the rows written, and the check passes
    assert evaluations(pair, tmp_path)[("t", CONTENT)].passed


def test_the_runs_own_prints_differ_where_a_trigger_rewrote_rows(pair: Pair) -> None:
    """The engine's own evidence: prints are taken inside the swap transaction, of what it commits."""
    pair.run_both(LAST_UPDATE)
    pair.run_prod("INSERT INTO t (id, name) SELECT i, 'n' || i FROM generate_series(1, 5) i")
    pair.run_staging(STAGING_TRIGGER)

    snapshot, staging = prints(pair.sync("staging_triggers: fire\n"))

    assert snapshot.rows == staging.rows == 5
    assert not staging.matches(snapshot)


WIDENED_PRODUCTION = """
CREATE TABLE t (
    id int PRIMARY KEY, small int, short varchar(10), padded char(5), amount numeric(5,1), doc json, ratio real,
    at timestamp(3), updated_at timestamptz NOT NULL DEFAULT now()
);
"""
WIDENED_STAGING = """
CREATE TABLE t (
    id bigint PRIMARY KEY, small bigint, short text, padded text, amount numeric(12,2), doc jsonb,
    ratio double precision, at timestamp(6), updated_at timestamptz NOT NULL DEFAULT now()
);
"""


def test_an_incremental_table_with_widened_types_is_compared_across_the_databases(pair: Pair, tmp_path: Path) -> None:
    pair.run_prod(
        WIDENED_PRODUCTION + "INSERT INTO t SELECT i, i, 'v' || i, 'ab', i / 10.0, '{\"k\":  [1, 2]}', 1.1 * i,"
        " timestamp '2024-01-01 10:00:00.123', now() FROM generate_series(1, 30) i"
    )
    pair.run_staging(WIDENED_STAGING)
    config = "mode: incremental\nincremental_overlap: 0s\n"
    pair.sync(config)  # read whole
    pair.run_prod("UPDATE t SET short = 'changed', updated_at = now() WHERE id = 3")

    snapshot, staging = prints(pair.sync(config))

    assert snapshot.scope == Scope.ACROSS
    assert staging.matches(snapshot) and snapshot.rows == 30
    assert evaluations(pair, tmp_path, config, checks_only=True)[("t", CONTENT)].passed

    # a row the incremental read does not look at, changed by hand in staging: the check says so
    pair.run_staging("UPDATE t SET amount = 99 WHERE id = 20")
    snapshot, staging = prints(pair.sync(config))
    assert not staging.matches(snapshot)
    found = evaluations(pair, tmp_path, config)
    assert not found[("t", CONTENT)].passed and found[("t", ROW_COUNT)].passed


def test_merge_mode_compares_the_rows_production_has(pair: Pair, tmp_path: Path) -> None:
    pair.run_both("CREATE TABLE t (id int PRIMARY KEY, v text);")
    pair.run_prod("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 10) i")
    pair.sync("mode: merge\n")
    pair.run_prod("DELETE FROM t WHERE id > 8; UPDATE t SET v = 'new' WHERE id = 1")

    found = evaluations(pair, tmp_path, "mode: merge\n")

    assert found[("t", CONTENT)].passed
    assert found[("t", CONTENT)].description == (
        "staging's rows with the snapshot's keys (8) equal the snapshot this run copied, row for row, in every "
        "copied column; staging keeps 2 more (mode merge)"
    )
    assert evaluations(pair, tmp_path, "mode: merge\n", checks_only=True)[("t", CONTENT)].passed
    pair.run_staging("UPDATE t SET v = 'by hand' WHERE id = 2")
    assert not evaluations(pair, tmp_path, "mode: merge\n", checks_only=True)[("t", CONTENT)].passed


def test_a_table_with_types_without_a_hash_is_fingerprinted_through_text(pair: Pair) -> None:
    pair.run_both("CREATE TABLE t (id int PRIMARY KEY, b bit(4), vb varbit, m money, p point);")
    pair.run_prod("INSERT INTO t VALUES (1, B'1010', B'1', 1.5, point(1, 2)), (2, B'0000', B'11', 2, point(0, 0))")

    snapshot, staging = prints(pair.sync())

    assert staging.matches(snapshot)
    assert snapshot.method in (Method.MIXED, Method.TEXT)


def test_every_synced_asset_has_the_check(pair: Pair, tmp_path: Path) -> None:
    pair.run_both("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);")
    defs = build_definitions(pair.prod_url, pair.staging_url, SyncConfig(), cache_dir=tmp_path)
    checks = {(c.asset_key, c.name) for c in defs.resolve_asset_graph().asset_check_keys}
    for table in ("a", "b"):
        assert (AssetKey(["staging", "public", table]), CONTENT) in checks


def test_checks_that_cannot_read_production_fail_saying_why_and_so_does_the_run(pair: Pair, tmp_path: Path) -> None:
    from sync_assets.demo.localpg import free_port
    from sync_assets.engine import load_catalog

    pair.run_both("CREATE TABLE t (id int PRIMARY KEY);")
    loaded = load_catalog(pair.prod_url, ("public",), tmp_path)
    down = pair.prod_url.replace(f":{pair.cluster.port}/", f":{free_port()}/")
    defs = build_definitions(down, pair.staging_url, SyncConfig(), cache_dir=tmp_path, catalog=loaded)
    job = defs.resolve_job_def("sync_job")
    checks_only = job.get_subset(asset_check_selection=set(defs.resolve_asset_graph().asset_check_keys))

    result = checks_only.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)

    assert not result.success
    found = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(found) == {CONTENT, ROW_COUNT}
    for evaluation in found.values():
        assert not evaluation.passed
        assert evaluation.description.startswith("not checked: the production database at 127.0.0.1:")
        assert "is unreachable (connection refused)" in evaluation.description
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and failure.description.startswith("the checks could not read both sides: ")
