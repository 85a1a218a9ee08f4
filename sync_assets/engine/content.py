"""Content fingerprints: what proves that staging holds the snapshot's rows, not just as many of them.

A table's fingerprint is its row count and the sum of 64-bit row hashes over the columns the sync copies:
order-independent, taken in one scan (in parallel where the server may), equal for equal multisets of
rows. The content
check compares staging's (taken in the swap transaction, just before COMMIT) with the snapshot's:

- a table read whole: the snapshot is its shadow, in staging, with staging's types: both prints hash the
  same expressions (`Scope.STAGING`);
- a table read partly (incremental), and a check on a table the run did not sync: the snapshot is only
  in production, so each side hashes expressions that give equal values for equal content across the two
  databases (`Scope.ACROSS`): a column's own value where its hash cannot depend on the database (integers,
  timestamps, uuid, bytea, text in the same encoding...), else its text (enum labels, not OIDs; numeric's
  exact digits), adjusted where the two sides' types differ as the copy adjusts them (char(n) keeps its
  padding through text, numeric gains trailing zeros, json becomes jsonb, real becomes double precision).

The value of a hash follows the type's `=` where its hash does (numeric 1.0 and 1.00 alike, float -0 and
0): such types are hashed through their binary form (what binary COPY sends: numeric's scale included),
else their text, so a change of representation counts as a change, as the swap's own comparison counts
it. A false "equal" needs two different multisets with the same count and the same sum of 64-bit hashes:
a chance of about 2^-64 per comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import psycopg
from psycopg import errors, sql

from sync_assets.engine.catalog import Column
from sync_assets.engine.connections import Side
from sync_assets.engine.table_plan import TablePlan

# Built-in types whose hash is a function of the value's bytes alone (no OID, no collation, no encoding
# beyond the text types'), so it is the same in any two databases of the same server version.
_PORTABLE_HASH = {
    "smallint", "integer", "bigint", "boolean", "bytea", "uuid", "date", "timestamp without time zone",
    "timestamp with time zone", "time without time zone", '"char"', "oid", "macaddr", "macaddr8",
}  # fmt: skip
_TEXT_TYPES = {"text", "character varying", "character", "name"}
# Exact-equality types without an extended hash function.
_NO_HASH = {"bit", "bit varying"}
# Types whose `=` ignores representation (or that have no hash), hashed through their binary send form:
# exact, cheaper than text, and the same between servers (it is what binary COPY carries).
_SEND = {
    "numeric": "numeric_send", "double precision": "float8send", "real": "float4send", "interval": "interval_send",
    "money": "cash_send", "point": "point_send", "bit": "bit_send", "bit varying": "varbit_send",
}  # fmt: skip


class Scope(StrEnum):
    STAGING = "staging"  # both prints taken in staging, of the same types
    ACROSS = "across"  # one print taken in production, one in staging


class Method(StrEnum):
    """How rows are hashed. Both prints of a comparison use the same."""

    MIXED = "mixed"  # hash_record_extended over native values where portable, text elsewhere (PostgreSQL 14+)
    TEXT = "text"  # hash_record_extended over every column's text (where a type has no hash function)


class Fold(StrEnum):
    """How the rows' hashes are combined. Both prints of a comparison use the same."""

    SUM = "sum"  # a multiset's print: duplicate rows count
    XOR = "xor"  # rows with distinct keys (compare.py's buckets): cheaper, and as strong where no row repeats


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    sum: int  # the rows' 64-bit hashes folded (their sum, or their xor)
    method: Method
    scope: Scope
    extra: tuple = ()  # more aggregates asked for in the same scan (take's extra); empty where they failed
    fold: Fold = Fold.SUM

    def matches(self, other: Fingerprint) -> bool:
        return (self.rows, self.sum) == (other.rows, other.sum)


@dataclass(frozen=True)
class Unavailable:
    """Why a table's content could not be fingerprinted (the check then fails, saying so)."""

    reason: str


def _text(expr: sql.Composable, utf8: bool) -> sql.Composable:
    """A text expression, as UTF-8 bytes where the two databases' encodings differ."""
    return sql.SQL("convert_to({}, 'UTF8')").format(expr) if utf8 else expr


