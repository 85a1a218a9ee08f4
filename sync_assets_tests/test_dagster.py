"""The Dagster layer on real PostgreSQL: asset graph, runs, subsets, checks, failures, code location
resilience, the schedule and the production-change sensor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    ExecuteInProcessResult,
    FloatMetadataValue,
    IntMetadataValue,
    SensorResult,
    SkipReason,
    TableSchemaMetadataValue,
    TextMetadataValue,
    build_sensor_context,
)

from sync_assets.definitions import build_definitions
from sync_assets.defs.resources import ProductionDatabase
from sync_assets.engine import LoadedCatalog, SyncConfig, load_catalog, parse_config
from sync_assets_tests import cruise
from sync_assets_tests.conftest import Pair, closed_port, snapshot_tables, table_rows, wait_for_writes
from sync_assets_tests.pgcluster import PROD_OWNER, PROD_READER, STAGING_OWNER, SUPERUSER_PASSWORD

CONFIG = parse_config(yaml.safe_load(cruise.CONFIG_YAML))
ALL_TABLES = [*cruise.SYNCED, *cruise.PRESERVED]
ROW_COUNT = "row_count_matches"
NO_ORPHANS = "no_orphans"
PASSWORDS = [PROD_OWNER[1], PROD_READER[1], STAGING_OWNER[1], SUPERUSER_PASSWORD]


def staging(table: str) -> AssetKey:
    return AssetKey(["staging", "public", table])


def production(table: str) -> AssetKey:
    return AssetKey(["production", "public", table])


SYNCED_KEYS = {staging(t) for t in cruise.SYNCED}
PRESERVED_KEYS = {staging(t) for t in cruise.PRESERVED}
PRODUCTION_KEYS = {production(t) for t in cruise.SYNCED}
CONTENT = "content_matches"
ALL_CHECKS = {AssetCheckKey(staging(t), check) for t in cruise.SYNCED for check in (ROW_COUNT, CONTENT)} | {
    AssetCheckKey(staging("quote_requests"), NO_ORPHANS),
    AssetCheckKey(staging("saved_searches"), NO_ORPHANS),
}
# The foreign keys of cruise.SCHEMA, child -> parents (regions' reference to itself left out).
SYNCED_PARENTS = {
    "cabin_categories": set(),
    "cruise_lines": set(),
    "cruises": {"ships", "regions", "ports"},
    "itineraries": {"cruises", "ports"},
    "ports": set(),
    "price_snapshots": {"cruises"},
    "pricing": {"cruises", "cabin_categories"},
    "regions": set(),
    "ships": {"cruise_lines"},
    "webhook_events": set(),
}
PRESERVED_PARENTS = {"users": set(), "quote_requests": {"users", "cruises"}, "saved_searches": {"users"}}
CRUISES_COLUMNS = [
    "id", "ship_id", "region_id", "departure_port", "departs_on", "nights", "status", "base_price",
    "price_per_night", "tags", "details", "created_at",
]  # fmt: skip

# What cruise.PRODUCTION_CHANGES did to cruises since staging's copy (both start from ids 1..200).
CRUISES_DELETED = len(range(191, 201))
CRUISES_INSERTED = len(range(201, 221))
CRUISES_UPDATED = sum(1 for i in range(1, 191) if i % 17 == 0)


def build(pair: Pair, cache_dir: Path, config: SyncConfig = CONFIG, **kwargs) -> Definitions:
    return build_definitions(pair.prod_url, pair.staging_url, config, cache_dir=cache_dir, **kwargs)


def run(defs: Definitions, instance: DagsterInstance | None = None, **kwargs) -> ExecuteInProcessResult:
    job = defs.resolve_job_def("sync_job")
    return job.execute_in_process(instance=instance or DagsterInstance.ephemeral(), raise_on_error=False, **kwargs)


def materialized(result: ExecuteInProcessResult) -> list[AssetKey]:
    return sorted((e.asset_key for e in result.get_asset_materialization_events()), key=lambda k: k.to_string())


def check_results(result: ExecuteInProcessResult) -> dict[AssetCheckKey, bool]:
    evaluations = result.get_asset_check_evaluations()
    found = {e.asset_check_key: e.passed for e in evaluations}
    assert len(found) == len(evaluations), "a check was evaluated twice"
    return found


def failure_description(result: ExecuteInProcessResult) -> str:
    """The one step failure's Failure description; also: it was not retried."""
    assert not result.success
    failures = result.get_step_failure_events()
    assert len(failures) == 1
    data = failures[0].step_failure_data
    assert data.user_failure_data is not None, f"not a dagster Failure: {data.error}"
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"] == []
    return data.user_failure_data.description


