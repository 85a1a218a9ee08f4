"""Bad URLs and unreachable servers: one clear sentence naming the side, never the password."""

from __future__ import annotations

import pytest

from sync_assets.engine import PRODUCTION_ENV, STAGING_ENV, Endpoint, SyncConfig, run_sync
from sync_assets.engine.errors import ConfigError, ConnectError, SyncError
from sync_assets_tests.conftest import Pair, closed_port
from sync_assets_tests.pgcluster import PROD_READER, STAGING_OWNER


def run(source_url: str, target_url: str) -> None:
    run_sync(Endpoint("production", PRODUCTION_ENV, source_url), Endpoint("staging", STAGING_ENV, target_url),
             SyncConfig())  # fmt: skip


def test_unreachable_production_names_the_side(pair: Pair) -> None:
    url = f"postgresql://prod_reader:Pa55word-XYZ@127.0.0.1:{closed_port()}/prod"
    with pytest.raises(ConnectError) as err:
        run(url, pair.staging_url)
    message = str(err.value)
    assert message.startswith("the production database at 127.0.0.1:")
    assert "is unreachable (connection refused); check DATABASE_URL_PRODUCTION's host and port" in message
    assert "Pa55word-XYZ" not in message


def test_wrong_staging_password(pair: Pair) -> None:
    url = pair.staging_url.replace("staging-S3cret%2Fpw", "not-the-Pa55word")
    assert url != pair.staging_url
    with pytest.raises(ConnectError) as err:
        run(pair.prod_url, url)
    message = str(err.value)
    assert "the staging database at 127.0.0.1:" in message
    assert "rejected the password for user 'staging_owner'; fix the credentials in DATABASE_URL_STAGING" in message
    assert "not-the-Pa55word" not in message and STAGING_OWNER[1] not in message


def test_missing_database(pair: Pair) -> None:
    url = pair.prod_url.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(ConnectError) as err:
        run(url, pair.staging_url)
    assert "does not exist on 127.0.0.1:" in str(err.value)
    assert "fix the database name in DATABASE_URL_PRODUCTION" in str(err.value)
    assert PROD_READER[1] not in str(err.value)


def test_unknown_host() -> None:
    with pytest.raises(ConnectError, match=r"unreachable \(unknown host 'no-such-host.invalid'\)"):
        run("postgresql://u:pw@no-such-host.invalid/x", "postgresql://u:pw@127.0.0.1/y")


@pytest.mark.parametrize("url", ["", "   ", "not a url at all", "postgresql://u:pw@host:notaport/db"])
def test_invalid_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        Endpoint("staging", STAGING_ENV, url)
    assert "DATABASE_URL_STAGING" in str(err.value)
    assert "pw" not in str(err.value).replace("postgresql://user:password", "")


def test_same_database_is_refused_by_url(pair: Pair) -> None:
    with pytest.raises(SyncError, match="point at the same database"):
        run(pair.staging_url, pair.staging_url)


def test_same_database_is_refused_behind_another_host_name(pair: Pair) -> None:
    """Through the unix socket instead of TCP: only the server's identity tells it is the same database."""
    via_socket = f"postgresql://{STAGING_OWNER[0]}@/{pair.staging_db}?host={pair.cluster.base}&port={pair.cluster.port}"
    source = Endpoint("production", PRODUCTION_ENV, via_socket)
    assert source.describe() != pair.target.describe()
    with pytest.raises(SyncError) as err:
        run_sync(source, pair.target, SyncConfig())
    assert "refusing to sync a database onto itself" in str(err.value)
    with pair.staging() as staging:
        assert staging.execute("SELECT to_regnamespace('sync_assets')").fetchone()[0] is None


def test_secrets_cover_every_spelling() -> None:
    endpoint = Endpoint("staging", STAGING_ENV, "postgresql://me:p%40ss%2Fword@db.example:5433/app")
    assert endpoint.redact("x p@ss/word y p%40ss%2Fword z") == "x *** y *** z"
    assert endpoint.describe() == "db.example:5433/app"


def test_a_short_password_is_hidden_without_mangling_other_words(pair: Pair) -> None:
    endpoint = Endpoint("production", PRODUCTION_ENV, f"postgresql://u:p@127.0.0.1:{closed_port()}/prod")
    with pytest.raises(ConnectError) as err:
        run_sync(endpoint, pair.target, SyncConfig())
    message = str(err.value)
    assert message.startswith("the production database at 127.0.0.1:")
    assert "is unreachable (connection refused); check DATABASE_URL_PRODUCTION's host and port" in message
    assert endpoint.redact("postgresql://u:p@h/x failed: p") == "postgresql://u:***@h/x failed: ***"
    assert (
        endpoint.redact("password 'p' of user u at p@h, pp, top, 2p")
        == "password '***' of user u at ***@h, pp, top, 2p"
    )
