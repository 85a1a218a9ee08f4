"""Masks: what a masked column's value becomes, as an SQL expression production computes in its SELECT.

Raw values never leave production: each transform is an expression over the column, built from core
functions only (sha256, encode, translate...), nothing installed there. Keyed transforms use HMAC-SHA256
under a key derived per transform from SYNC_ASSETS_MASK_KEY (mask_key.py): the same input gives the same
output in every run, every table and every column masked the same way, so resyncs leave unchanged rows
alone and masked values still join. A NULL stays NULL (except under `constant`), so NOT NULL holds.

The expressions yield a value whose text form staging's type reads (text, bigint, uuid, date...): a masked
table is copied in text format, where staging parses each value into its column's type.

Which transform fits which column is decided here too (`unfit`), before anything moves.
"""

from __future__ import annotations

import re
from datetime import timedelta

from psycopg import sql

from sync_assets.engine.catalog import Column
from sync_assets.engine.mask_key import MaskKey
from sync_assets.engine.mask_spec import Mask, Transform
from sync_assets.engine.mask_words import FIRST_NAMES, LAST_NAMES

_TEXT = {"text", "character varying", "character"}
_INTEGERS = {"smallint", "integer", "bigint"}
_NUMBERS = _INTEGERS | {"numeric", "real", "double precision"}
_TIMES = {"date", "timestamp without time zone", "timestamp with time zone"}
_HASHABLE = _TEXT | _INTEGERS | {"uuid", "bytea"}
_JSON = {"json", "jsonb"}
_EMAIL_LENGTH = len("u") + 24 + len("@example.com")
_HASH_LENGTH = 32  # hex characters of a hash into a text column (fewer where the column is shorter)
_MIN_HASH_LENGTH = 8


def _declared_length(column: Column) -> int | None:
    """varchar(n) / char(n): n; unbounded text: None."""
    m = re.match(r"^(?:character varying|character)\((\d+)\)$", column.underlying or column.type)
    return int(m.group(1)) if m else None


def unfit(mask: Mask, column: Column) -> str | None:
    """Why this mask cannot apply to this column (to be named with the column), or None."""
    kind = column.base_type
    if column.generated:
        return "is a generated column: staging computes it"
    if mask.transform == Transform.NULL:
        return "is NOT NULL: null cannot mask it" if column.not_null else None
    if mask.transform == Transform.CONSTANT:
        return "is NOT NULL: a null constant cannot mask it" if mask.constant is None and column.not_null else None
    if mask.transform == Transform.SQL:
        return None
    if column.is_array:
        return f"is an array: {mask.transform} masks single values (use null, constant or sql)"
    wanted = {
        Transform.HASH: _HASHABLE,
        Transform.SHIFT: _NUMBERS if isinstance(mask.by, (int, float)) else _TIMES,
        Transform.JSON: _JSON,
    }.get(mask.transform, _TEXT)
    if kind not in wanted:
        return f"has type {column.type}: {mask.transform} masks {', '.join(sorted(wanted))}"
    if mask.transform == Transform.SHIFT and kind == "real":
        return (
            "has type real: its 24 bits of precision could round a shifted value back to itself; shift a numeric "
            "or double precision column, or mask it with sql"
        )
    if mask.transform == Transform.SHIFT and kind in _INTEGERS and not float(mask.by).is_integer():  # type: ignore[arg-type]
        return f"has type {column.type}: shift it by a whole number"
    if mask.transform == Transform.SHIFT and kind == "date" and isinstance(mask.by, timedelta) and mask.by.days < 1:
        return "is a date: shift it by at least 1d"
    scale = _scale(column)
    if mask.transform == Transform.SHIFT and scale is not None and int(float(mask.by) * 10**scale) < 1:  # type: ignore[arg-type]
        return f"has type {column.type}: shift it by at least {10**-scale}"
    length = _declared_length(column)
    needed = {
        Transform.HASH: _MIN_HASH_LENGTH,
        Transform.EMAIL: _EMAIL_LENGTH,
        Transform.FIRST_NAME: max(map(len, FIRST_NAMES)),
        Transform.LAST_NAME: max(map(len, LAST_NAMES)),
        Transform.FULL_NAME: max(map(len, FIRST_NAMES)) + 1 + max(map(len, LAST_NAMES)),
    }.get(mask.transform)
    if length is not None and needed is not None and kind in _TEXT and length < needed:
        return f"has type {column.type}: {mask.transform} needs room for {needed} characters"
    return None


def _hex(key: MaskKey, purpose: str, message: sql.Composable) -> sql.Composable:
    return sql.SQL("encode({}, 'hex')").format(key.hmac_sql(purpose, message))


def _text_of(value: sql.Composable) -> sql.Composable:
    return sql.SQL("convert_to({}::text, 'UTF8')").format(value)


