"""Incremental mode: only changed rows are read, deletes are found by key, late commits are not missed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from sync_assets.definitions import build_definitions
from sync_assets.engine import PRODUCTION_ENV, Endpoint, SyncResult, parse_config, run_sync
from sync_assets.engine.errors import ConfigError, DriftError
from sync_assets_tests.conftest import Pair, Recorder, counts, table_rows
from sync_assets_tests.prices import CONFIG, DATA, SCHEMA, STAGING_OWN, TABLES, TOUCH


@pytest.fixture
def inc_pair(pair: Pair) -> Pair:
    pair.run_prod(SCHEMA + TOUCH + DATA)
    pair.run_staging(SCHEMA + STAGING_OWN)
    return pair


def sync(pair: Pair, config: str = CONFIG, source: Endpoint | None = None, **kwargs: object) -> SyncResult:
    return run_sync(source or pair.source, pair.target, parse_config(yaml.safe_load(config)), **kwargs)  # type: ignore[arg-type]


def notes(result: SyncResult, table: str) -> str:
    return " | ".join(result.tables[("public", table)].notes)


def state(pair: Pair, table: str) -> tuple:
    with pair.staging() as staging:
        return staging.execute(
            "SELECT column_name, watermark, reconciled_at, note FROM sync_assets.incremental_state"
            " WHERE table_schema = 'public' AND table_name = %s",
            (table,),
        ).fetchone()


def test_reads_only_changed_rows_and_finds_deletes_by_key(inc_pair: Pair) -> None:
    first = sync(inc_pair)
    assert counts(first, "prices") == (200, 200, 200, 0, 0)
    assert "read whole: first incremental run" in notes(first, "prices")
    inc_pair.assert_equal(TABLES)

    inc_pair.run_prod(
        "UPDATE prices SET amount = amount + 1 WHERE id <= 5;"
        "INSERT INTO prices (id, region_id, amount) VALUES (201, 3, 1), (202, 3, 2), (203, 4, 3);"
        "DELETE FROM prices WHERE id BETWEEN 10 AND 12;"
        "UPDATE regions SET name = 'renamed' WHERE id = 1;"
        "UPDATE prices SET id = 500 WHERE id = 20;"  # a key that changes: a delete and an insert
    )
    second = sync(inc_pair)
    # read: 5 updated + 3 new + the moved row + the 2 NULL rows; every key, to find the 4 gone
    assert counts(second, "prices") == (200, 11, 4, 5, 4)
    assert counts(second, "regions") == (20, 1, 0, 1, 0)
    assert "every key read to find deletes: the key fingerprints differ" in notes(second, "prices")
    assert "the key fingerprints match: nothing deleted" in notes(second, "regions")
    inc_pair.assert_equal(TABLES)

    third = sync(inc_pair)
    assert counts(third, "prices") == (200, 2, 0, 0, 0)
    assert counts(third, "regions") == (20, 0, 0, 0, 0)
    assert "the key fingerprints match: nothing deleted" in notes(third, "prices")
    inc_pair.assert_equal(TABLES)


def test_a_row_lost_in_staging_does_not_hide_a_production_delete(inc_pair: Pair) -> None:
    """Equal row counts are not enough: staging lost one row and production deleted another."""
    sync(inc_pair)
    inc_pair.run_staging("DELETE FROM prices WHERE id = 50")
    inc_pair.run_prod("DELETE FROM prices WHERE id = 60")
    second = sync(inc_pair)
    assert "every key read to find deletes: the key fingerprints differ" in notes(second, "prices")
    assert counts(second, "prices")[4] == 1
    with inc_pair.staging() as staging:
        assert staging.execute("SELECT count(*) FROM prices WHERE id IN (50, 60)").fetchone()[0] == 0
    assert state(inc_pair, "prices")[1] is None  # 198 rows against 199: read whole next time
    third = sync(inc_pair)
    assert counts(third, "prices")[:3] == (199, 199, 1)
    inc_pair.assert_equal(TABLES)


def test_keys_without_a_hash_function_are_copied_to_find_deletes(pair: Pair) -> None:
    schema = "CREATE TABLE tills (code money PRIMARY KEY, label text, updated_at timestamptz DEFAULT now());"
    pair.run_prod(schema + "INSERT INTO tills SELECT i, 'till ' || i, '2020-01-01' FROM generate_series(1, 30) i;")
    pair.run_staging(schema)
    sync(pair)
    pair.run_prod("UPDATE tills SET label = 'renamed', updated_at = now() WHERE code = 3::money;")
    pair.run_prod("DELETE FROM tills WHERE code = 4::money")
    second = sync(pair)
    t = second.tables[("public", "tills")]
    assert (t.production_rows, t.read_rows, t.updated, t.deleted) == (29, 1, 1, 1)
    assert "every key read to find deletes: the key columns cannot be hashed here" in " | ".join(t.notes)
    with pair.prod() as prod, pair.staging() as staging:
        assert table_rows(staging, "tills") == table_rows(prod, "tills")


def _reader_with_stats(pair: Pair) -> Endpoint:
    """A production role that may see every session's transaction start (pg_read_all_stats)."""
    with pair.cluster.connect() as su:
        su.execute("DROP ROLE IF EXISTS stats_reader")
        su.execute("CREATE ROLE stats_reader LOGIN PASSWORD 'stats-S3cret' IN ROLE pg_read_all_stats")
    with pair.prod() as prod:
        prod.execute(
            "GRANT USAGE ON SCHEMA public TO stats_reader; GRANT SELECT ON ALL TABLES IN SCHEMA public TO stats_reader"
        )
    return Endpoint("production", PRODUCTION_ENV, pair.cluster.url(pair.prod_db, ("stats_reader", "stats-S3cret")))


