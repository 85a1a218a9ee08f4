"""Dagster resources for the two databases; their URLs come from EnvVar so the UI never shows them."""

from __future__ import annotations

from dagster import AssetExecutionContext, ConfigurableResource, OpExecutionContext

from sync_assets.engine import PRODUCTION_ENV, STAGING_ENV, Endpoint, Observer, Pause


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
