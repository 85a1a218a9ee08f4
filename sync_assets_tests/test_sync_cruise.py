"""The cruise schema synced end to end through the engine: equality, preserved data, resyncs, orphans."""

from __future__ import annotations

import pytest

from sync_assets.engine.errors import ConfigError, DriftError, OrphanError, SelectionError, SyncError
from sync_assets_tests import cruise
from sync_assets_tests.conftest import Pair, Recorder, snapshot_tables, table_rows

ALL_STAGING = [*cruise.SYNCED, *cruise.PRESERVED]


def test_full_sync_makes_staging_equal_and_keeps_staging_data(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, list(cruise.PRESERVED))

    result = cruise_pair.sync(cruise.CONFIG_YAML)

    cruise_pair.assert_equal(cruise.SYNCED)
    with cruise_pair.staging() as staging:
        # users and saved_searches are staging's own and untouched; production's 30 users never arrive
        assert table_rows(staging, "users") == before["users"]
        assert table_rows(staging, "saved_searches") == before["saved_searches"]
        # the four quotes about cruises production deleted (195..198) moved to the backup table
        kept = table_rows(staging, "quote_requests")
        assert len(kept) == 21
        assert set(kept) < set(before["quote_requests"])
        backup = staging.execute(
            "SELECT cruise_id, note, sync_run_id, sync_reason FROM quote_requests_backup ORDER BY cruise_id"
        ).fetchall()
        assert [(r[0], r[1]) for r in backup] == [(195 + i, f"staging quote {i + 1}") for i in range(4)]
        assert {r[2] for r in backup} == {result.run_id}
        assert all("quote_requests_cruise_id_fkey" in r[3] for r in backup)
        # staging's own objects on synced tables survive
        assert (
            staging.execute("SELECT count(*) FROM upcoming_cruises").fetchone()[0]
            == staging.execute("SELECT count(*) FROM cruises WHERE status = 'scheduled'").fetchone()[0]
        )
        assert staging.execute("SELECT to_regclass('cruises_departs_on') IS NOT NULL").fetchone()[0]
        # nothing of the tool's is left but its record of when each table was last read whole
        leftovers = staging.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'sync_assets' ORDER BY 1"
        ).fetchall()
        assert leftovers == [("whole_reads",), ("whole_reads_pkey",)]

    assert [(o.table, o.references, o.rows) for o in result.orphans] == [
        (("public", "quote_requests"), ("public", "cruises"), 4)
    ]
    cruises = result.tables[("public", "cruises")]
    # deleted 191..200, inserted 201..220, updated ids divisible by 17 up to 190 (11 of them)
    assert (cruises.inserted, cruises.updated, cruises.deleted) == (20, 11, 10)
    assert cruises.production_rows == cruises.staging_rows == 210
    webhook = result.tables[("public", "webhook_events")]
    # one event more in production: the table is rewritten whole (51 rows), but one row differs
    assert webhook.replaced_whole and (webhook.inserted, webhook.deleted, webhook.rewritten) == (1, 0, 51)


def test_sequences_and_identity_continue_after_sync(cruise_pair: Pair) -> None:
    cruise_pair.sync(cruise.CONFIG_YAML)
    with cruise_pair.staging() as staging:
        # identity ALWAYS (pricing.id), bigserial (cruises.id), identity BY DEFAULT (cruise_lines.id)
        new_line = staging.execute("INSERT INTO cruise_lines (name) VALUES ('Staging line') RETURNING id").fetchone()
        assert new_line[0] == 7
        new_cruise = staging.execute(
            "INSERT INTO cruises (ship_id, departure_port, departs_on, nights, base_price)"
            " VALUES (1, 'P01', '2027-01-01', 2, 100) RETURNING id, price_per_night"
        ).fetchone()
        assert new_cruise[0] == 221
        assert str(new_cruise[1]) == "50.00"  # generated column computed by staging
        price = staging.execute(
            "INSERT INTO pricing (cruise_id, cabin_category, price, valid_from) VALUES (221, 'INS', 1, now())"
            " RETURNING id"
        ).fetchone()
        max_id = staging.execute("SELECT max(id) FROM pricing WHERE id <> %s", (price[0],)).fetchone()[0]
        assert price[0] > max_id