def specs_of(defs: Definitions) -> dict:
    specs = defs.resolve_all_asset_specs()
    by_key = {s.key: s for s in specs}
    assert len(by_key) == len(specs)
    return by_key


def dep_keys(spec) -> set[AssetKey]:
    return {d.asset_key for d in spec.deps}


def counters(cursor: str) -> dict[str, list]:
    """The production write counters the sensor's cursor holds."""
    return json.loads(cursor)["counters"]


# ---------------------------------------------------------------------------------------------------------
# The asset graph


def test_asset_graph_keys_deps_kinds_groups_descriptions_and_checks(cruise_pair: Pair, tmp_path: Path) -> None:
    defs = build(cruise_pair, tmp_path)
    specs = specs_of(defs)

    assert set(specs) == SYNCED_KEYS | PRESERVED_KEYS | PRODUCTION_KEYS
    assert len(specs) == 2 * len(cruise.SYNCED) + len(cruise.PRESERVED)
    # each synced table hangs off its FK parents in staging and its own production table
    assert dep_keys(specs[staging("cruises")]) == {
        staging("ships"),
        staging("regions"),
        staging("ports"),
        production("cruises"),
    }
    for table, parents in SYNCED_PARENTS.items():
        assert dep_keys(specs[staging(table)]) == {staging(p) for p in parents} | {production(table)}, table
        assert dep_keys(specs[production(table)]) == set(), table
    # regions references itself; an asset cannot depend on itself
    assert staging("regions") not in dep_keys(specs[staging("regions")])
    # preserved tables hang off their FK parents only: nothing from production flows into them
    for table, parents in PRESERVED_PARENTS.items():
        assert dep_keys(specs[staging(table)]) == {staging(p) for p in parents}, table

    assert {key: spec.kinds for key, spec in specs.items()} == {key: {"postgres"} for key in specs}
    assert {key: spec.group_name for key, spec in specs.items()} == {
        **{key: "public" for key in SYNCED_KEYS | PRESERVED_KEYS},
        **{key: "production_public" for key in PRODUCTION_KEYS},
    }
    assert {key: spec.tags.get("sync_assets/role") for key, spec in specs.items()} == {
        **{key: "synced" for key in SYNCED_KEYS},
        **{key: "preserved" for key in PRESERVED_KEYS},
        **{key: "source" for key in PRODUCTION_KEYS},
    }

    # descriptions from production's table comments, a plain sentence otherwise
    assert specs[staging("cruises")].description == "Sailings offered for sale"
    assert specs[production("cruises")].description == "Sailings offered for sale"
    assert specs[staging("cruise_lines")].description == "Companies that operate ships"
    assert specs[staging("cabin_categories")].description == (
        "Production table public.cabin_categories, kept in step in staging by sync_assets."
    )
    assert specs[staging("users")].description.startswith(
        "Staging's own public.users: preserved, never overwritten by the sync."
    )

    cruises_meta = specs[staging("cruises")].metadata
    assert cruises_meta["catalog"] == "live"
    # the same name the materializations report
    table_name = cruises_meta["dagster/table_name"]
    assert getattr(table_name, "value", table_name) == f"{cruise_pair.staging_db}.public.cruises"
    schema = cruises_meta["dagster/column_schema"]
    schema = getattr(schema, "schema", schema)  # TableSchema, or wrapped in its metadata value
    assert [c.name for c in schema.columns] == CRUISES_COLUMNS

    assert defs.resolve_asset_graph().asset_check_keys == ALL_CHECKS
    assert defs.resolve_job_def("sync_job").name == "sync_job"


CYCLE_A_FIRST = """
CREATE TABLE a (id int PRIMARY KEY, b_id int);
CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id));
ALTER TABLE a ADD CONSTRAINT a_b_id_fkey FOREIGN KEY (b_id) REFERENCES b (id);
"""
CYCLE_B_FIRST = """
CREATE TABLE b (id int PRIMARY KEY, a_id int);
CREATE TABLE a (id int PRIMARY KEY, b_id int REFERENCES b (id));
ALTER TABLE b ADD CONSTRAINT b_a_id_fkey FOREIGN KEY (a_id) REFERENCES a (id);
"""