def _below(hexes: sql.Composable, n: int, at: int = 1) -> sql.Composable:
    """A number in 0 .. n - 1 from 7 of a hash's hex digits, from the at-th (28 bits: uniform enough for
    small n)."""
    return sql.SQL("(('x' || '0' || substr({}, {}, 7))::bit(32)::integer % {})").format(
        hexes, sql.Literal(at), sql.Literal(n)
    )


_SLOT = 12  # bytes a word takes in a list's slots: the longest word, padded with spaces


def _slots(words: tuple[str, ...]) -> sql.Composable:
    """The list as fixed-width slots, twice over (so that the slot after the last is the first), in a
    bytea: a substring of it is found by offset, where one of text is counted by characters."""
    assert all(len(w) <= _SLOT and w.isascii() and " " not in w for w in words)
    return sql.Literal("".join(w.ljust(_SLOT) for w in words * 2).encode())


def _pick(words: tuple[str, ...], hexes: sql.Composable, avoid: sql.Composable) -> sql.Composable:
    """A word picked by keyed hash, never `avoid`: the picked word and the next, `avoid` taken out of them
    as a whole word, the first word left. PostgreSQL computes an expression again wherever it appears, so
    the hash appears once (no CASE, no second reference)."""
    two = sql.SQL("convert_from(substr({}::bytea, 1 + {} * {}, {}), 'UTF8')").format(
        _slots(words), _below(hexes, len(words)), sql.Literal(_SLOT), sql.Literal(2 * _SLOT)
    )
    return sql.SQL("split_part(btrim(replace(' ' || {} || ' ', ' ' || {} || ' ', ' ')), ' ', 1)").format(two, avoid)


def _word(words: tuple[str, ...], hexes: sql.Composable) -> sql.Composable:
    """A word picked by keyed hash."""
    return sql.SQL("rtrim(convert_from(substr({}::bytea, 1 + {} * {}, {}), 'UTF8'))").format(
        _slots(words), _below(hexes, len(words)), sql.Literal(_SLOT), sql.Literal(_SLOT)
    )


def _full_name(key: MaskKey, value: sql.Composable) -> sql.Composable:
    """A first and a last name, each by a hash of its own; the last name is never the value's second word,
    so the whole is never the value itself (a value of other than two words cannot be two words)."""
    first = _word(FIRST_NAMES, _hex(key, "full_name", _text_of(value)))
    second = sql.SQL("split_part({}::text, ' ', 2)").format(value)
    last = _pick(LAST_NAMES, _hex(key, "full_name:last", _text_of(value)), second)
    return sql.SQL("{} || ' ' || {}").format(first, last)


def protected(mask: Mask, value: sql.Composable) -> sql.Composable:
    """Whether the transform changes this (raw, text) value: the values the no_raw_values check judges.
    Some are kept by design: a value without digits under `digits`, one no longer than what `keep_last`
    keeps, the constant itself; an empty string holds nothing to protect."""
    t = mask.transform
    if t == Transform.DIGITS:
        return sql.SQL("{} ~ '[0-9]'").format(value)
    if t == Transform.KEEP_LAST:
        return sql.SQL("length({}) > {}").format(value, sql.Literal(mask.keep))
    if t == Transform.CONSTANT:
        return sql.SQL("{} IS DISTINCT FROM {}").format(value, sql.Literal(mask.constant))
    return sql.SQL("{} <> ''").format(value)


def _text_mask(mask: Mask, value: sql.Composable, key: MaskKey, length: int | None) -> sql.Composable:
    """The transforms over a text value (a column's, or a json path's)."""
    t = mask.transform
    if t == Transform.NULL:
        return sql.SQL("NULL")
    if t == Transform.CONSTANT:
        return sql.Literal(mask.constant)
    if t == Transform.KEEP_LAST:
        return sql.SQL("repeat('*', greatest(length({v}) - {n}, 0)) || right({v}::text, {n})").format(
            v=value, n=sql.Literal(mask.keep)
        )
    hexes = _hex(key, t.value, _text_of(value))
    if t == Transform.HASH:
        return sql.SQL("left({}, {})").format(hexes, sql.Literal(min(_HASH_LENGTH, length or _HASH_LENGTH)))
    if t == Transform.EMAIL:
        return sql.SQL("'u' || left({}, 24) || '@example.com'").format(hexes)
    if t == Transform.FIRST_NAME:
        return _pick(FIRST_NAMES, hexes, value)
    if t == Transform.LAST_NAME:
        return _pick(LAST_NAMES, hexes, value)
    if t == Transform.FULL_NAME:
        return _full_name(key, value)
    assert t == Transform.DIGITS, t
    # 64 keyed digits (hex a-f folded onto 0-5; cycled past 64), the k-th replacing the value's k-th
    # digit; other characters (+, -, spaces, letters) stay where they are: every digit becomes a format()
    # placeholder, filled from the keyed digits one character each. Where that gives the value itself (a
    # short number, 1 in 10 for one digit), each digit moves on by one instead.
    text = sql.SQL("{}::text").format(value)
    keyed = sql.SQL("left(repeat(translate({h}, 'abcdef', '012345'), 1 + length({v}) / 64), length({v}))").format(
        h=hexes, v=text
    )
    masked = sql.SQL("format(regexp_replace(replace({v}, '%', '%%'), '[0-9]', '%s', 'g'), VARIADIC {a})").format(
        v=text, a=sql.SQL("string_to_array({}, NULL)").format(keyed)
    )
    return sql.SQL("coalesce(nullif({m}, {v}), translate({v}, '0123456789', '1234567890'))").format(m=masked, v=text)