def test_resync_applies_only_what_changed(cruise_pair: Pair) -> None:
    cruise_pair.sync(cruise.CONFIG_YAML)
    cruise_pair.run_prod(
        """
        UPDATE ports SET name = 'Renamed' WHERE code IN ('P01', 'P02');
        DELETE FROM itineraries WHERE cruise_id = 5 AND day = 3;
        INSERT INTO itineraries (cruise_id, day, port_code) VALUES (5, 4, 'P05');
        INSERT INTO webhook_events (received_at, source) VALUES ('2026-05-01', 'late');
        """
    )
    result = cruise_pair.sync(cruise.CONFIG_YAML)
    cruise_pair.assert_equal(cruise.SYNCED)
    changed = {k[1]: (t.inserted, t.updated, t.deleted) for k, t in result.tables.items()}
    assert changed == {
        "cabin_categories": (0, 0, 0),
        "cruise_lines": (0, 0, 0),
        "cruises": (0, 0, 0),
        "itineraries": (1, 0, 1),
        "ports": (0, 2, 0),
        "price_snapshots": (0, 0, 0),
        "pricing": (0, 0, 0),
        "regions": (0, 0, 0),
        "ships": (0, 0, 0),
        "webhook_events": (1, 0, 0),
    }
    # the keyless table is rewritten whole, though one row differs
    assert result.tables[("public", "webhook_events")].rewritten == 52
    assert result.orphans == []

    again = cruise_pair.sync(cruise.CONFIG_YAML)
    assert all((t.inserted, t.updated, t.deleted) == (0, 0, 0) for t in again.tables.values())


def test_rows_untouched_by_a_resync_are_not_rewritten(cruise_pair: Pair) -> None:
    cruise_pair.sync(cruise.CONFIG_YAML)
    with cruise_pair.staging() as staging:
        before = dict(staging.execute("SELECT code, xmin::text FROM ports").fetchall())
    cruise_pair.run_prod("UPDATE ports SET tz = 'Europe/Oslo' WHERE code = 'P07'")
    cruise_pair.sync(cruise.CONFIG_YAML)
    with cruise_pair.staging() as staging:
        after = dict(staging.execute("SELECT code, xmin::text FROM ports").fetchall())
    assert {code for code in before if before[code] != after[code]} == {"P07"}


def test_orphans_fail_leaves_staging_unchanged(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    with pytest.raises(OrphanError) as err:
        cruise_pair.sync(cruise.CONFIG_YAML + "orphans: fail\n")
    message = str(err.value)
    assert "4 row(s) of preserved table public.quote_requests reference public.cruises rows" in message
    assert "cruise_id = (195); (196); (197)" in message
    assert "nothing was changed" in message
    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, ALL_STAGING) == before
        assert staging.execute("SELECT to_regclass('quote_requests_backup')").fetchone()[0] is None


def test_backups_accumulate_across_runs(cruise_pair: Pair) -> None:
    cruise_pair.sync(cruise.CONFIG_YAML)
    cruise_pair.run_staging("INSERT INTO quote_requests (user_id, cruise_id, note) VALUES (1, 150, 'later')")
    cruise_pair.run_prod(
        "DELETE FROM pricing WHERE cruise_id = 150; DELETE FROM price_snapshots WHERE cruise_id = 150;"
        " DELETE FROM cruises WHERE id = 150"
    )
    result = cruise_pair.sync(cruise.CONFIG_YAML)
    assert [o.rows for o in result.orphans] == [1]
    with cruise_pair.staging() as staging:
        notes = [r[0] for r in staging.execute("SELECT note FROM quote_requests_backup ORDER BY sync_backed_up_at, id")]
    assert notes == [f"staging quote {i}" for i in range(1, 5)] + ["later"]


