"""Masks (masking.py, mask_key.py): every transform on the types it accepts, computed by PostgreSQL with
core functions only: deterministic, keyed, NULL-preserving, in the column's format; and the clear errors
for masks that do not fit, bad options and a missing or short key."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from sync_assets.engine.catalog import Column, Identity
from sync_assets.engine.errors import ConfigError
from sync_assets.engine.introspect import introspect
from sync_assets.engine.mask_key import KEY_ENV, MaskKey
from sync_assets.engine.mask_spec import Mask, Transform
from sync_assets.engine.mask_words import FIRST_NAMES, LAST_NAMES
from sync_assets.engine.masking import expression, unfit
from sync_assets_tests.conftest import Pair

KEY = MaskKey(b"a test key of enough length")
OTHER_KEY = MaskKey(b"another key, just as long")

PEOPLE = """
CREATE DOMAIN email_address AS text CHECK (VALUE LIKE '%@%');
CREATE TABLE people (
    id bigint PRIMARY KEY, small smallint, mid integer, u uuid, b bytea,
    email text, work_email email_address, short varchar(6), code char(10), phone varchar(20),
    first text, last text, full_name varchar(40), card text, price numeric(10, 2), ratio float8,
    born date, seen timestamptz, local_seen timestamp, doc jsonb, raw json, tags text[], score real,
    upper_email text GENERATED ALWAYS AS (upper(email)) STORED, required text NOT NULL DEFAULT 'x'
);
CREATE TABLE agents (id bigint PRIMARY KEY, email text);
INSERT INTO people (id, small, mid, u, b, email, work_email, short, code, phone, first, last, full_name, card,
                    price, ratio, born, seen, local_seen, doc, raw, tags)
SELECT i, i, i * 1000, md5(i::text)::uuid, int4send(i), 'person' || i || '@mail.test', 'w' || i || '@corp.test',
       'ab' || i, 'c' || i, '+1 (555) 010-' || lpad(i::text, 4, '0'), 'First' || i, 'Last' || i, 'Full Name ' || i,
       '4111 1111 1111 ' || lpad(i::text, 4, '0'), i * 1.25, i / 3.0, date '1980-01-01' + i,
       timestamptz '2026-01-01 00:00+00' + i * interval '1 hour', timestamp '2026-01-01' + i * interval '1 hour',
       jsonb_build_object('customer', jsonb_build_object('email', 'c' || i || '@x.test', 'name', 'Name ' || i,
                          'tier', i), 'total', i),
       json_build_object('customer', json_build_object('email', 'r' || i || '@x.test')), ARRAY['t' || i]
