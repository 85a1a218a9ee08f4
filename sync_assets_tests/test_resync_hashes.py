"""Resyncs by keyed row hashes (compare.py): only the rows of buckets whose hashes differ are read, and
staging still ends equal to production row for row, after any sequence of changes."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from sync_assets.engine import compare
from sync_assets.engine.observe import Pause, Point
from sync_assets.engine.shadows import Keys
from sync_assets_tests.conftest import Pair, Recorder, table_rows, wait_for

KINDS = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE t (
    id bigint PRIMARY KEY, m mood, ts text[], jb jsonb, js json, b bytea, n numeric, f float8, tz timestamptz,
    d date, iv interval, s text, p point, r int4range, q positive, u uuid, c char(3), nf numeric(8, 2)
);
CREATE TABLE parted (id integer, region text, v numeric, note text, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
CREATE TABLE parted_rest PARTITION OF parted DEFAULT;
"""
T, PARTED = ("public", "t"), ("public", "parted")
TABLES = ["t", "parted", "parted_eu", "parted_rest"]

# Per column, values a change may set: NULLs, and values equal under `=` whose text differs.
VALUES = {
    "m": ["'sad'", "'happy'", "NULL"],
    "ts": ["ARRAY['a', NULL, '']", "'{}'", "NULL", "ARRAY[E'tab\\there']"],
    "jb": ["'{\"a\": 1}'", "'{\"a\": 1.0}'", "'null'", "NULL"],
    "js": ["'{\"a\":1}'", "'{\"a\": 1}'", "'[ ]'", "NULL"],
    "b": ["'\\x00ff'", "''", "NULL"],
    "n": ["1.0", "1.00", "'NaN'", "NULL"],
    "f": ["0", "'-0'", "'Infinity'", "'NaN'", "NULL"],
    "tz": ["'2026-01-01 00:00+00'", "'infinity'", "NULL"],
    "d": ["'2026-01-01'", "'-infinity'", "NULL"],
    "iv": ["'1 day'", "'24 hours'", "NULL"],
    "s": ["'x'", "''", "E'\\U0001F600 \\\\ x'", "NULL"],
    "p": ["'(1,2)'", "'(NaN,0)'", "NULL"],
    "r": ["'[1,5)'", "'empty'", "NULL"],
    "q": ["1", "7", "NULL"],
    "u": ["'00000000-0000-0000-0000-000000000001'", "gen_random_uuid()", "NULL"],
    "c": ["'ab'", "'abc'", "NULL"],
    "nf": ["1", "2.5", "NULL"],
}


def _fill(pair: Pair, rows: int) -> None:
    pair.run_both(KINDS)
    pair.run_prod(
        f"""INSERT INTO t SELECT i, 'ok', ARRAY['x' || i], jsonb_build_object('i', i), json_build_object('i', i),
                    int4send(i), i / 7.0, i / 3.0, '2026-01-01'::timestamptz + i * interval '1 hour',
                    '2026-01-01'::date + i, i * interval '1 minute', 'row ' || i, point(i, i), int4range(i, i + 2),
                    1 + i % 9, md5(i::text)::uuid, 'c' || i % 10, i / 4.0
            FROM generate_series(1, {rows}) i;
            INSERT INTO parted SELECT i, (ARRAY['eu', 'us', 'apac'])[1 + i % 3], i / 2.0, 'n' || i
            FROM generate_series(1, {rows}) i;
            ANALYZE;"""
    )


def _random_changes(rng: random.Random, next_id: list[int]) -> str:
    """A random sequence of inserts, updates (NULLs and representation changes too), deletes and key changes."""
    statements = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.choice(["insert", "update", "update", "delete", "key", "parted"])
        target = rng.randint(1, next_id[0])
        if kind == "insert":
            next_id[0] += 1
            column = rng.choice(list(VALUES))
            statements.append(f"INSERT INTO t (id, {column}) VALUES ({next_id[0]}, {rng.choice(VALUES[column])})")
        elif kind == "update":
            sets = ", ".join(f"{c} = {rng.choice(VALUES[c])}" for c in rng.sample(list(VALUES), rng.randint(1, 3)))
            statements.append(f"UPDATE t SET {sets} WHERE id % 97 = {target % 97}")
        elif kind == "delete":
            statements.append(f"DELETE FROM t WHERE id = {target}")
        elif kind == "key":
            next_id[0] += 1
            statements.append(f"UPDATE t SET id = {next_id[0]} WHERE id = {target}")
        else:
            statements.append(
                rng.choice(
                    [
                        f"UPDATE parted SET region = 'eu' WHERE id = {target}",  # moves partition: a key change
                        f"UPDATE parted SET v = v * 1.0, note = NULL WHERE id % 13 = {target % 13}",
                        f"DELETE FROM parted WHERE id = {target}",
                        f"INSERT INTO parted VALUES ({target}, 'r{target}', 1, 'new') ON CONFLICT DO NOTHING",
                    ]
                )
            )
    return ";\n".join(statements)


