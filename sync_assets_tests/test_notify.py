"""Slack notifications, posted to a local HTTP server standing in for the webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, build_run_status_sensor_context

from sync_assets.definitions import build_definitions
from sync_assets.engine import parse_config
from sync_assets_tests import cruise
from sync_assets_tests.conftest import Pair
from sync_assets_tests.pgcluster import PROD_READER, STAGING_OWNER


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXXX")
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", "http://dagster.example:3000")
    yield received
    server.shutdown()


def notify(defs, sensor_name: str, result, instance: DagsterInstance, event_type: DagsterEventType) -> None:
    run = instance.get_run_by_id(result.run_id)
    event = next(e for e in result.all_events if e.event_type == event_type)
    sensor = defs.resolve_sensor_def(sensor_name)
    context = build_run_status_sensor_context(
        sensor_name=sensor_name, dagster_event=event, dagster_instance=instance, dagster_run=run
    )
    if event_type == DagsterEventType.RUN_FAILURE:
        context = context.for_run_failure()
    sensor(context)


def test_a_finished_sync_posts_its_summary(cruise_pair: Pair, tmp_path: Path, webhook: list[dict]) -> None:
    config = parse_config(yaml.safe_load(cruise.CONFIG_YAML))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, config, cache_dir=tmp_path)
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("sync_job").execute_in_process(instance=instance)

    notify(defs, "slack_on_sync_success", result, instance, DagsterEventType.RUN_SUCCESS)

    assert len(webhook) == 1
    text = webhook[0]["text"]
    assert text.startswith(":white_check_mark: *sync_job* synced 10 table(s) in ")
    assert "65 rows inserted, 91 updated, 100 deleted, 2,064 rows in staging now." in text
    assert f"<http://dagster.example:3000/runs/{result.run_id}|Run {result.run_id[:8]}>" in text
    assert ":warning:" not in text


def test_a_failed_check_is_named(cruise_pair: Pair, tmp_path: Path, webhook: list[dict]) -> None:
    config = parse_config(yaml.safe_load(cruise.CONFIG_YAML))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, config, cache_dir=tmp_path)
    # staging gains a quote about a cruise it lacks (its FK dropped), so no_orphans fails after the sync
    cruise_pair.run_staging(
        "ALTER TABLE quote_requests DROP CONSTRAINT quote_requests_cruise_id_fkey;"
        "INSERT INTO quote_requests (user_id, cruise_id, note) VALUES (1, 99999, 'dangling')"
    )
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("sync_job").execute_in_process(instance=instance)
    notify(defs, "slack_on_sync_success", result, instance, DagsterEventType.RUN_SUCCESS)
    text = webhook[0]["text"]
    assert ":warning: check *no_orphans* on `staging/public/quote_requests` failed: " in text
    assert "row(s) reference missing public.cruises rows" in text


def test_a_failed_sync_posts_why_and_the_link(cruise_pair: Pair, tmp_path: Path, webhook: list[dict]) -> None:
    config = parse_config({**yaml.safe_load(cruise.CONFIG_YAML), "orphans": "fail"})
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, config, cache_dir=tmp_path)
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("sync_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success

    notify(defs, "slack_on_sync_failure", result, instance, DagsterEventType.RUN_FAILURE)

    text = webhook[0]["text"]
    assert text.startswith(":x: *sync_job* failed.")
    assert f"/runs/{result.run_id}|" in text
    assert "> step `sync_staging`: 4 row(s) of preserved table public.quote_requests reference" in text
    assert "nothing was changed" in text
    for secret in (PROD_READER[1], STAGING_OWNER[1]):
        assert secret not in text


def test_no_webhook_no_notification_sensors(cruise_pair: Pair, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, cache_dir=tmp_path)
    names = (
        {s.name for s in defs.resolve_all_sensor_defs()}
        if hasattr(defs, "resolve_all_sensor_defs")
        else {s.name for s in defs.get_repository_def().sensor_defs}
    )
    assert names == {"production_changes"}


def test_a_malformed_webhook_url_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from sync_assets.defs.notify import post

    # a stray space (stripped, then refused by a closed local port) and a missing scheme
    for value in (" http://127.0.0.1:9/services/T0/B0/SECRETTOKEN", "127.0.0.1:9/services/T0/B0/SECRETTOKEN"):
        monkeypatch.setenv("SLACK_WEBHOOK_URL", value)
        with pytest.raises(RuntimeError) as err:
            post("hello")
        assert "SECRETTOKEN" not in str(err.value)
        assert "SLACK_WEBHOOK_URL" in str(err.value)
