"""What a database holds (tables, columns, keys, foreign keys, sequences, enum types) as plain values.

Read from pg_catalog by introspect.py; pg_catalog's one-letter codes become the enums below there, so no
other module compares letters."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from psycopg import sql

# Built-in types whose `=` holds only for identical values, so `IS DISTINCT FROM` finds every change.
# Types such as numeric (1.0 = 1.00), interval ('1 day' = '24 hours'), jsonb, float (-0 = 0) or
# json/point (no `=` at all) are compared through their text form instead.
_EXACT_EQUALITY = {
    "smallint", "integer", "bigint", "boolean", "text", "character varying", "character", "bytea",
    "uuid", "date", "timestamp without time zone", "timestamp with time zone", "time without time zone",
    "\"char\"", "name", "oid", "bit", "bit varying", "macaddr", "macaddr8",
}  # fmt: skip


TableKey = tuple[str, str]  # (schema, name)


def qualified(key: TableKey) -> str:
    return f"{key[0]}.{key[1]}"


class Identity(StrEnum):
    """An identity column's kind; the values are pg_attribute.attidentity's codes (so cached catalogs load)."""

    NONE = ""
    ALWAYS = "a"  # GENERATED ALWAYS: written only with OVERRIDING SYSTEM VALUE, never by UPDATE
    BY_DEFAULT = "d"


class FkAction(StrEnum):
    """What deleting a referenced row does; the values are pg_constraint.confdeltype's codes."""

    NO_ACTION = "a"
    RESTRICT = "r"
    CASCADE = "c"
    SET_NULL = "n"
    SET_DEFAULT = "d"

    @property
    def keeps_row(self) -> bool:
        """The referencing row stays (its reference cleared) when its parent row goes."""
        return self in (FkAction.SET_NULL, FkAction.SET_DEFAULT)


@dataclass(frozen=True)
class Column:
    name: str
    attnum: int
    type: str  # format_type with schema-qualified user types, e.g. numeric(10,2) or public.cruise_status[]
    base_type: str  # the type without typmod, domains resolved to their base, arrays to their element
    is_array: bool
    is_enum: bool
    not_null: bool
    has_default: bool
    generated: bool  # stored generated column
    identity: Identity
    binary_portable: bool  # COPY BINARY output of one database loads into another
    deterministic_collation: bool = True
    is_domain: bool = False
    underlying: str = ""  # a domain's base type with its size, e.g. numeric(5,0); else the type itself

    @property
    def exact_equality(self) -> bool:
        return self.is_enum or (self.base_type in _EXACT_EQUALITY and self.deterministic_collation)


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]
    deferrable: bool = False
    on_delete: FkAction = FkAction.NO_ACTION
    # Declared on one partition of the table rather than on the table (as a dump of such a schema creates
    # them): it constrains that partition's rows only. None: declared on the table itself.
    declared_on: tuple[str, str] | None = None
    # Every leaf partition declares the same reference: rows not yet routed to a partition (a shadow)
    # must satisfy it whichever partition they land in.
    on_every_partition: bool = False

    @property
    def ref(self) -> tuple[str, str]:
        return (self.ref_schema, self.ref_table)


@dataclass(frozen=True)
class ColumnSequence:
    """A sequence a column draws from: owned by it (serial, identity) or named by its default
    (`DEFAULT nextval('actor_actor_id_seq')` without OWNED BY, perhaps shared with other tables)."""

    schema: str
    name: str
    column: str
    increment: int
    owned: bool = True


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique_keys: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    sequences: tuple[ColumnSequence, ...] = ()
    # Columns whose default draws from a sequence in any form (nextval(...) alone, or within an expression).
    sequence_defaults: tuple[str, ...] = ()
    comment: str | None = None
    partitioned: bool = False
    estimated_rows: int = 0
    size_bytes: int = 0
    inherits: tuple[tuple[str, str], ...] = ()  # the tables it inherits from (not partitioning), in order

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def relation(self) -> sql.Composable:
        """The table in a FROM clause: ONLY for plain tables, since inheritance children are tables of
        their own; partitioned tables whole, since their rows live in the partitions."""
        ident = sql.Identifier(self.schema, self.name)
        return ident if self.partitioned else sql.SQL("ONLY {}").format(ident)

    def fk_relation(self, fk: ForeignKey) -> sql.Composable:
        """The rows a foreign key of this table constrains, in a FROM clause: the partition it is declared
        on (with its own partitions, if any), else the table's own rows."""
        if fk.declared_on is not None:
            return sql.Identifier(*fk.declared_on)
        return self.relation()

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def row_key(self) -> tuple[str, ...]:
        """Columns that identify a row: the primary key, else a unique key of NOT NULL columns."""
        if self.primary_key:
            return self.primary_key
        for cols in self.unique_keys:
            if all((c := self.column(n)) is not None and c.not_null for n in cols):
                return cols
        return ()


@dataclass(frozen=True)
class Catalog:
    tables: dict[tuple[str, str], Table]
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    encoding: str = "UTF8"  # the database's server encoding

    def get(self, schema: str, name: str) -> Table | None:
        return self.tables.get((schema, name))

    def in_schemas(self, schemas: tuple[str, ...] | list[str]) -> list[Table]:
        return sorted((t for t in self.tables.values() if t.schema in schemas), key=lambda t: t.key)

    def referencing(self, schema: str, name: str) -> list[tuple[Table, ForeignKey]]:
        """Every (table, foreign key) pointing at schema.name, self-references included."""
        found = []
        for table in sorted(self.tables.values(), key=lambda t: t.key):
            for fk in table.foreign_keys:
                if fk.ref == (schema, name):
                    found.append((table, fk))
        return found

    def to_json(self) -> str:
        return json.dumps(
            {
                "tables": [asdict(t) for t in sorted(self.tables.values(), key=lambda t: t.key)],
                "enums": self.enums,
                "encoding": self.encoding,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Catalog:
        data = json.loads(text)
        tables = {}
        for t in data["tables"]:
            table = Table(
                **{
                    **t,
                    "columns": tuple(Column(**{**c, "identity": Identity(c["identity"])}) for c in t["columns"]),
                    "primary_key": tuple(t["primary_key"]),
                    "unique_keys": tuple(tuple(k) for k in t["unique_keys"]),
                    "foreign_keys": tuple(
                        ForeignKey(
                            **{
                                **fk,
                                "columns": tuple(fk["columns"]),
                                "ref_columns": tuple(fk["ref_columns"]),
                                "declared_on": tuple(fk["declared_on"]) if fk.get("declared_on") else None,
                                "on_delete": FkAction(fk.get("on_delete", "a")),
                            }
                        )
                        for fk in t["foreign_keys"]
                    ),
                    "sequences": tuple(ColumnSequence(**s) for s in t["sequences"]),
                    "sequence_defaults": tuple(t.get("sequence_defaults", ())),
                    "inherits": tuple(tuple(p) for p in t.get("inherits", ())),
                }
            )
            tables[table.key] = table
        enums = {k: tuple(v) for k, v in data["enums"].items()}
        return cls(tables=tables, enums=enums, encoding=data.get("encoding", "UTF8"))
