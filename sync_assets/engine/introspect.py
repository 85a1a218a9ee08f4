"""Reading a database's catalog (catalog.py's values) from pg_catalog, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, replace

import psycopg

from sync_assets.engine.catalog import Catalog, Column, ColumnSequence, FkAction, ForeignKey, Identity, Table

FIRST_USER_OID = 16384

# Schemas never synced nor inspected: the system's and the tool's own bookkeeping.
_SYSTEM_SCHEMA_FILTER = """
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
    AND n.nspname <> 'sync_assets'
"""

_TABLES_SQL = f"""
SELECT c.oid, n.nspname, c.relname, c.relkind = 'p', obj_description(c.oid, 'pg_class'),
       greatest(c.reltuples, 0)::bigint,
       -- From the statistics, not pg_table_size(): that would lock every table, and wait behind DDL.
       c.relpages::bigint * current_setting('block_size')::bigint,
       -- The tables it inherits from (inheritance, not partitioning: partitions are not listed).
       ARRAY(SELECT pn.nspname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
             JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid ORDER BY i.inhseqno),
       ARRAY(SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
             WHERE i.inhrelid = c.oid ORDER BY i.inhseqno)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND {_SYSTEM_SCHEMA_FILTER}
  AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[]))
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, a.attnum,
       format_type(a.atttypid, a.atttypmod),
       format_type(coalesce(nullif(e.oid, 0), b.oid), NULL) AS base_type,
       t.typcategory = 'A' AS is_array,
       coalesce(nullif(e.oid, 0), b.oid) IN (SELECT enumtypid FROM pg_enum) AS is_enum,
       a.attnotnull, a.atthasdef, a.attgenerated = 's', a.attidentity,
       -- Binary COPY carries type OIDs inside arrays and composites, which differ between databases;
       -- built-in scalar types, their arrays, enums and domains over them travel safely.
       CASE WHEN t.typcategory = 'A' THEN e.oid < %(first_user_oid)s AND e.typsend <> 0
            ELSE (b.oid < %(first_user_oid)s AND b.typtype IN ('b', 'r', 'm') AND b.typsend <> 0)
                 OR b.typtype = 'e' END AS binary_portable,
       coalesce(coll.collisdeterministic, true),
       t.typtype = 'd',
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type e ON e.oid = b.typelem AND t.typcategory = 'A'
LEFT JOIN pg_collation coll ON coll.oid = a.attcollation
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_CONSTRAINTS_SQL = """
SELECT con.conrelid, con.contype, con.conname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i)::text[],
       fn.nspname, fc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)::text[],
       con.condeferrable, con.confdeltype::text
FROM pg_constraint con
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.conrelid = ANY(%(oids)s) AND con.contype IN ('p', 'u', 'f')
  -- PostgreSQL keeps a copy of a foreign key for each partition of the referenced table: skip them.
  AND con.conparentid = 0
ORDER BY con.conrelid, con.contype, con.conname
"""

# Foreign keys declared on a partition of a table (not cloned from one declared on the table), with the
# leaf partitions they cover and the table's leaf partitions.
_PARTITION_FKS_SQL = """
SELECT pg_partition_root(con.conrelid)::oid, pn.nspname, pc.relname, con.conname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i)::text[],
       fn.nspname, fc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)::text[],
       con.condeferrable, con.confdeltype::text,
       ARRAY(SELECT t.relid FROM pg_partition_tree(con.conrelid) t WHERE t.isleaf)::oid[],
       ARRAY(SELECT t.relid FROM pg_partition_tree(pg_partition_root(con.conrelid)) t WHERE t.isleaf)::oid[]
FROM pg_constraint con
JOIN pg_class pc ON pc.oid = con.conrelid
JOIN pg_namespace pn ON pn.oid = pc.relnamespace
JOIN pg_class fc ON fc.oid = con.confrelid
JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND pc.relispartition
  AND pg_partition_root(con.conrelid)::oid = ANY(%(oids)s)
ORDER BY 1, pn.nspname, pc.relname, con.conname
"""

