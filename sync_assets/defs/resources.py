"""Dagster resources: the two databases (URLs from EnvVar, so the UI never shows them) and the sync that
runs between them; the ops delegate to it."""

from __future__ import annotations

from dagster import AssetExecutionContext, ConfigurableResource, OpExecutionContext

from sync_assets.defs.checks import Evidence
from sync_assets.defs.failures import failure_for
from sync_assets.engine import (
    PRODUCTION_ENV,
    STAGING_ENV,
    Endpoint,
    Observer,
    Pause,
    RawValues,
    SyncConfig,
    SyncError,
    SyncResult,
    TableKey,
    compare_now,
    raw_values_now,
    run_sync,
)


class ProductionDatabase(ConfigurableResource):
    """The source: only ever read, in read-only sessions."""

    url: str

    def endpoint(self) -> Endpoint:
        return Endpoint("production", PRODUCTION_ENV, self.url)


class StagingDatabase(ConfigurableResource):
    """The target: changed only inside the sync's one swap transaction."""

    url: str

    def endpoint(self) -> Endpoint:
        return Endpoint("staging", STAGING_ENV, self.url)


class RunLog(Observer):
    """The engine's lines into Dagster's run log (warnings as warnings); failpoints from the environment,
    read once per run (the fault tests strike run workers that way)."""

    def __init__(self, context: AssetExecutionContext | OpExecutionContext) -> None:
        super().__init__(Pause.from_environment())
        self.context = context

    def info(self, message: str) -> None:
        self.context.log.info(message)

    def warning(self, message: str) -> None:
        self.context.log.warning(message)


class SyncResource(ConfigurableResource):
    """The sync's I/O for the ops: they say what to sync, this runs it against the two databases and turns
    every engine error into one clear Dagster Failure, credentials redacted."""

    production: ProductionDatabase
    staging: StagingDatabase

    def endpoints(self) -> tuple[Endpoint, Endpoint]:
        try:
            return self.production.endpoint(), self.staging.endpoint()
        except SyncError as exc:
            raise failure_for(exc) from None

    def run(
        self,
        config: SyncConfig,
        selected: set[TableKey] | None,
        observer: Observer,
        *,
        reconcile: bool = False,
        dry_run: bool = False,
    ) -> SyncResult:
        source, target = self.endpoints()
        try:
            return run_sync(source, target, config, selected, observer=observer, dry_run=dry_run, reconcile=reconcile)
        except Exception as exc:
            failure = failure_for(exc, source, target)
            if isinstance(exc, SyncError):
                raise failure from None
            raise failure from exc

    def raw_values_now(self, config: SyncConfig, keys: set[TableKey]) -> dict[TableKey, RawValues | str]:
        """The masked tables' raw values left in staging, now; where they cannot be judged, why."""
        source, target = self.endpoints()
        try:
            return dict(raw_values_now(source, target, config, keys))
        except Exception as exc:
            problem = failure_for(exc, source, target).description or type(exc).__name__
            return dict.fromkeys(keys, problem)

    def evidence_now(self, config: SyncConfig, keys: set[TableKey]) -> dict[TableKey, Evidence]:
        """Both sides of tables the run did not sync, as they are now; where they cannot be read, every
        check still says something: that it could not judge, and why."""
        source, target = self.endpoints()
        try:
            return {k: Evidence.now(c) for k, c in compare_now(source, target, config, keys).items()}
        except Exception as exc:
            problem = failure_for(exc, source, target).description or type(exc).__name__
            return {k: Evidence.missing(problem) for k in keys}
