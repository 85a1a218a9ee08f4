"""Benchmark: sync_assets against a raw COPY pipe and pg_dump | pg_restore, on the same data, same run.

    python benchmarks/run.py --scales 0.01 0.1 1 --reps 3

Two PostgreSQL servers of our own (production, staging) in --dir. At scale 1 production holds about 1 GB
(the cruise schema, 10 million prices). Per scale, alternating and repeated, median reported:
  (a) raw pipe   psql \\copy (select ...) to stdout (binary) | psql \\copy ... from stdin (binary), per
                 table, into bare tables (no keys, no indexes)
  (b) pg_dump    pg_dump -Fc --data-only | pg_restore --data-only, same tables, bare tables
  (c) sync full  sync_assets into an empty staging that keeps its keys, indexes and staging-only rows
  (d) resync     sync_assets after about 1% of production's rows changed, every row read and compared
                 (resync: copy, a full reconciliation)
  (e) incremental  the same after another 1%, the keyed big tables in mode incremental: only rows changed
                 since the last run are read (by updated_at), deletes found by fingerprints, then keys
  (f) sync full without the content check: (c) with content_matches' fingerprints switched off in the
                 benchmark's own process, alternating with (c), so that their difference is what the check costs
  (h) sync full, masked  (c) with the demo's masks (people.MASKS: every personal column of travel agents,
                 bookings and webhook payloads), run before (c) and (f), so that its difference to (c) is
                 what masking costs (its "ratio to sync full" less 1)
  (g) resync by hashes  the same after another 1%, every table in mode mirror, resync: hashes (the
                 default): both sides hash their rows in buckets, only the differing buckets' rows are read
  floor          (a) into tables with staging's primary keys, unique keys and indexes (foreign keys not
                 checked per row: the sync checks them once per key): what loading the rows costs
  slow link      (a) and (g) with production behind a rate-limited proxy on loopback (200 Mbit/s,
                 benchmarks/proxy.py); their ratio is to the raw pipe through the same link
For each: wall seconds, MB/s of production data, ratio to (a), peak RSS of the process tree, WAL bytes
written on staging, the worst latency a staging reader saw meanwhile, and for the syncs the seconds they
spent on content_matches' fingerprints (and their share of the run), the bytes they read from production
(COPY data: rows and bucket hashes; the raw pipe's is its table data), and the scratch space they used on
staging: the largest the tool's schema and temp tables were (polled) and the temp files written. Results go to
--out/results.md (and results.png: seconds against scale).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.proxy import SlowLink  # noqa: E402
from sync_assets.demo import data, people  # noqa: E402
from sync_assets.demo.localpg import LocalPostgres, free_port  # noqa: E402
from sync_assets.engine.introspect import introspect  # noqa: E402
from sync_assets.engine.mask_key import KEY_ENV  # noqa: E402

PASSWORD = "bench-pw"
READER, SYNCER = "bench_reader", "bench_syncer"  # production's read-only role; staging's writer
DEMO_PER_BENCH_SCALE = 33.0  # demo scale 1 is ~30 MB; bench scale 1 ~1 GB
# Durable like a real server (fsync on); roomy WAL so checkpoints do not dominate.
SETTINGS = "-c shared_buffers=256MB -c max_wal_size=8GB -c checkpoint_timeout=30min -c max_connections=100"
# The big tables get an updated_at that production's application (a trigger here) keeps current.
INCREMENTAL = ("cruises", "itineraries", "price_snapshots", "pricing")
PARENTS_FIRST = ("cruise_lines", "ships", "ports", "regions", "cabin_categories", "cruises", "itineraries", "pricing",
                 "price_snapshots", "webhook_events", "travel_agents", "bookings")  # fmt: skip
SLOW_LINK = 200e6 / 8  # bytes per second: 200 Mbit/s
SYNCED = ("cabin_categories", "cruise_lines", "cruises", "itineraries", "ports", "price_snapshots", "pricing",
          "regions", "ships", "webhook_events", "travel_agents", "bookings")  # fmt: skip
MASK_KEY = "the benchmark's masking key, long enough"


@dataclass
class Measure:
    seconds: float
    peak_rss_mb: float = 0.0
    wal_bytes: int = 0
    worst_read_ms: float = 0.0
    fingerprint_seconds: float = 0.0  # of the sync's seconds, spent on the content check's fingerprints
    bytes_read: int = 0  # COPY data read from production
    scratch_bytes: int = 0  # the largest the sync's schema and temp tables in staging were
    temp_file_bytes: int = 0  # temp files written on staging


def sh(command: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, env={**os.environ, **(env or {})},
                   stdout=subprocess.DEVNULL)  # fmt: skip


class Bench:
    def __init__(self, folder: Path) -> None:
        self.prod = LocalPostgres(folder / "production", free_port(), PASSWORD)
        self.staging = LocalPostgres(folder / "staging", free_port(), PASSWORD)
        for server in (self.prod, self.staging):
            if not server.initialized:
                server.init()
            server.start(SETTINGS)
        # The sync runs as users of managed PostgreSQL would: no superuser on either side.
        with self.prod.connect() as admin:
            create_role(admin, READER)
            admin.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(READER)))
        with self.staging.connect() as admin:
            create_role(admin, SYNCER)
            admin.execute(
                sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(sql.Identifier(SYNCER))
            )

    def stop(self) -> None:
        self.prod.stop()
        self.staging.stop()

    # -- data -------------------------------------------------------------------------------------

    def build(self, scale: float) -> int:
        demo_scale = scale * DEMO_PER_BENCH_SCALE
        with self.prod.connect() as admin:
            admin.execute("DROP DATABASE IF EXISTS production WITH (FORCE)")
            admin.execute("CREATE DATABASE production")
        with self.prod.connect("production") as conn:
            conn.execute(data.SCHEMA + people.SCHEMA)
            conn.execute(data.base_data(demo_scale))
            conn.execute(people.data(demo_scale))
            add_change_column(conn, production=True)
            conn.execute("VACUUM ANALYZE")
            size = conn.execute(
                "SELECT sum(pg_table_size(format('%%I', t)::regclass))::bigint FROM unnest(%s::text[]) t",
                (list(SYNCED),),
            ).fetchone()[0]
        with self.staging.connect() as admin:
            for db in ("staging_template", "bare_template", "keyed_template"):
                admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                admin.execute(f"CREATE DATABASE {db}")
        with self.staging.connect("staging_template") as conn:
            conn.execute(data.SCHEMA + people.SCHEMA)  # keys, indexes, foreign keys: as a real staging keeps them
            add_change_column(conn, production=False)
            conn.execute("INSERT INTO users (email) SELECT 'tester' || i || '@staging' FROM generate_series(1, 200) i")
            syncer = sql.Identifier(SYNCER)
            for grant in (
                "GRANT USAGE, CREATE ON SCHEMA public TO {}",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
                "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}",
            ):
                conn.execute(sql.SQL(grant).format(syncer))
        with self.staging.connect("bare_template") as conn:
            conn.execute(data.SCHEMA + people.SCHEMA)
            add_change_column(conn, production=False)
            strip_constraints(conn)
        with self.staging.connect("keyed_template") as conn:
            conn.execute(data.SCHEMA + people.SCHEMA)  # keys and indexes; generated columns written by the COPY
            add_change_column(conn, production=False)
            drop_generated(conn)
            drop_foreign_keys(conn)
        return int(size)

    def settle(self) -> None:
        """A checkpoint on both servers, so that no contender pays for the WAL the one before it wrote."""
        for server in (self.prod, self.staging):
            with server.connect() as admin:
                admin.execute("CHECKPOINT")

    def fresh(self, db: str, template: str) -> None:
        with self.staging.connect() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {db} TEMPLATE {template}")
            # For the sync's bookkeeping schema; a database's own grants do not come from its template.
            grant = sql.SQL("GRANT CREATE ON DATABASE {} TO {}")
            admin.execute(grant.format(sql.Identifier(db), sql.Identifier(SYNCER)))

    def change_one_percent(self, round_: int) -> None:
        """Updates, deletes and inserts, about 1% of the rows; other rows each round."""
        updated, deleted = round_ % 50, 50 + round_ % 50
        with self.prod.connect("production") as conn:
            conn.execute("UPDATE pricing SET price = price + 1 WHERE id %% 100 = %s", (updated,))
            conn.execute("UPDATE cruises SET status = 'cancelled' WHERE id %% 100 = %s", (updated,))
            conn.execute("UPDATE itineraries SET notes = 'moved' WHERE cruise_id %% 100 = %s", (updated,))
            conn.execute("DELETE FROM price_snapshots WHERE cruise_id %% 100 = %s", (deleted,))
            conn.execute(
                "INSERT INTO price_snapshots (cruise_id, captured_at, cheapest)"
                " SELECT c, now(), 1 FROM generate_series(1, (SELECT max(id) FROM cruises), 100) c"
            )

    # -- the contenders ---------------------------------------------------------------------------

    def raw_pipe(self, port: int | None = None, keys: bool = False) -> Measure:
        """Every table COPYed from production (through `port`, a slow link) into bare tables, or (keys) into
        tables with the primary keys, indexes and foreign keys staging has, parents first: the floor."""
        db, template = ("floor", "keyed_template") if keys else ("bare", "bare_template")
        self.fresh(db, template)
        self.settle()
        env = {"PGPASSWORD": PASSWORD}
        wal_before = self.wal_lsn()
        started = time.monotonic()
        for table in PARENTS_FIRST:
            sh(
                f"psql -X -q -h 127.0.0.1 -p {port or self.prod.port} -U postgres -d production"
                f" -c '\\copy (SELECT * FROM {table}) TO STDOUT (FORMAT binary)'"
                f" | psql -X -q -h 127.0.0.1 -p {self.staging.port} -U postgres -d {db}"
                f" -c '\\copy {table} FROM STDIN (FORMAT binary)'",
                env,
            )
        return Measure(time.monotonic() - started, wal_bytes=self.wal_lsn() - wal_before)

    def dump_restore(self) -> Measure:
        self.fresh("bare", "bare_template")
        self.settle()
        env = {"PGPASSWORD": PASSWORD}
        tables = " ".join(f"-t {t}" for t in SYNCED)
        wal_before = self.wal_lsn()
        started = time.monotonic()
        sh(
            f"pg_dump -h 127.0.0.1 -p {self.prod.port} -U postgres -Fc --data-only {tables} production"
            f" | pg_restore -h 127.0.0.1 -p {self.staging.port} -U postgres --data-only -d bare",
            env,
        )
        return Measure(time.monotonic() - started, wal_bytes=self.wal_lsn() - wal_before)

    def sync(
        self,
        fresh: bool,
        reconcile: bool = False,
        content_check: bool = True,
        config_text: str | None = None,
        port: int | None = None,
    ) -> Measure:
        """A sync run in its own process; the big tables are incremental, so their first run (fresh) and
        a reconciling run read every row, and other runs only what changed since the previous one."""
        if fresh:
            self.fresh("staging", "staging_template")
        self.settle()
        config = Path(tempfile.mkstemp(suffix=".yaml")[1])
        config.write_text(CONFIG if config_text is None else config_text)
        wal_before, temp_before = self.wal_lsn(), self.temp_bytes()
        reader = Reader(self.staging.url("staging"))
        reader.start()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        production = self.prod.url("production", READER, PASSWORD)
        if port is not None:  # through the slow link
            production = production.replace(f":{self.prod.port}/", f":{port}/")
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", SYNC_SCRIPT if content_check else NO_CONTENT_CHECK + SYNC_SCRIPT,
             production,
             self.staging.url("staging", SYNCER, PASSWORD), str(config),
             "reconcile" if reconcile else ""],
            check=True, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, KEY_ENV: MASK_KEY},
        )  # fmt: skip
        seconds = time.monotonic() - started
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        worst = reader.stop()
        config.unlink()
        fingerprints, read = done.stdout.strip().splitlines()[-1].split()
        return Measure(
            seconds,
            max(rss, before) / 1024,
            self.wal_lsn() - wal_before,
            worst * 1000,
            float(fingerprints),
            int(read),
            reader.scratch,
            self.temp_bytes() - temp_before,
        )

    def verify(self) -> None:
        """The synced staging holds production's rows (order-independent fingerprint per table)."""
        fingerprint = sql.SQL("SELECT count(*), sum(hashtextextended(t::text, 0)) FROM {} t")
        with self.prod.connect("production") as prod, self.staging.connect("staging") as staging:
            for table in SYNCED:
                query = fingerprint.format(sql.Identifier(table))
                if prod.execute(query).fetchone() != staging.execute(query).fetchone():
                    raise SystemExit(f"staging's {table} differs from production's after the incremental run")

    def temp_bytes(self) -> int:
        with self.staging.connect() as conn:
            return int(conn.execute("SELECT temp_bytes FROM pg_stat_database WHERE datname = 'staging'").fetchone()[0])

    def wal_lsn(self) -> int:
        with self.staging.connect() as conn:
            return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