# Unique indexes that are not constraints still identify rows (no predicate, no expressions).
_UNIQUE_INDEXES_SQL = """
SELECT i.indrelid,
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
             WHERE k.o <= i.indnkeyatts  -- INCLUDE columns are not part of the key
             ORDER BY k.o)::text[]
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = ANY(%(oids)s) AND i.indisunique AND NOT i.indisprimary AND i.indpred IS NULL
  AND i.indexprs IS NULL AND i.indisvalid
  -- Indexes behind PRIMARY KEY/UNIQUE constraints are read above; a foreign key naming the index
  -- as its support does not make it a constraint's index.
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
ORDER BY i.indrelid, ic.relname
"""

# Sequences behind columns: owned by them (serial, OWNED BY, identity), or drawn by their default
# `nextval('seq')` without being owned, a sequence perhaps shared with other tables. Only a default that
# is exactly that call: a value made from it ('INV-' || nextval(...)) is not the sequence's number.
_SEQUENCES_SQL = """
SELECT relid, seq_schema, seq_name, column_name, increment, bool_or(owned)
FROM (
    SELECT d.refobjid AS relid, sn.nspname AS seq_schema, s.relname AS seq_name, a.attname AS column_name,
           seq.seqincrement AS increment, true AS owned, a.attnum
    FROM pg_depend d
    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    JOIN pg_namespace sn ON sn.oid = s.relnamespace
    JOIN pg_sequence seq ON seq.seqrelid = s.oid
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i') AND d.refobjid = ANY(%(oids)s)
    UNION ALL
    SELECT ad.adrelid, sn.nspname, s.relname, a.attname, seq.seqincrement, false, a.attnum
    FROM pg_attrdef ad
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
    JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
    JOIN pg_namespace sn ON sn.oid = s.relnamespace
    JOIN pg_sequence seq ON seq.seqrelid = s.oid
    JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
    WHERE ad.adrelid = ANY(%(oids)s)
      AND pg_get_expr(ad.adbin, ad.adrelid) = format('nextval(%%L::regclass)', s.oid::regclass)
) found
GROUP BY relid, seq_schema, seq_name, column_name, increment, attnum
ORDER BY relid, attnum, seq_schema, seq_name
"""

_SEQUENCE_DEFAULTS_SQL = """
SELECT ad.adrelid, array_agg(DISTINCT a.attname::text ORDER BY a.attname::text)
FROM pg_attrdef ad
JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
WHERE ad.adrelid = ANY(%(oids)s)
GROUP BY ad.adrelid
"""

_ENUMS_SQL = """
SELECT format_type(t.oid, NULL), array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
GROUP BY t.oid
"""


def _covering(found: list[tuple[ForeignKey, frozenset[int], frozenset[int]]]) -> list[ForeignKey]:
    """Partition foreign keys, each marked when the same reference is declared over every leaf partition."""
    covered: dict[tuple, set[int]] = {}
    for fk, covers, _ in found:
        covered.setdefault((fk.columns, fk.ref, fk.ref_columns), set()).update(covers)
    return [
        replace(fk, on_every_partition=covered[(fk.columns, fk.ref, fk.ref_columns)] >= leaves)
        for fk, _, leaves in found
    ]


def _columns(cur: psycopg.Cursor, oids: list[int]) -> dict[int, list[Column]]:
    columns: dict[int, list[Column]] = {oid: [] for oid in oids}
    cur.execute(_COLUMNS_SQL, {"oids": oids, "first_user_oid": FIRST_USER_OID})
    for relid, name, attnum, typ, base_type, is_array, is_enum, nn, hasdef, gen, ident, binok, det, dom, und in cur:
        columns[relid].append(
            Column(
                name=name,
                attnum=attnum,
                type=typ,
                base_type=base_type,
                is_array=bool(is_array),
                is_enum=bool(is_enum),
                not_null=nn,
                has_default=hasdef,
                generated=bool(gen),
                identity=Identity(ident or ""),
                binary_portable=bool(binok),
                deterministic_collation=bool(det),
                is_domain=bool(dom),
                underlying=und,
            )
        )
    return columns


@dataclass
class _Keys:
    primary: dict[int, tuple[str, ...]]
    unique: dict[int, list[tuple[str, ...]]]
    foreign: dict[int, list[ForeignKey]]


