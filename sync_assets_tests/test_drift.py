"""Drift and bad selections are found before anything is touched: staging stays exactly as it was, the error
names what to fix and never a password. Accepted differences (extra staging columns, widened types) sync."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from sync_assets.engine import SyncConfig, parse_config
from sync_assets.engine.errors import ConfigError, DriftError, SelectionError, SyncError
from sync_assets_tests import cruise
from sync_assets_tests.conftest import Pair, table_rows
from sync_assets_tests.pgcluster import PROD_OWNER, PROD_READER, STAGING_OWNER, SUPERUSER_PASSWORD

PASSWORDS = [pw for _, pw in (PROD_OWNER, PROD_READER, STAGING_OWNER)] + [SUPERUSER_PASSWORD]
SECRETS = sorted({s for pw in PASSWORDS for s in (pw, quote(pw, safe=""))})

# Staging's copy of `a` differs from production's: a sync that got as far as the swap would change it.
BASE = "CREATE TABLE a (id integer PRIMARY KEY, name text);"
PROD_BASE_DATA = "INSERT INTO a VALUES (1, 'one'), (2, 'two'), (3, 'three');"
STAGING_BASE_DATA = "INSERT INTO a VALUES (1, 'uno'), (4, 'four');"


def staging_state(pair: Pair) -> dict[str, object]:
    """Every staging table's rows and every sequence's position; tables of the tool's bookkeeping schema."""
    with pair.staging() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1"
            )
        ]
        sequences = [
            r[0]
            for r in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
        ]
        state: dict[str, object] = {t: table_rows(conn, t) for t in tables}
        for s in sequences:
            state[s] = conn.execute(f"SELECT last_value, is_called FROM {s}").fetchone()
        return state


def assert_refused(
    pair: Pair,
    error: type[SyncError],
    match: str,
    config: SyncConfig | str | None = None,
    selection: set[tuple[str, str]] | None = None,
) -> str:
    """The sync raises `error` matching `match`, leaves staging as it was and names no password."""
    before = staging_state(pair)
    assert before, "staging has no tables to watch"
    with pytest.raises(error, match=match) as info:
        pair.sync(config, selection)
    assert staging_state(pair) == before
    message = str(info.value)
    for secret in SECRETS:
        assert secret not in message
    return message


def setup(pair: Pair, prod_ddl: str, staging_ddl: str, prod_data: str = "", staging_data: str = "") -> None:
    pair.run_prod(BASE + prod_ddl)
    pair.run_prod(PROD_BASE_DATA + prod_data)
    pair.run_staging(BASE + staging_ddl)
    pair.run_staging(STAGING_BASE_DATA + staging_data)


# ---------------------------------------------------------------------------------------------
# Drift


