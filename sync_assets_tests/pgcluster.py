"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl, as an unprivileged user when run as root."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "super-Secret-pw"
# Test roles; none is a superuser, as on managed PostgreSQL.
PROD_OWNER = ("prod_owner", "owner-S3cret#pw")
PROD_READER = ("prod_reader", "reader-S3cret@pw")
STAGING_OWNER = ("staging_owner", "staging-S3cret/pw")


def find_bin_dir() -> Path:
    """SYNC_ASSETS_PG_BIN, else pg_ctl on PATH, else Debian's /usr/lib/postgresql/N/bin, else the pgserver
    wheel's binaries."""
    if os.environ.get("SYNC_ASSETS_PG_BIN"):
        return Path(os.environ["SYNC_ASSETS_PG_BIN"])
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError as exc:
        raise RuntimeError("no PostgreSQL binaries: install postgresql or the pgserver wheel") from exc
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """The server refuses to run as root: pick an unprivileged account when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres or nobody) exists")


@dataclass
class Cluster:
    bin_dir: Path
    base: Path
    port: int
    user: str | None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def _cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), check=check, capture_output=True, text=True, user=self.user, cwd=self.base,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        )  # fmt: skip

    @classmethod
    def start(cls) -> Cluster:
        bin_dir = find_bin_dir()
        base = Path(tempfile.mkdtemp(prefix="sync_assets_pg_"))
        user = _run_as()
        cluster = cls(bin_dir=bin_dir, base=base, port=_free_port(), user=user)
        pwfile = base / "pw"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        if user:
            pw = pwd.getpwnam(user)
            os.chown(base, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(base, 0o700)
        cluster._cmd(
            str(bin_dir / "initdb"), "-D", str(cluster.data_dir), "-U", SUPERUSER, "--pwfile", str(pwfile),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        opts = (
            f"-p {cluster.port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
            "-c shared_buffers=128MB -c max_prepared_transactions=0"
        )
        cluster._cmd(
            str(bin_dir / "pg_ctl"), "-D", str(cluster.data_dir), "-o", opts, "-l", str(base / "log"), "-w", "start"
        )
        cluster._bootstrap()
        return cluster

    def stop(self) -> None:
        self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, dbname: str, role: tuple[str, str] = (SUPERUSER, SUPERUSER_PASSWORD)) -> str:
        user, password = role
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", role: tuple[str, str] = (SUPERUSER, SUPERUSER_PASSWORD)):
        return psycopg.connect(self.url(dbname, role), autocommit=True)

    def _bootstrap(self) -> None:
        with self.connect() as conn:
            for name, password in (PROD_OWNER, PROD_READER, STAGING_OWNER):
                conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
            conn.execute(f"ALTER ROLE {STAGING_OWNER[0]} CREATEDB")

    def create_database(self, name: str, owner: str, template: str = "template0") -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER {owner} TEMPLATE "{template}"')
            if template == "template0":
                with self.connect(name) as db:
                    db.execute(f"ALTER SCHEMA public OWNER TO {owner}")

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def mark_template(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
