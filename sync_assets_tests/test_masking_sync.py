"""Masked columns through whole syncs: staging holds exactly what production's masks give, no raw value of
a masked column reaches staging (its tables or the sync's scratch), a second run changes nothing, a change
reaches staging masked through the keyed row hashes, and mistakes stop the run before anything moves."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import psycopg
import pytest
import yaml
from dagster import AssetCheckSeverity, DagsterInstance
from psycopg import sql

from sync_assets.definitions import build_definitions
from sync_assets.defs.failures import failure_for
from sync_assets.defs.metadata import plan_frames
from sync_assets.engine.comparison import compare_now
from sync_assets.engine.config_file import parse_config
from sync_assets.engine.errors import ConfigError, SyncError
from sync_assets.engine.introspect import introspect
from sync_assets.engine.mask_key import KEY_ENV, MaskKey
from sync_assets.engine.mask_spec import Mask
from sync_assets.engine.masking import expression
from sync_assets.engine.observe import Pause, Point
from sync_assets.engine.raw_values import raw_values_now
from sync_assets.engine.shadows import Keys
from sync_assets_tests.conftest import Pair, Recorder, wait_for

SECRET = "a mask key for the tests, long enough"
SCHEMA = """
CREATE TABLE agents (id bigint PRIMARY KEY, email text UNIQUE, name text, phone varchar(20));
CREATE TABLE bookings (
    id bigint PRIMARY KEY, agent_email text REFERENCES agents (email) ON UPDATE CASCADE, passenger text, notes jsonb,
    paid numeric(10, 2), updated_at timestamptz NOT NULL DEFAULT now()
);
"""
DATA = """
INSERT INTO agents SELECT i, 'agent' || i || '@travel.test', 'Agent Name ' || i, '+44 20 7946 ' || lpad(i::text, 4, '0')
FROM generate_series(1, 40) i;
INSERT INTO bookings SELECT i, 'agent' || (1 + i % 40) || '@travel.test', 'Passenger ' || i,
       jsonb_build_object('contact', jsonb_build_object('email', 'p' || i || '@mail.test'), 'seats', i % 4), i * 10
FROM generate_series(1, 400) i;
"""
CONFIG = """
mask:
  public.agents.email: email
  public.agents.name: full_name
  public.agents.phone: digits
  public.bookings.agent_email: email
  public.bookings.passenger: full_name
  public.bookings.notes: {json: {paths: [contact.email], transform: email}}
"""
MASKED = {"agents": ("email", "name", "phone"), "bookings": ("agent_email", "passenger")}


@pytest.fixture
def people(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> Pair:
    monkeypatch.setenv(KEY_ENV, SECRET)
    pair.run_both(SCHEMA)
    pair.run_prod(DATA)
    return pair


def _raw_values(pair: Pair) -> list[str]:
    with pair.prod() as prod:
        values = []
        for table, columns in MASKED.items():
            for c in columns:
                query = sql.SQL("SELECT {} FROM {}").format(sql.Identifier(c), sql.Identifier(table))
                values += [v for (v,) in prod.execute(query)]
        values += [v for (v,) in prod.execute("SELECT notes #>> '{contact,email}' FROM bookings")]
    return values


def _found_in(conn: psycopg.Connection, schema: str, values: list[str]) -> list[str]:
    """Every table of the schema whose rows' text holds one of the values."""
    tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall()
    found = []
    for (table,) in tables:
        name = sql.Identifier(schema, table)
        query = sql.SQL("SELECT count(*) FROM {} t WHERE t::text LIKE ANY (%s)").format(name)
        if conn.execute(query, ([f"%{v}%" for v in values],)).fetchone()[0]:
            found.append(table)
    return found


def _expected(pair: Pair, table: str, column: str, mask: Mask, key: MaskKey) -> list:
    """The column as production's mask computes it, in key order."""
    with pair.prod() as prod:
        source = introspect(prod, ["public"]).get("public", table).column(column)
        query = sql.SQL("SELECT {} FROM {} t ORDER BY id").format(expression(mask, source, key), sql.Identifier(table))
        return [v for (v,) in prod.execute(query)]