@pytest.mark.parametrize("opened", ["between runs, start hidden", "between runs, start seen", "before the first run"])
def test_a_late_commit_with_an_older_timestamp_is_not_missed(inc_pair: Pair, opened: str) -> None:
    """An application transaction sets updated_at = now() (its start), commits only after a run's snapshot,
    and so carries a time older than rows that run saw. The next run must still read it."""
    source = _reader_with_stats(inc_pair) if opened == "between runs, start seen" else None
    late = inc_pair.prod()
    late.autocommit = False
    try:
        if opened == "before the first run":
            late.execute("UPDATE prices SET amount = 999 WHERE id = 1")
        sync(inc_pair, source=source)
        if opened != "before the first run":
            late.execute("UPDATE prices SET amount = 999 WHERE id = 1")
        inc_pair.run_prod("UPDATE prices SET amount = 5 WHERE id = 2")
        logged = Recorder()
        during = sync(inc_pair, source=source, observer=logged)
        held = state(inc_pair, "prices")[1]
        with inc_pair.staging() as staging:
            # the run's snapshot did not see the open transaction's row
            assert staging.execute("SELECT amount FROM prices WHERE id = 1").fetchone()[0] == 1.5
            assert staging.execute("SELECT amount FROM prices WHERE id = 2").fetchone()[0] == 5
        assert any("watermark of public.regions, public.prices held back" in m for m in logged), logged
        late.commit()
    finally:
        late.close()
    with inc_pair.prod() as prod:
        late_at, seen_at = prod.execute(
            "SELECT (SELECT updated_at FROM prices WHERE id = 1), (SELECT updated_at FROM prices WHERE id = 2)"
        ).fetchone()
    assert late_at < seen_at  # a watermark taken from the newest row seen would skip the late one

    after = sync(inc_pair, source=source)
    inc_pair.assert_equal(TABLES)
    if opened == "before the first run":
        # its start could not be known at the first listing: the runs after it read the table whole
        assert counts(during, "prices")[1] == 200
        assert counts(after, "prices")[1] == 200
        assert held is None
    else:
        assert counts(during, "prices")[1] == 3  # id 2 and the two NULL rows
        assert counts(after, "prices")[1] < 200
        if opened == "between runs, start seen":
            assert held == late_at  # held back to the open transaction's start exactly
        else:
            assert held < late_at  # held back to the listing before the transaction began


def test_rows_outside_the_run_lose_their_parent_under_a_partial_read(inc_pair: Pair) -> None:
    sync(inc_pair)
    inc_pair.run_staging(
        "INSERT INTO quotes (price_id, region_code, note) VALUES"
        " (10, NULL, 'price goes'), (NULL, 'R5', 'code changes'), (11, 'R6', 'kept'), (NULL, 'R7', 'kept too')"
    )
    inc_pair.run_prod("DELETE FROM prices WHERE id = 10; UPDATE regions SET code = 'R5x' WHERE id = 5")
    result = sync(inc_pair)
    assert counts(result, "prices")[1] < 200 and counts(result, "regions")[1] == 1
    inc_pair.assert_equal(TABLES)
    with inc_pair.staging() as staging:
        assert [r[0] for r in staging.execute("SELECT note FROM quotes ORDER BY id")] == ["kept", "kept too"]
        backed = staging.execute("SELECT note FROM quotes_backup ORDER BY id").fetchall()
        assert [r[0] for r in backed] == ["price goes", "code changes"]


