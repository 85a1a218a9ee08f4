"""Rows written with staging's triggers off (session_replication_role = replica), foreign keys then checked
once per key: the same outcome as the row-by-row path, violations still refused, triggers silent."""

from __future__ import annotations

import pytest
import yaml

from sync_assets.engine import STAGING_ENV, Endpoint, SyncResult, parse_config, run_sync
from sync_assets.engine.errors import TableFailure
from sync_assets_tests import cruise, prices
from sync_assets_tests.conftest import Pair, Recorder, counts, snapshot_tables, table_rows


def fast_target(pair: Pair, role: tuple[str, str]) -> Endpoint:
    return Endpoint("staging", STAGING_ENV, pair.cluster.url(pair.staging_db, role))


def sync(pair: Pair, config: str, target: Endpoint | None = None, observer: Recorder | None = None) -> SyncResult:
    config_ = parse_config(yaml.safe_load(config))
    return run_sync(pair.source, target or pair.target, config_, observer=Recorder() if observer is None else observer)


def test_cruise_sync_through_the_fast_path_equals_production(cruise_pair: Pair, fast_role) -> None:
    logged = Recorder()
    result = sync(cruise_pair, cruise.CONFIG_YAML, fast_target(cruise_pair, fast_role), logged)
    assert "foreign keys are checked once per key over the rows written (session_replication_role = replica)" in logged
    with cruise_pair.prod() as prod, cruise_pair.staging() as staging:
        for table in cruise.SYNCED:
            assert table_rows(staging, table) == table_rows(prod, table), table
        assert len(table_rows(staging, "quote_requests")) == 21
    with cruise_pair.cluster.connect(cruise_pair.staging_db) as admin:  # the backup table is the fast role's
        assert admin.execute("SELECT count(*) FROM quote_requests_backup").fetchone()[0] == 4
    cruises = result.tables[("public", "cruises")]
    assert (cruises.inserted, cruises.updated, cruises.deleted) == (20, 11, 10)


def test_incremental_through_the_fast_path(pair: Pair, fast_role) -> None:
    pair.run_prod(prices.SCHEMA + prices.TOUCH + prices.DATA)
    pair.run_staging(prices.SCHEMA + prices.STAGING_OWN)
    target = fast_target(pair, fast_role)
    sync(pair, prices.CONFIG, target)
    pair.run_prod(
        "UPDATE prices SET amount = 0 WHERE id < 4; DELETE FROM prices WHERE id = 9;"
        "UPDATE prices SET id = 900 WHERE id = 8"
    )
    second = sync(pair, prices.CONFIG, target)
    assert counts(second, "prices") == (199, 6, 1, 3, 2)
    pair.assert_equal(prices.TABLES)


# Staging declares foreign keys production lacks; production's rows break them.
LOOSE = """
CREATE TABLE a (id int PRIMARY KEY, code text NOT NULL UNIQUE);
CREATE TABLE b (id int PRIMARY KEY, a_id int);
CREATE TABLE c (id int PRIMARY KEY, a_code text);
INSERT INTO a VALUES (1, 'one'), (2, 'two');
INSERT INTO b VALUES (1, 1);
INSERT INTO c VALUES (1, 'two');
"""
STRICT = """
CREATE TABLE a (id int PRIMARY KEY, code text NOT NULL UNIQUE);
CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id));
CREATE TABLE c (id int PRIMARY KEY, a_code text REFERENCES a (code));
INSERT INTO a VALUES (1, 'one'), (2, 'two');
INSERT INTO b VALUES (1, 1);
INSERT INTO c VALUES (1, 'two');
"""