def _staged(pair: Pair, table: str, column: str) -> list:
    with pair.staging() as staging:
        query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(sql.Identifier(column), sql.Identifier(table))
        return [v for (v,) in staging.execute(query)]


def test_masked_columns_arrive_masked_and_nothing_raw_reaches_staging(people: Pair, tmp_path: Path) -> None:
    raw = _raw_values(people)
    logs = Recorder(Pause(Point.EXTRACTED, tmp_path))
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("result", people.sync(CONFIG, observer=logs)))
    worker.start()
    wait_for(lambda: (tmp_path / "paused").exists(), "the run to finish extracting")
    with people.staging() as staging:
        assert _found_in(staging, "sync_assets", raw) == []  # the shadows hold masked values only
    (tmp_path / "resume").touch()
    worker.join(120)
    result = outcome["result"]
    with people.staging() as staging:
        assert _found_in(staging, "public", raw) == []
    key = MaskKey(SECRET.encode())
    assert _staged(people, "agents", "email") == _expected(people, "agents", "email", Mask.parse("e", "email"), key)
    assert _staged(people, "bookings", "passenger") == _expected(
        people, "bookings", "passenger", Mask.parse("p", "full_name"), key
    )
    with people.staging() as staging:
        # Masked alike on both sides of the foreign key: every booking still joins its agent.
        joined = staging.execute("SELECT count(*) FROM bookings b JOIN agents a ON a.email = b.agent_email")
        assert joined.fetchone()[0] == 400
        seats = staging.execute("SELECT notes -> 'seats', notes #>> '{contact,email}' FROM bookings WHERE id = 5")
        assert seats.fetchone()[0] == 1
    for run in result.tables.values():
        assert run.staging_print == run.snapshot_print
        assert not run.plan.binary

    again = people.sync(CONFIG)
    for name in ("agents", "bookings"):
        run = again.tables[("public", name)]
        assert run.keys == Keys.BUCKETS, run.notes  # production's masked values hashed: nothing differs
        assert (run.read_rows, run.inserted, run.updated, run.deleted) == (0, 0, 0, 0), name
        assert run.staging_print == run.snapshot_print


def test_a_change_arrives_masked_through_the_hashes(people: Pair) -> None:
    people.sync(CONFIG)
    people.run_prod(
        "UPDATE bookings SET passenger = 'Someone Else' WHERE id = 7; UPDATE bookings SET paid = 1 WHERE id = 8"
    )
    result = people.sync(CONFIG)
    run = result.tables[("public", "bookings")]
    assert run.keys == Keys.BUCKETS and run.updated == 2
    key = MaskKey(SECRET.encode())
    assert _staged(people, "bookings", "passenger") == _expected(
        people, "bookings", "passenger", Mask.parse("p", "full_name"), key
    )
    with people.staging() as staging:
        assert _found_in(staging, "public", ["Someone Else"]) == []


