"""A column's mask as the config gives it (`mask:`): the transform and its options, with the errors
that name the column. What SQL it becomes on production is masking.py's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sync_assets.engine.errors import ConfigError


class Transform(StrEnum):
    NULL = "null"  # NULL
    CONSTANT = "constant"  # one value for every row
    HASH = "hash"  # a keyed hash in the column's own type (text, integer, uuid, bytea)
    EMAIL = "email"  # a valid, unique, keyed address under example.com
    FIRST_NAME = "first_name"  # picked from a word list by keyed hash
    LAST_NAME = "last_name"
    FULL_NAME = "full_name"
    DIGITS = "digits"  # every digit replaced by a keyed one: length and format stay
    KEEP_LAST = "keep_last"  # all but the last N characters replaced by '*'
    SHIFT = "shift"  # a number or date moved by a keyed amount within a range
    JSON = "json"  # a transform applied at paths inside json/jsonb
    SQL = "sql"  # an SQL expression of the user's, over the row's columns


_SPAN = re.compile(r"^\s*(\d+)\s*(s|min|h|d)\s*$")
_UNITS = {"s": "seconds", "min": "minutes", "h": "hours", "d": "days"}
_INSIDE_JSON = {  # what a json path's value may become: it is read as text
    Transform.NULL, Transform.CONSTANT, Transform.HASH, Transform.EMAIL, Transform.FIRST_NAME,
    Transform.LAST_NAME, Transform.FULL_NAME, Transform.DIGITS, Transform.KEEP_LAST,
}  # fmt: skip


@dataclass(frozen=True)
class Mask:
    """One column's mask as the config gives it."""

    transform: Transform
    constant: str | None = None
    keep: int = 0  # keep_last
    by: float | timedelta | None = None  # shift: the largest move either way
    paths: tuple[tuple[str, ...], ...] = ()  # json
    inner: Mask | None = field(default=None)  # json: the transform at each path
    expression: str | None = None  # sql

    @classmethod
    def parse(cls, where: str, spec: Any) -> Mask:
        """A mask from its YAML form: a transform's name (`email`; YAML's null is `null`), or a mapping of
        one transform to its options (`{keep_last: 4}`, `{shift: 30d}`, `{json: {paths: [...], transform:
        hash}}`, `{sql: ...}`). Errors name `where`, the column as the config spells it."""
        if spec is None:
            return cls(Transform.NULL)
        if isinstance(spec, str):
            transform = _transform(where, spec)
            if transform in (Transform.CONSTANT, Transform.KEEP_LAST, Transform.SHIFT, Transform.JSON, Transform.SQL):
                raise ConfigError(f"mask {where}: {transform} needs an option, e.g. {{{transform}: ...}}")
            return cls(transform)
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ConfigError(f"mask {where}: expected a transform's name or a mapping of one transform to its options")
        name, option = next(iter(spec.items()))
        transform = _transform(where, str(name))
        if transform == Transform.CONSTANT:
            return cls(transform, constant=None if option is None else str(option))
        if transform == Transform.KEEP_LAST:
            if not isinstance(option, int) or isinstance(option, bool) or option < 0:
                raise ConfigError(f"mask {where}: keep_last needs a count of characters (0 or more), not {option!r}")
            return cls(transform, keep=option)
        if transform == Transform.SHIFT:
            return cls(transform, by=_shift_range(where, option))
        if transform == Transform.SQL:
            if not isinstance(option, str) or not option.strip():
                raise ConfigError(f"mask {where}: sql needs an SQL expression")
            return cls(transform, expression=option)
        if transform == Transform.JSON:
            return _json_mask(where, option)
        raise ConfigError(f"mask {where}: {transform} takes no options")


def _transform(where: str, name: str) -> Transform:
    try:
        return Transform(name)
    except ValueError:
        known = ", ".join(t.value for t in Transform)
        raise ConfigError(f"mask {where}: unknown transform {name!r} (known: {known})") from None


def _shift_range(where: str, option: Any) -> float | timedelta:
    if isinstance(option, (int, float)) and not isinstance(option, bool) and option > 0:
        return option
    if isinstance(option, str) and (m := _SPAN.match(option)) and int(m.group(1)) > 0:
        return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    raise ConfigError(
        f"mask {where}: shift needs the largest move, a positive number (numbers) or a duration such as 30d or"
        f" 12h (dates, timestamps), not {option!r}"
    )


def _json_mask(where: str, option: Any) -> Mask:
    if not isinstance(option, dict) or set(option) - {"paths", "transform"} or "paths" not in option:
        raise ConfigError(f"mask {where}: json needs {{paths: [a.b, ...], transform: ...}}")
    paths = option["paths"]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.strip(". ") for p in paths):
        raise ConfigError(f"mask {where}: json paths must be a list of dotted paths, e.g. [customer.email]")
    inner = Mask.parse(where, option.get("transform", "hash"))
    if inner.transform not in _INSIDE_JSON:
        raise ConfigError(f"mask {where}: {inner.transform} cannot mask a value inside json")
    return Mask(Transform.JSON, paths=tuple(tuple(p.split(".")) for p in paths), inner=inner)