def expression(mask: Mask, column: Column, key: MaskKey) -> sql.Composable:
    """What production selects in place of the column (assumes `unfit(mask, column)` is None)."""
    value = sql.Identifier(column.name)
    t, kind = mask.transform, column.base_type
    if t == Transform.SQL:
        assert mask.expression is not None
        return sql.SQL("({})").format(sql.SQL(mask.expression))  # the user's own SQL, by design
    if t == Transform.HASH and kind not in _TEXT:
        digest = key.hmac_sql("hash", value if kind == "bytea" else _text_of(value))
        if kind == "bytea":
            return digest
        hexes = sql.SQL("encode({}, 'hex')").format(digest)
        if kind == "uuid":
            return sql.SQL("left({}, 32)::uuid").format(hexes)
        bits = {"smallint": 16, "integer": 32, "bigint": 64}[kind]
        signed = sql.SQL("('x' || left({}, {}))::bit({})").format(hexes, sql.Literal(bits // 4), sql.Literal(bits))
        if bits == 16:
            return sql.SQL("({}::integer - 32768)").format(signed)
        return sql.SQL("{}::{}").format(signed, sql.SQL("bigint" if bits == 64 else "integer"))
    if t == Transform.SHIFT:
        return _shifted(mask, value, column, key)
    if t == Transform.JSON:
        assert mask.inner is not None
        original = sql.SQL("{}::jsonb").format(value)
        document: sql.Composable = original
        for path in mask.paths:
            at = sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(map(sql.Literal, path)))
            # Each path's value is read from the column, not from the document the paths before it set:
            # that document would be computed again inside every later path's value, its hashes with it.
            inner = _text_mask(mask.inner, sql.SQL("({} #>> {})").format(original, at), key, None)
            replaced = sql.SQL("coalesce(to_jsonb(({})::text), 'null'::jsonb)").format(inner)
            document = sql.SQL("jsonb_set({}, {}, {}, false)").format(document, at, replaced)
        return document
    return _text_mask(mask, value, key, _declared_length(column))


def _move(hexes: sql.Composable, by: int) -> sql.Composable:
    """A keyed whole move in [-by, -1] or [1, by]: never 0, so that no shifted value stays raw. x in
    [-by, by - 1] becomes x + 0.5 rounded half away from zero (numeric's round): x where x < 0, x + 1 where
    x >= 0; x appears once, so its hash is computed once."""
    return sql.SQL("round(({u} - {by})::numeric + 0.5)::integer").format(u=_below(hexes, 2 * by), by=sql.Literal(by))


def _scale(column: Column) -> int | None:
    """numeric(p, s): s; other types: None."""
    m = re.match(r"^numeric\(\d+,(\d+)\)$", column.underlying or column.type)
    return int(m.group(1)) if m else None


def _shifted(mask: Mask, value: sql.Composable, column: Column, key: MaskKey) -> sql.Composable:
    """The value moved by a keyed amount in [-by, +by] other than 0: the same value always moves alike.
    The result has the column's own precision, so that what staging stores is what production hashes."""
    kind = column.base_type
    hexes = _hex(key, f"shift:{mask.by}", _text_of(value))
    if isinstance(mask.by, timedelta):
        if kind == "date":
            return sql.SQL("({} + {})").format(value, _move(hexes, mask.by.days))
        seconds = int(mask.by.total_seconds())
        return sql.SQL("({} + {} * interval '1 second')").format(value, _move(hexes, seconds))
    assert mask.by is not None
    if kind in _INTEGERS:
        return sql.SQL("({} + {})").format(value, _move(hexes, int(mask.by)))
    scale = _scale(column)
    if scale is not None:  # whole steps of the column's scale, so that rounding never undoes the move
        steps = int(mask.by * 10**scale)
        # round(): the division's many decimals cut to the column's scale, its text then staging's.
        return sql.SQL("round({} + {}::numeric / {}, {})").format(
            value, _move(hexes, steps), sql.Literal(10**scale), sql.Literal(scale)
        )
    # A fraction in [-1, 1] of the range, from 28 bits of the hash (exactly 0 once in 2^28 values).
    fraction = sql.SQL("(('x' || '0' || left({}, 7))::bit(32)::integer / 134217727.5 - 1)").format(hexes)
    moved = sql.SQL("({} + {}::numeric * {})").format(value, sql.Literal(str(mask.by)), fraction)
    if kind == "double precision":  # real is refused (unfit)
        return sql.SQL("{}::double precision").format(moved)
    return moved