def test_another_key_masks_every_row_again(people: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = "masks or masking key changed since the last run: every masked value is written again"
    assert changed not in people.sync(CONFIG).tables[("public", "agents")].plan.notes  # the first masked run
    assert changed not in people.sync(CONFIG).tables[("public", "agents")].plan.notes  # the same masks again
    monkeypatch.setenv(KEY_ENV, SECRET + " but changed")
    result = people.sync(CONFIG)
    assert result.tables[("public", "agents")].updated == 40
    assert changed in result.tables[("public", "agents")].plan.notes
    key = MaskKey((SECRET + " but changed").encode())
    assert _staged(people, "agents", "phone") == _expected(people, "agents", "phone", Mask.parse("p", "digits"), key)
    # Only a fingerprint of the masks is kept in staging, nothing of either key.
    with people.staging() as staging:
        stored = staging.execute("SELECT table_name, masks FROM sync_assets.masked_with ORDER BY 1").fetchall()
    assert [t for t, _ in stored] == ["agents", "bookings"] and all(len(m) == 16 for _, m in stored)


def test_a_merge_table_masked_anew_is_warned_about(people: Pair) -> None:
    """Merge keeps staging's rows production deleted, as they are: once masks change, the run says that
    such rows may still hold raw values. The same masks again: no warning."""
    merge = "tables:\n  public.agents: {mode: merge}\n  public.bookings: {mode: merge}\n"
    people.sync(merge)  # unmasked: production's rows arrive raw
    people.run_prod("DELETE FROM bookings WHERE id <= 5")
    first = people.sync(CONFIG + merge)
    warning = (
        "{} is in merge mode: staging's rows that production does not have are kept as they are, and "
        "those copied before these masks (or under another key) may still hold raw values that no_raw_values cannot "
        "tell from staging's own rows; sync it once in mirror mode, or delete them"
    )
    assert first.warnings == [warning.format("public.agents"), warning.format("public.bookings")]
    with people.staging() as staging:  # what the warning is about
        assert staging.execute("SELECT passenger FROM bookings WHERE id = 1").fetchone() == ("Passenger 1",)
    assert people.sync(CONFIG + merge).warnings == []


def test_an_incremental_table_with_masks_is_compared_by_hashes(people: Pair) -> None:
    config = CONFIG + "tables:\n  public.bookings: {mode: incremental}\n"
    people.sync(config)
    people.run_prod("UPDATE bookings SET passenger = 'New Name', updated_at = now() WHERE id = 3")
    run = people.sync(config).tables[("public", "bookings")]
    assert run.keys == Keys.BUCKETS and run.updated == 1
    assert any("masked: compared by keyed row hashes or read whole" in n for n in run.notes)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (
            "mask:\n  public.agents.emial: email\n",
            "'mask' names column public.agents.emial, which production does not have; did you mean 'email'?",
        ),
        (
            "mask:\n  public.agents.email: email\n",
            "'mask': foreign key bookings_agent_email_fkey links "
            "public.bookings.agent_email to public.agents.email; mask both with the same transform, or neither "
            "(now unmasked and email)",
        ),
        (
            "mask:\n  public.agents.id: digits\n",
            "'mask' digits on column public.agents.id: the column has type "
            "bigint: digits masks character, character varying, text",
        ),
        (
            "mask:\n  public.agents.email: full_name\n  public.bookings.agent_email: full_name\n",
            "'mask' full_name on column public.agents.email: it is part of the unique key (email), which only hash "
            "or email keep unique",
        ),
        (
            "mask:\n  public.bookings.paid: {constant: lots}\n",
            "'mask' constant on column public.bookings.paid: 'lots' does not fit it (invalid input syntax for type "
            'numeric: "lots")',
        ),
        (
            'mask:\n  public.agents.phone: {sql: "left(phnoe, 3)"}\n',
            "'mask' sql on column public.agents.phone does not run on production (column \"phnoe\" does not exist)",
        ),
        (
            "mask:\n  public.bookings.updated_at: null\n",
            "'mask' null on column public.bookings.updated_at: the column is NOT NULL",
        ),
    ],
)
def test_mask_mistakes_stop_the_run_before_anything_moves(people: Pair, config: str, fragment: str) -> None:
    people.run_staging("INSERT INTO agents VALUES (999, 'own@staging.test', 'Own', '1')")
    before = people.staging_state(["agents", "bookings"])
    with pytest.raises(ConfigError) as raised:
        people.sync(config)
    assert fragment in str(raised.value)
    people.assert_unchanged(before)


