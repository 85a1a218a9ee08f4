"""Shadow tables: where a run lands production's rows in staging before the swap.

A shadow is an unlogged, constraint-free table in the bookkeeping schema with staging's types. A table
in incremental mode read only partly (rows changed since its watermark) may have a second shadow holding
the keys of every production row, so deletes are found without moving whole rows (fingerprints.py decides
whether any were deleted at all).
"""

from __future__ import annotations

from enum import StrEnum

import psycopg
from psycopg import sql

from sync_assets.engine.sql import cols, match, not_null
from sync_assets.engine.table_plan import TablePlan

BOOKKEEPING_SCHEMA = "sync_assets"
SHADOW_PREFIX = "shadow_"
KEYS_SUFFIX = "_keys"
BUCKETS_SUFFIX = "_buckets"
STAGING_BUCKETS_SUFFIX = "_staging_buckets"


class Keys(StrEnum):
    """How a table read partly learns which rows production deleted (fingerprints.py, compare.py)."""

    NOT_NEEDED = "not needed"  # read whole: the shadow holds every row
    UNCHANGED = "unchanged"  # the key fingerprints match: nothing was deleted, no key shadow
    COPIED = "copied"  # every production key copied into the key shadow
    BUCKETS = "buckets"  # compared by keyed row hashes (compare.py): the shadow holds the differing buckets


class ShadowName(sql.Identifier):
    """A shadow's qualified name that still knows its parts (sql.Identifier keeps them private)."""

    def __init__(self, name: str) -> None:
        super().__init__(BOOKKEEPING_SCHEMA, name)
        self.name = name

    @classmethod
    def of_run(cls, run_tag: str, index: int) -> ShadowName:
        return cls(f"{SHADOW_PREFIX}{run_tag}_{index}")

    @property
    def keys(self) -> ShadowName:
        """The keys-only companion of a shadow."""
        return ShadowName(self.name + KEYS_SUFFIX)

    @property
    def buckets(self) -> ShadowName:
        """Scratch for production's buckets while a table is compared by hashes (compare.py)."""
        return ShadowName(self.name + BUCKETS_SUFFIX)

    @property
    def staging_buckets(self) -> ShadowName:
        """Scratch for staging's buckets, computed meanwhile in a session of its own."""
        return ShadowName(self.name + STAGING_BUCKETS_SUFFIX)

    @property
    def companions(self) -> tuple[ShadowName, ...]:
        return (self, self.keys, self.buckets, self.staging_buckets)


def create_shadow(
    conn: psycopg.Connection, plan: TablePlan, shadow: sql.Identifier, columns: tuple[str, ...] | None = None
) -> None:
    """An unlogged, constraint-free table with exactly staging's types for the copied columns."""
    target = sql.Identifier(plan.target.schema, plan.target.name)
    conn.execute(
        sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
            shadow, cols(columns or plan.columns), target
        )
    )


def snapshot_rows(
    plan: TablePlan, shadow: ShadowName, keys: Keys, columns: tuple[str, ...], same: sql.Composable | None = None
) -> sql.Composable:
    """A relation (for FROM) holding these columns of every row the snapshot has.

    Fully read, that is the shadow. Partly read, it is the changed rows from the shadow plus staging's
    rows that are neither changed nor deleted: staging held the watermark's state of the rest. Compared
    by hashes, it is the shadow's rows plus staging's rows in the buckets found equal (`same`, compare.py).
    """
    if keys == Keys.BUCKETS:
        assert same is not None
        return sql.SQL("(SELECT {} FROM {} UNION ALL SELECT {} FROM {} t WHERE {})").format(
            cols(columns), shadow, cols(columns, "t"), plan.target.relation(), same
        )
    if not plan.partial:
        return shadow
    if keys == Keys.COPIED:
        if set(columns) <= set(plan.key):
            return shadow.keys
        kept = sql.SQL("EXISTS (SELECT 1 FROM {} k WHERE {})").format(shadow.keys, match("k", plan.key, "t", plan.key))
    else:  # nothing was deleted (fingerprints.py): staging's rows with a key are all still in production
        kept = not_null("t", plan.key)
    return sql.SQL(
        "(SELECT {cols} FROM {shadow} UNION ALL SELECT {tcols} FROM {rel} t"
        " WHERE {kept} AND NOT EXISTS (SELECT 1 FROM {shadow} s WHERE {in_shadow}))"
    ).format(
        cols=cols(columns),
        tcols=cols(columns, "t"),
        shadow=shadow,
        rel=plan.target.relation(),
        kept=kept,
        in_shadow=match("s", plan.key, "t", plan.key),
    )