# Runs here follow each other within seconds: a 5-minute overlap would read the previous round's changes
# again, which a six-hourly schedule never does. So the benchmark reads back nothing.
CONFIG = "preserve: [users, quote_requests, saved_searches]\nincremental_overlap: 0s\ntables:\n" + "".join(
    f"  {t}: {{mode: incremental}}\n" for t in INCREMENTAL
)

# (d): every row read, as before keyed hashes; (g): every table a mirror, compared by keyed hashes.
COPY_CONFIG = CONFIG + "resync: copy\n"
MIRROR_CONFIG = "preserve: [users, quote_requests, saved_searches]\n"
# (h): (c) with the demo's masks.
MASKED_CONFIG = CONFIG + people.MASKS

SYNC_SCRIPT = """
import sys
from sync_assets.engine import Endpoint, Observer, load_config, run_sync
result = run_sync(Endpoint("production", "DATABASE_URL_PRODUCTION", sys.argv[1]),
                  Endpoint("staging", "DATABASE_URL_STAGING", sys.argv[2]), load_config(sys.argv[3]),
                  observer=Observer(), reconcile=sys.argv[4] == "reconcile")
print(result.fingerprint_seconds, sum(t.bytes for t in result.tables.values()))
"""


# For (f) only: the fingerprints are not taken (the checks would then report "not compared").
NO_CONTENT_CHECK = """
import sync_assets.engine.content
sync_assets.engine.content.take = lambda *args, **kwargs: sync_assets.engine.content.Unavailable("switched off")
"""


