"""Data fidelity: every value production holds arrives in staging exactly, through binary and text COPY alike,
and a resync notices changes that only alter a value's representation (1.0 -> 1.00, 0 -> -0, ...)."""

from __future__ import annotations

import psycopg
import pytest

from sync_assets.engine import SyncConfig, SyncResult, parse_config
from sync_assets_tests.conftest import Pair, table_rows

# A composite column cannot travel in binary COPY (type OIDs differ between databases): adding one to a
# table forces the whole table through text COPY, so each value test runs through both formats.
FORCE_TEXT_TYPE = "CREATE TYPE force_text AS (a integer, b text);"
COPY_FORMATS = pytest.mark.parametrize("force_text", [False, True], ids=["binary", "text"])
T = ("public", "t")


def user_tables(conn: psycopg.Connection) -> list[str]:
    """Every table and partition outside the system and bookkeeping schemas, as regclass text."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'sync_assets')"
            " AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1"
        )
    ]


def only_rows(conn: psycopg.Connection, table: str) -> list[str]:
    """Rows of the table itself, without inheritance children's rows (as table_rows reads them)."""
    return table_rows(conn, table)


def assert_all_equal(pair: Pair, *, only: bool = False) -> None:
    """Every production table (partitions included) holds exactly staging's rows."""
    rows = only_rows if only else table_rows
    with pair.prod() as prod, pair.staging() as staging:
        tables = user_tables(prod)
        assert tables, "production has no tables"
        assert set(tables) <= set(user_tables(staging))
        for table in tables:
            assert rows(staging, table) == rows(prod, table), table


def value_table(pair: Pair, columns: str, force_text: bool) -> None:
    """Table t on both sides; with force_text, a composite column too, which forces text COPY."""
    extra = ", ft force_text" if force_text else ""
    pair.run_both(f"{FORCE_TEXT_TYPE} CREATE TABLE t (id integer PRIMARY KEY, {columns}{extra});")


def fill(pair: Pair, inserts: str, force_text: bool) -> int:
    """Run the inserts in production (if any), fill the composite column, return t's row count."""
    with pair.prod() as conn:
        if inserts:
            conn.execute(inserts)
        if force_text:
            conn.execute("UPDATE t SET ft = ROW(id, 'x')")
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


def sync_and_check(pair: Pair, n: int, force_text: bool, config: SyncConfig | None = None) -> SyncResult:
    result = pair.sync(config)
    assert_all_equal(pair)
    t = result.tables[T]
    assert t.plan.binary is not force_text
    assert (t.production_rows, t.staging_rows, t.inserted, t.updated, t.deleted) == (n, n, n, 0, 0)
    return result


def assert_no_changes(result: SyncResult) -> None:
    assert result.tables
    for key, t in result.tables.items():
        assert (t.inserted, t.updated, t.deleted, t.replaced_whole) == (0, 0, 0, False), key


# ---------------------------------------------------------------------------------------------
# Values


def test_enum_and_enum_array(pair: Pair) -> None:
    pair.run_both(
        """
        CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'Very Happy', 'with,comma', 'quo"te', '{brace}');
        CREATE TABLE scalar_enum (id integer PRIMARY KEY, m mood);
        CREATE TABLE t (id integer PRIMARY KEY, m mood, ms mood[]);
        """,
    )
    pair.run_prod(
        """
        INSERT INTO scalar_enum VALUES (1, 'sad'), (2, 'Very Happy'), (3, NULL), (4, '{brace}'), (5, 'quo"te');
        INSERT INTO t VALUES
            (1, 'happy', '{sad,ok,happy}'),
            (2, 'with,comma', ARRAY['with,comma', 'quo"te', '{brace}']::mood[]),
            (3, NULL, NULL),
            (4, 'ok', '{}'),
            (5, 'Very Happy', ARRAY[NULL, 'Very Happy', NULL]::mood[]),
            (6, 'sad', '{{sad,ok},{happy,NULL}}');
        """
    )
    result = pair.sync()
    assert_all_equal(pair)
    # an enum travels in binary COPY (as its label); an array of a user type cannot
    assert result.tables[("public", "scalar_enum")].plan.binary is True
    assert result.tables[T].plan.binary is False
    assert result.tables[T].inserted == 6
    with pair.staging() as conn:
        assert conn.execute("SELECT ms[2][2] IS NULL, array_dims(ms) FROM t WHERE id = 6").fetchone() == (
            True,
            "[1:2][1:2]",
        )