DRIFT_CASES = {
    "table-missing": (
        "CREATE TABLE x (id integer PRIMARY KEY, a_id integer REFERENCES a (id));",
        "",
        "INSERT INTO x VALUES (1, 1);",
        "",
        r"^staging has no table public\.x \(production has it\): create it in staging, or list it under 'exclude'$",
    ),
    "column-missing": (
        "CREATE TABLE x (id integer PRIMARY KEY, name text, extra numeric(6, 2));",
        "CREATE TABLE x (id integer PRIMARY KEY, name text);",
        "INSERT INTO x VALUES (1, 'p', 1.5);",
        "INSERT INTO x VALUES (1, 's');",
        r"^column public\.x\.extra \(numeric\(6,2\)\) exists in production but not in staging: "
        r"add it to staging's table, or exclude the table$",
    ),
    "incompatible-types": (
        "CREATE TABLE x (id integer PRIMARY KEY, v text);",
        "CREATE TABLE x (id integer PRIMARY KEY, v integer);",
        "INSERT INTO x VALUES (1, '42');",
        "INSERT INTO x VALUES (1, 7);",
        r"^column public\.x\.v has incompatible types: text in production, integer in staging$",
    ),
    "narrower-varchar": (
        "CREATE TABLE x (id integer PRIMARY KEY, v varchar(20));",
        "CREATE TABLE x (id integer PRIMARY KEY, v varchar(10));",
        "INSERT INTO x VALUES (1, 'short');",
        "",
        r"^column public\.x\.v has incompatible types: character varying\(20\) in production, "
        r"character varying\(10\) in staging$",
    ),
    "narrower-integer": (
        "CREATE TABLE x (id bigint PRIMARY KEY);",
        "CREATE TABLE x (id integer PRIMARY KEY);",
        "INSERT INTO x VALUES (1);",
        "",
        r"^column public\.x\.id has incompatible types: bigint in production, integer in staging$",
    ),
    "fewer-decimals": (
        "CREATE TABLE x (id integer PRIMARY KEY, m numeric(10, 4));",
        "CREATE TABLE x (id integer PRIMARY KEY, m numeric(12, 2));",
        "INSERT INTO x VALUES (1, 1.2345);",
        "",
        r"^column public\.x\.m has incompatible types: numeric\(10,4\) in production, numeric\(12,2\) in staging$",
    ),
    "array-vs-scalar": (
        "CREATE TABLE x (id integer PRIMARY KEY, tags text[]);",
        "CREATE TABLE x (id integer PRIMARY KEY, tags text);",
        "INSERT INTO x VALUES (1, '{a}');",
        "",
        r"^column public\.x\.tags has incompatible types: text\[\] in production, text in staging$",
    ),
    "staging-not-null-without-default": (
        "CREATE TABLE x (id integer PRIMARY KEY, name text);",
        "CREATE TABLE x (id integer PRIMARY KEY, name text, must integer NOT NULL);",
        "INSERT INTO x VALUES (1, 'p');",
        "INSERT INTO x VALUES (1, 's', 5);",
        r"^column public\.x\.must exists only in staging and is NOT NULL without a default, so rows from "
        r"production cannot be inserted: give it a default or drop NOT NULL$",
    ),
    "enum-lacks-label": (
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ecstatic'); CREATE TABLE x (id integer PRIMARY KEY, m mood);",
        "CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE x (id integer PRIMARY KEY, m mood);",
        "INSERT INTO x VALUES (1, 'sad');",  # the label need not be used for the type to be refused
        "INSERT INTO x VALUES (1, 'ok');",
        r"^column public\.x\.m: staging's enum type public\.mood lacks label\(s\) 'happy', 'ecstatic' that "
        r"production has$",
    ),
    "enum-array-lacks-label": (
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE TABLE x (id integer PRIMARY KEY, ms mood[]);",
        "CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE x (id integer PRIMARY KEY, ms mood[]);",
        "INSERT INTO x VALUES (1, '{happy}');",
        "",
        r"^column public\.x\.ms: staging's enum type public\.mood lacks label\(s\) 'happy' that production has$",
    ),
    "enum-vs-text": (
        "CREATE TYPE mood AS ENUM ('sad'); CREATE TABLE x (id integer PRIMARY KEY, m mood);",
        "CREATE TABLE x (id integer PRIMARY KEY, m text);",
        "INSERT INTO x VALUES (1, 'sad');",
        "",
        r"^column public\.x\.m has incompatible types: public\.mood in production, text in staging$",
    ),
}


@pytest.mark.parametrize(
    ("prod_ddl", "staging_ddl", "prod_data", "staging_data", "match"), DRIFT_CASES.values(), ids=DRIFT_CASES.keys()
)
def test_drift_is_refused_before_anything_is_touched(
    pair: Pair, prod_ddl: str, staging_ddl: str, prod_data: str, staging_data: str, match: str
) -> None:
    setup(pair, prod_ddl, staging_ddl, prod_data, staging_data)
    assert_refused(pair, DriftError, match)
    # ... and the table that does match is not synced on its own either: a run is all or nothing
    with pair.staging() as conn:
        assert table_rows(conn, "a") == ["(1,uno)", "(4,four)"]