def _assert_equal(pair: Pair) -> None:
    with pair.prod() as prod, pair.staging() as staging:
        for table in TABLES:
            assert table_rows(staging, table) == table_rows(prod, table), table


def test_random_changes_through_hashes_keep_staging_equal(pair: Pair) -> None:
    _fill(pair, 600)
    first = pair.sync()
    assert first.tables[T].keys == Keys.NOT_NEEDED  # staging was empty: read whole
    _assert_equal(pair)
    rng, next_id = random.Random(12), [600]
    for round_ in range(8):
        pair.run_prod(_random_changes(rng, next_id))
        logs = Recorder()
        result = pair.sync(observer=logs)
        _assert_equal(pair)
        assert logs.warnings == [], round_
        for key in (T, PARTED):
            run = result.tables[key]
            assert run.keys == Keys.BUCKETS, (round_, key, run.notes)
            assert run.read_rows < run.production_rows, (round_, key)
            assert run.staging_print == run.snapshot_print
        again = pair.sync()
        for key in (T, PARTED):
            run = again.tables[key]
            assert (run.read_rows, run.inserted, run.updated, run.deleted) == (0, 0, 0, 0), (round_, key)
            assert run.buckets is not None and run.buckets.n_differing == 0


def test_counts_of_a_resync_by_hashes_are_the_rows_that_differ(pair: Pair) -> None:
    _fill(pair, 2000)
    pair.sync()
    pair.run_prod(
        "UPDATE t SET n = 1.00 WHERE id IN (5, 6); UPDATE t SET f = '-0' WHERE id = 7;"
        " DELETE FROM t WHERE id IN (100, 200, 300); INSERT INTO t (id) VALUES (5000), (5001);"
        " UPDATE t SET id = 6000 WHERE id = 400"
    )
    result = pair.sync()
    _assert_equal(pair)
    run = result.tables[T]
    assert (run.inserted, run.updated, run.deleted) == (3, 3, 4)
    assert run.production_rows == 2000 - 3 + 2
    # A bucket per eight rows or so: the rows of at most nine buckets are read, not the table.
    assert 0 < run.read_rows <= 9 * 40
    assert "buckets differ" in " ".join(run.notes)


def test_keys_of_every_kind_bucket_alike_on_both_sides(pair: Pair) -> None:
    """A uuid key and an integer key are hashed by their types' own functions, an integer key typed
    differently on the two sides by its bigint value, other keys through a record: each side must put a
    row in the same bucket, or every bucket would differ and every row be read."""
    pair.run_prod(
        "CREATE TABLE by_uuid (id uuid PRIMARY KEY, v int); CREATE TABLE widened (id integer PRIMARY KEY, v int);"
        " CREATE TABLE by_text (id text PRIMARY KEY, v int)"
    )
    pair.run_staging(
        "CREATE TABLE by_uuid (id uuid PRIMARY KEY, v int); CREATE TABLE widened (id bigint PRIMARY KEY, v int);"
        " CREATE TABLE by_text (id text PRIMARY KEY, v int)"
    )
    pair.run_prod(
        "INSERT INTO by_uuid SELECT md5(i::text)::uuid, i FROM generate_series(1, 800) i;"
        " INSERT INTO widened SELECT i, i FROM generate_series(1, 800) i;"
        " INSERT INTO by_text SELECT 'k' || i, i FROM generate_series(1, 800) i; ANALYZE"
    )
    pair.sync()
    pair.run_prod(
        "UPDATE by_uuid SET v = -v WHERE v IN (3, 400); UPDATE widened SET v = -v WHERE v IN (3, 400);"
        " UPDATE by_text SET v = -v WHERE v IN (3, 400)"
    )
    result = pair.sync()
    with pair.prod() as prod, pair.staging() as staging:
        for table in ("by_uuid", "widened", "by_text"):
            assert table_rows(staging, table) == table_rows(prod, table), table
            run = result.tables[("public", table)]
            assert run.keys == Keys.BUCKETS, (table, run.notes)
            assert run.buckets is not None and run.buckets.n_differing == 2, table
            assert run.updated == 2 and run.read_rows <= 2 * 40, table


def test_staging_rows_changed_outside_the_sync_are_found(pair: Pair) -> None:
    _fill(pair, 500)
    pair.sync()
    pair.run_staging("UPDATE t SET s = 'edited in staging' WHERE id = 17; DELETE FROM t WHERE id = 18;"
                     " INSERT INTO t (id) VALUES (9999)")  # fmt: skip
    result = pair.sync()
    _assert_equal(pair)
    run = result.tables[T]
    assert (run.inserted, run.updated, run.deleted) == (1, 1, 1)