def test_subset_sync_changes_only_the_selected_table(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    result = cruise_pair.sync(cruise.CONFIG_YAML, selection={("public", "ports")})
    assert set(result.tables) == {("public", "ports")}
    with cruise_pair.staging() as staging, cruise_pair.prod() as prod:
        after = snapshot_tables(staging, ALL_STAGING)
        assert after["ports"] == table_rows(prod, "ports")
    assert {t for t in ALL_STAGING if after[t] != before[t]} == {"ports"}


def test_orphans_are_followed_through_preserved_and_staging_only_tables(cruise_pair: Pair) -> None:
    messages = "CREATE TABLE quote_messages (id serial PRIMARY KEY,"
    messages += " quote_id integer NOT NULL REFERENCES quote_requests (id) ON DELETE CASCADE, body text);"
    cruise_pair.run_prod(messages)
    cruise_pair.run_staging(
        messages
        + "INSERT INTO quote_messages (quote_id, body) SELECT q, 'about quote ' || q FROM generate_series(1, 6) q;"
        # staging's alone: production has no such table
        + "CREATE TABLE cruise_notes (cruise_id bigint REFERENCES cruises (id), note text);"
        + "INSERT INTO cruise_notes VALUES (199, 'gone'), (5, 'kept'), (NULL, 'no cruise');"
    )
    config = "preserve: [users, quote_requests, saved_searches, quote_messages]\n"
    result = cruise_pair.sync(config)

    assert sorted((o.table[1], o.references[1], o.rows) for o in result.orphans) == [
        ("cruise_notes", "cruises", 1),
        ("quote_messages", "cruises", 4),
        ("quote_requests", "cruises", 4),
    ]
    with cruise_pair.staging() as staging:
        assert [r[0] for r in staging.execute("SELECT quote_id FROM quote_messages ORDER BY 1")] == [5, 6]
        backed = staging.execute("SELECT quote_id, sync_reason FROM quote_messages_backup ORDER BY 1").fetchall()
        assert [r[0] for r in backed] == [1, 2, 3, 4]
        assert all("referenced public.quote_requests rows this sync removes" in r[1] for r in backed)
        assert table_rows(staging, "cruise_notes") == ['(,"no cruise")', "(5,kept)"]
        assert table_rows(staging, "cruise_notes_backup", ["cruise_id", "note"]) == ["(199,gone)"]


def test_excluded_table_that_would_be_orphaned_stops_the_run(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    config = "preserve: [users, saved_searches]\nexclude: [quote_requests]\n"
    with pytest.raises(SelectionError) as err:
        cruise_pair.sync(config)
    assert "4 row(s) of public.quote_requests still reference" in str(err.value)
    assert "public.quote_requests is excluded, so its rows cannot change" in str(err.value)
    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, ALL_STAGING) == before


def test_unselected_child_that_would_be_orphaned_names_the_table_to_add(cruise_pair: Pair) -> None:
    cruise_pair.run_staging("DELETE FROM quote_requests WHERE cruise_id > 190")
    with pytest.raises(SelectionError) as err:
        cruise_pair.sync(cruise.CONFIG_YAML, selection={("public", n) for n in ("cruises", "ships", "cruise_lines")})
    assert "row(s) of public.itineraries still reference" in str(err.value)
    assert ("add public.itineraries, public.price_snapshots, public.pricing to the selection") in str(err.value)


CYCLE = """
CREATE TABLE orgs (id int PRIMARY KEY, name text, owner_id int);
CREATE TABLE people (id int PRIMARY KEY, org_id int REFERENCES orgs (id), name text);
ALTER TABLE orgs ADD FOREIGN KEY (owner_id) REFERENCES people (id);
"""


def test_non_deferrable_foreign_key_cycle_with_rows_pointing_both_ways(pair: Pair) -> None:
    pair.run_prod(CYCLE)
    pair.run_staging(CYCLE)
    pair.run_prod(
        "INSERT INTO orgs VALUES (1, 'one', NULL), (2, 'two', NULL);"
        "INSERT INTO people VALUES (10, 1, 'ann'), (20, 2, 'bob');"
        "UPDATE orgs SET owner_id = id * 10;"
    )
    first = pair.sync()
    assert first.tables[("public", "orgs")].inserted == 2
    assert first.tables[("public", "people")].inserted == 2

    # a new pair pointing at each other, an old pair gone, an owner moved
    pair.run_prod(
        "UPDATE orgs SET owner_id = NULL WHERE id = 2; DELETE FROM people WHERE id = 20; DELETE FROM orgs WHERE id = 2;"
        "INSERT INTO orgs VALUES (3, 'three', NULL); INSERT INTO people VALUES (30, 3, 'cy'), (31, 1, 'dee');"
        "UPDATE orgs SET owner_id = 30 WHERE id = 3; UPDATE orgs SET owner_id = 31 WHERE id = 1;"
    )
    second = pair.sync()
    with pair.prod() as prod, pair.staging() as staging:
        for table in ("orgs", "people"):
            assert table_rows(staging, table) == table_rows(prod, table)
    changes = {k[1]: (t.inserted, t.updated, t.deleted) for k, t in second.tables.items()}
    assert changes == {"orgs": (1, 1, 1), "people": (2, 0, 1)}


def test_unique_value_moving_to_a_new_row_is_applied_deletes_first(cruise_pair: Pair) -> None:
    cruise_pair.run_prod(
        "DELETE FROM pricing WHERE cabin_category = 'STE'; DELETE FROM cabin_categories WHERE code = 'STE';"
        "INSERT INTO cabin_categories VALUES ('SUI', 'Suite', 'renamed code');"
    )
    logs = Recorder()
    result = cruise_pair.sync(cruise.CONFIG_YAML, observer=logs)
    cruise_pair.assert_equal(cruise.SYNCED)
    assert any("unique key moved between rows (cabin_categories_name_key)" in m for m in logs)
    assert (
        result.tables[("public", "cabin_categories")].inserted,
        result.tables[("public", "cabin_categories")].deleted,
    ) == (1, 1)


def test_staging_constraint_production_breaks_names_the_table_and_changes_nothing(cruise_pair: Pair) -> None:
    cruise_pair.run_staging("ALTER TABLE ports ADD CONSTRAINT ports_name_short CHECK (length(name) < 12)")
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    with pytest.raises(SyncError) as err:
        cruise_pair.sync(cruise.CONFIG_YAML)
    message = str(err.value)
    assert message.startswith("applying public.ports failed, staging left unchanged: new row for relation")
    assert 'violates check constraint "ports_name_short"' in message and "[SQLSTATE 23514]" in message
    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, ALL_STAGING) == before