def test_fk_cycle_loads_with_exactly_one_edge_kept_the_same_on_every_build(pair: Pair, tmp_path: Path) -> None:
    def staging_edges(defs: Definitions) -> set[tuple[str, str]]:
        specs = specs_of(defs)
        assert set(specs) == {staging("a"), staging("b"), production("a"), production("b")}
        for table in ("a", "b"):
            assert production(table) in dep_keys(specs[staging(table)])
        # the graph must be acyclic for the job to build
        assert defs.resolve_job_def("sync_job").name == "sync_job"
        return {
            (child, parent.path[-1])
            for child in ("a", "b")
            for parent in dep_keys(specs[staging(child)])
            if parent.path[0] == "staging"
        }

    pair.run_prod(CYCLE_A_FIRST)
    kept = staging_edges(build(pair, tmp_path, SyncConfig()))
    assert kept in ({("a", "b")}, {("b", "a")})
    for _ in range(3):
        assert staging_edges(build(pair, tmp_path, SyncConfig())) == kept
    # the tables created the other way round (other OIDs, other constraint order): still the same edge
    pair.run_prod("DROP TABLE a, b CASCADE;" + CYCLE_B_FIRST)
    assert staging_edges(build(pair, tmp_path, SyncConfig())) == kept


# ---------------------------------------------------------------------------------------------------------
# Runs


def test_full_run_materializes_every_synced_table_with_metadata_and_checks_pass(
    cruise_pair: Pair, tmp_path: Path
) -> None:
    with cruise_pair.staging() as conn:
        users_before = table_rows(conn, "users")

    result = run(build(cruise_pair, tmp_path))

    assert result.success
    assert materialized(result) == sorted(SYNCED_KEYS, key=lambda k: k.to_string())
    assert check_results(result) == {key: True for key in ALL_CHECKS}
    with cruise_pair.prod() as prod, cruise_pair.staging() as stag:
        production_rows = {t: table_rows(prod, t) for t in cruise.SYNCED}
        for table in cruise.SYNCED:
            assert table_rows(stag, table) == production_rows[table], table
        assert table_rows(stag, "users") == users_before  # preserved: production's 30 users never arrive

    metadata = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    for key, meta in metadata.items():
        table = key.path[-1]
        assert meta["dagster/row_count"] == IntMetadataValue(len(production_rows[table])), table
        assert meta["dagster/table_name"] == TextMetadataValue(f"{cruise_pair.staging_db}.public.{table}")
        assert isinstance(meta["dagster/column_schema"], TableSchemaMetadataValue)
        for name in ("rows_inserted", "rows_updated", "rows_deleted"):
            assert isinstance(meta[name], IntMetadataValue), (table, name)
            assert type(meta[name].value) is int and meta[name].value >= 0, (table, name)
        for name in ("seconds", "rows_per_second"):
            assert isinstance(meta[name], FloatMetadataValue), (table, name)
            assert type(meta[name].value) is float and meta[name].value >= 0, (table, name)
        assert not any(p in repr(meta) for p in PASSWORDS), table

    cruises = metadata[staging("cruises")]
    assert (CRUISES_INSERTED, CRUISES_UPDATED, CRUISES_DELETED) == (20, 11, 10)
    assert cruises["rows_inserted"].value == CRUISES_INSERTED
    assert cruises["rows_updated"].value == CRUISES_UPDATED
    assert cruises["rows_deleted"].value == CRUISES_DELETED
    assert cruises["dagster/row_count"].value == 200 - CRUISES_DELETED + CRUISES_INSERTED
    assert [c.name for c in cruises["dagster/column_schema"].value.columns] == CRUISES_COLUMNS
    assert cruises["seconds"].value > 0
    assert cruises["rows_per_second"].value > 0


def test_subset_of_ports_materializes_and_changes_only_ports(cruise_pair: Pair, tmp_path: Path) -> None:
    with cruise_pair.staging() as conn:
        before = snapshot_tables(conn, ALL_TABLES)

    result = run(build(cruise_pair, tmp_path), asset_selection=[staging("ports")])

    assert result.success
    assert materialized(result) == [staging("ports")]
    assert check_results(result) == {
        AssetCheckKey(staging("ports"), ROW_COUNT): True,
        AssetCheckKey(staging("ports"), CONTENT): True,
    }
    with cruise_pair.prod() as prod, cruise_pair.staging() as stag:
        after = snapshot_tables(stag, ALL_TABLES)
        assert after["ports"] == table_rows(prod, "ports")
    assert {t for t in ALL_TABLES if after[t] != before[t]} == {"ports"}
    # production renamed P10 and moved P11
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert (meta["rows_inserted"].value, meta["rows_updated"].value, meta["rows_deleted"].value) == (0, 2, 0)