@COPY_FORMATS
def test_text_and_int_arrays(pair: Pair, force_text: bool) -> None:
    value_table(pair, "ts text[], ns integer[], bs bigint[]", force_text)
    n = fill(
        pair,
        r"""
        INSERT INTO t VALUES
            (1, '{a,b,c}', '{1,2,3}', '{9223372036854775807,-9223372036854775808}'),
            (2, ARRAY['x', NULL, 'NULL', ''], ARRAY[1, NULL, 3], ARRAY[NULL]::bigint[]),
            (3, '{}', '{}', '{}'),
            (4, NULL, NULL, NULL),
            (5, ARRAY[E'tab\there', E'new\nline', 'back\slash', 'com,ma', 'quo"te', '{br}', ' sp '], '{{1,2},{3,4}}',
                '[0:1]={5,6}'),
            (6, ARRAY[NULL, NULL]::text[], ARRAY[NULL]::integer[], '[-3:-3]={7}');
        """,
        force_text,
    )
    sync_and_check(pair, n, force_text)
    with pair.staging() as conn:
        rows = conn.execute("SELECT id, array_dims(bs), cardinality(ts) FROM t WHERE id IN (2, 3, 5, 6) ORDER BY id")
        assert rows.fetchall() == [(2, "[1:1]", 4), (3, None, 0), (5, "[0:1]", 7), (6, "[-3:-3]", 2)]


@COPY_FORMATS
def test_json_keeps_exact_text_and_jsonb(pair: Pair, force_text: bool) -> None:
    value_table(pair, "js json, jb jsonb", force_text)
    docs = [
        ('{"b":1,"a":2}', '{"b": 1, "a": 2}'),
        ('{ "a" :  1 ,\n\t"a": 2 }', '{"a": {"nested": [1, 2.50, null, true, "x"]}}'),  # duplicate keys, whitespace
        ("  [1, 2.50,  1e3 ]  ", "[1, 2.50, 1e3]"),
        ('"\\u00e9\\n\\t \\\\ tab"', '"\\u00e9 caf\u00e9 \U0001f600"'),
        ("null", "null"),  # JSON null, not SQL NULL
        (None, None),
        ("{}", "{}"),
        ('{"big": 123456789012345678901234567890.000000000000000000001}', '{"n": -0.0, "e": 1E+2}'),
    ]
    with pair.prod() as conn:
        conn.cursor().executemany(
            "INSERT INTO t (id, js, jb) VALUES (%s, %s::json, %s::jsonb)", [(i, a, b) for i, (a, b) in enumerate(docs)]
        )
    n = fill(pair, "", force_text)
    sync_and_check(pair, n, force_text)
    with pair.staging() as conn:
        got = dict(conn.execute("SELECT id, js::text FROM t"))
    assert got == dict(enumerate(a for a, _ in docs))


@COPY_FORMATS
def test_bytea_with_zero_bytes(pair: Pair, force_text: bool) -> None:
    value_table(pair, "b bytea", force_text)
    values = [b"", b"\x00", b"\x00\x00abc\x00", bytes(range(256)), b"\\x41", b"\\\\", None, b"\xff" * 1000]
    with pair.prod() as conn:
        conn.cursor().executemany("INSERT INTO t (id, b) VALUES (%s, %s)", list(enumerate(values)))
    n = fill(pair, "", force_text)
    sync_and_check(pair, n, force_text)
    with pair.staging() as conn:
        got = dict(conn.execute("SELECT id, b FROM t"))
    assert got == dict(enumerate(values))


@COPY_FORMATS
def test_numeric_nan_scale_and_precision(pair: Pair, force_text: bool) -> None:
    value_table(pair, "n numeric, n2 numeric(12, 4), na numeric[]", force_text)
    huge = "123456789012345678901234567890123456789012345678901234567890." + "0123456789" * 10
    n = fill(
        pair,
        f"""
        INSERT INTO t VALUES
            (1, 'NaN', 1.5, '{{NaN,1.0,1.00}}'),
            (2, 1.0, 1.0, '{{1.0}}'),
            (3, 1.00, 1.00, '{{1.00}}'),
            (4, 1, 1, '{{1}}'),
            (5, {huge}, 12345678.1234, ARRAY[{huge}]),
            (6, -{huge}, -0.0001, '{{}}'),
            (7, 'Infinity', 0, '{{Infinity,-Infinity}}'),
            (8, '-Infinity', NULL, ARRAY[NULL]::numeric[]),
            (9, 0.000000000000000000000000000000000000000000000000000000000000000000000000000001, 0.0, NULL),
            (10, 1e300, -0.0, '{{0.00}}'),
            (11, NULL, NULL, NULL);
        """,
        force_text,
    )
    sync_and_check(pair, n, force_text)
    with pair.staging() as conn:
        got = dict(conn.execute("SELECT id, n::text FROM t WHERE id IN (1, 2, 3, 5, 7)"))
    assert got == {1: "NaN", 2: "1.0", 3: "1.00", 5: huge, 7: "Infinity"}


