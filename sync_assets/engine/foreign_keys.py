"""The facts behind the asset checks: row counts and rows whose foreign key finds no parent."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from sync_assets.engine.catalog import ForeignKey, Table
from sync_assets.engine.sql import match, not_null


def count_rows(conn: psycopg.Connection, table: Table) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table.relation())).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class OrphanCount:
    """Rows whose foreign key `fk` finds no parent row, with a few of their key values."""

    fk: ForeignKey
    rows: int
    sample: tuple[tuple, ...]

    @property
    def constraint(self) -> str:
        return self.fk.name

    @property
    def parent(self) -> str:
        return f"{self.fk.ref_schema}.{self.fk.ref_table}"


def orphan_condition(fk: ForeignKey, parent: sql.Composable) -> sql.Composable:
    """WHERE clause on the child (alias c): its non-null foreign key matches no row of parent (alias p).

    Any NULL column means no reference at all (MATCH SIMPLE), as PostgreSQL itself checks it.
    """
    return sql.SQL("{nn} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {match})").format(
        nn=not_null("c", fk.columns), parent=parent, match=match("p", fk.ref_columns, "c", fk.columns)
    )


def count_orphans(
    cur: psycopg.Cursor, child: sql.Composable, fk: ForeignKey, parent: sql.Composable | None = None
) -> OrphanCount:
    """Rows of child whose foreign key finds no row in parent (default: the referenced table), with examples."""
    cond = orphan_condition(fk, parent if parent is not None else sql.Identifier(fk.ref_schema, fk.ref_table))
    cur.execute(sql.SQL("SELECT count(*) FROM {} c WHERE {}").format(child, cond))
    n = int(cur.fetchone()[0])
    sample: list[tuple] = []
    if n:
        cols = sql.SQL(", ").join(sql.Identifier("c", name) for name in fk.columns)
        cur.execute(sql.SQL("SELECT {} FROM {} c WHERE {} LIMIT 3").format(cols, child, cond))
        sample = cur.fetchall()
    return OrphanCount(fk, n, tuple(sample))