FROM generate_series(1, 300) i;
INSERT INTO people (id) VALUES (0);  -- every maskable column NULL
INSERT INTO agents SELECT id, email FROM people WHERE id BETWEEN 1 AND 50;
"""


@pytest.fixture
def people(pair: Pair) -> psycopg.Connection:
    pair.run_prod(PEOPLE)
    with pair.prod() as conn:
        yield conn


def _column(conn: psycopg.Connection, name: str, table: str = "people"):
    column = introspect(conn, ["public"]).get("public", table).column(name)
    assert column is not None, name
    return column


def _masked(conn: psycopg.Connection, name: str, mask: Mask, key: MaskKey = KEY, table: str = "people") -> dict:
    """id → (raw, masked) for every row, computed by the server."""
    column = _column(conn, name, table)
    assert unfit(mask, column) is None, unfit(mask, column)
    query = sql.SQL("SELECT id, {}, {} FROM {} ORDER BY id").format(
        sql.Identifier(name), expression(mask, column, key), sql.Identifier(table)
    )
    return {row[0]: (row[1], row[2]) for row in conn.execute(query)}


def _check_keyed(conn: psycopg.Connection, name: str, mask: Mask) -> dict:
    """The common promises: deterministic, NULL kept, no raw value left, another key gives other values."""
    first = _masked(conn, name, mask)
    assert _masked(conn, name, mask) == first
    assert first[0] == (None, None)
    assert all(masked != raw and masked is not None for i, (raw, masked) in first.items() if i), name
    other = _masked(conn, name, mask, OTHER_KEY)
    assert sum(other[i][1] != first[i][1] for i in first if i) > 250, name
    return first


def test_hash_keeps_each_type_and_is_unique_enough(people: psycopg.Connection) -> None:
    mask = Mask(Transform.HASH)
    for name, kind in [("small", int), ("mid", int), ("u", object), ("b", bytes), ("email", str)]:
        values = _check_keyed(people, name, mask)
        masked = [m for i, (_, m) in values.items() if i]
        assert len(set(masked)) == len(masked), name  # no collision among 300 values
        if kind is not object:
            assert all(isinstance(m, kind) for m in masked), name
    small = [m for i, (_, m) in _masked(people, "small", mask).items() if i]
    assert all(-32768 <= m <= 32767 for m in small)
    assert {len(m) for i, (_, m) in _masked(people, "code", mask).items() if i} == {10}  # char(10): fits
    assert {len(m) for i, (_, m) in _masked(people, "email", mask).items() if i} == {32}


def test_the_same_input_masks_alike_in_every_table(people: psycopg.Connection) -> None:
    """Masked values still join: agents.email and people.email give the same address for the same input."""
    for transform in (Transform.EMAIL, Transform.HASH):
        in_people = _masked(people, "email", Mask(transform))
        in_agents = _masked(people, "email", Mask(transform), table="agents")
        assert in_agents and all(in_people[i][1] == masked for i, (_, masked) in in_agents.items())


def test_email_is_valid_unique_and_fits_a_domain(people: psycopg.Connection) -> None:
    for name in ("email", "work_email"):
        values = _check_keyed(people, name, Mask(Transform.EMAIL))
        masked = [m for i, (_, m) in values.items() if i]
        assert all(re.fullmatch(r"u[0-9a-f]{24}@example\.com", m) for m in masked), masked[:3]
        assert len(set(masked)) == len(masked)


def test_names_come_from_the_word_lists(people: psycopg.Connection) -> None:
    firsts = _check_keyed(people, "first", Mask(Transform.FIRST_NAME))
    assert {m for i, (_, m) in firsts.items() if i} <= set(FIRST_NAMES)
    assert len({m for i, (_, m) in firsts.items() if i}) > 30  # spread over the list
    lasts = _check_keyed(people, "last", Mask(Transform.LAST_NAME))
    assert {m for i, (_, m) in lasts.items() if i} <= set(LAST_NAMES)
    fulls = _check_keyed(people, "full_name", Mask(Transform.FULL_NAME))
    for i, (_, m) in fulls.items():
        if i:
            first, last = m.split(" ")
            assert first in FIRST_NAMES and last in LAST_NAMES


def test_digits_keep_length_and_format(people: psycopg.Connection) -> None:
    for name in ("phone", "code"):
        values = _check_keyed(people, name, Mask(Transform.DIGITS))
        for i, (raw, masked) in values.items():
            if i:
                raw = raw.rstrip()  # char(n)'s padding: its text has none, and staging pads it again
                assert len(masked) == len(raw)
                assert re.sub(r"\d", "9", masked) == re.sub(r"\d", "9", raw), (raw, masked)


def test_keep_last_keeps_only_the_last_characters(people: psycopg.Connection) -> None:
    values = _masked(people, "card", Mask(Transform.KEEP_LAST, keep=4))
    assert values[0] == (None, None)
    for i, (raw, masked) in values.items():
        if i:
            assert masked == "*" * (len(raw) - 4) + raw[-4:]
    assert _masked(people, "short", Mask(Transform.KEEP_LAST, keep=10))[1] == ("ab1", "ab1")


def test_shift_moves_within_its_range(people: psycopg.Connection) -> None:
    shifts = [
        ("mid", Mask(Transform.SHIFT, by=5), lambda raw, m: abs(m - raw) <= 5 and isinstance(m, int)),
        ("price", Mask(Transform.SHIFT, by=2.5), lambda raw, m: abs(m - raw) <= 2.5 and m == round(m, 2)),
        ("ratio", Mask(Transform.SHIFT, by=1), lambda raw, m: abs(m - raw) <= 1),
        ("born", Mask(Transform.SHIFT, by=timedelta(days=30)), lambda raw, m: abs((m - raw).days) <= 30),
        ("seen", Mask(Transform.SHIFT, by=timedelta(hours=12)), lambda raw, m: abs(m - raw) <= timedelta(hours=12)),
        ("local_seen", Mask(Transform.SHIFT, by=timedelta(days=1)), lambda raw, m: abs(m - raw) <= timedelta(days=1)),
    ]
    for name, mask, within in shifts:
        values = _masked(people, name, mask)
        assert values == _masked(people, name, mask) and values[0] == (None, None)
        moved = [(raw, m) for i, (raw, m) in values.items() if i]
        assert all(within(raw, m) for raw, m in moved), name
        assert all(raw != m for raw, m in moved), name
    assert isinstance(_masked(people, "born", shifts[3][1])[1][1], date)
    assert isinstance(_masked(people, "seen", shifts[4][1])[1][1], datetime)


def test_json_paths_are_masked_and_the_rest_kept(people: psycopg.Connection) -> None:
    mask = Mask.parse("public.people.doc", {"json": {"paths": ["customer.email", "customer.name", "nowhere.x"]}})
    values = _masked(people, "doc", mask)
    assert values[0] == (None, None)
    for i, (raw, masked) in values.items():
        if i:
            assert masked["total"] == raw["total"] and masked["customer"]["tier"] == raw["customer"]["tier"]
            assert re.fullmatch(r"[0-9a-f]{32}", masked["customer"]["email"])
            assert masked["customer"]["name"] not in (raw["customer"]["name"], None)
            assert "nowhere" not in masked
    as_email = Mask.parse("public.people.raw", {"json": {"paths": ["customer.email"], "transform": "email"}})
    for i, (_, masked) in _masked(people, "raw", as_email).items():
        if i:
            assert masked["customer"]["email"].endswith("@example.com")
    nulled = Mask.parse("public.people.doc", {"json": {"paths": ["customer.email"], "transform": None}})
    assert _masked(people, "doc", nulled)[1][1]["customer"] == {"email": None, "name": "Name 1", "tier": 1}


def test_null_constant_and_sql(people: psycopg.Connection) -> None:
    assert set(m for _, m in _masked(people, "email", Mask.parse("e", None)).values()) == {None}
    assert set(m for i, (_, m) in _masked(people, "tags", Mask.parse("t", {"constant": "{}"})).items()) == {"{}"}
    by_sql = _masked(people, "email", Mask.parse("e", {"sql": "'user' || id || '@example.com'"}))
    assert by_sql[7][1] == "user7@example.com"


def test_masks_that_do_not_fit_are_refused_with_the_reason(people: psycopg.Connection) -> None:
    def why(name: str, spec: object) -> str | None:
        return unfit(Mask.parse(f"public.people.{name}", spec), _column(people, name))

    assert why("required", None) == "is NOT NULL: null cannot mask it"
    assert why("upper_email", "hash") == "is a generated column: staging computes it"
    assert why("born", "email") == "has type date: email masks character, character varying, text"
    assert why("price", "hash").startswith("has type numeric(10,2): hash masks")
    assert why("tags", "hash") == "is an array: hash masks single values (use null, constant or sql)"
    assert why("short", "email") == "has type character varying(6): email needs room for 37 characters"
    assert why("short", "hash") == "has type character varying(6): hash needs room for 8 characters"
    assert why("mid", {"shift": 2.5}) == "has type integer: shift it by a whole number"
    assert why("born", {"shift": "12h"}) == "is a date: shift it by at least 1d"
    assert why("born", {"shift": 3}).startswith("has type date: shift masks")
    assert why("seen", {"shift": "30d"}) is None
    assert why("price", {"shift": 0.001}) == "has type numeric(10,2): shift it by at least 0.01"
    # real keeps 24 bits: 1e9 moved by less than 32 rounds back to 1e9, its raw value.
    assert why("score", {"shift": 5}) == (
        "has type real: its 24 bits of precision could round a shifted value back to itself; shift a numeric or "
        "double precision column, or mask it with sql"
    )


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("emial", "mask public.t.c: unknown transform 'emial' (known: null, constant, hash"),
        ("keep_last", "mask public.t.c: keep_last needs an option, e.g. {keep_last: ...}"),
        ({"keep_last": -1}, "mask public.t.c: keep_last needs a count of characters (0 or more), not -1"),
        ({"shift": "soon"}, "mask public.t.c: shift needs the largest move, a positive number"),
        ({"json": {"paths": []}}, "mask public.t.c: json paths must be a list of dotted paths"),
        (
            {"json": {"paths": ["a"], "transform": {"shift": 3}}},
            "mask public.t.c: shift cannot mask a value inside json",
        ),
        ({"sql": " "}, "mask public.t.c: sql needs an SQL expression"),
        ({"email": 1}, "mask public.t.c: email takes no options"),
        ({"hash": 1, "email": 2}, "mask public.t.c: expected a transform's name or a mapping of one transform"),
    ],
)
def test_bad_mask_options_name_the_column(spec: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Mask.parse("public.t.c", spec)
    assert fragment in str(raised.value)


def test_the_key_is_required_long_enough_and_never_shown(people: psycopg.Connection) -> None:
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is not set"):
        MaskKey.from_environment({})
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is too short"):
        MaskKey.from_environment({KEY_ENV: "short"})
    secret = "correct horse battery staple"
    key = MaskKey.from_environment({KEY_ENV: secret})
    shown = " ".join([repr(key), str(key), key.fingerprint, f"{key}"])
    assert secret not in shown and secret.encode().hex() not in shown
    assert key.fingerprint == MaskKey.from_environment({KEY_ENV: secret}).fingerprint != KEY.fingerprint
    # What production is sent holds derived keys only, never the key.
    email = Column("email", 1, "text", "text", False, False, False, False, False, Identity.NONE, True)
    text = expression(Mask(Transform.EMAIL), email, key).as_string(people)
    assert secret not in text and secret.encode().hex() not in text


def test_hmac_in_sql_is_hmac_sha256(people: psycopg.Connection) -> None:
    """The server's HMAC, made of two sha256 calls, equals Python's for the derived key."""
    import hashlib
    import hmac

    message = "ünïcode & bytes"
    query = sql.SQL("SELECT encode({}, 'hex')").format(KEY.hmac_sql("email", sql.SQL("convert_to(%s, 'UTF8')")))
    (server,) = people.execute(query, (message,)).fetchone()
    assert server == hmac.new(KEY.derived("email"), message.encode(), hashlib.sha256).hexdigest()


def test_names_and_digits_never_give_back_the_raw_value(pair: Pair) -> None:
    """Raw names taken from the very word lists, and numbers of one or two digits: a pick by hash alone
    would give the raw value back once in 64 names, once in 10 digits."""
    pair.run_prod("CREATE TABLE named (id bigint PRIMARY KEY, first text, last text, full_name text, pin text)")
    with pair.prod() as conn:
        conn.execute(
            "INSERT INTO named SELECT row_number() OVER (), f, l, f || ' ' || l, NULL"
            " FROM unnest(%s::text[]) f, unnest(%s::text[]) l",
            (list(FIRST_NAMES), list(LAST_NAMES)),
        )
        conn.execute("UPDATE named SET pin = (id % 110)::text WHERE id <= 400")
    with pair.prod() as conn:
        for name, transform in (("first", Transform.FIRST_NAME), ("last", Transform.LAST_NAME),
                                ("full_name", Transform.FULL_NAME), ("pin", Transform.DIGITS)):  # fmt: skip
            masked = _masked(conn, name, Mask(transform), table="named")
            same = [raw for raw, m in masked.values() if raw is not None and m == raw]
            assert same == [], (name, same[:5])
        pins = _masked(conn, "pin", Mask(Transform.DIGITS), table="named")
        assert all(len(m) == len(raw) and m.isdigit() for raw, m in pins.values() if raw is not None)