@COPY_FORMATS
def test_float_nan_infinity_and_negative_zero(pair: Pair, force_text: bool) -> None:
    value_table(pair, "f float8, r real, fa float8[]", force_text)
    n = fill(
        pair,
        """
        INSERT INTO t VALUES
            (1, 'NaN', 'NaN', '{NaN}'),
            (2, 'Infinity', 'Infinity', '{Infinity,-Infinity}'),
            (3, '-Infinity', '-Infinity', '{-0,0}'),
            (4, '-0', '-0', '{-0}'),
            (5, 0, 0, '{0}'),
            (6, 0.1, 0.1, '{0.1,0.2,0.30000000000000004}'),
            (7, 5e-324, 1.4e-45, '{5e-324}'),
            (8, 1.7976931348623157e308, 3.4028235e38, '{1.7976931348623157e308}'),
            (9, 2.2250738585072014e-308, -1.17549435e-38, ARRAY[NULL]::float8[]),
            (10, 1.0000000000000002, 1.0000001, NULL),
            (11, NULL, NULL, '{}');
        """,
        force_text,
    )
    sync_and_check(pair, n, force_text)
    with pair.staging() as conn:
        conn.execute("SET extra_float_digits = 3")
        got = dict(conn.execute("SELECT id, f::text || ' ' || r::text FROM t WHERE id IN (1, 2, 3, 4, 5, 7, 10)"))
    assert got == {
        1: "NaN NaN",
        2: "Infinity Infinity",
        3: "-Infinity -Infinity",
        4: "-0 -0",
        5: "0 0",
        7: "5e-324 1e-45",
        10: "1.0000000000000002 1.0000001",
    }


@COPY_FORMATS
def test_infinite_timestamps_dates_and_intervals(pair: Pair, force_text: bool) -> None:
    value_table(
        pair,
        "ts timestamp, tz timestamptz, d date, tm time, iv interval, tz3 timestamptz(3), tr tstzrange",
        force_text,
    )
    n = fill(
        pair,
        """
        INSERT INTO t VALUES
            (1, 'infinity', 'infinity', 'infinity', '00:00', '1 day', 'infinity', '[2026-01-01,infinity)'),
            (2, '-infinity', '-infinity', '-infinity', '24:00', '24 hours', '-infinity', '(-infinity,infinity)'),
            (3, '2026-03-01 12:34:56.789012', '2026-03-01 12:34:56.789012+05:30', '2026-03-01', '23:59:59.999999',
                '1 year 2 mons 3 days 04:05:06.789012', '2026-03-01 12:34:56.789+00', 'empty'),
            (4, '4713-01-01 00:00 BC', '4713-01-01 00:00+00 BC', '4713-01-01 BC', '12:00', '-1 day +2 hours',
                '1999-12-31 23:59:59.999+00', '[2026-01-01 00:00+00,2026-01-01 00:00+00]'),
            (5, '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00', '5874897-12-31', NULL,
                '-178000000 years', NULL, NULL),
            (6, NULL, NULL, NULL, NULL, '1 mon -1 day', NULL, '(,)'),
            (7, '2000-01-01', '2000-01-01 00:00+00', '2000-01-01', '00:00:00.000001', '30 days', NULL, NULL),
            (8, NULL, NULL, NULL, NULL, '00:00:00.000001', NULL, NULL);
        """,
        force_text,
    )
    sync_and_check(pair, n, force_text)
    with pair.staging() as conn:
        conn.execute("SET IntervalStyle = 'postgres'")
        got = dict(conn.execute("SELECT id, iv::text FROM t WHERE id IN (1, 2, 6, 7)"))
    assert got == {1: "1 day", 2: "24:00:00", 6: "1 mon -1 days", 7: "30 days"}


@COPY_FORMATS
def test_unicode_control_characters_and_null_vs_empty(pair: Pair, force_text: bool) -> None:
    value_table(pair, "s text, v varchar(40), c char(5)", force_text)
    values = [
        ("emoji \U0001f600\U0001f468\u200d\U0001f469\u200d\U0001f467 flag \U0001f1f3\U0001f1f4", "\u00e9", "\u00e9"),
        ("e\u0301 combining a\u0308\u0323 \u202eRTL\u202c", "e\u0301", "e\u0301"),
        ("tab\there\nnewline\r\ncrlf", "\t", "\n"),
        ("back\\slash \\N \\. \\\\ \\t", "\\N", "\\"),
        ("\x01\x02\x1b\x7f ctrl", "\x01", "\x7f"),
        ("", "", ""),
        (None, None, None),
        ("\\.", "\\.", "."),
        ("'quote' \"double\" ,comma; semi|pipe", "'", '"'),
        ("\ufeffBOM \u00a0nbsp \u2028ls", "\ufeff", " "),
        ("trailing spaces   ", "  ", "a  "),
    ]
    with pair.prod() as conn:
        conn.cursor().executemany(
            "INSERT INTO t (id, s, v, c) VALUES (%s, %s, %s, %s)", [(i, *v) for i, v in enumerate(values)]
        )
    n = fill(pair, "", force_text)
    sync_and_check(pair, n, force_text)
    with pair.staging() as conn:
        got = {r[0]: r[1:] for r in conn.execute("SELECT id, s, v FROM t")}
        nulls = conn.execute("SELECT id, s IS NULL, s = '' FROM t WHERE id IN (5, 6) ORDER BY id").fetchall()
    assert got == {i: (s, v) for i, (s, v, _) in enumerate(values)}
    assert nulls == [(5, False, True), (6, True, None)]


