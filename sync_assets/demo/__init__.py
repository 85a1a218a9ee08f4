"""The demo: an embedded PostgreSQL with production, staging and Dagster databases, synced once."""
