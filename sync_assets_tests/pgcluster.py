"""The tests' throwaway PostgreSQL cluster, with the roles a managed service would give: none a superuser."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from sync_assets.demo.localpg import SUPERUSER, LocalPostgres, free_port

SUPERUSER_PASSWORD = "super-Secret-pw"
PROD_OWNER = ("prod_owner", "owner-S3cret#pw")
PROD_READER = ("prod_reader", "reader-S3cret@pw")
STAGING_OWNER = ("staging_owner", "staging-S3cret/pw")
# Made by fixtures (conftest.py): staging_owner with SET on session_replication_role; a role owning nothing.
FAST_ROLE = ("staging_fast", "fast-S3cret=pw")
WRITER_ROLE = ("staging_writer", "writer-S3cret:pw")


@dataclass
class Cluster:
    server: LocalPostgres

    @property
    def base(self) -> Path:
        return self.server.base

    @property
    def port(self) -> int:
        return self.server.port

    @classmethod
    def start(cls) -> Cluster:
        server = LocalPostgres(Path(tempfile.mkdtemp(prefix="sync_assets_pg_")), free_port(), SUPERUSER_PASSWORD)
        server.init()
        server.start()
        cluster = cls(server)
        with cluster.connect() as conn:
            for name, password in (PROD_OWNER, PROD_READER, STAGING_OWNER):
                conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
            conn.execute(f"ALTER ROLE {STAGING_OWNER[0]} CREATEDB")
        return cluster

    def stop(self) -> None:
        self.server.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, dbname: str, role: tuple[str, str] = (SUPERUSER, SUPERUSER_PASSWORD)) -> str:
        return self.server.url(dbname, *role)

    def connect(self, dbname: str = "postgres", role: tuple[str, str] = (SUPERUSER, SUPERUSER_PASSWORD)):
        return psycopg.connect(self.url(dbname, role), autocommit=True)

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
