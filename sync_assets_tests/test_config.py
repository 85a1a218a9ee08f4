"""The YAML config: defaults, every setting, and a clear error for every mistake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sync_assets.engine import ConfigError, SyncConfig, TableRef, load_config, parse_config
from sync_assets.engine.connections import SessionLimits


def test_no_file_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNC_ASSETS_CONFIG", raising=False)
    assert load_config() == SyncConfig()
    assert SyncConfig().schemas == ("public",) and SyncConfig().orphans == "delete"


def test_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(
        "schemas: [public, sales]\n"
        "preserve: [users, sales.quote_requests, {schema: public, table: 'odd.name'}]\n"
        "exclude: [audit_log]\n"
        "orphans: fail\n"
        "lock_timeout: 500ms\n"
        "workers: 2\n"
        "retries: 5\n"
        "retry_delay_seconds: 0.5\n"
    )
    monkeypatch.setenv("SYNC_ASSETS_CONFIG", str(path))
    config = load_config()
    assert config.schemas == ("public", "sales")
    assert config.preserve == (
        TableRef(None, "users"),
        TableRef("sales", "quote_requests"),
        TableRef("public", "odd.name"),
    )
    assert config.exclude == (TableRef(None, "audit_log"),)
    assert (config.orphans, config.lock_timeout, config.workers, config.retries) == (
        "fail",
        timedelta(milliseconds=500),
        2,
        5,
    )
    assert config.retry_delay_seconds == 0.5
    assert parse_config({"lock_timeout": 1500}).lock_timeout == timedelta(milliseconds=1500)


def test_limits_default_and_configured() -> None:
    assert SyncConfig().session_limits() == SessionLimits(
        connect_seconds=10, statement_ms=3_600_000, idle_in_transaction_ms=300_000
    )
    assert SyncConfig().max_runtime == timedelta(minutes=30)
    config = parse_config(
        {
            "connect_timeout": "5s",
            "statement_timeout": "never",
            "idle_in_transaction_timeout": "90s",
            "max_runtime": "2h",
        }
    )
    assert config.session_limits() == SessionLimits(connect_seconds=5, statement_ms=0, idle_in_transaction_ms=90_000)
    assert config.max_runtime == timedelta(hours=2)
    assert parse_config({"statement_timeout": "250ms"}).session_limits().statement_ms == 250
    assert parse_config({"max_runtime": "never"}).max_runtime is None


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"schema": ["public"]}, "unknown setting 'schema'"),
        ({"orphans": "keep"}, "'orphans' must be 'delete' or 'fail', got 'keep'"),
        ({"schemas": "public"}, "'schemas' must be a list of non-empty names"),
        ({"schemas": []}, "'schemas' must name at least one schema"),
        ({"preserve": "users"}, "'preserve' must be a list of table names"),
        ({"exclude": [1]}, "'exclude' entry 1 must be 'table', 'schema.table'"),
        ({"lock_timeout": "soon"}, "'lock_timeout' must be a positive duration"),
        ({"lock_timeout": "0"}, "'lock_timeout' must be a positive duration"),
        ({"workers": 0}, "'workers' must be a whole number from 1 to 64, got 0"),
        ({"workers": True}, "'workers' must be a whole number from 1 to 64"),
        ({"retries": -1}, "'retries' must be a whole number from 0 to 20"),
        ({"retry_delay_seconds": "x"}, "'retry_delay_seconds' must be a number >= 0"),
        ({"preserve": ["users"], "exclude": ["users"]}, "table users is listed under both 'preserve' and 'exclude'"),
        ({"statement_timeout": "0s"}, "'statement_timeout' must be longer than zero, got '0s'"),
        ({"connect_timeout": "never"}, "'connect_timeout' must be a duration such as '90s'"),
        ({"idle_in_transaction_timeout": 5}, "'idle_in_transaction_timeout' must be a duration such as '90s'"),
        ({"max_runtime": "30 minutes"}, "'max_runtime' must be a duration such as '90s', '5min', '2h' or '7d' or 'nev"),
        (["public"], "the config must be a mapping of settings, got list"),
    ],
)
def test_bad_values(data: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "sync.yaml")
    assert fragment in str(err.value)
    assert str(err.value).startswith("sync.yaml: ")


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SYNC_ASSETS_CONFIG file .*missing.yaml: cannot be read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schemas: [public\norphans: delete\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line \d"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == SyncConfig()