def test_checks_only_selection_evaluates_the_check_and_materializes_nothing(cruise_pair: Pair, tmp_path: Path) -> None:
    defs = build(cruise_pair, tmp_path)
    check = AssetCheckKey(staging("cruises"), ROW_COUNT)
    # execute_in_process has no asset_check_selection in dagster 1.13: subset the job first
    checks_only = defs.resolve_job_def("sync_job").get_subset(asset_check_selection={check})
    with cruise_pair.staging() as conn:
        before = snapshot_tables(conn, ALL_TABLES)

    result = checks_only.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)

    assert result.success  # a failed check is not a failed run
    assert materialized(result) == []
    assert check_results(result) == {check: False}
    evaluation = result.get_asset_check_evaluations()[0]
    assert {k: v.value for k, v in evaluation.metadata.items()} == {
        "staging_rows": 200,
        "production_rows": 210,
        "difference": -10,
    }
    with cruise_pair.staging() as conn:
        assert snapshot_tables(conn, ALL_TABLES) == before

    assert run(defs).success
    result = checks_only.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)

    assert result.success
    assert materialized(result) == []
    assert check_results(result) == {check: True}
    evaluation = result.get_asset_check_evaluations()[0]
    assert {k: v.value for k, v in evaluation.metadata.items()} == {
        "staging_rows": 210,
        "production_rows": 210,
        "difference": 0,
    }


# ---------------------------------------------------------------------------------------------------------
# Failures


def test_orphans_fail_fails_the_run_naming_quote_requests_and_leaves_staging_unchanged(
    cruise_pair: Pair, tmp_path: Path
) -> None:
    config = parse_config({**yaml.safe_load(cruise.CONFIG_YAML), "orphans": "fail"})
    with cruise_pair.staging() as conn:
        before = snapshot_tables(conn, ALL_TABLES)

    result = run(build(cruise_pair, tmp_path, config))

    description = failure_description(result)
    assert description.startswith(
        "4 row(s) of preserved table public.quote_requests reference public.cruises rows that production no longer has"
    )
    assert "'orphans: fail'" in description
    assert materialized(result) == []
    assert check_results(result) == {}
    with cruise_pair.staging() as conn:
        assert snapshot_tables(conn, ALL_TABLES) == before
        assert conn.execute("SELECT to_regclass('public.quote_requests_backup')").fetchone() == (None,)


def test_config_broken_after_load_fails_the_run_naming_the_setting(
    cruise_pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(cruise.CONFIG_YAML)
    monkeypatch.setenv("SYNC_ASSETS_CONFIG", str(path))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, cache_dir=tmp_path)
    assert staging("cruises") in specs_of(defs)
    path.write_text(cruise.CONFIG_YAML + "orphan: fail\n")  # a typo, made after the code location loaded
    with cruise_pair.staging() as conn:
        before = snapshot_tables(conn, ALL_TABLES)

    description = failure_description(run(defs))

    assert description == (
        f"SYNC_ASSETS_CONFIG file {path}: unknown setting 'orphan'; known settings are connect_timeout, exclude, "
        "idle_in_transaction_timeout, incremental_column, incremental_overlap, lock_timeout, mask, max_runtime, mode, "
        "orphans, preserve, reconcile_every, resync, retries, retry_delay_seconds, schemas, staging_triggers, "
        "statement_timeout, tables, workers"
    )
    with cruise_pair.staging() as conn:
        assert snapshot_tables(conn, ALL_TABLES) == before


def test_config_broken_at_load_still_loads_the_code_location(
    cruise_pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text("orphans: sometimes\n")
    monkeypatch.setenv("SYNC_ASSETS_CONFIG", str(path))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, cache_dir=tmp_path)
    assert defs.resolve_job_def("sync_job") is not None
    description = failure_description(run(defs))
    assert description.endswith("'orphans' must be 'delete' or 'fail', got 'sometimes'")


def test_wrong_staging_password_fails_naming_staging_without_the_password(cruise_pair: Pair, tmp_path: Path) -> None:
    wrong = "Wr0ng-staging-Pw"
    url = cruise_pair.cluster.url(cruise_pair.staging_db, (STAGING_OWNER[0], wrong))
    defs = build_definitions(cruise_pair.prod_url, url, CONFIG, cache_dir=tmp_path)

    result = run(defs)

    assert failure_description(result) == (
        f"the staging database at 127.0.0.1:{cruise_pair.cluster.port}/{cruise_pair.staging_db} rejected the "
        f"password for user '{STAGING_OWNER[0]}'; fix the credentials in DATABASE_URL_STAGING"
    )
    assert materialized(result) == []
    everything = repr(result.all_events)
    assert wrong not in everything
    assert not any(p in everything for p in PASSWORDS)


