"""`preserve:` means staging's own table, whether or not production has one of that name.

Staging adds `wishlists` (production has none): each row points at a user (preserved) and a cruise
(synced). Production deleted cruises 191..200 since staging's copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from sync_assets.definitions import build_definitions
from sync_assets.engine import parse_config
from sync_assets.engine.errors import ConfigError, OrphanError
from sync_assets_tests import cruise
from sync_assets_tests.conftest import Pair, snapshot_tables, table_rows

WISHLISTS = """
CREATE TABLE wishlists (
    id serial PRIMARY KEY,
    user_id integer NOT NULL REFERENCES users,
    cruise_id integer NOT NULL REFERENCES cruises,
    note text
);
INSERT INTO wishlists (user_id, cruise_id, note) SELECT 1 + i % 10, 185 + i, 'wish ' || i FROM generate_series(1, 12) i;
"""
CONFIG = "preserve: [users, quote_requests, saved_searches, wishlists]\n"


def with_wishlists(pair: Pair) -> list[str]:
    pair.run_staging(WISHLISTS)
    with pair.staging() as staging:
        return table_rows(staging, "wishlists")


def test_a_preserved_table_production_lacks_keeps_its_rows_and_backs_up_its_orphans(cruise_pair: Pair) -> None:
    before = with_wishlists(cruise_pair)

    result = cruise_pair.sync(CONFIG)

    with cruise_pair.staging() as staging, cruise_pair.prod() as prod:
        kept = table_rows(staging, "wishlists")
        backed_up = staging.execute("SELECT cruise_id, sync_reason FROM wishlists_backup ORDER BY cruise_id").fetchall()
        assert table_rows(staging, "cruises") == table_rows(prod, "cruises")
    # wishes 6..12 pointed at cruises 191..197, which production deleted: backed up, then removed
    assert [c for c, _ in backed_up] == list(range(191, 198))
    assert all(r.startswith("wishlists_cruise_id_fkey: referenced public.cruises rows") for _, r in backed_up)
    assert len(kept) == 5 and set(kept) < set(before)
    assert [(o.table, o.rows) for o in result.orphans if o.table == ("public", "wishlists")] == [
        (("public", "wishlists"), 7)
    ]

    again = cruise_pair.sync(CONFIG)
    assert [o for o in again.orphans if o.table == ("public", "wishlists")] == []
    with cruise_pair.staging() as staging:
        assert table_rows(staging, "wishlists") == kept


def test_orphans_fail_refuses_and_changes_nothing(cruise_pair: Pair) -> None:
    with_wishlists(cruise_pair)
    with cruise_pair.staging() as staging:
        before = snapshot_tables(staging, [*cruise.SYNCED, *cruise.PRESERVED, "wishlists"])

    with pytest.raises(OrphanError, match=r"row\(s\) of preserved table public\.(wishlists|quote_requests) reference"):
        cruise_pair.sync(CONFIG + "orphans: fail\n")

    with cruise_pair.staging() as staging:
        assert snapshot_tables(staging, [*cruise.SYNCED, *cruise.PRESERVED, "wishlists"]) == before


def test_a_preserved_name_staging_lacks_is_an_error(cruise_pair: Pair) -> None:
    with pytest.raises(ConfigError, match=r"^'preserve' names table 'wishlists', which staging does not have in"):
        cruise_pair.sync(CONFIG)
    with pytest.raises(
        ConfigError, match=r"which staging does not have in schema\(s\) public; did you mean 'users'\?$"
    ):
        cruise_pair.sync("preserve: [userss]\n")


def test_the_preserved_table_production_lacks_is_an_asset_with_its_orphan_check(
    cruise_pair: Pair, tmp_path: Path
) -> None:
    with_wishlists(cruise_pair)
    config = parse_config(yaml.safe_load(CONFIG))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, config, cache_dir=tmp_path)
    key = AssetKey(["staging", "public", "wishlists"])
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == key)

    assert spec.tags["sync_assets/role"] == "preserved"
    assert {d.asset_key for d in spec.deps} == {
        AssetKey(["staging", "public", "users"]),
        AssetKey(["staging", "public", "cruises"]),
    }
    assert AssetKey(["production", "public", "wishlists"]) not in {s.key for s in defs.resolve_all_asset_specs()}
    check = AssetCheckKey(key, "no_orphans")
    assert check in defs.resolve_asset_graph().asset_check_keys

    result = defs.resolve_job_def("sync_job").execute_in_process(instance=DagsterInstance.ephemeral())

    assert result.success
    evaluations = {e.asset_check_key: e for e in result.get_asset_check_evaluations()}
    assert evaluations[check].passed
    assert evaluations[check].description == "every row of public.wishlists finds its parent rows in staging"


RENTALS = """
CREATE TABLE customer (id int PRIMARY KEY, name text);
CREATE TABLE inventory (id int PRIMARY KEY, film text);
CREATE TABLE rental (
    id int PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customer,
    inventory_id int NOT NULL REFERENCES inventory
);
INSERT INTO customer SELECT i, 'c' || i FROM generate_series(1, 3) i;
INSERT INTO inventory SELECT i, 'f' || i FROM generate_series(1, 3) i;
"""


def test_each_backed_up_row_names_the_foreign_key_that_orphaned_it(pair: Pair) -> None:
    pair.run_prod(RENTALS + "DELETE FROM inventory WHERE id = 2; DELETE FROM customer WHERE id = 3;")
    pair.run_staging(RENTALS + "INSERT INTO rental VALUES (10, 1, 2), (11, 3, 1), (12, 1, 1);")

    result = pair.sync("preserve: [rental]\n")

    with pair.staging() as staging:
        backed_up = staging.execute("SELECT id, sync_reason FROM rental_backup ORDER BY id").fetchall()
        assert table_rows(staging, "rental") == ["(12,1,1)"]
    assert backed_up == [
        (10, "rental_inventory_id_fkey: referenced public.inventory rows that production no longer has"),
        (11, "rental_customer_id_fkey: referenced public.customer rows that production no longer has"),
    ]
    assert sorted((o.references, o.constraint, o.rows) for o in result.orphans) == [
        (("public", "customer"), "rental_customer_id_fkey", 1),
        (("public", "inventory"), "rental_inventory_id_fkey", 1),
    ]
