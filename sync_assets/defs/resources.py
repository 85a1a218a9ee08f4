"""Dagster resources for the two databases; their URLs come from EnvVar so the UI never shows them."""

from __future__ import annotations

from dagster import ConfigurableResource

from sync_assets.engine.connections import PRODUCTION_ENV, STAGING_ENV, Endpoint


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
