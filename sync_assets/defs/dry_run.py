"""The `sync_dry_run` job: the exact plan of a sync (rows to insert, update, delete, preserved rows to back
up, sequences to move) computed by running the swap and rolling it back. Nothing is materialized and
staging is left as it was."""

from dagster import Config, Failure, MetadataValue, OpExecutionContext, Output, job, op
from pydantic import Field

from sync_assets.defs.assets import LOCK_TAG
from sync_assets.defs.failures import failure_for
from sync_assets.defs.metadata import plan_markdown
from sync_assets.defs.resources import RunLog, SyncResource
from sync_assets.engine import SyncConfig, TableKey

DRY_RUN_JOB = "sync_dry_run"


class DryRunConfig(Config):
    tables: list[str] = Field(
        default_factory=list, description="Tables to plan, as schema.table; empty plans every synced table."
    )


def build_dry_run_job(synced: list[TableKey], config_loader, problem: str | None = None):
    """problem: why the code location cannot sync (then every dry run fails with it)."""
    names = {f"{schema}.{name}": (schema, name) for schema, name in synced}

    @op(name="plan_sync", tags={LOCK_TAG: "staging"})
    def plan_sync(context: OpExecutionContext, config: DryRunConfig, sync: SyncResource) -> Output[None]:
        """Run the sync without its COMMIT and report what it would change."""
        if problem is not None:
            raise Failure(description=problem, allow_retries=False)
        unknown = [t for t in config.tables if t not in names]
        if unknown:
            raise Failure(
                description=f"dry run: {', '.join(unknown)} is not a synced table; synced tables are "
                + ", ".join(sorted(names)),
                allow_retries=False,
            )
        selection = {names[t] for t in config.tables} or None
        sync.endpoints()
        try:
            run_config: SyncConfig = config_loader()
        except Exception as exc:
            raise failure_for(exc) from None
        result = sync.run(run_config, selection, RunLog(context), dry_run=True)
        markdown = plan_markdown(result)
        context.log.info(markdown)
        return Output(
            None,
            metadata={
                "plan": MetadataValue.md(markdown),
                "tables": MetadataValue.int(len(result.tables)),
                "rows_to_insert": MetadataValue.int(sum(t.inserted for t in result.tables.values())),
                "rows_to_update": MetadataValue.int(sum(t.updated for t in result.tables.values())),
                "rows_to_delete": MetadataValue.int(sum(t.deleted for t in result.tables.values())),
                "preserved_rows_to_back_up": MetadataValue.int(sum(o.rows for o in result.orphans)),
            },
        )

    @job(name=DRY_RUN_JOB, description=__doc__, tags={LOCK_TAG: "staging"})
    def sync_dry_run() -> None:
        plan_sync()

    return sync_dry_run