def create_role(admin: psycopg.Connection, name: str) -> None:
    if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(PASSWORD)))


def add_change_column(conn: psycopg.Connection, production: bool) -> None:
    """updated_at on the big tables; production's is kept current by a trigger and indexed."""
    if production:
        conn.execute(
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$"
        )
    for table in INCREMENTAL:
        name = sql.Identifier(table)
        # Existing rows get an old time without rewriting the table; new rows get now().
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN updated_at timestamptz NOT NULL DEFAULT '2020-01-01'").format(name)
        )
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN updated_at SET DEFAULT now()").format(name))
        if production:
            conn.execute(
                sql.SQL("CREATE TRIGGER {} BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION touch()").format(
                    sql.Identifier(f"{table}_touch"), name
                )
            )
            conn.execute(sql.SQL("CREATE INDEX ON {} (updated_at)").format(name))


def drop_generated(conn: psycopg.Connection) -> None:
    """Generated columns become plain ones, which COPY fills with production's values."""
    for table in introspect(conn, ["public"]).tables.values():
        for column in table.columns:
            if column.generated:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP EXPRESSION").format(
                        sql.Identifier(table.schema, table.name), sql.Identifier(column.name)
                    )
                )


def drop_foreign_keys(conn: psycopg.Connection) -> None:
    """A foreign key checked per row by its trigger is no floor: the sync checks them once per key."""
    for table in introspect(conn, ["public"]).tables.values():
        for fk in table.foreign_keys:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(table.schema, table.name), sql.Identifier(fk.name)
                )
            )


