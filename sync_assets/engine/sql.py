"""Small pieces of composed SQL shared by the steps; every name goes through sql.Identifier."""

from __future__ import annotations

from psycopg import sql

TableKey = tuple[str, str]


def ident(key: TableKey) -> sql.Identifier:
    return sql.Identifier(*key)


def cols(names: tuple[str, ...] | list[str], alias: str | None = None) -> sql.Composable:
    """a, b, c — or t.a, t.b, t.c with an alias."""
    if alias is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(alias, n) for n in names)


def match(left: str, left_cols: tuple[str, ...], right: str, right_cols: tuple[str, ...]) -> sql.Composable:
    """left.a = right.x AND left.b = right.y"""
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(left, a), sql.Identifier(right, b))
        for a, b in zip(left_cols, right_cols, strict=True)
    )


def not_null(alias: str, names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(alias, n)) for n in names)


def as_text(names: tuple[str, ...] | list[str], alias: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(alias, n)) for n in names)


def fmt_sample(rows: list[tuple]) -> str:
    return "; ".join("(" + ", ".join("NULL" if v is None else str(v) for v in r) + ")" for r in rows)
