"""`python -m sync_assets.demo`: an embedded PostgreSQL with a cruise site's production and an older staging,
one sync through Dagster, a summary, then the Dagster UI with the schedule and sensor on. Ctrl-C stops all.

Running it again reuses the data folder (default .demo): nothing is seeded twice.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sync_assets.demo import data, people
from sync_assets.demo.localpg import SUPERUSER, LocalPostgres
from sync_assets.demo.process import dagster_cli, dagster_dev, start_group, stop_group

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"postgres": "demo-postgres-pw", "reader": "demo-reader-pw", "app": "demo-app-pw"}
DATABASES = ("production", "staging", "dagster")
SCHEDULE, SENSOR = "sync_every_6_hours", "production_changes"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def data_folder(requested: Path, server_user: str | None) -> Path:
    """The server's own user must be able to reach its folder; a root-only home is not reachable."""
    requested = requested.resolve()
    if server_user is None:
        return requested
    probe = subprocess.run(["test", "-x", str(requested.parent)], user=server_user, check=False)
    if probe.returncode == 0:
        return requested
    digest = hashlib.sha256(str(requested).encode()).hexdigest()[:12]
    fallback = Path(tempfile.gettempdir()) / f"sync_assets_demo_{digest}"
    say(f"{requested.parent} is not reachable by the '{server_user}' user the server runs as; using {fallback}")
    return fallback


def prepare_server(folder: Path, port: int) -> LocalPostgres:
    server = LocalPostgres(folder / "postgres", port, PASSWORDS["postgres"])
    server.base = data_folder(folder, server.user) / "postgres"
    if not server.initialized:
        say(f"creating a PostgreSQL server in {server.base}")
        server.base.parent.mkdir(parents=True, exist_ok=True)
        server.init()
    say(f"starting PostgreSQL on 127.0.0.1:{port}")
    server.start()
    return server


def _filled(server: LocalPostgres, db: str) -> bool:
    with server.connect(db) as conn:
        return conn.execute("SELECT to_regclass('public.cruises') IS NOT NULL").fetchone()[0]


def seed(server: LocalPostgres, scale: float) -> None:
    """Roles as a managed service would have them (none a superuser), three databases, the demo data.

    Each database is filled in one transaction: an interrupted fill leaves it empty, and the next run
    fills it again."""
    with server.connect() as admin:
        for role in ("reader", "app"):
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORDS[role]}'")
        for db in DATABASES:
            if not server.database_exists(db):
                owner = {"production": SUPERUSER, "staging": "app", "dagster": SUPERUSER}[db]
                admin.execute(f"CREATE DATABASE {db} OWNER {owner} TEMPLATE template0")
    if not _filled(server, "production"):
        say(f"filling production (scale {scale})")
        with server.connect("production") as prod, prod.transaction():
            prod.execute(data.SCHEMA + people.SCHEMA)
            prod.execute(data.base_data(scale))
            prod.execute(people.data(scale))
            prod.execute(data.production_moves_on(scale))
            prod.execute(people.production_moves_on(scale))
            prod.execute("GRANT USAGE ON SCHEMA public TO reader")
            prod.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
    if not _filled(server, "staging"):
        say("filling staging: an older copy plus its own users, quote requests and saved searches")
        with server.connect("staging") as admin:
            admin.execute("ALTER SCHEMA public OWNER TO app")
        with server.connect("staging", "app", PASSWORDS["app"]) as staging, staging.transaction():
            staging.execute(data.SCHEMA + people.SCHEMA)
            staging.execute(data.base_data(scale))
            staging.execute(people.data(scale))  # raw: copied before masking was switched on
            staging.execute(data.staging_own_data(scale))


