"""How the swap writes rows: foreign keys checked per key or per row, and staging's own triggers silenced.

Staging's own triggers and rules on the synced tables (the common `BEFORE UPDATE ... last_update = now()`,
a tsvector kept up to date, an audit insert) would rewrite the rows the sync writes, or act on them: staging
would then differ from production in those columns, and every later run would "update" the same rows
again. So by default (staging_triggers: auto) they do not fire on the rows the sync writes, as with
pg_restore --disable-triggers, without a superuser:

- where the staging role may set session_replication_role (GRANT SET ON PARAMETER, PostgreSQL 15+),
  inserts and updates run in replica mode: ordinary triggers and rules stay silent, and foreign keys are
  checked once per key by the sync (replica.py) instead of once per row;
- triggers that replica mode does not silence (ENABLE REPLICA / ALWAYS ones, DELETE triggers: deletes run
  in origin mode so that staging's ON DELETE actions work), or all of them without that grant, are
  disabled by the tables' owner inside the swap transaction (ALTER TABLE ONLY ... DISABLE TRIGGER) and
  enabled again, as they were, before COMMIT. That takes a SHARE ROW EXCLUSIVE lock on those tables:
  readers go on reading (they see the old rows until COMMIT); writers to those tables wait for the COMMIT.
  Nothing of it outlives the transaction: a failed or killed run rolls the ALTERs back with the rows.

Where neither is possible (the role owns not the table and may not set the parameter), `auto` lets them
fire and warns, and the content check then shows any row they changed; `skip` refuses before any row
moves; `fire` lets them fire by choice (and checks foreign keys row by row).

Replica mode is not used when a table of the run has a deferrable primary key, unique or exclusion
constraint: those are rechecked by triggers too, which replica mode would silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from sync_assets.engine.config import StagingTriggers
from sync_assets.engine.errors import SyncError
from sync_assets.engine.plan import SyncPlan
from sync_assets.engine.sql import ident

# pg_trigger.tgtype bits of the row events a sync's statements raise.
_TG_INSERT, _TG_DELETE, _TG_UPDATE = 1 << 2, 1 << 3, 1 << 4
# tgenabled / ev_enabled: which session_replication_role lets it fire.
_FIRES_IN = {"origin": ("O", "A"), "replica": ("R", "A")}
_ENABLE = {"O": "ENABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}


@dataclass(frozen=True)
class StagingTrigger:
    """One of staging's own triggers (or rules) on a table of the run, or on one of its partitions."""

    schema: str
    table: str
    name: str
    enabled: str  # O, R or A
    upserts: bool  # fires on INSERT or UPDATE
    deletes: bool  # fires on DELETE
    rule: bool
    owned: bool  # the staging role may ALTER its table
    of: tuple[str, str]  # the table of the run it is on (itself, or the partitioned table it is part of)

    def fires(self, replica: bool) -> bool:
        """Whether the sync's writes set it off: inserts and updates in replica mode or not, deletes never."""
        return (self.upserts and self.enabled in _FIRES_IN["replica" if replica else "origin"]) or (
            self.deletes and self.enabled in _FIRES_IN["origin"]
        )

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}.{self.name}"

    def alter(self, enable: bool) -> sql.Composable:
        """ALTER TABLE ONLY (a partition's own trigger, not its children's) to disable it or restore it."""
        action = _ENABLE[self.enabled] if enable else "DISABLE"
        kind = "RULE" if self.rule else "TRIGGER"
        return sql.SQL("ALTER TABLE ONLY {} {} {} {}").format(
            ident((self.schema, self.table)), sql.SQL(action), sql.SQL(kind), sql.Identifier(self.name)
        )


@dataclass(frozen=True)
class WritePath:
    replica: bool  # inserts and updates with session_replication_role = replica, foreign keys checked per key
    silenced: tuple[StagingTrigger, ...]  # disabled inside the swap transaction
    firing: tuple[StagingTrigger, ...]  # staging's own that fire on the rows written
    info: tuple[str, ...]
    warning: str | None = None

    def disable(self, cur: psycopg.Cursor) -> None:
        for trigger in self.silenced:
            cur.execute(trigger.alter(enable=False))

    def restore(self, cur: psycopg.Cursor) -> None:
        for trigger in self.silenced:
            cur.execute(trigger.alter(enable=True))