def strip_constraints(conn: psycopg.Connection) -> None:
    """Bare tables for the raw pipe: no keys, no indexes, no generated columns (identity columns stay: COPY
    writes them, and pg_restore sets their sequences)."""
    drop_generated(conn)
    drop_foreign_keys(conn)
    catalog = introspect(conn, ["public"])
    for table in catalog.tables.values():
        name = sql.Identifier(table.schema, table.name)
        rows = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'c')",
            (name.as_string(conn),),
        ).fetchall()
        for (conname,) in rows:
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {} CASCADE").format(name, sql.Identifier(conname)))
        for column in table.columns:
            col = sql.Identifier(column.name)
            if column.not_null and not column.identity:
                conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(name, col))
    for (index,) in conn.execute(
        "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
        " WHERE c.relnamespace = 'public'::regnamespace"
    ).fetchall():
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))


class Reader(threading.Thread):
    """A staging reader during the sync: point lookups and a count, its slowest answer recorded; and
    every tenth round, the size of the sync's scratch (its schema, temp tables), its largest recorded."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.worst, self.scratch, self.halt = url, 0.0, 0, threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            rounds = 0
            while not self.halt.is_set():
                started = time.monotonic()
                conn.execute("SELECT count(*) FROM users").fetchone()
                conn.execute("SELECT * FROM cruises WHERE id = 1").fetchall()
                self.worst = max(self.worst, time.monotonic() - started)
                rounds += 1
                if rounds % 10 == 0:
                    self.scratch = max(self.scratch, int(conn.execute(SCRATCH).fetchone()[0]))
                time.sleep(0.01)

    def stop(self) -> float:
        self.halt.set()
        self.join()
        return self.worst


# Relations of the sync's schema and of temp schemas (the swap's marks), which only the sync makes here.
SCRATCH = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND (n.nspname = 'sync_assets' OR n.nspname LIKE 'pg\\_temp\\_%')
"""