def test_staging_changed_behind_the_sync_is_read_whole_next_time(inc_pair: Pair) -> None:
    sync(inc_pair)
    inc_pair.run_staging("DELETE FROM prices WHERE id = 50")
    logged = Recorder()
    second = sync(inc_pair, observer=logged)
    assert counts(second, "prices")[:2] == (200, 2)
    assert any("staging's table was changed outside the sync; the next run reads it whole" in m for m in logged)
    assert state(inc_pair, "prices")[1] is None
    third = sync(inc_pair)
    assert counts(third, "prices")[:3] == (200, 200, 1)
    assert "staging had 199 rows and production 200" in notes(third, "prices")
    inc_pair.assert_equal(TABLES)
    assert state(inc_pair, "prices")[1] is not None


def test_reconciliation_on_demand_and_by_age(inc_pair: Pair) -> None:
    sync(inc_pair)
    before = state(inc_pair, "prices")
    dry = sync(inc_pair, dry_run=True)
    assert counts(dry, "prices")[1] == 2
    assert state(inc_pair, "prices") == before  # a dry run records nothing

    asked = sync(inc_pair, reconcile=True)
    assert counts(asked, "prices")[1] == 200
    assert "read whole: full reconciliation asked for" in notes(asked, "prices")
    assert state(inc_pair, "prices")[2] > before[2]

    assert counts(sync(inc_pair), "prices")[1] == 2
    inc_pair.run_staging("UPDATE sync_assets.incremental_state SET reconciled_at = reconciled_at - interval '8 days'")
    aged = sync(inc_pair)
    assert counts(aged, "prices")[1] == 200
    assert "(reconcile_every)" in notes(aged, "prices")
    never = sync(inc_pair, CONFIG + "reconcile_every: never\n")
    assert counts(never, "prices")[1] == 2


def test_switching_modes_forgets_the_watermark(inc_pair: Pair) -> None:
    sync(inc_pair)
    assert state(inc_pair, "prices") is not None
    sync(inc_pair, "mode: mirror\n")
    assert state(inc_pair, "prices") is None
    again = sync(inc_pair)
    assert "read whole: first incremental run" in notes(again, "prices")
    inc_pair.assert_equal(TABLES)


@pytest.mark.parametrize(
    ("tables", "error", "fragment"),
    [
        (
            "prices: {mode: incremental, column: amount}",
            DriftError,
            "public.prices is set to mode incremental, but it has column amount of type numeric(10,2), "
            "not a timestamp or date",
        ),
        (
            "prices: {mode: incremental, column: changed_at}",
            DriftError,
            "public.prices is set to mode incremental, but it has no column changed_at in production",
        ),
        (
            "events: {mode: incremental}",
            DriftError,
            "public.events is set to mode incremental, but it needs a primary key",
        ),
        ("prices: {mode: mirror, column: updated_at}", ConfigError, "'tables' sets the column of public.prices"),
    ],
)
def test_bad_incremental_settings(inc_pair: Pair, tables: str, error: type, fragment: str) -> None:
    keyless = "CREATE TABLE events (happened text, updated_at timestamptz);"
    inc_pair.run_prod(keyless)
    inc_pair.run_staging(keyless)
    with inc_pair.staging() as staging:
        before = {t: table_rows(staging, t) for t in TABLES}
    with pytest.raises(error) as err:
        sync(inc_pair, f"tables:\n  {tables}\n")
    assert fragment in str(err.value)
    with inc_pair.staging() as staging:
        assert {t: table_rows(staging, t) for t in TABLES} == before