def _keys(cur: psycopg.Cursor, oids: list[int]) -> _Keys:
    """Primary, unique and foreign keys, those declared on partitions and unique indexes included."""
    keys = _Keys({}, {oid: [] for oid in oids}, {oid: [] for oid in oids})
    cur.execute(_CONSTRAINTS_SQL, {"oids": oids})
    for relid, contype, conname, cols, ref_schema, ref_table, ref_cols, deferrable, on_delete in cur:
        if contype == "p":
            keys.primary[relid] = tuple(cols)
        elif contype == "u":
            keys.unique[relid].append(tuple(cols))
        else:
            keys.foreign[relid].append(
                ForeignKey(
                    conname, tuple(cols), ref_schema, ref_table, tuple(ref_cols), deferrable, FkAction(on_delete)
                )
            )
    on_partitions: dict[int, list[tuple[ForeignKey, frozenset[int], frozenset[int]]]] = {}
    cur.execute(_PARTITION_FKS_SQL, {"oids": oids})
    for root, schema, part, name, cols, ref_schema, ref_table, ref_cols, deferrable, on_delete, covers, leaves in cur:
        declared = (schema, part)
        fk = ForeignKey(
            name, tuple(cols), ref_schema, ref_table, tuple(ref_cols), deferrable, FkAction(on_delete), declared
        )
        on_partitions.setdefault(root, []).append((fk, frozenset(covers), frozenset(leaves)))
    for root, found in on_partitions.items():
        keys.foreign[root].extend(_covering(found))
    cur.execute(_UNIQUE_INDEXES_SQL, {"oids": oids})
    for relid, cols in cur:
        keys.unique[relid].append(tuple(cols))
    return keys


def _sequences(cur: psycopg.Cursor, oids: list[int]) -> tuple[dict[int, list[ColumnSequence]], dict[int, tuple]]:
    """Per table: the sequences its columns draw from, and the columns whose default draws from any."""
    seqs: dict[int, list[ColumnSequence]] = {oid: [] for oid in oids}
    cur.execute(_SEQUENCES_SQL, {"oids": oids})
    for relid, seq_schema, seq_name, column, increment, owned in cur:
        seqs[relid].append(ColumnSequence(seq_schema, seq_name, column, int(increment), bool(owned)))
    cur.execute(_SEQUENCE_DEFAULTS_SQL, {"oids": oids})
    return seqs, {relid: tuple(cols) for relid, cols in cur}


def introspect(conn: psycopg.Connection, schemas: list[str] | tuple[str, ...] | None) -> Catalog:
    """Read the catalog of the tables in `schemas` (None: every user schema).

    Runs in one transaction with an empty search_path, so user types come out schema-qualified
    and compare equal across databases whatever their search_path.
    """
    schema_list = list(schemas) if schemas is not None else None
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL search_path = pg_catalog")
        cur.execute(_TABLES_SQL, {"schemas": schema_list})
        rows = cur.fetchall()
        oids = [r[0] for r in rows]
        columns = _columns(cur, oids)
        keys = _keys(cur, oids)
        seqs, drawing = _sequences(cur, oids)
        cur.execute(_ENUMS_SQL)
        enums = {name: tuple(labels) for name, labels in cur}
        cur.execute("SELECT getdatabaseencoding()")
        encoding = cur.fetchone()[0]
    tables = {}
    for oid, schema, name, partitioned, comment, est_rows, size, parent_schemas, parent_names in rows:
        tables[(schema, name)] = Table(
            schema=schema,
            name=name,
            columns=tuple(columns[oid]),
            primary_key=keys.primary.get(oid, ()),
            unique_keys=tuple(keys.unique[oid]),
            foreign_keys=tuple(keys.foreign[oid]),
            sequences=tuple(seqs[oid]),
            sequence_defaults=drawing.get(oid, ()),
            comment=comment,
            partitioned=bool(partitioned),
            estimated_rows=int(est_rows or 0),
            size_bytes=int(size or 0),
            inherits=tuple(zip(parent_schemas, parent_names, strict=True)),
        )
    return Catalog(tables=tables, enums=enums, encoding=encoding)
