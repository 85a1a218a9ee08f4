"""Schema edge cases that once broke a sync: keys, partitions, cycles, FK actions, encodings, settings."""

from __future__ import annotations

import pytest

from sync_assets.engine import SyncConfig, parse_config
from sync_assets.engine.errors import ConfigError, DriftError, SyncError
from sync_assets_tests.conftest import Pair, Recorder, snapshot_tables, table_rows


def test_row_level_security_in_production_fails_instead_of_emptying_staging(pair: Pair) -> None:
    pair.run_both("CREATE TABLE acct (id int PRIMARY KEY, tenant text)")
    pair.run_prod(
        "INSERT INTO acct VALUES (1, 'a'), (2, 'b'); ALTER TABLE acct ENABLE ROW LEVEL SECURITY;"
        "CREATE POLICY only_mine ON acct USING (tenant = current_setting('app.tenant', true));"
    )
    pair.run_staging("INSERT INTO acct VALUES (1, 'a'), (2, 'b')")
    with pytest.raises(
        SyncError, match=r"^copying public\.acct failed, staging left unchanged: query would be affected"
    ):
        pair.sync()
    with pair.staging() as staging:
        assert table_rows(staging, "acct") == ["(1,a)", "(2,b)"]


def test_unique_index_used_by_a_foreign_key_is_a_row_key_and_include_columns_are_not(pair: Pair) -> None:
    pair.run_both(
        "CREATE TABLE ref (a int NOT NULL, v text); CREATE UNIQUE INDEX ref_a ON ref (a);"
        "CREATE TABLE child (id int PRIMARY KEY, a int REFERENCES ref (a));"
        "CREATE TABLE inc (a int NOT NULL, b text); CREATE UNIQUE INDEX inc_a ON inc (a) INCLUDE (b);",
    )
    pair.run_prod(
        "INSERT INTO ref VALUES (1, 'x'), (2, 'y'); INSERT INTO child VALUES (1, 1); INSERT INTO inc VALUES (1, 'p')"
    )
    first = pair.sync()
    assert first.plan is not None
    assert first.plan.table(("public", "ref")).key == ("a",)
    assert first.plan.table(("public", "inc")).key == ("a",)
    pair.run_prod("UPDATE ref SET v = 'z' WHERE a = 2; UPDATE inc SET b = 'q'")
    second = pair.sync()
    pair.assert_equal(["ref", "child", "inc"])
    assert (second.tables[("public", "ref")].updated, second.tables[("public", "ref")].deleted) == (1, 0)
    assert (second.tables[("public", "inc")].updated, second.tables[("public", "inc")].deleted) == (1, 0)


def test_keyless_child_is_filled_after_its_new_parents(pair: Pair) -> None:
    pair.run_both("CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE log (p_id int REFERENCES p (id), msg text);")
    pair.run_prod("INSERT INTO p VALUES (1), (2); INSERT INTO log VALUES (1, 'a'), (2, 'b'), (2, 'b')")
    pair.sync()
    pair.assert_equal(["p", "log"])
    pair.run_prod("DELETE FROM log WHERE p_id = 1; DELETE FROM p WHERE id = 1; INSERT INTO p VALUES (3)")
    pair.run_prod("INSERT INTO log VALUES (3, 'c')")
    pair.sync()
    pair.assert_equal(["p", "log"])


def test_keyless_table_that_others_reference_is_refused_before_touching_anything(pair: Pair) -> None:
    pair.run_both("CREATE TABLE ports (code text UNIQUE, name text); CREATE TABLE users (id int PRIMARY KEY,"
         " home text REFERENCES ports (code) ON DELETE CASCADE);")  # fmt: skip
    pair.run_prod("INSERT INTO ports VALUES ('P1', 'one')")
    pair.run_staging("INSERT INTO ports VALUES ('P1', 'old'); INSERT INTO users VALUES (1, 'P1')")
    with pytest.raises(DriftError, match=r"public\.ports has no primary key nor unique NOT NULL key.*public\.users"):
        pair.sync("preserve: [users]\n")
    with pair.staging() as staging:
        assert table_rows(staging, "users") == ["(1,P1)"]