def test_a_forced_collision_falls_back_to_reading_the_table_whole(pair: Pair, monkeypatch) -> None:
    """The test hook: buckets compared by their row counts alone, as if every hash collided. The content
    check, over the whole table, then disagrees; the run starts again reading the table whole."""
    _fill(pair, 300)
    pair.sync()
    pair.run_prod("UPDATE t SET s = 'changed' WHERE id = 3; UPDATE parted SET v = 99 WHERE id = 4")
    monkeypatch.setattr(compare, "BUCKETS_DIFFER", "p.n IS DISTINCT FROM s.n")
    logs = Recorder()
    result = pair.sync(observer=logs)
    _assert_equal(pair)
    assert any("still differed from the snapshot" in w for w in logs.warnings), logs.warnings
    for key in (T, PARTED):
        run = result.tables[key]
        assert run.keys == Keys.NOT_NEEDED and run.updated == 1
        assert "its hashes disagreed with the content check in an earlier attempt" in " ".join(run.notes)
        assert run.staging_print == run.snapshot_print


def test_staging_changed_between_comparison_and_swap_falls_back(pair: Pair, tmp_path: Path) -> None:
    _fill(pair, 300)
    pair.sync()
    pair.run_prod("UPDATE t SET s = 'changed' WHERE id = 3")
    logs = Recorder(Pause(Point.FETCHED, tmp_path))
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("result", pair.sync(observer=logs)))
    worker.start()
    wait_for(lambda: (tmp_path / "paused").exists(), "the run to reach fetched")
    pair.run_staging("UPDATE t SET s = 'meanwhile' WHERE id = 250")  # a bucket the comparison found equal
    (tmp_path / "resume").touch()
    worker.join(120)
    assert "result" in outcome
    _assert_equal(pair)
    assert any("still differed from the snapshot" in w for w in logs.warnings), logs.warnings


def test_resync_copy_reads_every_row(pair: Pair) -> None:
    _fill(pair, 200)
    pair.sync()
    pair.run_prod("UPDATE t SET s = 'changed' WHERE id = 3")
    result = pair.sync("resync: copy")
    _assert_equal(pair)
    run = result.tables[T]
    assert (run.keys, run.read_rows, run.updated) == (Keys.NOT_NEEDED, 200, 1)
    assert "read whole" not in " ".join(run.notes)  # chosen, not fallen back to


@pytest.mark.parametrize("mode", ["merge", "incremental"])
def test_other_modes_are_not_compared_by_hashes(pair: Pair, mode: str) -> None:
    _fill(pair, 100)
    pair.sync()
    result = pair.sync(f"mode: {mode}\nincremental_column: tz")
    assert result.tables[T].keys != Keys.BUCKETS


def test_reconcile_every_reads_a_mirror_table_whole_again(pair: Pair) -> None:
    _fill(pair, 200)
    pair.sync()  # read whole: staging was empty; the read is recorded
    pair.run_prod("UPDATE t SET s = 'one' WHERE id = 3")
    assert pair.sync().tables[T].keys == Keys.BUCKETS
    pair.run_staging("UPDATE sync_assets.whole_reads SET read_at = now() - interval '8 days'")
    pair.run_prod("UPDATE t SET s = 'two' WHERE id = 3")
    result = pair.sync()
    run = result.tables[T]
    assert (run.keys, run.read_rows, run.updated) == (Keys.NOT_NEEDED, 200, 1)
    assert any(n.startswith("read whole: last read whole at ") and n.endswith("(reconcile_every)") for n in run.notes)
    _assert_equal(pair)
    assert pair.sync().tables[T].keys == Keys.BUCKETS  # read whole just now
    pair.run_staging("UPDATE sync_assets.whole_reads SET read_at = now() - interval '8 days'")
    assert pair.sync("reconcile_every: never").tables[T].keys == Keys.BUCKETS


def test_a_table_never_read_whole_is_read_whole_first(pair: Pair) -> None:
    """Staging filled by other means (a restored dump, an older version of the tool): read whole once."""
    _fill(pair, 100)
    pair.sync()
    pair.run_staging("DELETE FROM sync_assets.whole_reads")
    pair.run_prod("UPDATE t SET s = 'changed' WHERE id = 3")
    assert pair.sync().tables[T].keys == Keys.NOT_NEEDED
    assert pair.sync().tables[T].keys == Keys.BUCKETS
    _assert_equal(pair)


def test_a_table_read_whole_in_another_mode_is_then_compared_by_hashes(pair: Pair) -> None:
    _fill(pair, 100)
    pair.sync("mode: incremental\nincremental_column: tz")  # a first incremental run reads every row
    pair.run_prod("UPDATE t SET s = 'changed' WHERE id = 3")
    run = pair.sync().tables[T]
    assert (run.keys, run.updated) == (Keys.BUCKETS, 1)
    _assert_equal(pair)