def test_drift_in_a_quoted_schema_names_it(pair: Pair) -> None:
    ddl = 'CREATE SCHEMA "Sales Data"; CREATE TABLE "Sales Data"."Order" (id integer PRIMARY KEY, "User Name" text'
    setup(pair, ddl + ', "select" integer);', ddl + ");", 'INSERT INTO "Sales Data"."Order" VALUES (1, \'x\', 2);')
    assert_refused(
        pair,
        DriftError,
        r"^column Sales Data\.Order\.select \(integer\) exists in production but not in staging",
        SyncConfig(schemas=("public", "Sales Data")),
    )


def test_drift_of_an_excluded_table_is_ignored(pair: Pair) -> None:
    setup(
        pair,
        "CREATE TABLE x (id integer PRIMARY KEY, v text); CREATE TABLE gone (id integer);",
        "CREATE TABLE x (id integer PRIMARY KEY, v integer);",
        "INSERT INTO x VALUES (1, 'p');",
        "INSERT INTO x VALUES (1, 9);",
    )
    result = pair.sync("exclude: [x, gone]")
    assert set(result.tables) == {("public", "a")}
    with pair.prod() as prod, pair.staging() as staging:
        assert table_rows(staging, "a") == table_rows(prod, "a")
        assert table_rows(staging, "x") == ["(1,9)"]


# ---------------------------------------------------------------------------------------------
# Accepted differences


def test_extra_staging_columns_are_accepted_and_noted(pair: Pair) -> None:
    setup(
        pair,
        "CREATE TABLE x (id integer PRIMARY KEY, name text);",
        "CREATE TABLE x (id integer PRIMARY KEY, note text, name text, flag boolean NOT NULL DEFAULT true,"
        " seq bigint GENERATED ALWAYS AS IDENTITY, doubled integer GENERATED ALWAYS AS (id * 2) STORED);",
        "INSERT INTO x VALUES (1, 'p1'), (2, 'p2'), (3, 'p3');",
        "INSERT INTO x (id, note, name, flag) VALUES (1, 'mine', 'old', false), (9, 'gone', 's9', false);",
    )
    result = pair.sync()
    note = "staging-only column(s) note, flag, seq, doubled keep their defaults"
    assert result.plan is not None
    assert result.plan.notes == [f"public.x: {note}"]
    assert result.tables[("public", "x")].notes == (note,)
    x = result.tables[("public", "x")]
    assert (x.inserted, x.updated, x.deleted) == (2, 1, 1)
    with pair.prod() as prod, pair.staging() as staging:
        assert table_rows(staging, "x", ["id", "name"]) == table_rows(prod, "x")
        assert table_rows(staging, "a") == table_rows(prod, "a")
        # rows kept from staging keep their own values; new rows get the defaults
        assert staging.execute("SELECT id, note, flag, doubled FROM x ORDER BY id").fetchall() == [
            (1, "mine", False, 2),
            (2, None, True, 4),
            (3, None, True, 6),
        ]

    pair.run_prod("UPDATE x SET name = 'p1 again' WHERE id = 1")
    result = pair.sync()
    assert result.tables[("public", "x")].updated == 1
    with pair.staging() as staging:
        assert staging.execute("SELECT name, note, flag FROM x WHERE id = 1").fetchone() == ("p1 again", "mine", False)


def test_generated_column_missing_in_staging_is_noted(pair: Pair) -> None:
    setup(
        pair,
        "CREATE TABLE x (id integer PRIMARY KEY, n integer, twice integer GENERATED ALWAYS AS (n * 2) STORED);",
        "CREATE TABLE x (id integer PRIMARY KEY, n integer);",
        "INSERT INTO x (id, n) VALUES (1, 5);",
    )
    result = pair.sync()
    assert result.plan is not None
    assert result.plan.notes == ["public.x: production's generated column twice is not in staging"]
    with pair.staging() as staging:
        assert table_rows(staging, "x") == ["(1,5)"]