@pytest.mark.parametrize("path", ["fast", "row by row"])
@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        # a written row points nowhere
        ("INSERT INTO b VALUES (2, 99)", 'foreign key constraint "b_a_id_fkey"'),
        # an unchanged row loses its parent's value, which an UPDATE changed
        ("UPDATE a SET code = 'deux' WHERE id = 2", '"c_a_code_fkey"'),
    ],
)
def test_a_foreign_key_production_breaks_fails_the_run_and_changes_nothing(
    pair: Pair, fast_role, path: str, change: str, fragment: str
) -> None:
    pair.run_prod(LOOSE)
    pair.run_staging(STRICT)
    pair.run_prod(change)
    with pair.staging() as staging:
        before = snapshot_tables(staging, ["a", "b", "c"])
    target = fast_target(pair, fast_role) if path == "fast" else None
    with pytest.raises(TableFailure) as err:
        sync(pair, "staging_triggers: skip\n" if path == "fast" else "staging_triggers: fire\n", target)
    assert fragment in str(err.value)
    assert "staging left unchanged" in str(err.value)
    with pair.staging() as staging:
        assert snapshot_tables(staging, ["a", "b", "c"]) == before


AUDITED = """
CREATE TABLE audit (what text);
CREATE FUNCTION audit_a() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit VALUES (TG_OP || ' ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER a_audit AFTER INSERT OR UPDATE ON a FOR EACH ROW EXECUTE FUNCTION audit_a();
"""


@pytest.mark.parametrize(
    ("setting", "audited"),
    [("skip", []), ("auto", []), ("fire", ["INSERT 1", "INSERT 2"])],
)
def test_staging_triggers_fire_only_when_asked(pair: Pair, fast_role, setting: str, audited: list[str]) -> None:
    schema = "CREATE TABLE a (id int PRIMARY KEY, code text NOT NULL UNIQUE);"
    pair.run_prod(schema + "INSERT INTO a VALUES (1, 'one'), (2, 'two');")
    pair.run_staging(schema + AUDITED)
    logged = Recorder()
    sync(pair, f"staging_triggers: {setting}\n", fast_target(pair, fast_role), logged)
    if setting == "fire":
        assert (
            "staging's own triggers public.a.a_audit fire on the rows the sync writes (staging_triggers: fire); "
            "where they change a row, staging differs from production in it"
        ) in logged
    else:
        assert "1 of staging's own triggers and rules stay silent in replica mode" in logged
    with pair.staging() as staging:
        assert [r[0] for r in staging.execute("SELECT what FROM audit ORDER BY 1")] == audited
        assert table_rows(staging, "a") == ["(1,one)", "(2,two)"]


def test_skip_without_the_privilege_but_owning_the_tables_disables_them_in_the_swap(pair: Pair) -> None:
    schema = "CREATE TABLE a (id int PRIMARY KEY, code text NOT NULL UNIQUE);"
    pair.run_prod(schema + "INSERT INTO a VALUES (1, 'one');")
    pair.run_staging(schema + AUDITED)
    logged = Recorder()
    sync(pair, "staging_triggers: skip\n", observer=logged)
    assert (
        "staging's own triggers public.a.a_audit are disabled for the swap, so the rows the sync writes stay equal "
        "to production (enabled again before COMMIT; writers to those tables wait for it)"
    ) in logged
    with pair.staging() as staging:
        assert table_rows(staging, "audit") == []
        assert table_rows(staging, "a") == ["(1,one)"]
        assert staging.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'a_audit'").fetchone() == ("O",)


def test_a_deferrable_unique_key_keeps_the_row_by_row_path(pair: Pair, fast_role) -> None:
    schema = "CREATE TABLE a (id int PRIMARY KEY, code text UNIQUE DEFERRABLE);"
    pair.run_prod(schema + "INSERT INTO a VALUES (1, 'x'), (2, 'y');")
    pair.run_staging(schema)
    logged = Recorder()
    sync(pair, "mode: mirror\n", fast_target(pair, fast_role), logged)
    assert "foreign keys are checked row by row: a.a_code_key is deferrable, which replica mode skips" in logged
    with pair.staging() as staging:
        assert table_rows(staging, "a") == ["(1,x)", "(2,y)"]