def median(measures: list[Measure]) -> Measure:
    return Measure(
        statistics.median(m.seconds for m in measures),
        max(m.peak_rss_mb for m in measures),
        int(statistics.median(m.wal_bytes for m in measures)),
        max(m.worst_read_ms for m in measures),
        statistics.median(m.fingerprint_seconds for m in measures),
        int(statistics.median(m.bytes_read for m in measures)),
        max(m.scratch_bytes for m in measures),
        max(m.temp_file_bytes for m in measures),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args()
    bench = Bench(args.dir.resolve())
    rows = []
    try:
        for scale in args.scales:
            size = bench.build(scale)
            results: dict[str, list[Measure]] = {"raw pipe": [], "pg_dump → pg_restore": [], "sync full": [],
                                                 "resync after 1%": [], "incremental after 1%": [],
                                                 "resync by hashes after 1%": [],
                                                 "sync full, no content check": [],
                                                 "sync full, masked": [],
                                                 "floor: raw pipe into keyed tables": [],
                                                 "raw pipe, slow link": [],
                                                 "resync by hashes after 1%, slow link": []}  # fmt: skip
            for rep in range(args.reps):
                print(f"scale {scale}: repetition {rep + 1}/{args.reps}", flush=True)
                results["raw pipe"].append(bench.raw_pipe())
                results["pg_dump → pg_restore"].append(bench.dump_restore())
                # (h) first: the runs after (c) and (f) then start from staging as an unmasked sync left it.
                results["sync full, masked"].append(bench.sync(fresh=True, config_text=MASKED_CONFIG))
                # (c) and (f) take turns going first, so that neither always follows the other.
                for check in (True, False) if rep % 2 else (False, True):
                    name = "sync full" if check else "sync full, no content check"
                    results[name].append(bench.sync(fresh=True, content_check=check))
                bench.change_one_percent(4 * rep)
                results["resync after 1%"].append(bench.sync(fresh=False, reconcile=True, config_text=COPY_CONFIG))
                bench.change_one_percent(4 * rep + 1)
                results["incremental after 1%"].append(bench.sync(fresh=False))
                bench.change_one_percent(4 * rep + 2)
                results["resync by hashes after 1%"].append(bench.sync(fresh=False, config_text=MIRROR_CONFIG))
                results["floor: raw pipe into keyed tables"].append(bench.raw_pipe(keys=True))
                with SlowLink(bench.prod.port, SLOW_LINK) as link:
                    results["raw pipe, slow link"].append(bench.raw_pipe(port=link.port))
                    bench.change_one_percent(4 * rep + 3)
                    slow = bench.sync(fresh=False, config_text=MIRROR_CONFIG, port=link.port)
                    results["resync by hashes after 1%, slow link"].append(slow)
            bench.verify()
            full = median(results["sync full"]).seconds
            for name, measures in results.items():
                m = median(measures)
                # Over the slow link, the raw pipe through the same link is the measure.
                base = median(results["raw pipe, slow link" if "slow link" in name else "raw pipe"]).seconds
                if name.startswith(("raw pipe", "floor")):
                    m.bytes_read = size
                rows.append((scale, size, name, m, m.seconds / base, m.seconds / full))
    finally:
        bench.stop()
    write_report(rows, args.out)
    return 0


def write_report(rows: list, out: Path) -> None:
    import pandas as pd

    def hashed(m: Measure, value: object) -> object:
        return value if m.fingerprint_seconds >= 0.005 else "-"

    frame = pd.DataFrame(
        [
            {
                "scale": scale,
                "production MB": round(size / 1e6),
                "contender": name,
                "seconds": round(m.seconds, 2),
                "MB/s": round(size / 1e6 / m.seconds, 1),
                "ratio to raw pipe": round(ratio, 2),
                "ratio to sync full": round(to_full, 2),
                "peak RSS MB": round(m.peak_rss_mb) if m.peak_rss_mb else "-",
                "staging WAL MB": round(m.wal_bytes / 1e6, 1) if m.wal_bytes else "-",
                "worst read ms": round(m.worst_read_ms, 1) if m.worst_read_ms else "-",
                # Seconds spent hashing for content_matches, summed over the readers that run side by side:
                # more than the wall time they add, which (c) against (f) measures.
                "content check s": round(m.fingerprint_seconds, 2) if m.fingerprint_seconds >= 0.005 else "-",
                "content check share": f"{m.fingerprint_seconds / m.seconds:.1%}"
                if m.fingerprint_seconds >= 0.005
                else "-",
                "MB read from production": round(m.bytes_read / 1e6, 1) if m.bytes_read else "-",
                "read share of table data": f"{m.bytes_read / size:.1%}" if m.bytes_read else "-",
                "peak scratch MB": round(m.scratch_bytes / 1e6, 1) if m.scratch_bytes else "-",
                "temp files MB": round(m.temp_file_bytes / 1e6, 1) if m.temp_file_bytes else "-",
            }
            for scale, size, name, m, ratio, to_full in rows
        ]
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(frame.to_markdown(index=False) + "\n")
    print(frame.to_markdown(index=False))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, group in frame.groupby("contender"):
        ax.plot(group["scale"], group["seconds"], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("scale (1 ≈ 1 GB)")
    ax.set_ylabel("seconds (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
