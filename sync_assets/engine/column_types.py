"""Whether production's column types load into staging's without loss, read from format_type() spellings."""

from __future__ import annotations

import re

from sync_assets.engine.catalog import Column

# format_type() spellings: "numeric(10,2)", "timestamp(3) with time zone", "character varying(5)[]".
_SIZED = re.compile(r"^(?P<head>[a-z ]+?)(\((?P<args>[0-9, ]+)\))?(?P<tail>( [a-z ]+)?)(?P<array>(\[\])*)$")
_INTEGERS = ["smallint", "integer", "bigint"]
_TEXTS = {"text", "character varying", "character"}
_TIMES = {"timestamp with time zone", "timestamp without time zone", "time without time zone"}
# What an incremental column may be: compared with a point in time.
CHANGE_TYPES = {"timestamp with time zone", "timestamp without time zone", "date"}


def split_type(type_name: str) -> tuple[str, list[int], str] | None:
    """(name, size arguments, array brackets) of a type's spelling; None for one this cannot read."""
    m = _SIZED.match(type_name)
    if not m:
        return None
    args = [int(a) for a in (m.group("args") or "").replace(" ", "").split(",") if a]
    return m.group("head") + m.group("tail"), args, m.group("array")


def underlying(col: Column) -> str:
    """A domain compares as its base type (its CHECKs then judge each value as it is copied)."""
    return (col.underlying or col.base_type) if col.is_domain else col.type


def is_change_time(col: Column) -> bool:
    """A timestamp or a date, not an array of them: it can say when a row changed."""
    split = split_type(underlying(col))
    return split is not None and split[0] in CHANGE_TYPES and not split[2]


def columns_compatible(source: Column, target: Column) -> bool:
    return types_compatible(source.type, target.type) or types_compatible(underlying(source), underlying(target))


def types_compatible(source: str, target: str) -> bool:
    """Whether every value of production's type loads into staging's type without loss."""
    if source == target:
        return True
    s, t = split_type(source), split_type(target)
    if s is None or t is None or s[2] != t[2]:
        return False
    (sname, sargs, _), (tname, targs, _) = s, t
    if tname == "text" or (tname == "character varying" and not targs):
        return sname in _TEXTS
    if sname == tname == "character varying":
        return bool(sargs) and targs[0] >= sargs[0]
    if sname in _INTEGERS and tname in _INTEGERS:
        return _INTEGERS.index(tname) >= _INTEGERS.index(sname)
    if tname == "numeric":
        return _numeric_fits(sname, sargs, targs)
    if (sname, tname) in {("real", "double precision"), ("json", "jsonb")}:
        return True
    # Fractional-second precision may grow, never shrink (6 when unspecified).
    return sname == tname and sname in _TIMES and (targs or [6])[0] >= (sargs or [6])[0]


def _numeric_fits(sname: str, sargs: list[int], targs: list[int]) -> bool:
    if not targs:
        return sname in _INTEGERS or sname == "numeric"
    if sname == "numeric" and sargs:
        sp, ss = sargs[0], (sargs[1] if len(sargs) > 1 else 0)
        tp, ts = targs[0], (targs[1] if len(targs) > 1 else 0)
        return ts >= ss and tp - ts >= sp - ss
    return False