WIDENED_PROD = """
CREATE TABLE w (id integer PRIMARY KEY, s varchar(10), s2 varchar(10), c char(3), n integer, sm smallint,
                ns integer[], m numeric(8, 2), m2 numeric(8, 2), r real, js json, tz timestamptz(3), t time(2));
"""
WIDENED_STAGING = """
CREATE TABLE w (id bigint PRIMARY KEY, s text, s2 varchar(20), c varchar, n bigint, sm integer,
                ns bigint[], m numeric(12, 4), m2 numeric, r double precision, js jsonb, tz timestamptz, t time);
"""
# production's values as staging's types hold them
# (char(3) keeps its padding: the value travels as production prints it, where a cast would trim it)
AS_STAGING_TYPES = (
    "id::bigint, s::text, s2::varchar(20), (CASE WHEN c IS NOT NULL THEN format('%s', c) END)::varchar,"
    " n::bigint, sm::integer, ns::bigint[], m::numeric(12, 4), m2::numeric, r::double precision, js::jsonb,"
    " tz::timestamptz, t::time"
)


def test_widened_types_sync(pair: Pair) -> None:
    setup(
        pair,
        WIDENED_PROD,
        WIDENED_STAGING,
        """
        INSERT INTO w VALUES
            (1, 'ten chars!', 'x', 'ab', 2147483647, -32768, '{1,NULL,-2147483648}', 123456.78, 1.50, 0.5,
             '{"b": 1, "a": [1.0]}', '2026-01-01 12:00:00.123+00', '12:34:56.78'),
            (2, '', NULL, 'abc', NULL, NULL, '{}', 'NaN', NULL, 'NaN', 'null', 'infinity', NULL),
            (3, NULL, '', NULL, 0, 0, NULL, -0.01, 'NaN', '-Infinity', NULL, NULL, '24:00');
        """,
        "INSERT INTO w VALUES (1, 'old', 'old', 'old', 1, 1, '{1}', 1, 1, 1, '{}', now(), now()),"
        " (7, 'gone', NULL, NULL, 1, 1, NULL, 1, 1, 1, NULL, NULL, NULL);",
    )
    result = pair.sync()
    w = result.tables[("public", "w")]
    assert w.plan.binary is False  # the types differ: text COPY converts
    assert (w.inserted, w.updated, w.deleted) == (2, 1, 1)
    assert result.plan is not None
    assert result.plan.notes == []
    with pair.prod() as prod, pair.staging() as staging:
        expected = [r[0] for r in prod.execute(f"SELECT ROW({AS_STAGING_TYPES})::text FROM w ORDER BY 1")]
        assert table_rows(staging, "w") == expected
        assert table_rows(staging, "a") == table_rows(prod, "a")

    again = pair.sync()
    w = again.tables[("public", "w")]
    assert (w.inserted, w.updated, w.deleted) == (0, 0, 0)


# ---------------------------------------------------------------------------------------------
# Config errors against a real catalog


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            {"preserve": ["nosuch"]},
            r"^'preserve' names table 'nosuch', which staging does not have in schema\(s\) public$",
        ),
        ({"exclude": ["nosuch"]}, r"'exclude' names table 'nosuch', which production does not have in schema\(s\)"),
        ({"preserve": ["public.nosuch"]}, r"'preserve' names table public\.nosuch, which staging does not have$"),
        (
            {"exclude": ["other.x"]},
            r"'exclude' names table other\.x, but schema 'other' is not among the synced schemas \(public\)$",
        ),
        (
            {"schemas": ["public", "other"], "preserve": ["x"]},
            r"'preserve' names table 'x', which is in several schemas \(public, other\); write it as schema\.table$",
        ),
    ],
    ids=["preserve-unknown", "exclude-unknown", "preserve-qualified-unknown", "schema-not-synced", "ambiguous"],
)
def test_config_naming_tables_the_side_lacks(pair: Pair, config: dict, match: str) -> None:
    ddl = "CREATE TABLE x (id integer PRIMARY KEY); CREATE SCHEMA other; CREATE TABLE other.x (id integer);"
    setup(pair, ddl, ddl, "INSERT INTO x VALUES (1);")
    message = assert_refused(pair, ConfigError, match, parse_config(config))
    if "nosuch" in str(config):
        assert "nosuch" in message