@COPY_FORMATS
def test_point(pair: Pair, force_text: bool) -> None:
    value_table(pair, "p point, ps point[]", force_text)
    n = fill(
        pair,
        """
        INSERT INTO t VALUES
            (1, point(1.5, -2.25), ARRAY[point(0, 0), point(-0.0, 1e-300)]),
            (2, '(NaN,Infinity)', '{}'),
            (3, point(0.1, 1e300), NULL),
            (4, NULL, ARRAY[NULL]::point[]),
            (5, '(-0,0)', NULL);
        """,
        force_text,
    )
    sync_and_check(pair, n, force_text)


def test_composite_and_range_columns_force_text_copy(pair: Pair) -> None:
    pair.run_both(
        """
        CREATE TYPE address AS (street text, zip varchar(10), loc point, tags text[], price numeric);
        CREATE TYPE floatrange AS RANGE (subtype = float8);
        CREATE TABLE comp (id integer PRIMARY KEY, a address, note text);
        CREATE TABLE rng (id integer PRIMARY KEY, fr floatrange, ir int4range, dr daterange, nr numrange[]);
        CREATE TABLE builtin_rng (id integer PRIMARY KEY, ir int4range, dr daterange, nr numrange[]);
        """,
    )
    pair.run_prod(
        r"""
        INSERT INTO comp VALUES
            (1, ROW('Main St 1', '12345', point(1, 2), '{a,b}', 1.50), E'tab\tnl\nbs\\ \x01'),
            (2, ROW(E'quo"te, (paren) \\ back', NULL, NULL, '{}', 'NaN'), ''),
            (3, ROW(NULL, NULL, NULL, NULL, NULL), NULL),
            (4, NULL, E'\U0001F600 e\u0301'),
            (5, ROW('', '', '(0,0)', ARRAY[NULL, ''], 1.00), E'\\N');
        INSERT INTO rng VALUES
            (1, '[1.5,2.5)', '[1,10)', '[2026-01-01,2026-02-01)', ARRAY['[1.0,2.00]'::numrange]),
            (2, 'empty', 'empty', 'empty', '{}'),
            (3, '(,)', '(,5]', '[2026-01-01,infinity)', ARRAY['(,)'::numrange, NULL]),
            (4, '[-Infinity,NaN]', NULL, '(-infinity,infinity)', NULL),
            (5, NULL, '[-2147483648,2147483647)', NULL, ARRAY['empty'::numrange]);
        INSERT INTO builtin_rng SELECT id, ir, dr, nr FROM rng;
        """
    )
    result = pair.sync()
    assert_all_equal(pair)
    assert result.tables[("public", "comp")].plan.binary is False
    # a user-defined range (its OID differs between databases) forces text COPY; built-in ranges and
    # arrays of them carry no type OID that could differ, so they may travel in binary
    assert result.tables[("public", "rng")].plan.binary is False
    assert result.tables[("public", "builtin_rng")].plan.binary is True
    assert result.tables[("public", "builtin_rng")].inserted == 5
    assert result.tables[("public", "comp")].inserted == 5
    assert result.tables[("public", "rng")].inserted == 5
    with pair.staging() as conn:
        assert conn.execute("SELECT (a).street, note FROM comp WHERE id = 2").fetchone() == (
            'quo"te, (paren) \\ back',
            "",
        )
        # a composite of NULL fields is not a NULL composite
        got = conn.execute("SELECT id, a::text FROM comp WHERE id IN (3, 4) ORDER BY id").fetchall()
        assert got == [(3, "(,,,,)"), (4, None)]


def test_domain_with_check(pair: Pair) -> None:
    pair.run_both(
        """
        CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
        CREATE DOMAIN email AS text CHECK (VALUE ~ '@');
        CREATE DOMAIN money2 AS numeric(10, 2) NOT NULL DEFAULT 0;
        CREATE DOMAIN tags AS text[] CHECK (cardinality(VALUE) < 4);
        CREATE TABLE t (id integer PRIMARY KEY, qty positive, mail email, amount money2, tg tags);
        """,
    )
    pair.run_prod(
        """
        INSERT INTO t VALUES (1, 1, 'a@b', 1.5, '{a,b}'), (2, 2147483647, 'x@y.z', 0, '{}'),
                             (3, NULL, NULL, 99999999.99, NULL), (4, 7, '@', -1, ARRAY[NULL, 'q']);
        """
    )
    result = pair.sync()
    assert_all_equal(pair)
    assert result.tables[T].inserted == 4
    with pair.staging() as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO t (id, qty) VALUES (9, 0)")