def test_unreachable_production_fails_naming_production(cruise_pair: Pair, tmp_path: Path) -> None:
    loaded = load_catalog(cruise_pair.prod_url, CONFIG.schemas, tmp_path)
    assert loaded.source == "live"
    port = closed_port()
    url = cruise_pair.prod_url.replace(f":{cruise_pair.cluster.port}/", f":{port}/")
    assert url != cruise_pair.prod_url
    defs = build_definitions(url, cruise_pair.staging_url, CONFIG, cache_dir=tmp_path, catalog=loaded)
    with cruise_pair.staging() as conn:
        before = snapshot_tables(conn, ALL_TABLES)

    result = run(defs)

    assert failure_description(result) == (
        f"the production database at 127.0.0.1:{port}/{cruise_pair.prod_db} is unreachable (connection refused); "
        "check DATABASE_URL_PRODUCTION's host and port and that the server is running"
    )
    assert materialized(result) == []
    assert not any(p in repr(result.all_events) for p in PASSWORDS)
    with cruise_pair.staging() as conn:
        assert snapshot_tables(conn, ALL_TABLES) == before


# ---------------------------------------------------------------------------------------------------------
# The code location when production is down


def test_code_location_loads_from_the_cached_catalog_when_production_refuses(cruise_pair: Pair, tmp_path: Path) -> None:
    live = specs_of(build(cruise_pair, tmp_path))
    assert len(list(tmp_path.glob("catalog-production-*.json"))) == 1
    assert not any(p in path.read_text() for path in tmp_path.glob("catalog-*.json") for p in PASSWORDS)

    # the same URL, but production now refuses the tool's role
    with cruise_pair.cluster.connect() as admin:
        admin.execute(f"ALTER ROLE {PROD_READER[0]} NOLOGIN")
        try:
            defs = build(cruise_pair, tmp_path)
        finally:
            admin.execute(f"ALTER ROLE {PROD_READER[0]} LOGIN")

    cached = specs_of(defs)
    assert set(cached) == set(live)
    assert {k: dep_keys(s) for k, s in cached.items()} == {k: dep_keys(s) for k, s in live.items()}
    assert defs.resolve_asset_graph().asset_check_keys == ALL_CHECKS
    for key in SYNCED_KEYS:
        description = cached[key].description
        assert description.startswith(live[key].description + "\n\nproduction is unreachable ("), key
        assert "showing the catalog cached at" in description, key
        assert not any(p in description for p in PASSWORDS), key
        assert cached[key].metadata["catalog"] == "cache", key
    assert cached[staging("cruises")].description.startswith("Sailings offered for sale\n\n")

    # production is back: the definitions built from the cache run as usual
    result = run(defs)
    assert result.success
    assert materialized(result) == sorted(SYNCED_KEYS, key=lambda k: k.to_string())


def test_code_location_loads_without_assets_when_production_is_unreachable_and_nothing_is_cached(
    cruise_pair: Pair, tmp_path: Path
) -> None:
    build(cruise_pair, tmp_path)  # a cached catalog, but of another server: it must not stand in

    defs = build_definitions("postgresql://u:pw@127.0.0.1:1/x", cruise_pair.staging_url, CONFIG, cache_dir=tmp_path)

    assert defs.resolve_all_asset_specs() == []
    assert defs.resolve_asset_graph().asset_check_keys == set()
    assert defs.resolve_job_def("sync_job").name == "sync_job"
    assert defs.resolve_schedule_def("sync_every_6_hours").job_name == "sync_job"
    assert defs.resolve_sensor_def("production_changes").job_name == "sync_job"


# ---------------------------------------------------------------------------------------------------------
# Schedule and sensor


def no_catalog_defs() -> Definitions:
    return build_definitions(
        "postgresql://u:pw@127.0.0.1:1/x",
        "postgresql://u:pw@127.0.0.1:1/y",
        CONFIG,
        catalog=LoadedCatalog(None, "none", "no catalog in this test"),
    )