def test_preserved_partitioned_table_loses_only_its_orphans(pair: Pair) -> None:
    pair.run_both(
        "CREATE TABLE ships (id int PRIMARY KEY);"
        "CREATE TABLE fav (user_id int, region text, ship_id int REFERENCES ships (id)) PARTITION BY LIST (region);"
        "CREATE TABLE fav_eu PARTITION OF fav FOR VALUES IN ('eu');"
        "CREATE TABLE fav_us PARTITION OF fav FOR VALUES IN ('us');",
    )
    pair.run_prod("INSERT INTO ships VALUES (2)")
    pair.run_staging("INSERT INTO ships VALUES (1), (2); INSERT INTO fav VALUES (10, 'eu', 1), (20, 'us', 2)")
    result = pair.sync("preserve: [fav]\n")
    assert [(o.table, o.rows) for o in result.orphans] == [(("public", "fav"), 1)]
    with pair.staging() as staging:
        assert table_rows(staging, "fav") == ["(20,us,2)"]
        assert table_rows(staging, "fav_backup", ["user_id", "region", "ship_id"]) == ["(10,eu,1)"]


def test_foreign_key_to_a_partitioned_table(pair: Pair) -> None:
    pair.run_both(
        "CREATE TABLE ev (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);"
        "CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');"
        "CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');"
        "CREATE TABLE note (id int PRIMARY KEY, ev_id int, region text, FOREIGN KEY (ev_id, region) REFERENCES ev);",
    )
    pair.run_prod("INSERT INTO ev VALUES (1, 'eu'), (2, 'us'); INSERT INTO note VALUES (1, 1, 'eu'), (2, 2, 'us')")
    result = pair.sync()
    pair.assert_equal(["ev", "note"])
    assert set(result.tables) == {("public", "ev"), ("public", "note")}


def test_row_moved_under_a_new_parent_of_the_same_table(pair: Pair) -> None:
    pair.run_both("CREATE TABLE cat (id int PRIMARY KEY, parent_id int REFERENCES cat (id), name text)")
    pair.run_prod("INSERT INTO cat VALUES (1, NULL, 'root')")
    pair.sync()
    pair.run_prod("INSERT INTO cat VALUES (2, NULL, 'new root'); UPDATE cat SET parent_id = 2 WHERE id = 1")
    result = pair.sync()
    pair.assert_equal(["cat"])
    assert (result.tables[("public", "cat")].inserted, result.tables[("public", "cat")].updated) == (1, 1)


def test_unique_values_swapped_between_kept_rows_fail_with_the_fix(pair: Pair) -> None:
    pair.run_both("CREATE TABLE t (id int PRIMARY KEY, code text UNIQUE)")
    pair.run_prod("INSERT INTO t VALUES (1, 'A'), (2, 'B')")
    pair.sync()
    pair.run_prod(
        "UPDATE t SET code = 'tmp' WHERE id = 1; UPDATE t SET code = 'A' WHERE id = 2;"
        "UPDATE t SET code = 'B' WHERE id = 1"
    )
    with pytest.raises(SyncError) as err:
        pair.sync()
    assert "applying public.t failed" in str(err.value)
    assert "make that staging constraint DEFERRABLE" in str(err.value)
    pair.run_staging(
        "ALTER TABLE t DROP CONSTRAINT t_code_key; ALTER TABLE t ADD CONSTRAINT t_code_key UNIQUE (code) DEFERRABLE"
    )
    pair.sync()
    pair.assert_equal(["t"])


def test_a_cycle_is_written_as_one_group(pair: Pair) -> None:
    pair.run_both(
        "CREATE TABLE a (id int PRIMARY KEY, b_id int NOT NULL);"
        "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);"
        "ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b;",
    )
    pair.run_prod("INSERT INTO b VALUES (1, NULL); INSERT INTO a VALUES (1, 1); UPDATE b SET a_id = 1")
    result = pair.sync()
    pair.assert_equal(["a", "b"])
    assert result.plan is not None
    assert [t.table_key[1] for t in result.plan.tables] == ["b", "a"]
    assert result.plan.groups == ((("public", "b"), ("public", "a")),)
    assert (result.tables[("public", "a")].inserted, result.tables[("public", "b")].inserted) == (1, 1)


NOT_NULL_CYCLE = """
CREATE TABLE a (id int PRIMARY KEY, b_id int NOT NULL);
CREATE TABLE b (id int PRIMARY KEY, a_id int NOT NULL REFERENCES a);
ALTER TABLE a ADD CONSTRAINT a_b_id_fkey FOREIGN KEY (b_id) REFERENCES b;
"""