def _as_text(col: str, source: Column, target: Column, side: Side) -> sql.Composable:
    """The column's text as staging holds it, computed on either side."""
    c = sql.Identifier(col)
    if source.type == target.type and source.is_domain == target.is_domain:
        return sql.SQL("{}::text").format(c)
    # Different types: the copy moved production's text into staging's type; mimic what that changed.
    family = source.underlying or source.base_type
    if (target.base_type == "numeric" or family.startswith("numeric")) and not (source.is_array or target.is_array):
        return sql.SQL("trim_scale({})::text").format(c)
    if side == Side.PRODUCTION:
        if source.base_type == "character" and not source.is_array:
            # char(n)'s cast to text drops its padding; the copy, through text, kept it.
            return sql.SQL("CASE WHEN {c} IS NULL THEN NULL ELSE concat({c}) END").format(c=c)
        if source.base_type == "json" and target.base_type == "jsonb" and not source.is_array:
            return sql.SQL("{}::jsonb::text").format(c)
        if source.base_type == "real" and target.base_type == "double precision" and not source.is_array:
            return sql.SQL("{}::text::double precision::text").format(c)
    return sql.SQL("{}::text").format(c)


def _fixed_scale(column: Column) -> bool:
    """numeric(p, s): every value is stored with the declared scale, so `=` is exact and so is its hash."""
    return column.base_type == "numeric" and column.type.startswith("numeric(") and not column.is_array


def column_expr(tp: TablePlan, col: str, scope: Scope, side: Side, method: Method) -> sql.Composable:
    """What a copied column contributes to a row's hash, on one side. Across databases whose encodings
    differ, text is hashed as UTF-8."""
    utf8 = tp.encodings_differ
    target = tp.target.column(col)
    source = tp.source.column(col)
    assert target is not None and source is not None, col
    c = sql.Identifier(col)
    mixed = method == Method.MIXED
    native = mixed and (target.exact_equality or _fixed_scale(target)) and target.base_type not in _NO_HASH
    send = _SEND.get(target.base_type) if mixed and not target.is_array and not target.is_domain else None
    if scope == Scope.STAGING:
        if native:
            return c
        return sql.SQL("{}({})").format(sql.SQL(send), c) if send else sql.SQL("{}::text").format(c)
    masked = tp.selected(col)
    if masked is not None:
        # Production's masked value against staging's stored one, through their text: what the copy
        # carried (in text format) and staging read back.
        value = sql.SQL("({})::text").format(masked) if side == Side.PRODUCTION else sql.SQL("{}::text").format(c)
        return _text(value, utf8)
    same = source.type == target.type and source.is_domain == target.is_domain
    portable = (
        native
        and same
        and not target.is_enum
        and (
            target.base_type in _PORTABLE_HASH or _fixed_scale(target) or (target.base_type in _TEXT_TYPES and not utf8)
        )
    )
    if portable:
        return c
    if send and same:
        return sql.SQL("{}({})").format(sql.SQL(send), c)
    return _text(_as_text(col, source, target, side), utf8)


def row_hash(exprs: list[sql.Composable]) -> sql.Composable:
    """A row's 64-bit hash over these expressions."""
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(exprs))


def _print_query(
    relation: sql.Composable,
    exprs: list[sql.Composable],
    where: sql.Composable | None,
    extra: sql.Composable | None,
    fold: Fold,
) -> sql.Composable:
    return sql.SQL("SELECT count(*), coalesce({fold}({hash}), 0){extra} FROM {rel} t{where}").format(
        fold=sql.SQL("sum" if fold == Fold.SUM else "bit_xor"),
        hash=row_hash(exprs),
        extra=sql.SQL(", {}").format(extra) if extra is not None else sql.SQL(""),
        rel=relation,
        where=sql.SQL(" WHERE {}").format(where) if where is not None else sql.SQL(""),
    )


def take(
    conn: psycopg.Connection,
    tp: TablePlan,
    relation: sql.Composable,
    scope: Scope,
    side: Side,
    method: Method | None = None,
    where: sql.Composable | None = None,
    extra: sql.Composable | None = None,
    fold: Fold = Fold.SUM,
) -> Fingerprint | Unavailable:
    """The fingerprint of `relation` (alias t) over the table's copied columns, in a savepoint (or a
    transaction of its own), so that a type without a hash function does not end the caller's.

    method: the one the other side used; None tries MIXED, then TEXT. extra: more aggregates to take in
    the same scan (Fingerprint.extra); where they fail, the fingerprint is taken without them."""
    if conn.info.server_version < 140000:
        return Unavailable("PostgreSQL before 14 has no hash_record_extended to fingerprint rows with")
    reason = ""
    for attempt in [method] if method is not None else [Method.MIXED, Method.TEXT]:
        exprs = [column_expr(tp, col, scope, side, attempt) for col in tp.columns]
        try:
            with conn.transaction():
                row = conn.execute(_print_query(relation, exprs, where, extra, fold)).fetchone()
        except errors.UndefinedFunction as exc:
            if extra is not None:
                return take(conn, tp, relation, scope, side, method, where, fold=fold)
            reason = str(exc).splitlines()[0]
            continue
        assert row is not None
        return Fingerprint(int(row[0]), int(row[1]), attempt, scope, tuple(row[2:]), fold)
    return Unavailable(f"its rows cannot be hashed ({reason})")