# ---------------------------------------------------------------------------------------------
# Names, schemas, inheritance, partitions

QUOTED_SCHEMA = """
CREATE TABLE public.customers (id integer PRIMARY KEY, "Name" text NOT NULL);
CREATE SCHEMA "Sales Data";
CREATE TYPE "Sales Data"."Status" AS ENUM ('Open', 'closed');
CREATE TABLE "Sales Data"."Order" (
    id serial PRIMARY KEY,
    "select" text,
    "User Name" text,
    "from" integer REFERENCES public.customers (id),
    "Status" "Sales Data"."Status" NOT NULL DEFAULT 'Open',
    "group" numeric(8, 2)
);
CREATE TABLE public."Order" ("where" integer PRIMARY KEY, "Order" integer REFERENCES "Sales Data"."Order" (id));
CREATE TABLE public.invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id integer NOT NULL REFERENCES "Sales Data"."Order" (id),
    "Amount" numeric
);
"""


def test_mixed_case_reserved_identifiers_and_cross_schema_foreign_keys(pair: Pair) -> None:
    pair.run_both(QUOTED_SCHEMA)
    pair.run_prod(
        """
        INSERT INTO public.customers VALUES (1, 'Ann'), (2, 'Bob');
        INSERT INTO "Sales Data"."Order" ("select", "User Name", "from", "Status", "group")
        VALUES ('*', 'Ann A.', 1, 'Open', 1.50), ('from', 'Bob "B"', 2, 'closed', NULL), (NULL, '', NULL, 'Open', 0);
        INSERT INTO public."Order" VALUES (10, 1), (20, 3), (30, NULL);
        INSERT INTO public.invoices (order_id, "Amount") VALUES (1, 10.5), (2, 1.0), (2, NULL);
        """
    )
    config = parse_config({"schemas": ["public", "Sales Data"]})
    result = pair.sync(config)
    assert_all_equal(pair)
    assert {k: t.inserted for k, t in result.tables.items()} == {
        ("public", "customers"): 2,
        ("Sales Data", "Order"): 3,
        ("public", "Order"): 3,
        ("public", "invoices"): 3,
    }
    # parents first, across schemas: customers -> "Sales Data"."Order" -> the tables referencing it
    order = [tp.table_key for tp in result.plan.tables]
    assert order.index(("public", "customers")) < order.index(("Sales Data", "Order"))
    assert order.index(("Sales Data", "Order")) < min(
        order.index(("public", "Order")), order.index(("public", "invoices"))
    )
    assert result.sequences == {"Sales Data.Order_id_seq": 3, "public.invoices_id_seq": 3}
    with pair.staging() as conn:
        assert conn.execute("""SELECT nextval('"Sales Data"."Order_id_seq"')""").fetchone()[0] == 4

    # a resync after changes in both schemas, with the config built directly
    pair.run_prod(
        """
        UPDATE "Sales Data"."Order" SET "User Name" = 'Ann B.', "Status" = 'closed' WHERE id = 1;
        DELETE FROM public."Order" WHERE "where" = 20;
        DELETE FROM "Sales Data"."Order" WHERE id = 3;
        INSERT INTO public.customers VALUES (3, 'Cy');
        """
    )
    result = pair.sync(SyncConfig(schemas=("public", "Sales Data")))
    assert_all_equal(pair)
    assert {k: (t.inserted, t.updated, t.deleted) for k, t in result.tables.items()} == {
        ("public", "customers"): (1, 0, 0),
        ("Sales Data", "Order"): (0, 1, 1),
        ("public", "Order"): (0, 0, 1),
        ("public", "invoices"): (0, 0, 0),
    }


def test_quoted_schema_left_out_of_config_is_not_synced(pair: Pair) -> None:
    pair.run_both(QUOTED_SCHEMA.replace('REFERENCES "Sales Data"."Order" (id)', ""))
    pair.run_prod(
        """
        INSERT INTO public.customers VALUES (1, 'Ann');
        INSERT INTO "Sales Data"."Order" ("select") VALUES ('x');
        """
    )
    result = pair.sync()  # default schemas: public only
    assert set(result.tables) == {("public", "customers"), ("public", "Order"), ("public", "invoices")}
    with pair.staging() as conn:
        assert table_rows(conn, '"Sales Data"."Order"') == []
        assert table_rows(conn, "public.customers") == ["(1,Ann)"]