def test_schedule_runs_sync_job_every_six_hours_utc() -> None:
    schedule = no_catalog_defs().resolve_schedule_def("sync_every_6_hours")

    assert schedule.name == "sync_every_6_hours"
    assert schedule.cron_schedule == "0 */6 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "sync_job"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED


def test_sensor_definition() -> None:
    sensor = no_catalog_defs().resolve_sensor_def("production_changes")

    assert sensor.job_name == "sync_job"
    assert sensor.minimum_interval_seconds == 120
    assert sensor.default_status == DefaultSensorStatus.STOPPED


class SensorProbe:
    """Evaluates production_changes the way the daemon does, with one instance across evaluations."""

    def __init__(self, defs: Definitions, production_url: str) -> None:
        self.sensor = defs.resolve_sensor_def("production_changes")
        self.instance = DagsterInstance.ephemeral()
        self.production_url = production_url

    def context(self, cursor: str | None):
        resources = {"production": ProductionDatabase(url=self.production_url)}
        return build_sensor_context(cursor=cursor, instance=self.instance, resources=resources)

    def __call__(self, cursor: str | None):
        return self.sensor(self.context(cursor))


def test_sensor_first_look_then_skip_then_requests_exactly_the_changed_synced_tables(
    cruise_pair: Pair, tmp_path: Path
) -> None:
    defs = build(cruise_pair, tmp_path)
    assert run(defs).success  # staging in step, so that a run of just the changed tables can follow
    evaluate = SensorProbe(defs, cruise_pair.prod_url)

    first = evaluate(None)
    assert isinstance(first, SensorResult)
    assert first.run_requests == []
    assert first.skip_reason == SkipReason("first look: counters recorded")
    recorded = counters(first.cursor)
    assert set(recorded) == {f"public.{t}" for t in ALL_TABLES}

    quiet = evaluate(first.cursor)
    assert isinstance(quiet, SensorResult)
    assert quiet.run_requests == []
    assert quiet.skip_reason == SkipReason("no synced table changed")
    assert counters(quiet.cursor) == recorded

    with cruise_pair.prod() as app:
        app.execute("UPDATE ports SET tz = 'Europe/Oslo' WHERE code = 'P01'")
        app.execute(
            "INSERT INTO pricing (cruise_id, cabin_category, price, valid_from)"
            " VALUES (1, 'INS', 999, '2026-06-01 00:00+00')"
        )
        app.execute("INSERT INTO users (email, name) VALUES ('app-user@example.com', 'App')")  # preserved
    now = wait_for_writes(cruise_pair, recorded, ["public.ports", "public.pricing", "public.users"])

    changed = evaluate(quiet.cursor)
    assert isinstance(changed, SensorResult)
    assert changed.skip_reason is None
    assert len(changed.run_requests) == 1
    request = changed.run_requests[0]
    assert sorted(request.asset_selection, key=lambda k: k.to_string()) == [staging("ports"), staging("pricing")]
    token = request.tags["sync_assets/sensor_request"]
    assert request.tags == {"sync_assets/trigger": "production_changes", "sync_assets/sensor_request": token}
    assert json.loads(changed.cursor) == {"counters": now, "pending": {token: ["public.ports", "public.pricing"]}}

    again = evaluate(changed.cursor)
    assert isinstance(again, SensorResult)
    assert again.run_requests == []
    assert again.skip_reason == SkipReason("no synced table changed")

    # the request runs: exactly the two tables; once it succeeded the sensor forgets it
    result = run(defs, asset_selection=list(request.asset_selection), tags=request.tags, instance=evaluate.instance)
    assert result.success
    assert materialized(result) == [staging("ports"), staging("pricing")]
    done = evaluate(again.cursor)
    assert isinstance(done, SensorResult) and done.run_requests == []
    assert json.loads(done.cursor)["pending"] == {}


def test_sensor_evaluates_through_dagsters_documented_testing_api(cruise_pair: Pair, tmp_path: Path) -> None:
    defs = build(cruise_pair, tmp_path)
    sensor = defs.resolve_sensor_def("production_changes")
    instance = DagsterInstance.ephemeral()

    def tick(cursor: str | None):
        context = build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor.name, cursor=cursor)
        return sensor.evaluate_tick(context)

    first = tick(None)
    assert first.run_requests == []
    assert first.skip_message == "first look: counters recorded"
    with cruise_pair.prod() as app:
        app.execute("UPDATE ports SET tz = 'Europe/Rome' WHERE code = 'P03'")
    wait_for_writes(cruise_pair, counters(first.cursor), ["public.ports"])

    changed = tick(first.cursor)

    assert [list(r.asset_selection) for r in changed.run_requests] == [[staging("ports")]]