def test_a_cycle_of_not_null_non_deferrable_foreign_keys_is_synced_both_ways(pair: Pair) -> None:
    pair.run_both(NOT_NULL_CYCLE)
    # production's application writes such rows with the key made deferrable for a moment
    in_one_go = (
        "BEGIN; ALTER TABLE a ALTER CONSTRAINT a_b_id_fkey DEFERRABLE INITIALLY DEFERRED; {} "
        "SET CONSTRAINTS ALL IMMEDIATE; ALTER TABLE a ALTER CONSTRAINT a_b_id_fkey NOT DEFERRABLE; COMMIT;"
    )
    pair.run_prod(in_one_go.format("INSERT INTO a VALUES (1, 10), (2, 20); INSERT INTO b VALUES (10, 1), (20, 2);"))

    first = pair.sync()

    pair.assert_equal(["a", "b"])
    assert (first.tables[("public", "a")].inserted, first.tables[("public", "b")].inserted) == (2, 2)
    pair.run_prod(in_one_go.format("DELETE FROM b WHERE id = 20; DELETE FROM a WHERE id = 2;"))
    second = pair.sync()
    pair.assert_equal(["a", "b"])
    assert (second.tables[("public", "a")].deleted, second.tables[("public", "b")].deleted) == (1, 1)