def test_inheritance_child_is_its_own_table(pair: Pair) -> None:
    pair.run_both(
        """
        CREATE TABLE vehicles (id integer PRIMARY KEY, name text NOT NULL);
        CREATE TABLE boats (id integer PRIMARY KEY, draft numeric) INHERITS (vehicles);
        """,
    )
    pair.run_prod(
        """
        INSERT INTO vehicles VALUES (1, 'car'), (2, 'bus');
        INSERT INTO boats VALUES (10, 'yacht', 2.5), (11, 'ferry', 4.0), (12, 'canoe', NULL);
        """
    )
    # staging's child holds a row production's child lacks: only the child's own sync removes it
    pair.run_staging("INSERT INTO boats VALUES (99, 'staging boat', 1)")

    result = pair.sync(selection={("public", "vehicles")})
    assert set(result.tables) == {("public", "vehicles")}
    vehicles = result.tables[("public", "vehicles")]
    assert (vehicles.production_rows, vehicles.staging_rows, vehicles.inserted, vehicles.deleted) == (2, 2, 2, 0)
    with pair.staging() as conn:
        assert only_rows(conn, "vehicles") == ["(1,car)", "(2,bus)"]
        assert table_rows(conn, "boats") == ['(99,"staging boat",1)']

    result = pair.sync()
    assert_all_equal(pair, only=True)
    assert_all_equal(pair)  # parent with its children, too
    boats = result.tables[("public", "boats")]
    assert (boats.production_rows, boats.staging_rows, boats.inserted, boats.deleted) == (3, 3, 3, 1)
    vehicles = result.tables[("public", "vehicles")]
    assert (vehicles.production_rows, vehicles.staging_rows, vehicles.inserted, vehicles.updated) == (2, 2, 0, 0)

    # a change to a child row is the child's, never the parent's
    pair.run_prod("UPDATE boats SET name = 'big yacht' WHERE id = 10; UPDATE vehicles SET name = 'van' WHERE id = 2")
    result = pair.sync()
    assert_all_equal(pair, only=True)
    assert (result.tables[("public", "boats")].updated, result.tables[("public", "vehicles")].updated) == (1, 1)


def test_inheritance_child_ids_drawn_from_the_parent_sequence_move_it(pair: Pair) -> None:
    pair.run_both(
        """
        CREATE TABLE parent (id serial PRIMARY KEY, name text);
        CREATE TABLE child (id integer PRIMARY KEY, extra text) INHERITS (parent);
        """,
    )
    pair.run_prod(
        "INSERT INTO parent (name) VALUES ('p1'), ('p2');"
        " INSERT INTO child (name) SELECT 'c' FROM generate_series(1, 5);"
    )
    pair.sync()
    assert_all_equal(pair, only=True)
    with pair.staging() as conn:
        highest = conn.execute("SELECT max(id) FROM parent").fetchone()[0]  # children included: 7
        assert highest == 7
        # production's sequence stands at 7; staging's must not hand out an id a child row already has
        assert conn.execute("SELECT nextval('parent_id_seq')").fetchone()[0] > highest


def test_partitioned_table(pair: Pair) -> None:
    pair.run_both(
        """
        CREATE TABLE events (
            id bigserial, region text NOT NULL, at date NOT NULL, payload jsonb, PRIMARY KEY (id, region, at)
        ) PARTITION BY LIST (region);
        CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
        CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us') PARTITION BY RANGE (at);
        CREATE TABLE events_us_2025 PARTITION OF events_us FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE TABLE events_us_rest PARTITION OF events_us DEFAULT;
        CREATE TABLE events_other PARTITION OF events DEFAULT;
        """,
    )
    pair.run_prod(
        """
        INSERT INTO events (region, at, payload)
        SELECT (ARRAY['eu', 'us', 'apac'])[1 + i % 3], date '2025-06-01' + i * 20, jsonb_build_object('i', i)
        FROM generate_series(1, 30) i;
        """
    )
    result = pair.sync()
    # the partitioned table is the one synced table; its partitions are not tables of their own
    assert set(result.tables) == {("public", "events")}
    events = result.tables[("public", "events")]
    assert (events.production_rows, events.staging_rows, events.inserted) == (30, 30, 30)
    assert_all_equal(pair)  # every partition holds the same rows on both sides
    assert result.sequences == {"public.events_id_seq": 30}

    # rows that move between partitions, new rows, deleted rows
    pair.run_prod(
        """
        UPDATE events SET at = date '2024-01-01' WHERE region = 'us' AND id < 10;
        UPDATE events SET payload = '{"moved": true}' WHERE id = 3;
        DELETE FROM events WHERE id IN (1, 2);
        INSERT INTO events (region, at) VALUES ('eu', '2030-01-01');
        """
    )
    result = pair.sync()
    assert_all_equal(pair)
    events = result.tables[("public", "events")]
    # 'us' ids below 10 are 1, 4, 7: 4 and 7 move partition, which changes their key (at is part of it),
    # so they are deleted and inserted anew; 1 and 2 are deleted, 3 gets a new payload, 31 is new
    assert (events.inserted, events.updated, events.deleted) == (3, 1, 4)


# ---------------------------------------------------------------------------------------------
# Resyncs: representation-only changes are changes