def sensor_after_a_port_write(pair: Pair, tmp_path: Path) -> tuple[Definitions, SensorProbe, str]:
    """The sensor's first look, then the application writes to production's ports."""
    defs = build(pair, tmp_path)
    evaluate = SensorProbe(defs, pair.prod_url)
    cursor = evaluate(None).cursor
    with pair.prod() as app:
        app.execute("UPDATE ports SET tz = 'Asia/Tokyo' WHERE code = 'P02'")
    wait_for_writes(pair, counters(cursor), ["public.ports"])
    return defs, evaluate, cursor


def test_sensor_requests_the_tables_of_a_failed_run_again(cruise_pair: Pair, tmp_path: Path) -> None:
    defs, evaluate, cursor = sensor_after_a_port_write(cruise_pair, tmp_path)
    first = evaluate(cursor)
    assert isinstance(first, SensorResult) and len(first.run_requests) == 1
    failed = evaluate.instance.create_run_for_job(
        defs.resolve_job_def("sync_job"), status=DagsterRunStatus.STARTED, tags=first.run_requests[0].tags
    )
    evaluate.instance.report_run_failed(failed)

    again = evaluate(first.cursor)

    assert isinstance(again, SensorResult)
    assert [list(r.asset_selection) for r in again.run_requests] == [[staging("ports")]]
    assert list(json.loads(again.cursor)["pending"].values()) == [["public.ports"]]


def test_sensor_waits_for_an_active_sync_without_advancing_its_cursor(cruise_pair: Pair, tmp_path: Path) -> None:
    defs, evaluate, cursor = sensor_after_a_port_write(cruise_pair, tmp_path)
    active = evaluate.instance.create_run_for_job(defs.resolve_job_def("sync_job"), status=DagsterRunStatus.STARTED)

    context = evaluate.context(cursor)
    busy = evaluate.sensor(context)

    assert busy == SkipReason(f"a sync is running ({active.run_id}); will look again")
    assert context.cursor == cursor
    tick = evaluate.sensor.evaluate_tick(evaluate.context(cursor))
    assert tick.run_requests == []
    assert tick.cursor == cursor

    # once that run is over, the kept cursor still shows the write
    evaluate.instance.report_run_failed(active)
    after = evaluate(cursor)
    assert isinstance(after, SensorResult)
    assert [list(r.asset_selection) for r in after.run_requests] == [[staging("ports")]]


def test_sensor_skips_when_production_is_unreachable_without_leaking_the_password(
    cruise_pair: Pair, tmp_path: Path
) -> None:
    defs = build(cruise_pair, tmp_path)
    port = closed_port()
    down = SensorProbe(defs, cruise_pair.prod_url.replace(f":{cruise_pair.cluster.port}/", f":{port}/"))
    wrong = "Wr0ng-reader-Pw"
    refused = SensorProbe(defs, cruise_pair.cluster.url(cruise_pair.prod_db, (PROD_READER[0], wrong)))

    result = down(None)
    assert result == SkipReason(
        f"cannot read production's counters: the production database at 127.0.0.1:{port}/{cruise_pair.prod_db} "
        "is unreachable (connection refused); check DATABASE_URL_PRODUCTION's host and port and that the server "
        "is running"
    )
    result = refused(None)
    assert isinstance(result, SkipReason)
    assert result.skip_message.startswith("cannot read production's counters: the production database at ")
    assert wrong not in result.skip_message
    assert PROD_READER[1] not in result.skip_message


PARTITIONED = """
CREATE TABLE events (id int, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
"""


def test_sensor_requests_a_partitioned_table_written_through_its_partitions(pair: Pair, tmp_path: Path) -> None:
    pair.run_prod(PARTITIONED)
    pair.run_staging(PARTITIONED)
    defs = build_definitions(pair.prod_url, pair.staging_url, SyncConfig(), cache_dir=tmp_path)
    assert set(specs_of(defs)) == {staging("events"), production("events")}
    evaluate = SensorProbe(defs, pair.prod_url)
    cursor = evaluate(None).cursor
    with pair.prod() as app:
        app.execute("INSERT INTO events VALUES (1, '2026-05-01')")
    wait_for_writes(pair, counters(cursor), ["public.events"])

    result = evaluate(cursor)

    assert isinstance(result, SensorResult)
    assert [list(r.asset_selection) for r in result.run_requests] == [[staging("events")]]


