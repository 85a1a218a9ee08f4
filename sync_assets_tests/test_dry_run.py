"""The dry run: the exact plan, shown in the UI, with nothing materialized and staging untouched."""

from __future__ import annotations

from pathlib import Path

import yaml
from dagster import DagsterInstance

from sync_assets.definitions import build_definitions
from sync_assets.engine import SyncConfig, SyncError, parse_config
from sync_assets_tests import cruise, rental
from sync_assets_tests.conftest import Pair, snapshot_tables
from sync_assets_tests.pgcluster import FAST_ROLE


def staging_state(pair: Pair) -> tuple:
    with pair.staging() as staging:
        tables = [
            r[0]
            for r in staging.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            )
        ]
        sequences = staging.execute("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1").fetchall()
        schemas = staging.execute("SELECT nspname FROM pg_namespace ORDER BY 1").fetchall()
        relations = staging.execute("SELECT count(*) FROM pg_class").fetchone()
        return snapshot_tables(staging, sorted(tables)), sequences, schemas, relations


def test_dry_run_reports_the_exact_plan_and_changes_nothing(cruise_pair: Pair, tmp_path: Path) -> None:
    config = parse_config(yaml.safe_load(cruise.CONFIG_YAML))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, config, cache_dir=tmp_path)
    before = staging_state(cruise_pair)

    result = defs.resolve_job_def("sync_dry_run").execute_in_process(instance=DagsterInstance.ephemeral())

    assert result.success
    assert result.get_asset_materialization_events() == []
    assert staging_state(cruise_pair) == before  # rows, sequences, no bookkeeping schema or backup left
    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    meta = output.event_specific_data.metadata
    plan = meta["plan"].value
    assert "**What the sync would do**" in plan
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in plan.splitlines() if line.startswith("|")]
    # table, production rows, mode, rows read, insert, update, delete
    assert ["public.cruises", "210", "mirror", "210", "20", "11", "10"] in [r[:7] for r in rows]
    assert (
        "| public.quote_requests |      4 | removed | public.quote_requests_backup | quote_requests_cruise_id_fkey |"
        in plan
    )
    assert "cruises_id_seq → 220" in plan
    assert (meta["rows_to_insert"].value, meta["preserved_rows_to_back_up"].value) == (
        20 + 1 + 1 + 2 + 20 + 20 + 1,
        4,
    )

    # the real sync then does exactly that
    sync = defs.resolve_job_def("sync_job").execute_in_process(instance=DagsterInstance.ephemeral())
    cruises = next(
        e.materialization.metadata for e in sync.get_asset_materialization_events() if e.asset_key.path[-1] == "cruises"
    )
    assert (cruises["rows_inserted"].value, cruises["rows_updated"].value, cruises["rows_deleted"].value) == (
        20,
        11,
        10,
    )


def test_dry_run_of_chosen_tables_and_unknown_names(cruise_pair: Pair, tmp_path: Path) -> None:
    config = parse_config(yaml.safe_load(cruise.CONFIG_YAML))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, config, cache_dir=tmp_path)
    job = defs.resolve_job_def("sync_dry_run")
    run_config = {"ops": {"plan_sync": {"config": {"tables": ["public.ports"]}}}}
    result = job.execute_in_process(run_config=run_config, instance=DagsterInstance.ephemeral())
    plan = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT").event_specific_data.metadata
    assert plan["tables"].value == 1
    assert "| public.ports |" in plan["plan"].value

    bad = {"ops": {"plan_sync": {"config": {"tables": ["public.users"]}}}}
    failed = job.execute_in_process(run_config=bad, instance=DagsterInstance.ephemeral(), raise_on_error=False)
    description = failed.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert description.startswith("dry run: public.users is not a synced table; synced tables are")


def test_dry_run_leaves_staging_only_sequences_alone(pair: Pair, tmp_path: Path) -> None:
    pair.run_prod(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'v' FROM generate_series(1, 5) i"
    )
    pair.run_staging("CREATE TABLE t (id int PRIMARY KEY, v text, local_no serial)")  # staging's own numbering
    defs = build_definitions(pair.prod_url, pair.staging_url, SyncConfig(), cache_dir=tmp_path)
    before = staging_state(pair)
    result = defs.resolve_job_def("sync_dry_run").execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success
    assert staging_state(pair) == before
    plan = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT").event_specific_data.metadata
    assert plan["rows_to_insert"].value == 5