RESYNC_TABLE = """
CREATE TABLE t (id integer PRIMARY KEY, n numeric, jb jsonb, js json, iv interval, f float8, na numeric[],
                c force_text);
"""
RESYNC_DATA = """
INSERT INTO t SELECT i, 1.0, '{"a": 1}', '{"a":1}', '1 day', 0, '{1.0}', ROW(i, '1.0')::force_text
FROM generate_series(1, 6) i;
"""


@pytest.mark.parametrize(
    ("change", "changed_rows"),
    [
        ("UPDATE t SET n = 1.00 WHERE id IN (1, 2)", 2),
        ("UPDATE t SET n = 'NaN' WHERE id = 3", 1),
        ("UPDATE t SET jb = '{\"b\": 1}' WHERE id IN (2, 4, 6)", 3),
        ("UPDATE t SET jb = '{\"a\": 1.0}' WHERE id = 5", 1),  # jsonb 1 = 1.0, but the text differs
        ("UPDATE t SET js = '{\"a\": 1}' WHERE id IN (1, 3)", 2),
        ("UPDATE t SET js = '{\"a\":1 }' WHERE id = 6", 1),
        ("UPDATE t SET iv = '24 hours' WHERE id IN (1, 2, 3, 4)", 4),
        ("UPDATE t SET f = '-0' WHERE id = 1", 1),
        ("UPDATE t SET na = '{1.00}' WHERE id = 2", 1),
        ("UPDATE t SET c = ROW(id, '1.00') WHERE id = 3", 1),
        ("UPDATE t SET n = 1.0, iv = '1 day', f = 0", 0),  # rewritten with the same values
    ],
    ids=[
        "numeric-scale",
        "numeric-nan",
        "jsonb-key",
        "jsonb-number-scale",
        "json-whitespace",
        "json-trailing-space",
        "interval-day-vs-hours",
        "float-negative-zero",
        "numeric-array-scale",
        "composite",
        "same-values",
    ],
)
def test_resync_finds_representation_only_changes(pair: Pair, change: str, changed_rows: int) -> None:
    pair.run_both(FORCE_TEXT_TYPE + RESYNC_TABLE)
    pair.run_prod(RESYNC_DATA)
    first = pair.sync()
    assert first.tables[T].inserted == 6
    assert_all_equal(pair)

    pair.run_prod(change)
    result = pair.sync()
    assert_all_equal(pair)
    t = result.tables[T]
    assert (t.inserted, t.updated, t.deleted, t.replaced_whole) == (0, changed_rows, 0, False)


@pytest.mark.parametrize(
    ("change", "differ"),
    [("UPDATE k SET n = 1.00 WHERE id = 1", 1), ("UPDATE k SET f = '-0' WHERE id = 2", 2)],
    ids=["numeric-scale", "float-negative-zero"],
)
def test_resync_of_keyless_table_replaces_it_on_representation_change(pair: Pair, change: str, differ: int) -> None:
    pair.run_both("CREATE TABLE k (id integer, n numeric, f float8);")
    pair.run_prod("INSERT INTO k VALUES (1, 1.0, 0), (2, 2.0, 0), (2, 2.0, 0)")
    first = pair.sync()
    assert first.tables[("public", "k")].inserted == 3
    pair.run_prod(change)
    result = pair.sync()
    assert_all_equal(pair)
    k = result.tables[("public", "k")]
    assert (k.inserted, k.updated, k.deleted, k.replaced_whole, k.rewritten) == (differ, 0, differ, True, 3)


@pytest.mark.parametrize("amount", ["numeric", "money"], ids=["hashed", "money-has-no-hash-exact-compare"])
def test_keyless_table_is_left_alone_while_equal_and_replaced_once_changed(pair: Pair, amount: str) -> None:
    pair.run_both(f"CREATE TABLE k (id integer, amount {amount}, note text);")
    pair.run_prod("INSERT INTO k VALUES (1, 1, 'a'), (2, 2, NULL), (2, 2, NULL)")
    pair.sync()
    unchanged = pair.sync().tables[("public", "k")]
    assert (unchanged.inserted, unchanged.deleted, unchanged.replaced_whole) == (0, 0, False)
    # One duplicate fewer, one row more: the same count, other rows.
    pair.run_prod("DELETE FROM k WHERE ctid = (SELECT max(ctid) FROM k WHERE id = 2); INSERT INTO k VALUES (3, 3, 'c')")
    changed = pair.sync().tables[("public", "k")]
    assert (changed.inserted, changed.deleted, changed.replaced_whole, changed.rewritten) == (1, 1, True, 3)
    assert_all_equal(pair)


def test_resync_of_representation_change_in_a_key_column(pair: Pair) -> None:
    pair.run_both("CREATE TABLE nk (code numeric PRIMARY KEY, label text);")
    pair.run_prod("INSERT INTO nk VALUES (1.0, 'one'), (2.0, 'two')")
    pair.sync()
    assert_all_equal(pair)
    pair.run_prod("UPDATE nk SET code = 1.00 WHERE code = 1")
    pair.sync()
    assert_all_equal(pair)  # staging keeps (1.0,one) while production has (1.00,one)