# Enabled user triggers and rules on the tables and, for partitioned tables, on their partitions.
_TRIGGERS_SQL = """
WITH rels AS (
    SELECT t.relid FROM unnest(%(tables)s::regclass[]) r(rel), pg_partition_tree(r.rel) t
    UNION SELECT r.rel FROM unnest(%(tables)s::regclass[]) r(rel)
)
SELECT n.nspname, c.relname, tg.tgname, tg.tgenabled::text,
       (tg.tgtype & %(upserts)s) <> 0, (tg.tgtype & %(deletes)s) <> 0, false,
       pg_has_role(c.relowner, 'USAGE'), ARRAY[rn.nspname, rc.relname]
FROM pg_trigger tg JOIN rels ON rels.relid = tg.tgrelid
JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class rc ON rc.oid = coalesce(pg_partition_root(c.oid), c.oid) JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE NOT tg.tgisinternal AND tg.tgenabled <> 'D'
UNION ALL
SELECT n.nspname, c.relname, r.rulename, r.ev_enabled::text, r.ev_type IN ('2', '3'), r.ev_type = '4', true,
       pg_has_role(c.relowner, 'USAGE'), ARRAY[rn.nspname, rc.relname]
FROM pg_rewrite r JOIN rels ON rels.relid = r.ev_class
JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class rc ON rc.oid = coalesce(pg_partition_root(c.oid), c.oid) JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE r.rulename <> '_RETURN' AND r.ev_enabled <> 'D'
ORDER BY 1, 2, 3
"""


def _staging_triggers(cur: psycopg.Cursor, plan: SyncPlan) -> list[StagingTrigger]:
    tables = [ident(tp.table_key).as_string(cur) for tp in plan.tables]
    cur.execute(_TRIGGERS_SQL, {"tables": tables, "upserts": _TG_INSERT | _TG_UPDATE, "deletes": _TG_DELETE})
    return [StagingTrigger(*row[:-1], of=(row[-1][0], row[-1][1])) for row in cur.fetchall()]


def _deferrable_uniques(cur: psycopg.Cursor, plan: SyncPlan) -> list[str]:
    cur.execute(
        "SELECT conrelid::regclass::text || '.' || conname FROM pg_constraint"
        " WHERE conrelid = ANY(%s::regclass[]) AND contype IN ('p', 'u', 'x') AND condeferrable ORDER BY 1",
        ([ident(tp.table_key).as_string(cur) for tp in plan.tables],),
    )
    return [r[0] for r in cur.fetchall()]


def _may_set_replica(cur: psycopg.Cursor) -> bool:
    try:
        with cur.connection.transaction():
            cur.execute("SET LOCAL session_replication_role = replica")
            cur.execute("SET LOCAL session_replication_role = origin")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def _names(triggers: tuple[StagingTrigger, ...] | list[StagingTrigger]) -> str:
    shown = ", ".join(t.qualified for t in triggers[:5])
    return shown + (f" and {len(triggers) - 5} more" if len(triggers) > 5 else "")


def choose(cur: psycopg.Cursor, plan: SyncPlan, setting: StagingTriggers | str) -> WritePath:
    """How this run writes, decided before any row moves; SyncError when `skip` cannot be honoured."""
    user = cur.connection.info.user
    triggers = _staging_triggers(cur, plan)
    if setting == StagingTriggers.FIRE:
        firing = tuple(t for t in triggers if t.fires(replica=False))
        info = ["foreign keys are checked row by row (staging_triggers: fire)"]
        if firing:
            info.append(
                f"staging's own triggers {_names(firing)} fire on the rows the sync writes (staging_triggers: "
                "fire); where they change a row, staging differs from production in it"
            )
        return WritePath(False, (), firing, tuple(info))
    deferrable = _deferrable_uniques(cur, plan)
    replica = not deferrable and _may_set_replica(cur)
    if replica:
        info = ["foreign keys are checked once per key over the rows written (session_replication_role = replica)"]
    elif deferrable:
        info = [f"foreign keys are checked row by row: {deferrable[0]} is deferrable, which replica mode skips"]
    else:
        info = [
            "foreign keys are checked row by row (grant the staging role SET on session_replication_role to "
            "check them once per key, much faster)"
        ]
    loud = [t for t in triggers if t.fires(replica)]
    silenced = tuple(t for t in loud if t.owned)
    firing = tuple(t for t in loud if not t.owned)
    quiet = len(triggers) - len(loud)
    if quiet:
        info.append(f"{quiet} of staging's own triggers and rules stay silent in replica mode")
    if silenced:
        info.append(
            f"staging's own triggers {_names(silenced)} are disabled for the swap, so the rows the sync writes "
            "stay equal to production (enabled again before COMMIT; writers to those tables wait for it)"
        )
    if not firing:
        return WritePath(replica, silenced, (), tuple(info))
    grant = f"GRANT SET ON PARAMETER session_replication_role TO {user}"
    why = (
        f"staging's own triggers {_names(firing)} would fire on the rows the sync writes and may change them: "
        f"the staging role {user} does not own their tables, so it cannot disable them"
        + ("" if replica else f", and may not set session_replication_role ({grant})")
    )
    if setting == StagingTriggers.SKIP:
        raise SyncError(f"'staging_triggers: skip' cannot be honoured: {why}; nothing was changed")
    warning = (
        f"{why}. They fire: where they change a row, staging differs from production in it (the content check "
        "says where). Make the role the tables' owner, or set staging_triggers: fire to accept this, or skip "
        "to refuse"
    )
    return WritePath(replica, silenced, firing, tuple(info), warning)