def test_staging_domain_production_breaks_fails_while_copying(pair: Pair) -> None:
    pair.run_prod("CREATE TABLE t (id int PRIMARY KEY, qty int); INSERT INTO t VALUES (1, 5), (2, -1);")
    pair.run_staging(
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0); CREATE TABLE t (id int PRIMARY KEY, qty positive);"
    )
    with pytest.raises(
        SyncError, match=r"^copying public\.t failed, staging left unchanged: value for domain positive"
    ):
        pair.sync()


def test_a_long_copy_reports_its_progress(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    from sync_assets.engine import copy_pipe

    monkeypatch.setattr(copy_pipe, "PROGRESS_INTERVAL_SECONDS", 0.0)
    ddl = "CREATE TABLE big (id int PRIMARY KEY, filler text)"
    pair.run_prod(ddl + "; INSERT INTO big SELECT i, repeat('x', 200) FROM generate_series(1, 20000) i")
    pair.run_staging(ddl)
    logs = Recorder()
    pair.sync(observer=logs)
    progress = [m for m in logs if m.startswith("copying public.big: ")]
    # one line per megabyte written to staging: ~4.4 MB of rows
    assert len(progress) == 4
    assert all(m.endswith(" MB so far") for m in progress)
    assert progress[0].startswith("copying public.big: ") and " rows, 1.0 MB so far" in progress[0]


def test_merge_mode_inserts_and_updates_but_never_deletes(cruise_pair: Pair) -> None:
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, ALL_STAGING)
    config = cruise.CONFIG_YAML + "mode: merge\ntables:\n  webhook_events: {mode: mirror}\n"
    result = cruise_pair.sync(config)
    changed = {k[1]: (t.inserted, t.updated, t.deleted) for k, t in result.tables.items()}
    assert changed["cruises"] == (20, 11, 0)
    assert changed["itineraries"] == (20, 0, 0)
    assert changed["webhook_events"] == (1, 0, 0)  # the one table left in mirror mode: 1 row differs
    assert result.orphans == []  # nothing removed, so no preserved row lost its parent
    with cruise_pair.staging() as staging, cruise_pair.prod() as prod:
        after = snapshot_tables(staging, ALL_STAGING)
        # every production row is in staging, and staging kept the rows production deleted
        for table in ("cruises", "itineraries", "pricing", "price_snapshots"):
            assert set(table_rows(prod, table)) <= set(after[table])
        assert staging.execute("SELECT count(*) FROM cruises WHERE id BETWEEN 191 AND 200").fetchone() == (10,)
        assert after["quote_requests"] == before["quote_requests"]


def test_merge_mode_needs_a_key(cruise_pair: Pair) -> None:
    with pytest.raises(DriftError, match=r"public\.webhook_events is set to mode merge, which needs a primary key"):
        cruise_pair.sync(cruise.CONFIG_YAML + "tables:\n  webhook_events: {mode: merge}\n")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("mode: upsert\n", "'mode' must be one of mirror, merge, incremental, got 'upsert'"),
        ("tables:\n  ports: {mode: merge, speed: fast}\n", "'tables' entry 'ports' takes only 'mode' and 'column'"),
        ("tables:\n  ports: {column: updated_at}\n", "'tables' sets the column of public.ports, which only mode"),
        ("incremental_overlap: 5\n", "'incremental_overlap' must be a duration such as '90s'"),
        (
            "reconcile_every: weekly\n",
            "'reconcile_every' must be a duration such as '90s', '5min', '2h' or '7d' or 'never'",
        ),
        ("tables:\n  users: {mode: merge}\n", "'tables' sets the mode of public.users, which is preserved"),
        ("tables:\n  nosuch: {mode: merge}\n", "'tables' names table 'nosuch', which production does not have"),
    ],
)
def test_bad_modes_are_config_errors(cruise_pair: Pair, extra: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        cruise_pair.sync(cruise.CONFIG_YAML + extra)
    assert fragment in str(err.value)