# ---------------------------------------------------------------------------------------------------------
# A dry run predicts the run: it succeeds exactly when the run would, with the same counts


def staging_everything(pair: Pair) -> tuple:
    """Every table's rows (inheritance children apart), every sequence, every schema: what a dry run must
    leave as it was."""
    return staging_state(pair)


def predict_then_run(pair: Pair, config: str = "", target=None) -> tuple:
    """The dry run's outcome, then the run's: (counts or error text) for each; staging unchanged by the first."""
    before = staging_everything(pair)
    outcomes = []
    for dry in (True, False):
        try:
            result = pair.sync(config, dry_run=dry, target=target)
        except SyncError as exc:
            outcomes.append(str(exc))
        else:
            outcomes.append({k[1]: (t.inserted, t.updated, t.deleted) for k, t in result.tables.items()})
        if dry:
            assert staging_everything(pair) == before
    return tuple(outcomes)


EMPLOYEES = """
CREATE TABLE employee (id int PRIMARY KEY, name text NOT NULL, reports_to int REFERENCES employee);
"""


def test_a_dry_run_succeeds_where_an_update_points_at_a_new_row(pair: Pair) -> None:
    pair.run_both(EMPLOYEES + "INSERT INTO employee VALUES (1, 'ceo', NULL), (2, 'ann', 1);")
    pair.run_prod("INSERT INTO employee VALUES (3, 'new boss', 1); UPDATE employee SET reports_to = 3 WHERE id = 2;")

    dry, real = predict_then_run(pair)

    assert dry == real == {"employee": (1, 1, 0)}


def test_a_dry_run_fails_where_the_run_fails_on_a_partition_foreign_key(pair: Pair, fast_role) -> None:
    schema = rental.ONE_PARTITION_REFERENCES
    pair.run_prod(schema + "INSERT INTO customer VALUES (1), (2); INSERT INTO payment VALUES (2, 2, '2022-06-10');")
    pair.run_staging(schema + "INSERT INTO customer VALUES (1);" + rental.JUNE_REFERENCES)
    for target in (None, pair.target_as(FAST_ROLE)):
        dry, real = predict_then_run(pair, "preserve: [customer]\n", target)
        assert isinstance(dry, str) and dry == real
        assert 'foreign key constraint "june_customer"' in dry


def test_a_dry_run_of_the_film_rental_schema_predicts_the_run_and_moves_no_sequence(pair: Pair, fast_role) -> None:
    pair.run_prod(rental.schema() + rental.DATA + rental.CHANGES)
    pair.run_staging(rental.schema() + rental.DATA + rental.STAGING_OWN)
    for target, payments in ((None, (72, 8, 320)), (pair.target_as(FAST_ROLE), (0, 0, 0))):
        dry, real = predict_then_run(pair, target=target)
        assert isinstance(dry, dict) and dry == real
        assert real["payment"] == payments


def test_a_dry_run_inserts_without_drawing_staging_only_sequences(pair: Pair) -> None:
    pair.run_prod(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'v' FROM generate_series(1, 5) i"
    )
    pair.run_staging(
        "CREATE SEQUENCE shared_no; CREATE TABLE t (id int PRIMARY KEY, v text, local_no serial,"
        " ident bigint GENERATED ALWAYS AS IDENTITY, shared int NOT NULL DEFAULT nextval('shared_no') UNIQUE,"
        " CHECK (local_no < 4))"  # the run fails on the fourth insert, so must the dry run
    )
    dry, real = predict_then_run(pair)
    assert isinstance(dry, str) and dry == real
    assert 'violates check constraint "t_local_no_check"' in dry


def test_a_default_the_dry_run_cannot_mimic_is_counted_and_said(pair: Pair) -> None:
    pair.run_prod("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 3)")
    pair.run_staging(
        "CREATE SEQUENCE inv; CREATE TABLE t (id int PRIMARY KEY, code text DEFAULT 'INV-' || nextval('inv'))"
    )
    before = staging_everything(pair)

    result = pair.sync(dry_run=True)

    assert staging_everything(pair) == before
    assert result.tables[("public", "t")].inserted == 3
    assert (
        "the dry run counts its inserts without making them: the default of code draws from a sequence, "
        "which no rollback gives back" in result.tables[("public", "t")].notes
    )