def test_a_missing_key_stops_the_run_and_is_never_shown(people: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    before = people.staging_state(["agents", "bookings"])
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is not set"):
        people.sync(CONFIG)
    people.assert_unchanged(before)
    monkeypatch.setenv(KEY_ENV, SECRET)
    logs = Recorder()
    result = people.sync(CONFIG, observer=logs)
    assert SECRET not in " ".join(logs)
    # Nor any key derived from it, wherever the run's result is printed.
    padded = MaskKey(SECRET.encode()).derived("email").ljust(64, b"\x00")
    inner = bytes(b ^ 0x36 for b in padded)  # what the SQL carries: the HMAC's padded derived key
    assert repr(inner)[2:-1] not in repr(result) and inner.hex() not in repr(result)


def test_no_raw_values_finds_a_raw_value_written_by_hand(people: Pair) -> None:
    people.sync(CONFIG)
    config = parse_config(yaml.safe_load(CONFIG))
    tables = {("public", "agents"), ("public", "bookings")}
    clean = raw_values_now(people.source, people.target, config, tables)
    assert {k: v.found for k, v in clean.items()} == {
        ("public", "agents"): {"email": 0, "name": 0, "phone": 0},
        ("public", "bookings"): {"agent_email": 0, "passenger": 0, "notes.contact.email": 0},
    }
    assert clean[("public", "bookings")].rows == 400
    # By hand, in staging: agent 3's real name, and booking 9's real contact email inside the json.
    people.run_staging(
        "UPDATE agents SET name = 'Agent Name 3' WHERE id = 3;"
        " UPDATE bookings SET notes = jsonb_set(notes, '{contact,email}', '\"p9@mail.test\"') WHERE id = 9"
    )
    found = raw_values_now(people.source, people.target, config, tables)
    assert found[("public", "agents")].found == {"email": 0, "name": 1, "phone": 0}
    assert found[("public", "bookings")].found["notes.contact.email"] == 1


def test_no_raw_values_sends_staging_neither_hashes_nor_keys(people: Pair) -> None:
    """Staging only reads its own rows for the proof: every statement it runs is in its server log, and
    none hashes or carries a key derived from the masking key; production's hashes never reach it."""
    people.sync(CONFIG)
    log = people.cluster.base / "log"
    start = log.stat().st_size
    with people.cluster.connect() as su:
        su.execute(sql.SQL("ALTER DATABASE {} SET log_statement = 'all'").format(sql.Identifier(people.staging_db)))
    try:
        people.run_staging("UPDATE agents SET phone = '+44 20 7946 0003' WHERE id = 3")
        config = parse_config(yaml.safe_load(CONFIG))
        found = raw_values_now(people.source, people.target, config, {("public", "agents")})
        assert found[("public", "agents")].found == {"email": 0, "name": 0, "phone": 1}
    finally:
        with people.cluster.connect() as su:
            su.execute(sql.SQL("ALTER DATABASE {} RESET log_statement").format(sql.Identifier(people.staging_db)))
    with log.open("rb") as f:
        f.seek(start)
        logged = f.read().decode(errors="replace")
    assert 'DECLARE "sync_raw_values_staging"' in logged  # staging's statements are there
    padded = MaskKey(SECRET.encode()).derived("no_raw_values").ljust(64, b"\x00")
    inner = bytes(b ^ 0x36 for b in padded).hex()
    assert (
        "sha256" not in logged
        and inner not in logged
        and "sync_raw_values_" not in logged.replace("sync_raw_values_staging", "")
    )


def test_the_no_raw_values_check_in_dagster(people: Pair, tmp_path: Path) -> None:
    """Every masked table has the check, with ERROR severity; it passes after the sync and fails, naming
    the column, once a raw value is written into staging by hand. Unmasked tables have no such check."""
    people.run_both("CREATE TABLE plain (id int PRIMARY KEY)")
    config = parse_config(yaml.safe_load(CONFIG))
    defs = build_definitions(people.prod_url, people.staging_url, config, cache_dir=tmp_path)
    job = defs.resolve_job_def("sync_job")
    checks = {(k.asset_key.path[-1], k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert {(t, "no_raw_values") for t in ("agents", "bookings")} <= checks
    assert ("plain", "no_raw_values") not in checks
    specs = {s.key.path[-1]: s for s in defs.resolve_all_asset_specs() if s.tags.get("sync_assets/role") == "synced"}
    described = {c.name: c.description for c in specs["agents"].metadata["dagster/column_schema"].columns}
    assert described["email"] == "masked: email" and described["phone"] == "masked: digits"
    assert described["id"] is None

    instance = DagsterInstance.ephemeral()
    first = job.execute_in_process(instance=instance, raise_on_error=False)
    assert first.success
    # Dagster's storage: every event of the run (logs, materializations, metadata, check results).
    stored = " ".join(str(entry) for entry in instance.all_logs(first.run_id))
    assert "agents" in stored and SECRET not in stored
    assert [v for v in _raw_values(people) if v in stored] == []
    passed = {(e.asset_key.path[-1], e.check_name): e for e in first.get_asset_check_evaluations()}
    agents = passed[("agents", "no_raw_values")]
    assert agents.passed and agents.severity == AssetCheckSeverity.ERROR
    assert agents.metadata["raw_in_name"].value == 0
    materialized = {m.asset_key.path[-1]: m for m in first.get_asset_materialization_events()}
    schema = materialized["bookings"].materialization.metadata["dagster/column_schema"].value
    assert {c.name: c.description for c in schema.columns}["passenger"] == "masked: full_name"

    people.run_staging("UPDATE agents SET name = 'Agent Name 3' WHERE id = 3")
    only_checks = job.get_subset(asset_check_selection=set(defs.resolve_asset_graph().asset_check_keys))
    second = only_checks.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    found = {(e.asset_key.path[-1], e.check_name): e for e in second.get_asset_check_evaluations()}
    failed = found[("agents", "no_raw_values")]
    assert not failed.passed
    assert failed.description == "staging holds production's raw values: 1 row(s) in name"
    assert found[("bookings", "no_raw_values")].passed


def test_the_dry_run_lists_the_masked_columns_and_changes_nothing(people: Pair) -> None:
    before = people.staging_state(["agents", "bookings"])
    result = people.sync(CONFIG, dry_run=True)
    people.assert_unchanged(before)
    notes = result.tables[("public", "agents")].plan.notes
    assert "masked columns: email (email), name (full_name), phone (digits)" in notes
    frame, _ = plan_frames(result)
    masked = dict(zip(frame["table"], frame["masked columns"], strict=True))
    assert masked["public.bookings"] == "agent_email (email), notes (json), passenger (full_name)"


def test_a_merge_table_with_a_masked_key_matches_in_a_checks_only_comparison(people: Pair) -> None:
    """The checks of a table the run did not sync take production's keys masked, as the sync wrote them."""
    people.run_both("CREATE TABLE codes (code text PRIMARY KEY, note text)")
    people.run_prod("INSERT INTO codes SELECT 'code-' || i, 'n' || i FROM generate_series(1, 30) i")
    config = CONFIG + "  public.codes.code: hash\ntables:\n  public.codes: {mode: merge}\n"
    people.sync(config)
    now = compare_now(people.source, people.target, parse_config(yaml.safe_load(config)), {("public", "codes")})
    seen = now[("public", "codes")]
    assert seen.staging_print == seen.snapshot_print and seen.staging_rows == 30
    with people.staging() as staging:
        assert _found_in(staging, "public", ["code-7"]) == []


def test_a_constant_and_an_sql_mask_that_fit_arrive_as_given(people: Pair) -> None:
    config = CONFIG.replace("public.agents.phone: digits", "public.agents.phone: {sql: \"'+00 ' || id\"}")
    result = people.sync(config + "  public.bookings.paid: {constant: 0}\n")
    assert result.tables[("public", "bookings")].staging_print == result.tables[("public", "bookings")].snapshot_print
    assert set(_staged(people, "bookings", "paid")) == {0}
    assert _staged(people, "agents", "phone")[:2] == ["+00 1", "+00 2"]


def test_no_raw_values_pairs_rows_by_a_masked_key_and_judges_keyless_tables_by_value(people: Pair) -> None:
    people.run_both(
        "CREATE TABLE members (email text PRIMARY KEY, name text);"
        " CREATE TABLE contacts (phone text, note text)"  # no key at all
    )
    people.run_prod(
        "INSERT INTO members SELECT 'm' || i || '@club.test', 'Member ' || i FROM generate_series(1, 300) i;"
        " INSERT INTO contacts SELECT '+1 555 ' || lpad(i::text, 4, '0'), 'n' FROM generate_series(1, 50) i"
    )
    config_text = (
        CONFIG + "  public.members.email: email\n  public.members.name: full_name\n  public.contacts.phone: digits\n"
    )
    people.sync(config_text)
    config = parse_config(yaml.safe_load(config_text))
    tables = {("public", "members"), ("public", "contacts")}
    clean = raw_values_now(people.source, people.target, config, tables)
    assert {k: (v.found, v.rows) for k, v in clean.items()} == {
        ("public", "members"): ({"email": 0, "name": 0}, 300),
        ("public", "contacts"): ({"phone": 0}, 50),
    }
    # Member 7's real name on the row whose masked key is member 7's; two real phones, on any row.
    with people.prod() as prod:
        column = introspect(prod, ["public"]).get("public", "members").column("email")
        masked = expression(Mask.parse("members.email", "email"), column, MaskKey(SECRET.encode()))
        query = sql.SQL("SELECT ({})::text FROM members t WHERE email = 'm7@club.test'").format(masked)
        (seventh,) = prod.execute(query).fetchone()
    with people.staging() as staging:
        staging.execute("UPDATE members SET name = 'Member 7' WHERE email = %s", (seventh,))
        staging.execute("UPDATE members SET name = 'Member 8' WHERE email <> %s AND name <> 'Member 7'", (seventh,))
        staging.execute("UPDATE contacts SET phone = '+1 555 0009' WHERE ctid = (SELECT min(ctid) FROM contacts)")
        staging.execute("INSERT INTO contacts VALUES ('+1 555 0031', 'by hand')")
    found = raw_values_now(people.source, people.target, config, tables)
    # Member 7's and member 8's own rows count; "Member 8" on the 298 other rows is not their raw value.
    assert found[("public", "members")].found == {"email": 0, "name": 2}
    assert found[("public", "contacts")].found == {"phone": 2}


def test_values_a_mask_keeps_by_design_are_not_raw_values(people: Pair) -> None:
    """`digits` keeps a value without digits, `keep_last: 4` a value of 4 characters or fewer, `constant`
    the constant: staging then holds production's value, and rightly so; the check counts none of them,
    but still counts a longer value written back by hand."""
    people.run_both("CREATE TABLE cards (id int PRIMARY KEY, phone text, card text, source text)")
    people.run_prod(
        "INSERT INTO cards VALUES (1, 'n/a', '1234', 'web'), (2, '', '12', 'app'),"
        " (3, '+1 555 0100', '4111 1111 1111 1111', 'web')"
    )
    config_text = CONFIG + "".join(
        f"  public.cards.{c}\n" for c in ("phone: digits", "card: {keep_last: 4}", "source: {constant: web}")
    )
    people.sync(config_text)
    with people.staging() as staging:
        rows = staging.execute("SELECT id, phone, card, source FROM cards ORDER BY id").fetchall()
    assert rows[:2] == [(1, "n/a", "1234", "web"), (2, "", "12", "web")]
    config = parse_config(yaml.safe_load(config_text))
    found = raw_values_now(people.source, people.target, config, {("public", "cards")})
    assert found[("public", "cards")].found == {"phone": 0, "card": 0, "source": 0}
    people.run_staging("UPDATE cards SET card = '4111 1111 1111 1111', source = 'app' WHERE id = 3")
    found = raw_values_now(people.source, people.target, config, {("public", "cards")})
    assert found[("public", "cards")].found == {"phone": 0, "card": 1, "source": 0}


def test_a_database_error_reaches_dagster_without_the_statement(people: Pair) -> None:
    """PostgreSQL echoes part of a failed statement (LINE 1: ...) and where it ran (CONTEXT: ...): a masked
    table's statements carry keys derived from the masking key, so neither may reach the UI."""
    with people.prod() as prod, pytest.raises(psycopg.Error) as raised:
        prod.execute("SELECT sha256('\\x0102'::bytea || 'derived-key-like'::bytea) FROM nowhere")
    assert "derived-key-like" in str(raised.value)  # what psycopg's text holds
    failure = failure_for(raised.value, people.source, people.target)
    assert failure.description == (
        'the database refused the sync (SQLSTATE 42P01), staging left unchanged: relation "nowhere" does not exist'
    )


def test_a_table_that_inherits_a_masked_column_is_masked_alike(people: Pair) -> None:
    """Inheritance children are tables of their own: a mask on the parent's column reaches theirs, at any
    depth (a partition, by contrast, is read through its table)."""
    people.run_both(
        "CREATE TABLE contacts (id int PRIMARY KEY, email text, note text);"
        " CREATE TABLE vip_contacts (tier int) INHERITS (contacts); ALTER TABLE vip_contacts ADD PRIMARY KEY (id);"
        " CREATE TABLE top_contacts () INHERITS (vip_contacts); ALTER TABLE top_contacts ADD PRIMARY KEY (id)"
    )
    people.run_prod(
        "INSERT INTO contacts SELECT i, 'base' || i || '@x.test', 'n' FROM generate_series(1, 20) i;"
        " INSERT INTO vip_contacts SELECT i, 'vip' || i || '@x.test', 'n', 1 FROM generate_series(21, 40) i;"
        " INSERT INTO top_contacts SELECT i, 'top' || i || '@x.test', 'n', 2 FROM generate_series(41, 50) i"
    )
    config_text = CONFIG + "  public.contacts.email: email\n"
    result = people.sync(config_text)
    with people.staging() as staging:
        for table, rows in (("contacts", 20), ("vip_contacts", 20), ("top_contacts", 10)):
            query = sql.SQL("SELECT email FROM ONLY {}").format(sql.Identifier(table))
            emails = [e for (e,) in staging.execute(query)]
            assert len(emails) == rows and all(re.fullmatch(r"u[0-9a-f]{24}@example\.com", e) for e in emails), table
            assert "masked columns: email (email)" in result.tables[("public", table)].plan.notes
    config = parse_config(yaml.safe_load(config_text))
    children = {("public", "vip_contacts"), ("public", "top_contacts")}
    found = raw_values_now(people.source, people.target, config, children)
    assert {k[1]: (v.found, v.rows) for k, v in found.items()} == {
        "vip_contacts": ({"email": 0}, 20),
        "top_contacts": ({"email": 0}, 10),
    }


def test_a_foreign_key_only_staging_has_must_be_masked_alike_too(people: Pair) -> None:
    people.run_both("CREATE TABLE desks (code text PRIMARY KEY); CREATE TABLE shifts (id int PRIMARY KEY, desk text)")
    people.run_prod("INSERT INTO desks VALUES ('north'); INSERT INTO shifts VALUES (1, 'north')")
    people.run_staging("ALTER TABLE shifts ADD CONSTRAINT shifts_desk_fkey FOREIGN KEY (desk) REFERENCES desks (code)")
    before = people.staging_state(["agents", "bookings", "desks", "shifts"])
    with pytest.raises(ConfigError) as raised:
        people.sync(CONFIG + "  public.desks.code: hash\n")
    assert str(raised.value) == (
        "'mask': staging's foreign key shifts_desk_fkey links public.shifts.desk to public.desks.code; mask both "
        "with the same transform, or neither (now unmasked and hash)"
    )
    people.assert_unchanged(before)
    people.sync(CONFIG + "  public.desks.code: hash\n  public.shifts.desk: hash\n")
    with people.staging() as staging:
        assert staging.execute("SELECT count(*) FROM shifts JOIN desks ON desk = code").fetchone()[0] == 1


def test_a_hash_too_narrow_for_a_key_is_refused(people: Pair) -> None:
    people.run_both("CREATE TABLE badges (n integer PRIMARY KEY, code smallint UNIQUE, serial bigint UNIQUE)")
    for column, kind, bits in (("n", "primary key", 32), ("code", "unique key (code)", 16)):
        with pytest.raises(ConfigError) as raised:
            people.sync(f"mask:\n  public.badges.{column}: hash\n")
        assert str(raised.value) == (
            f"'mask' hash on column public.badges.{column}: it is part of the {kind}, and hashed into "
            f"{'integer' if bits == 32 else 'smallint'}'s {bits} bits distinct values would collide; leave it "
            "unmasked or widen it to bigint"
        )
    people.sync("mask:\n  public.badges.serial: hash\n")  # 64 bits: unique past any table's size


def test_masked_values_that_collide_on_a_unique_column_fail_the_run_naming_it(people: Pair) -> None:
    before = people.staging_state(["agents", "bookings"])
    same = "{sql: \"'same@example.com'\"}"
    with pytest.raises(SyncError) as raised:
        people.sync(f"mask:\n  public.agents.email: {same}\n  public.bookings.agent_email: {same}\n")
    message = str(raised.value)
    assert message == (
        "applying public.agents failed, staging left unchanged: duplicate key value violates unique constraint "
        '"agents_email_key" (Key (email)=(same@example.com) already exists.) [SQLSTATE 23505]; masked values '
        "collide: the masks of email (sql) on public.agents gave distinct production values one masked value; mask "
        "key columns with hash or email, which keep distinct values distinct"
    )
    people.assert_unchanged(before)


def test_staging_rows_that_point_at_a_column_masked_anew_are_warned_about(people: Pair) -> None:
    """Staging's own table references agents by email: once the emails are masked, its rows point at
    values staging no longer holds. The run says so, and the orphan rule backs them up."""
    people.sync("")  # unmasked: the real emails reach staging
    people.run_staging(
        "CREATE TABLE agent_notes (id int PRIMARY KEY, agent_email text REFERENCES agents (email), note text);"
        " INSERT INTO agent_notes VALUES (1, 'agent3@travel.test', 'call back')"
    )
    result = people.sync(CONFIG)
    assert (
        "staging's foreign key agent_notes_agent_email_fkey links public.agent_notes (staging_only) to columns of "
        "public.agents masked anew (email): its rows that point at production's raw values lose their parent rows, "
        "and are backed up and removed (orphans: delete) or stop the run (orphans: fail)"
    ) in result.warnings
    assert [b.rows for b in result.orphans] == [1]
    assert people.sync(CONFIG).warnings == []  # the same masks again


def test_a_shifted_numeric_column_keeps_its_scale_and_a_second_run_writes_nothing(people: Pair) -> None:
    """numeric(10, 2) shifted: production's masked value has the column's scale, as staging stores it,
    so the keyed row hashes agree and a second run reads and rewrites nothing."""
    config = CONFIG + "  public.bookings.paid: {shift: 5}\n"
    people.sync(config)
    again = people.sync(config)
    assert (again.tables[("public", "bookings")].read_rows, again.tables[("public", "bookings")].updated) == (0, 0)
    key = MaskKey(SECRET.encode())
    expected = _expected(people, "bookings", "paid", Mask.parse("p", {"shift": 5}), key)
    assert [str(v) for v in expected] == [str(v) for v in _staged(people, "bookings", "paid")]
