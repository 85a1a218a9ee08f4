"""The film-rental schema (rental.py) synced as a real database is: partitions with their own foreign
keys, inheritance children, a NOT NULL foreign-key cycle, sequences not owned by their column, staging's
own triggers; into an older staging and an empty one; as a role that owns the tables, one granted SET on
session_replication_role, and one that owns nothing; with every staging_triggers setting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from sync_assets.engine import Endpoint, Pause, Point, SelectionError, SyncError
from sync_assets.engine.observe import PAUSE_ENV
from sync_assets_tests import rental
from sync_assets_tests.conftest import RUNNER, Pair, Recorder, table_rows, wait_for
from sync_assets_tests.pgcluster import FAST_ROLE, WRITER_ROLE

TRIGGER_STATES = (
    "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2"
)
# Where staging's own triggers rewrite what they touch: last_update = now(), the fulltext of the title.
REWRITTEN = ["customer", "film"]


def setup(pair: Pair, staging_rows: bool, cycle_not_null: bool = True) -> None:
    pair.run_prod(rental.schema(cycle_not_null) + rental.DATA + rental.CHANGES)
    pair.run_staging(rental.schema(cycle_not_null) + (rental.DATA if staging_rows else "") + rental.STAGING_OWN)


def target(pair: Pair, role: str) -> Endpoint | None:
    if role == "writer":
        pair.grant_writer()
        return pair.target_as(WRITER_ROLE)
    return pair.target_as(FAST_ROLE) if role == "replica" else None


def writes(result) -> dict[str, tuple[int, int, int]]:
    return {
        k[1]: (t.inserted, t.updated, t.deleted)
        for k, t in result.tables.items()
        if t.inserted or t.updated or t.deleted
    }


def assert_sequences_past_their_columns(pair: Pair) -> None:
    with pair.staging() as staging:
        for seq, table, column in rental.SEQUENCES:
            after = staging.execute(f"SELECT nextval('{seq}')").fetchone()[0]
            highest = staging.execute(f"SELECT max({column}) FROM {table}").fetchone()[0]
            assert after > highest, (seq, table, after, highest)


@pytest.mark.parametrize("staging_rows", [True, False], ids=["older-staging", "empty-staging"])
@pytest.mark.parametrize(
    ("role", "setting"),
    [("owner", "auto"), ("owner", "skip"), ("replica", "auto"), ("replica", "skip")],
)
def test_staging_ends_equal_to_production_and_a_second_run_changes_nothing(
    pair: Pair, fast_role, writer_role, role: str, setting: str, staging_rows: bool
) -> None:
    setup(pair, staging_rows)
    to = target(pair, role)
    with pair.staging() as staging:
        triggers = staging.execute(TRIGGER_STATES).fetchall()
    logged = Recorder()

    first = pair.sync(f"staging_triggers: {setting}\n", observer=logged, target=to)

    pair.assert_equal(rental.SYNCED)
    assert first.warnings == []
    if role == "owner":
        assert any(line.startswith("staging's own triggers public.actor.last_updated, ") for line in logged)
        assert any(
            "are disabled for the swap, so the rows the sync writes stay equal to production" in line for line in logged
        )
    else:
        assert "13 of staging's own triggers and rules stay silent in replica mode" in logged
    if staging_rows:
        assert writes(first)["payment"] == (72, 8, 320)
        assert (first.tables[("public", "store")].deleted, first.tables[("public", "staff")].deleted) == (1, 2)
    with pair.staging() as staging:
        assert staging.execute(TRIGGER_STATES).fetchall() == triggers  # back as they were
        # staging's views over the synced tables still answer
        assert staging.execute("SELECT count(*) FROM film_list").fetchone()[0] == 60
        assert staging.execute("SELECT count(*) FROM sales_by_store").fetchone()[0] == 3
    assert_sequences_past_their_columns(pair)

    second = pair.sync(f"staging_triggers: {setting}\n", target=to)

    assert writes(second) == {}
    pair.assert_equal(rental.SYNCED)


@pytest.mark.parametrize("role", ["owner", "replica", "writer"])
def test_fire_lets_staging_triggers_rewrite_the_rows_and_says_so(pair: Pair, fast_role, writer_role, role: str) -> None:
    setup(pair, staging_rows=True)
    logged = Recorder()

    pair.sync("staging_triggers: fire\n", observer=logged, target=target(pair, role))

    assert "foreign keys are checked row by row (staging_triggers: fire)" in logged
    assert any(
        line.startswith("staging's own triggers public.actor.last_updated, ")
        and line.endswith(
            "fire on the rows the sync writes (staging_triggers: fire); where they change a row, "
            "staging differs from production in it"
        )
        for line in logged
    )
    with pair.prod() as prod, pair.staging() as staging:
        assert [t for t in rental.SYNCED if table_rows(staging, t) != table_rows(prod, t)] == REWRITTEN


def test_auto_warns_where_it_cannot_silence_staging_triggers(pair: Pair, writer_role) -> None:
    setup(pair, staging_rows=True)
    logged = Recorder()

    result = pair.sync("staging_triggers: auto\n", observer=logged, target=target(pair, "writer"))

    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert warning.startswith("staging's own triggers public.actor.last_updated, ")
    assert (
        "would fire on the rows the sync writes and may change them: the staging role staging_writer does not own "
        "their tables, so it cannot disable them, and may not set session_replication_role (GRANT SET ON PARAMETER "
        "session_replication_role TO staging_writer). They fire: where they change a row, staging differs from "
        "production in it"
    ) in warning
    assert warning in logged.warnings
    with pair.prod() as prod, pair.staging() as staging:
        assert [t for t in rental.SYNCED if table_rows(staging, t) != table_rows(prod, t)] == REWRITTEN


def test_skip_refuses_where_it_cannot_silence_staging_triggers_and_changes_nothing(pair: Pair, writer_role) -> None:
    setup(pair, staging_rows=True)
    before = pair.staging_state(rental.SYNCED)

    with pytest.raises(SyncError) as err:
        pair.sync("staging_triggers: skip\n", target=target(pair, "writer"))

    assert str(err.value).startswith("'staging_triggers: skip' cannot be honoured: staging's own triggers ")
    assert str(err.value).endswith("; nothing was changed")
    assert pair.staging_state(rental.SYNCED) == before


def test_a_nullable_cycle_as_a_role_owning_nothing_syncs_and_says_what_fired(pair: Pair, writer_role) -> None:
    """Without the replica path, foreign keys are checked row by row; the cycle is written in one statement."""
    setup(pair, staging_rows=True, cycle_not_null=False)
    result = pair.sync(target=target(pair, "writer"))
    with pair.prod() as prod, pair.staging() as staging:
        assert [t for t in rental.SYNCED if table_rows(staging, t) != table_rows(prod, t)] == REWRITTEN
    assert (result.tables[("public", "store")].inserted, result.tables[("public", "staff")].inserted) == (1, 1)


def test_a_preserved_parent_missing_a_row_that_a_partition_references_is_refused(pair: Pair, fast_role) -> None:
    """A new payment (June's partition) of a customer staging's own customer table lacks: refused before
    anything moves, on the once-per-key path as on the row-by-row one."""
    setup(pair, staging_rows=True)
    # staging's own customers include production's new ones, so only the payment below points nowhere
    pair.run_staging(
        "INSERT INTO customer (customer_id, store_id, first_name, last_name, address_id)"
        " SELECT i, 1, 'own', 'customer', 1 FROM generate_series(51, 55) i"
    )
    pair.run_prod(
        "INSERT INTO customer (customer_id, store_id, first_name, last_name, address_id) VALUES (999, 1, 'x', 'y', 1);"
        "INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)"
        " SELECT 999, 1, min(rental_id), 1.00, '2022-06-15 00:00+00' FROM rental"
    )
    before = pair.staging_state([*rental.SYNCED])
    for to in (None, pair.target_as(FAST_ROLE)):
        with pytest.raises(SelectionError) as err:
            pair.sync("preserve: [customer, customer_note]\nstaging_triggers: skip\n", target=to)
        assert str(err.value).startswith("public.payment has ")
        assert "referencing public.customer rows that staging lacks (e.g. customer_id = (999)" in str(err.value)
        assert "public.customer is preserved (preserve), so the sync cannot add them" in str(err.value)
        assert pair.staging_state([*rental.SYNCED]) == before


def test_a_partition_foreign_key_on_some_partitions_only_is_checked_where_it_is_declared(pair: Pair, fast_role) -> None:
    """June's partition alone references customer in staging: a payment of a customer staging lacks is
    refused in June (checked once written, per key) and accepted in March, which has no such key."""
    schema = rental.ONE_PARTITION_REFERENCES
    pair.run_prod(schema + "INSERT INTO customer VALUES (1), (2);")
    pair.run_staging(schema + "INSERT INTO customer VALUES (1);" + rental.JUNE_REFERENCES)
    pair.run_prod("INSERT INTO payment VALUES (1, 2, '2022-03-10')")
    pair.sync("preserve: [customer]\n")
    pair.assert_equal(["payment"])

    pair.run_prod("INSERT INTO payment VALUES (2, 2, '2022-06-10')")
    for to in (None, pair.target_as(FAST_ROLE)):
        with pytest.raises(SyncError) as err:
            pair.sync("preserve: [customer]\n", target=to)
        assert 'foreign key constraint "june_customer"' in str(err.value)
        assert "staging left unchanged" in str(err.value)
    with pair.staging() as staging:
        assert table_rows(staging, "payment") == ["(1,2,2022-03-10)"]


def test_preserved_inheritance_children_and_partitions_keep_their_rows_and_back_up_orphans(pair: Pair) -> None:
    setup(pair, staging_rows=True)
    pair.run_staging("INSERT INTO customer_note (note_id, body, customer_id) VALUES (500, 'staging note', 1)")
    with pair.staging() as staging:
        doomed = staging.execute(
            "SELECT count(*) FROM customer_note n JOIN customer c USING (customer_id) WHERE c.store_id = 3"
        ).fetchone()[0]

    result = pair.sync("preserve: [customer_note]\n")

    assert doomed > 0
    assert [(o.table[1], o.references[1], o.constraint, o.rows) for o in result.orphans] == [
        ("customer_note", "customer", "customer_note_customer_id_fkey", doomed)
    ]
    with pair.staging() as staging:
        assert '(500,"staging note",1)' in table_rows(staging, "customer_note")
        assert staging.execute("SELECT count(*) FROM customer_note_backup").fetchone()[0] == doomed
    pair.assert_equal([t for t in rental.SYNCED if t != "customer_note"])


def test_readers_are_not_blocked_while_the_owner_has_staging_triggers_disabled(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(pair, staging_rows=True)
    paused = Recorder(Pause(Point.DIFFS_COMPUTED, tmp_path))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pair.sync(observer=paused)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_for(lambda: (tmp_path / "paused").exists(), "the swap to disable the triggers")
        with pair.staging() as other:
            assert other.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'last_updated' AND tgenabled = 'D'"
            ).fetchone() == (0,)  # the ALTER is the swap's own until it commits
            other.execute("SET lock_timeout = '200ms'")
            # readers read the old rows at once
            assert other.execute("SELECT count(*) FROM film").fetchone() == (60,)
            assert other.execute("SELECT count(*) FROM customer").fetchone() == (50,)
            # writers of those tables wait for the swap's COMMIT
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("UPDATE film SET length = length WHERE film_id = 1")
    finally:
        (tmp_path / "resume").touch()
        worker.join(timeout=120)
    assert errors == []
    pair.assert_equal(rental.SYNCED)


@pytest.mark.faults
@pytest.mark.parametrize("point", ["diffs_computed", "upserted", "constraints_checked", "bookkeeping_written"])
def test_a_run_killed_with_staging_triggers_disabled_leaves_them_and_the_rows_as_they_were(
    pair: Pair, tmp_path: Path, point: str
) -> None:
    setup(pair, staging_rows=True)
    before = pair.staging_state(rental.SYNCED)
    with pair.staging() as staging:
        triggers = staging.execute(TRIGGER_STATES).fetchall()
    config = tmp_path / "sync.yaml"
    config.write_text("retries: 0\n")
    env = {**os.environ, PAUSE_ENV: f"{point}@{tmp_path}"}
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, pair.prod_url, pair.staging_url, str(config)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: (tmp_path / "paused").exists() or proc.poll() is not None, f"the run to reach {point}")
        assert (tmp_path / "paused").exists(), log.read_text()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    with pair.staging() as staging:
        # the server notices the dead client and rolls the swap back, the ALTERs with it
        wait_for(lambda: not staging.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sync_assets'").fetchone()[0],
            "the killed run's sessions to end")  # fmt: skip
        assert staging.execute(TRIGGER_STATES).fetchall() == triggers
    assert pair.staging_state(rental.SYNCED) == before
    pair.sync()
    pair.assert_equal(rental.SYNCED)