def test_global_incremental_keeps_tables_it_cannot_serve_in_mirror_mode(inc_pair: Pair) -> None:
    keyless = "CREATE TABLE events (happened text, updated_at timestamptz); CREATE TABLE tags (id int PRIMARY KEY);"
    inc_pair.run_prod(keyless + "INSERT INTO events VALUES ('a', now()); INSERT INTO tags VALUES (1), (2);")
    inc_pair.run_staging(keyless)
    result = sync(inc_pair)
    assert result.tables[("public", "events")].mode == "mirror"
    assert "not incremental: it needs a primary key" in notes(result, "events")
    assert "not incremental: it has no column updated_at in production" in notes(result, "tags")
    with inc_pair.prod() as prod, inc_pair.staging() as staging:
        for table in ("events", "tags"):
            assert table_rows(staging, table) == table_rows(prod, table)


def test_random_rounds_of_changes_stay_equal(inc_pair: Pair) -> None:
    """Ten rounds of mixed writes, each followed by an incremental run: staging equals production each time."""
    rng = random.Random(20261123)
    sync(inc_pair)
    next_id = 1000
    for _ in range(10):
        with inc_pair.prod() as prod:
            ids = [r[0] for r in prod.execute("SELECT id FROM prices")]
            for victim in rng.sample(ids, 5):
                prod.execute("DELETE FROM prices WHERE id = %s", (victim,))
            for changed in rng.sample([i for i in ids if i], 8):
                prod.execute("UPDATE prices SET amount = %s WHERE id = %s", (rng.randint(0, 10_000) / 100, changed))
            for _ in range(6):
                prod.execute(
                    "INSERT INTO prices (id, region_id, amount) VALUES (%s, %s, 1) ON CONFLICT DO NOTHING",
                    (next_id, rng.randint(1, 20)),
                )
                next_id += 1
            prod.execute("UPDATE regions SET name = name || '.' WHERE id = %s", (rng.randint(1, 20),))
        result = sync(inc_pair)
        assert counts(result, "prices")[1] < counts(result, "prices")[0]
        inc_pair.assert_equal(TABLES)


def test_sync_job_reports_rows_read_and_reconciles_on_request(inc_pair: Pair, tmp_path: Path) -> None:
    """Through Dagster: the metadata says what was read; run config `reconcile: true` reads every row."""
    path = tmp_path / "sync.yaml"
    path.write_text(CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNC_ASSETS_CONFIG", str(path))
        defs = build_definitions(inc_pair.prod_url, inc_pair.staging_url, cache_dir=tmp_path)
        job = defs.resolve_job_def("sync_job")
        instance = DagsterInstance.ephemeral()

        def rows_read(**kwargs: object) -> dict[str, object]:
            result = job.execute_in_process(instance=instance, **kwargs)
            assert all(e.passed for e in result.get_asset_check_evaluations())
            events = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
            meta = events[AssetKey(["staging", "public", "prices"])]
            return {k: meta[k].value for k in ("mode", "rows_read", "production_rows")}

        assert rows_read() == {"mode": "incremental", "rows_read": 200, "production_rows": 200}
        inc_pair.run_prod("UPDATE prices SET amount = 0 WHERE id = 7")
        assert rows_read() == {"mode": "incremental", "rows_read": 3, "production_rows": 200}
        reconciled = rows_read(run_config={"ops": {"sync_staging": {"config": {"reconcile": True}}}})
        assert reconciled == {"mode": "incremental", "rows_read": 200, "production_rows": 200}
    inc_pair.assert_equal(TABLES)


@pytest.mark.parametrize("kind", ["date", "timestamp"])
def test_change_columns_without_a_zone_are_read_back_a_day(pair: Pair, kind: str) -> None:
    """A date (or a zoneless timestamp written in the application's own zone) changed today, after the
    watermark, must be read although it compares as earlier than the watermark."""
    default = "current_date" if kind == "date" else "localtimestamp - interval '5 hours'"
    schema = f"CREATE TABLE notes (id int PRIMARY KEY, body text, changed_on {kind} NOT NULL DEFAULT {default});"
    pair.run_prod(schema + "INSERT INTO notes (id, body) VALUES (1, 'a'), (2, 'b');")
    pair.run_staging(schema)
    config = "mode: incremental\nincremental_column: changed_on\nincremental_overlap: 0s\n"
    sync(pair, config)
    pair.run_prod(f"UPDATE notes SET body = 'changed', changed_on = {default} WHERE id = 1")
    second = sync(pair, config)
    with pair.prod() as prod, pair.staging() as staging:
        assert table_rows(staging, "notes") == table_rows(prod, "notes")
    assert second.tables[("public", "notes")].updated == 1