def test_sensor_notices_a_truncate_when_production_statistics_are_fresh(cruise_pair: Pair, tmp_path: Path) -> None:
    with cruise_pair.cluster.connect(cruise_pair.prod_db) as admin:
        admin.execute("SELECT pg_stat_reset()")  # as after a failover: the counters start from zero
    defs = build(cruise_pair, tmp_path)
    evaluate = SensorProbe(defs, cruise_pair.prod_url)
    cursor = evaluate(None).cursor
    assert counters(cursor)["public.webhook_events"][:4] == [0, 0, 0, 0]
    with cruise_pair.prod() as app:
        assert app.execute("SELECT count(*) FROM webhook_events").fetchone() == (51,)
        app.execute("TRUNCATE webhook_events")
        app.execute("INSERT INTO users (email) VALUES ('flush-marker@example.com')")  # preserved: not requested
    wait_for_writes(cruise_pair, counters(cursor), ["public.users"])

    result = evaluate(cursor)

    assert isinstance(result, SensorResult)
    assert [list(r.asset_selection) for r in result.run_requests] == [[staging("webhook_events")]]


def test_row_count_check_in_merge_mode_accepts_the_rows_staging_keeps(cruise_pair: Pair, tmp_path: Path) -> None:
    config = parse_config({**yaml.safe_load(cruise.CONFIG_YAML), "mode": "merge"})
    result = run(build(cruise_pair, tmp_path, config))
    assert result.success
    assert all(check_results(result).values())
    evaluation = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key == AssetCheckKey(staging("cruises"), ROW_COUNT)
    )
    assert evaluation.description == (
        "staging has 220 rows, the snapshot this run copied has 210 (mode merge: staging may keep more)"
    )


def test_sync_job_has_a_maximum_runtime_run_monitoring_enforces_and_retries_back_off(
    cruise_pair: Pair, tmp_path: Path
) -> None:
    from dagster import Backoff, Jitter

    from sync_assets_tests.conftest import ROOT

    monitoring = yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_monitoring"]
    assert monitoring["enabled"] is True
    config = parse_config(yaml.safe_load(cruise.CONFIG_YAML + "max_runtime: 45min\nretries: 4\n"))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, config, cache_dir=tmp_path)
    assert defs.resolve_job_def("sync_job").tags["dagster/max_runtime"] == "2700"
    policy = defs.resolve_assets_def(staging("cruises")).op.retry_policy
    assert policy is not None
    assert (policy.max_retries, policy.backoff, policy.jitter) == (4, Backoff.EXPONENTIAL, Jitter.PLUS_MINUS)
    unlimited = parse_config(yaml.safe_load(cruise.CONFIG_YAML + "max_runtime: never\n"))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, unlimited, cache_dir=tmp_path)
    assert "dagster/max_runtime" not in defs.resolve_job_def("sync_job").tags


def test_synced_assets_go_stale_after_a_missed_schedule(cruise_pair: Pair, tmp_path: Path) -> None:
    from datetime import timedelta

    from dagster import FreshnessPolicy

    defs = build(cruise_pair, tmp_path)
    specs = specs_of(defs)
    # the schedule's ticks (every 6 hours), each given max_runtime (30min) and 5 minutes of queueing
    expected = FreshnessPolicy.cron(deadline_cron="35 */6 * * *", lower_bound_delta=timedelta(hours=6), timezone="UTC")
    assert {k for k, s in specs.items() if s.freshness_policy == expected} == SYNCED_KEYS
    assert all(specs[k].freshness_policy is None for k in PRESERVED_KEYS)
    longer = build(cruise_pair, tmp_path, parse_config({**yaml.safe_load(cruise.CONFIG_YAML), "max_runtime": "2h"}))
    assert specs_of(longer)[staging("ports")].freshness_policy.deadline_cron == "59 */6 * * *"


def test_the_instance_queues_one_sync_at_a_time(dagster_env: dict[str, str]) -> None:
    import os

    from dagster._core.run_coordinator import QueuedRunCoordinator

    saved = dict(os.environ)
    os.environ.update(dagster_env)
    try:
        with DagsterInstance.get() as instance:
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            concurrency = instance.get_concurrency_config()
            assert concurrency.run_queue_config is not None
            limits = concurrency.run_queue_config.tag_concurrency_limits
            assert [(limit["key"], limit["limit"]) for limit in limits] == [("sync_assets/lock", 1)]
    finally:
        os.environ.clear()
        os.environ.update(saved)
