"""A PostgreSQL server of our own in a local folder (for the demo and the tests): initdb + pg_ctl.

Binaries: SYNC_ASSETS_PG_BIN, else pg_ctl on PATH, else Debian's /usr/lib/postgresql/N/bin, else the
pgserver wheel's. The server refuses to run as root, so as root it runs as `postgres` or `nobody`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

SUPERUSER = "postgres"
# Fast and disposable: these servers hold demo and test data only.
FAST_SETTINGS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB"
)


def find_bin_dir() -> Path:
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
        raise RuntimeError(
            "no PostgreSQL server binaries: install PostgreSQL (e.g. apt-get install postgresql) or "
            "`pip install pgserver`"
        ) from exc
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unprivileged_user() -> str | None:
    """None when we are not root; else an account the server may run as."""
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
class LocalPostgres:
    """One server: its folder (data, socket, log), TCP port on 127.0.0.1, and superuser password."""

    base: Path
    port: int
    password: str
    user: str | None = None  # OS account running the server (None: the current one)
    bin_dir: Path | None = None

    def __post_init__(self) -> None:
        self.base = Path(self.base).resolve()
        if self.bin_dir is None:
            self.bin_dir = find_bin_dir()
        if self.user is None:
            self.user = unprivileged_user()

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        assert self.bin_dir is not None
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]], check=check, capture_output=True, text=True, user=self.user,
            cwd=self.base, env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        )  # fmt: skip

    def _own(self, path: Path) -> None:
        if self.user:
            account = pwd.getpwnam(self.user)
            os.chown(path, account.pw_uid, account.pw_gid)

    def init(self) -> None:
        """initdb with password authentication over TCP and trust on the private socket."""
        self.base.mkdir(parents=True, exist_ok=True)
        self._own(self.base)
        os.chmod(self.base, 0o700)
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        try:
            self._cmd(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--pwfile", str(pwfile), "--auth-local=trust",
                "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def running(self) -> bool:
        return self._cmd("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def start(self, settings: str = FAST_SETTINGS) -> None:
        if self.running():
            return
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 {settings}"
        done = self._cmd(
            "pg_ctl", "-D", str(self.data_dir), "-o", opts, "-l", str(self.base / "log"), "-w", "start", check=False
        )
        if done.returncode != 0:
            log = (self.base / "log").read_text(errors="replace")[-2000:] if (self.base / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}: {done.stderr.strip()}\n{log}")

    def stop(self, mode: str = "fast") -> None:
        if self.initialized:
            self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def url(self, dbname: str, user: str = SUPERUSER, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{quote(user, safe='')}:{quote(secret, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None):
        return psycopg.connect(self.url(dbname, user, password), autocommit=True)

    def database_exists(self, name: str) -> bool:
        with self.connect() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
