"""Staging's sequences behind copied columns, moved past the highest value the swap wrote, never back."""

from __future__ import annotations

import psycopg
from psycopg import sql

from sync_assets.engine.errors import about_table
from sync_assets.engine.sql import ident
from sync_assets.engine.table_run import TableRun


def advance(cur: psycopg.Cursor, runs: list[TableRun], apply: bool = True) -> dict[str, int]:
    """Move each sequence past its column's highest value (lowest for descending ones). Returns the
    sequences moved (apply=False, a dry run: that would move) and their new values."""
    moved: dict[str, int] = {}
    for run in runs:
        for seq in run.plan.sequences:
            seq_ident = sql.Identifier(seq.schema, seq.name)
            agg = sql.SQL("max" if seq.increment > 0 else "min")
            with about_table("advancing the sequences of", run.qualified):
                # Without ONLY: inheritance children draw from the parent's sequence too. A dry run
                # inserted nothing, so the new rows are looked for in the shadow.
                col = sql.Identifier(seq.column)
                cur.execute(
                    sql.SQL("SELECT {agg}(v)::bigint FROM (SELECT {col} FROM {table} UNION ALL {extra}) x(v)").format(
                        agg=agg,
                        col=col,
                        table=ident(run.key),
                        extra=sql.SQL("SELECT {} FROM {}").format(col, run.shadow)
                        if not apply
                        else sql.SQL("SELECT NULL"),
                    )
                )
                extreme = cur.fetchone()[0]
                if extreme is None:
                    continue
                cur.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(seq_ident))
                last, is_called = cur.fetchone()
                upcoming = last + seq.increment if is_called else last
                if (upcoming > extreme) if seq.increment > 0 else (upcoming < extreme):
                    continue
                if apply:
                    cur.execute("SELECT setval(%s::regclass, %s, true)", (seq_ident.as_string(cur), extreme))
            moved[f"{seq.schema}.{seq.name}"] = int(extreme)
    return moved