def test_latin1_staging_receives_utf8_text_intact(cluster, pair: Pair) -> None:
    with cluster.connect() as admin:
        admin.execute(f'DROP DATABASE "{pair.staging_db}"')
        admin.execute(
            f"CREATE DATABASE \"{pair.staging_db}\" OWNER staging_owner TEMPLATE template0 ENCODING 'LATIN1'"
            " LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    pair.run_both("CREATE TABLE t (id int PRIMARY KEY, name text)")
    pair.run_prod("INSERT INTO t VALUES (1, 'café'), (2, 'Ærø')")
    pair.sync()
    with pair.staging() as staging:
        staging.execute("SET client_encoding = 'UTF8'")
        assert table_rows(staging, "t") == ["(1,café)", "(2,Ærø)"]


def test_staging_settings_cannot_hide_a_change(pair: Pair) -> None:
    pair.run_both("CREATE TABLE t (id int PRIMARY KEY, x float8)")
    with pair.cluster.connect() as admin:
        admin.execute(f'ALTER DATABASE "{pair.staging_db}" SET extra_float_digits = 0')
    pair.run_prod("INSERT INTO t VALUES (1, 0.1)")
    pair.sync()
    pair.run_prod("UPDATE t SET x = 0.1000000000000001")
    result = pair.sync()
    assert result.tables[("public", "t")].updated == 1
    with pair.staging() as staging:
        assert staging.execute("SELECT x = 0.1000000000000001::float8 FROM t").fetchone() == (True,)


def test_domain_size_smaller_than_production_type_is_drift(pair: Pair) -> None:
    pair.run_prod("CREATE TABLE t (id int PRIMARY KEY, amount numeric(10, 2))")
    pair.run_staging("CREATE DOMAIN money0 AS numeric(5, 0); CREATE TABLE t (id int PRIMARY KEY, amount money0)")
    with pytest.raises(DriftError, match=r"column public\.t\.amount has incompatible types: numeric\(10,2\)"):
        pair.sync()


def test_preserved_rows_kept_by_on_delete_set_null_are_backed_up_and_cleared(pair: Pair) -> None:
    pair.run_both(
        "CREATE TABLE ports (code text PRIMARY KEY);"
        "CREATE TABLE users (id int PRIMARY KEY, home text REFERENCES ports ON DELETE SET NULL);"
        "CREATE TABLE searches (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users);",
    )
    pair.run_prod("INSERT INTO ports VALUES ('P2')")
    pair.run_staging(
        "INSERT INTO ports VALUES ('P1'), ('P2'); INSERT INTO users VALUES (1, 'P1'), (2, 'P2');"
        "INSERT INTO searches VALUES (10, 1), (20, 2);"
    )
    result = pair.sync("preserve: [users, searches]\n")
    assert [(o.table[1], o.rows, o.removed) for o in result.orphans] == [("users", 1, False)]
    with pair.staging() as staging:
        assert table_rows(staging, "users") == ["(1,)", "(2,P2)"]
        assert table_rows(staging, "searches") == ["(10,1)", "(20,2)"]
        assert table_rows(staging, "users_backup", ["id", "home"]) == ["(1,P1)"]


def test_deferred_violation_fails_before_any_sequence_moves(pair: Pair) -> None:
    pair.run_prod(
        "CREATE TABLE t (id serial PRIMARY KEY, name text);"
        "INSERT INTO t (name) SELECT 'same' FROM generate_series(1, 5)"
    )
    pair.run_staging("CREATE TABLE t (id serial PRIMARY KEY, name text UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(SyncError, match=r"checking deferred constraints of public\.t failed, staging left unchanged"):
        pair.sync()
    with pair.staging() as staging:
        assert staging.execute("SELECT last_value, is_called FROM t_id_seq").fetchone() == (1, False)


def test_schema_names_that_are_not_identifiers_load_in_dagster(pair: Pair, tmp_path) -> None:
    from sync_assets.definitions import build_definitions

    pair.run_both('CREATE SCHEMA "Sales Data"; CREATE TABLE "Sales Data"."Order" (id int PRIMARY KEY)')
    config = SyncConfig(schemas=("Sales Data",))
    defs = build_definitions(pair.prod_url, pair.staging_url, config, cache_dir=tmp_path)
    job = defs.resolve_job_def("sync_job")
    result = job.execute_in_process()
    # Dagster allows only letters, digits and _ in the names it derives from asset keys
    assert [e.asset_key.path for e in result.get_asset_materialization_events()] == [["staging", "Sales_Data", "Order"]]
    pair.assert_equal(['"Sales Data"."Order"'])


def test_a_selection_missing_a_parent_names_the_asset_to_add_as_dagster_spells_it(pair: Pair, tmp_path) -> None:
    from dagster import AssetKey

    from sync_assets.definitions import build_definitions

    ddl = (
        'CREATE TABLE "Sales Data" (id int PRIMARY KEY);'
        'CREATE TABLE "order-items" (id int PRIMARY KEY, sale int REFERENCES "Sales Data")'
    )
    pair.run_both(ddl)
    pair.run_prod('INSERT INTO "Sales Data" VALUES (1); INSERT INTO "order-items" VALUES (1, 1)')
    defs = build_definitions(pair.prod_url, pair.staging_url, SyncConfig(), cache_dir=tmp_path)
    items = AssetKey(["staging", "public", "order_items"])

    result = defs.resolve_job_def("sync_job").execute_in_process(asset_selection=[items], raise_on_error=False)

    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None
    assert failure.description == (
        "public.order-items has 1 row(s) referencing public.Sales Data rows that staging lacks (e.g. sale = (1)); "
        "add staging/public/Sales_Data to the selection"
    )
    paths = {s.key.to_user_string() for s in defs.resolve_all_asset_specs()}
    assert "staging/public/Sales_Data" in paths


def test_a_schema_production_lacks_is_a_config_error(pair: Pair) -> None:
    pair.run_both("CREATE TABLE t (id int PRIMARY KEY)")
    with pytest.raises(ConfigError, match="'schemas' names 'pubic', but production has no tables in that schema"):
        pair.sync("schemas: [pubic]\n")


@pytest.mark.parametrize("value", ["0", "0s", "0ms", 0])
def test_zero_lock_timeout_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="'lock_timeout' must be a positive duration"):
        parse_config({"lock_timeout": value})


def test_missing_privileges_name_the_table_and_point_at_the_readme(pair: Pair) -> None:
    pair.run_both("CREATE TABLE t (id int PRIMARY KEY)")
    pair.run_prod("INSERT INTO t VALUES (1)")
    with pair.cluster.connect(pair.prod_db) as admin:
        admin.execute("REVOKE SELECT ON t FROM prod_reader")
    with pytest.raises(SyncError) as err:
        pair.sync()
    assert str(err.value) == (
        "the production role 'prod_reader' lacks privileges the sync needs; grant them, or use a role that has "
        "them (README.md, 'Privileges'): public.t: SELECT"
    )
    with pair.staging() as staging:
        assert snapshot_tables(staging, ["t"]) == {"t": []}


def test_deletes_first_retry_keeps_rows_a_cascade_removed(pair: Pair) -> None:
    pair.run_both(
        "CREATE TABLE p (id int PRIMARY KEY);"
        "CREATE TABLE c (id int PRIMARY KEY, p_id int NOT NULL REFERENCES p ON DELETE CASCADE, u text UNIQUE);",
    )
    for side in (pair.run_prod, pair.run_staging):
        side("INSERT INTO p VALUES (1), (2); INSERT INTO c VALUES (10, 1, 'x'), (11, 2, 'y')")
    # row 10 moves to parent 2, parent 1 goes, and 'y' moves from row 11 to a new row 12
    pair.run_prod("UPDATE c SET p_id = 2 WHERE id = 10; DELETE FROM p WHERE id = 1;"
                  "DELETE FROM c WHERE id = 11; INSERT INTO c VALUES (12, 2, 'y')")  # fmt: skip
    logs = Recorder()
    pair.sync(observer=logs)
    assert any("applying deletes first instead" in m for m in logs)
    pair.assert_equal(["p", "c"])


def test_identity_always_column_outside_the_key_is_not_rewritten_every_run(pair: Pair) -> None:
    pair.run_both("CREATE TABLE t (code text PRIMARY KEY, n int GENERATED ALWAYS AS IDENTITY, v text)")
    pair.run_prod("INSERT INTO t (code, v) VALUES ('a', 'x'), ('b', 'y')")
    pair.run_staging("INSERT INTO t (code, v) VALUES ('b', 'y'), ('a', 'x')")  # same rows, n swapped
    first = pair.sync()
    second = pair.sync()
    assert first.tables[("public", "t")].updated == 0
    assert second.tables[("public", "t")].updated == 0


def test_merge_child_of_a_mirror_parent_is_refused(pair: Pair) -> None:
    pair.run_both("CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p)")
    with pytest.raises(ConfigError, match=r"public\.c is in mode merge but its parent public\.p is in mode mirror"):
        pair.sync("tables:\n  c: {mode: merge}\n")
    pair.sync("tables:\n  c: {mode: merge}\n  p: {mode: merge}\n")


def test_staging_rows_with_a_null_key_are_removed(pair: Pair) -> None:
    pair.run_prod("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
    pair.run_staging("CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, 'a'), (NULL, 'stray')")
    result = pair.sync()
    pair.assert_equal(["t"])
    assert result.tables[("public", "t")].deleted == 1


def test_a_few_changed_rows_of_a_big_table_are_updated_by_key_probes(pair: Pair, monkeypatch) -> None:
    from sync_assets.engine import writes

    pair.run_both("CREATE TABLE big (id int PRIMARY KEY, v text, n numeric)")
    pair.run_prod("INSERT INTO big SELECT i, 'v' || i, i * 1.5 FROM generate_series(1, 5000) i")
    pair.sync()
    pair.run_staging("ANALYZE big")  # the planner's row estimate, which decides the way
    pair.run_prod("UPDATE big SET v = 'changed', n = n + 1 WHERE id % 1000 = 7; DELETE FROM big WHERE id = 1")
    decided: list[bool] = []
    decide = writes._few_changed

    def spy(*args: object) -> bool:
        decided.append(decide(*args))  # type: ignore[arg-type]
        return decided[-1]

    monkeypatch.setattr(writes, "_few_changed", spy)
    result = pair.sync()
    assert decided == [True]
    t = result.tables[("public", "big")]
    assert (t.updated, t.deleted, t.inserted) == (5, 1, 0)
    pair.assert_equal(["big"])


def test_a_bookkeeping_schema_of_another_role_is_named_with_the_fix(pair: Pair, fast_role) -> None:
    from sync_assets_tests.pgcluster import FAST_ROLE

    pair.run_both("CREATE TABLE t (id int PRIMARY KEY)")
    pair.sync(target=pair.target_as(FAST_ROLE))  # the schema is staging_fast's now
    with pytest.raises(SyncError) as err:
        pair.sync()
    assert str(err.value) == (
        "the bookkeeping schema sync_assets in staging belongs to role 'staging_fast', and the staging role "
        "'staging_owner' may not use it (a sync ran as 'staging_fast' before): run once ALTER SCHEMA sync_assets "
        "OWNER TO staging_owner, or GRANT USAGE, CREATE ON SCHEMA sync_assets TO staging_owner"
    )