def test_table_both_preserved_and_excluded_is_refused(pair: Pair) -> None:
    setup(pair, "CREATE TABLE x (id integer PRIMARY KEY);", "CREATE TABLE x (id integer PRIMARY KEY);")
    with pytest.raises(ConfigError, match=r"^config: table x is listed under both 'preserve' and 'exclude'$"):
        parse_config({"preserve": ["x"], "exclude": ["a", "x"]})
    with pytest.raises(ConfigError, match=r"table public\.x is listed under both 'preserve' and 'exclude'$"):
        parse_config({"preserve": [{"schema": "public", "table": "x"}], "exclude": ["public.x"]})
    # the YAML the sync reads goes through the same check
    before = staging_state(pair)
    with pytest.raises(ConfigError, match="listed under both"):
        pair.sync("preserve: [x]\nexclude: [x]\n")
    assert staging_state(pair) == before


def test_table_both_preserved_and_excluded_under_different_spellings_is_refused(pair: Pair) -> None:
    setup(pair, "CREATE TABLE x (id integer PRIMARY KEY);", "CREATE TABLE x (id integer PRIMARY KEY);")
    assert_refused(
        pair,
        ConfigError,
        r"public\.x.*both 'preserve' and 'exclude'|both 'preserve' and 'exclude'.*public\.x",
        parse_config({"preserve": ["x"], "exclude": ["public.x"]}),
    )


# ---------------------------------------------------------------------------------------------
# Subsets of the cruise schema


def test_subset_missing_a_new_parent_is_refused(cruise_pair: Pair) -> None:
    message = assert_refused(
        cruise_pair,
        SelectionError,
        r"add public\.ships to the selection$",
        cruise.CONFIG_YAML,
        {("public", "cruises")},
    )
    assert message.startswith("public.cruises has 20 row(s) referencing public.ships rows that staging lacks")
    assert "ship_id = (13)" in message
    assert "regions" not in message and "ports" not in message  # their rows are all in staging


def test_subset_of_ports_alone_changes_only_ports(cruise_pair: Pair) -> None:
    before = staging_state(cruise_pair)
    result = cruise_pair.sync(cruise.CONFIG_YAML, {("public", "ports")})
    assert set(result.tables) == {("public", "ports")}
    ports = result.tables[("public", "ports")]
    assert (ports.inserted, ports.updated, ports.deleted) == (0, 2, 0)  # P10 renamed, P11 moved
    assert ports.production_rows == ports.staging_rows == 20
    assert result.orphans == []
    after = staging_state(cruise_pair)
    with cruise_pair.prod() as prod:
        assert after["ports"] == table_rows(prod, "ports")
    assert after["ports"] != before["ports"]
    # The bookkeeping records that ports was read whole (reconciled.py), and nothing else changed.
    assert [row.split(",")[:2] for row in after.pop("sync_assets.whole_reads")] == [["(public", "ports"]]
    assert {k: v for k, v in after.items() if k != "ports"} == {k: v for k, v in before.items() if k != "ports"}


@pytest.mark.parametrize(
    ("selection", "match"),
    [
        ({("public", "users")}, r"^cannot sync public\.users: it is preserved \(reload the code location"),
        ({("public", "nosuch")}, r"^cannot sync public\.nosuch: it is not a production table of the synced schemas"),
        ({("other", "ports")}, r"^cannot sync other\.ports: it is not a production table of the synced schemas"),
    ],
    ids=["preserved", "unknown", "other-schema"],
)
def test_selection_outside_the_synced_tables_is_refused(cruise_pair: Pair, selection: set, match: str) -> None:
    assert_refused(cruise_pair, SelectionError, match, cruise.CONFIG_YAML, selection)