EVERYTHING = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair_t AS (a integer, b text, f float8);
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE kitchen (
    id integer PRIMARY KEY, m mood, ms mood[], ts text[], ns integer[], jb jsonb, js json, b bytea, n numeric,
    f float8, t timestamptz, d date, iv interval, s text, p point, c pair_t, r int4range, q positive
);
CREATE TABLE keyless (n numeric, f float8, js json, p point, s text);
CREATE TABLE parent (id integer PRIMARY KEY, name text);
CREATE TABLE child (id integer PRIMARY KEY, extra numeric) INHERITS (parent);
CREATE TABLE parted (id integer, k text, v numeric, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
CREATE TABLE parted_a PARTITION OF parted FOR VALUES IN ('a');
CREATE TABLE parted_rest PARTITION OF parted DEFAULT;
CREATE SCHEMA "Sales Data";
CREATE TABLE "Sales Data"."Order" (id integer PRIMARY KEY, "select" text, "User Name" text,
                                   kid integer REFERENCES kitchen (id));
"""

EVERYTHING_DATA = r"""
INSERT INTO kitchen VALUES
    (1, 'sad', '{sad,NULL}', ARRAY['a', NULL, ''], '{1,NULL}', '{"b": 1, "a": [1.0]}', '{ "b":1,  "a":2 }',
     '\x00ff00', 'NaN', 'NaN', 'infinity', '-infinity', '1 day', E'tab\there \x01 \\ \U0001F600', '(1,2)',
     ROW(1, E'x\ty', '-0'), '[1,5)', 1),
    (2, NULL, '{}', '{}', '{}', 'null', 'null', '', 1.00, '-0', '-infinity', 'infinity', '24 hours', '', '(NaN,0)',
     ROW(NULL, NULL, 'NaN'), 'empty', NULL),
    (3, 'happy', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 3);
INSERT INTO keyless VALUES (1.0, 0, '{"a":1}', '(1,1)', 'x'), (1.0, 0, '{"a":1}', '(1,1)', 'x'),
                           ('NaN', '-0', '[ ]', NULL, NULL), (NULL, NULL, NULL, NULL, '');
INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
INSERT INTO child VALUES (3, 'c3', 1.50), (4, 'c4', 'NaN');
INSERT INTO parted VALUES (1, 'a', 1.0), (2, 'b', 2.00), (3, 'zz', 'NaN');
INSERT INTO "Sales Data"."Order" VALUES (1, 'from', 'Ann A.', 1), (2, NULL, '', 3);
"""


def test_resync_without_production_change_changes_nothing(pair: Pair) -> None:
    pair.run_both(EVERYTHING)
    pair.run_prod(EVERYTHING_DATA)
    config = parse_config({"schemas": ["public", "Sales Data"]})
    first = pair.sync(config)
    assert_all_equal(pair, only=True)
    assert_all_equal(pair)
    assert set(first.tables) == {
        ("public", "kitchen"),
        ("public", "keyless"),
        ("public", "parent"),
        ("public", "child"),
        ("public", "parted"),
        ("Sales Data", "Order"),
    }
    assert {k: t.inserted for k, t in first.tables.items()} == {
        ("public", "kitchen"): 3,
        ("public", "keyless"): 4,
        ("public", "parent"): 2,
        ("public", "child"): 2,
        ("public", "parted"): 3,
        ("Sales Data", "Order"): 2,
    }

    with pair.staging() as conn:
        before = {t: only_rows(conn, t) for t in user_tables(conn)}
    second = pair.sync(config)
    assert_no_changes(second)
    assert set(second.tables) == set(first.tables)
    with pair.staging() as conn:
        assert {t: only_rows(conn, t) for t in user_tables(conn)} == before

    # and once more with a single worker (no exported snapshot)
    third = pair.sync(parse_config({"schemas": ["public", "Sales Data"], "workers": 1}))
    assert_no_changes(third)


def test_a_keyless_table_replaced_whole_reports_the_rows_that_differ_apart_from_the_rows_rewritten(pair: Pair) -> None:
    pair.run_both("CREATE TABLE k (id integer, note text);")
    pair.run_prod("INSERT INTO k SELECT i, 'n' || i FROM generate_series(1, 100) i")
    pair.sync()
    pair.run_prod(
        "DELETE FROM k WHERE id IN (1, 2, 3); INSERT INTO k SELECT i, 'new' FROM generate_series(101, 105) i;"
        "UPDATE k SET note = 'changed' WHERE id IN (50, 51)"
    )

    result = pair.sync()

    k = result.tables[("public", "k")]
    # 5 new rows and 2 changed ones arrive; 3 deleted rows and the 2 old versions go; 102 rows written
    assert (k.inserted, k.updated, k.deleted, k.replaced_whole, k.rewritten) == (7, 0, 5, True, 102)
    assert_all_equal(pair)