def mask_key(folder: Path) -> str:
    """The demo's masking key: made once per data folder, readable by its owner only, so that later runs
    mask alike (a new key would rewrite every masked value)."""
    path = folder / "mask_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def environment(server: LocalPostgres, folder: Path) -> dict[str, str]:
    """What `dagster dev` needs: the two databases, the config, and an instance on the embedded server."""
    home = folder / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    config = folder / "sync.yaml"
    config.write_text(
        "# The demo's sync config\npreserve: [users, quote_requests, saved_searches]\n# Personal data\n" + people.MASKS
    )
    return {
        "SYNC_ASSETS_MASK_KEY": os.environ.get("SYNC_ASSETS_MASK_KEY") or mask_key(folder),
        "DATABASE_URL_PRODUCTION": server.url("production", "reader", PASSWORDS["reader"]),
        "DATABASE_URL_STAGING": server.url("staging", "app", PASSWORDS["app"]),
        "SYNC_ASSETS_CONFIG": str(config),
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": server.url("dagster").replace("postgresql://", "postgresql+psycopg2://"),
    }


def sync_once() -> bool:
    """Run sync_job in this process, recorded in the demo's instance, and print what it did."""
    import pandas as pd
    from dagster import DagsterInstance

    from sync_assets.definitions import build_definitions

    say("running sync_job once")
    started = time.monotonic()
    job = build_definitions().resolve_job_def("sync_job")
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
    rows = []
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        rows.append(
            {
                "table": "/".join(event.asset_key.path[1:]),
                "rows": meta["dagster/row_count"].value,
                "inserted": meta["rows_inserted"].value,
                "updated": meta["rows_updated"].value,
                "deleted": meta["rows_deleted"].value,
                "seconds": round(meta["seconds"].value, 2),
            }
        )
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    if rows:
        print(pd.DataFrame(rows).to_string(index=False))
    passed = sum(1 for c in checks if c.passed)
    for check in checks:
        if not check.passed:
            say(f"check {check.check_name} on {check.asset_key.to_user_string()} FAILED: {check.description}")
    say(
        f"sync {'succeeded' if result.success else 'FAILED'} in {time.monotonic() - started:.1f}s; "
        f"{passed} of {len(checks)} checks passed"
    )
    if not result.success:
        for failure in result.get_step_failure_events():
            say(f"failure: {failure.message}")
    return result.success


def switch_on_automation(env: dict[str, str]) -> None:
    for kind, name in (("schedule", SCHEDULE), ("sensor", SENSOR)):
        done = subprocess.run(
            dagster_cli(kind, "start", name, "-w", "workspace.yaml"),
            env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        output = (done.stdout + done.stderr).strip()
        if done.returncode == 0 or "already running" in output:
            say(f"{kind} {name} is on")
        else:
            say(f"could not switch on {kind} {name}: {output.splitlines()[-1] if output else done.returncode}")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def serve(env: dict[str, str], port: int, folder: Path) -> None:
    """dagster dev in its own process group, so Ctrl-C here stops it (and its daemon) as a whole. It runs
    in the demo's folder: in the repository Dagster would warn about the dagster.yaml it finds there."""
    proc = start_group(dagster_dev(port, ROOT / "workspace.yaml"), {**os.environ, **env}, folder)
    say(f"Dagster UI on http://127.0.0.1:{port} — press Ctrl-C to stop everything")
    try:
        proc.wait()
    except KeyboardInterrupt:
        say("stopping Dagster")
        stop_group(proc, timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync_assets.demo", description=__doc__)
    parser.add_argument("--dir", default=".demo", type=Path, help="data folder, reused by later runs")
    parser.add_argument("--scale", default=1.0, type=float, help="1 = 5,000 cruises and 300,000 prices")
    parser.add_argument("--pg-port", default=54329, type=int, help="port of the embedded PostgreSQL")
    parser.add_argument("--port", default=3000, type=int, help="port of the Dagster UI")
    parser.add_argument("--no-serve", action="store_true", help="seed and sync once, then stop (for CI)")
    args = parser.parse_args(argv)

    # Ctrl-C and `kill` stop the demo cleanly, even when it was started with SIGINT ignored (in the background).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    server = prepare_server(args.dir, args.pg_port)
    try:
        seed(server, args.scale)
        env = environment(server, server.base.parent)
        os.environ.update(env)
        ok = sync_once()
        if args.no_serve:
            return 0 if ok else 1
        switch_on_automation(env)
        serve(env, args.port, server.base.parent)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        say("stopping PostgreSQL")
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
