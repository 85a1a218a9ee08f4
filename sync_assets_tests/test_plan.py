"""The plan from catalogs alone, no database: columns and keys, drift, modes, roles, write order.

test_drift.py proves end to end that a refused plan leaves staging untouched; here the same decisions
are specified table by table, fast."""

from __future__ import annotations

import pytest
import yaml

from sync_assets.engine import Catalog, Identity, Mode, Table, parse_config
from sync_assets.engine.catalog import Column, ForeignKey
from sync_assets.engine.errors import ConfigError, DriftError, SelectionError
from sync_assets.engine.plan import SyncPlan, build_plan
from sync_assets.engine.roles import Role

BINARY_SAFE = {"integer", "bigint", "text", "numeric", "timestamp with time zone"}


def col(
    name: str,
    type_: str = "integer",
    *,
    not_null: bool = False,
    default: bool = False,
    identity: Identity = Identity.NONE,
    generated: bool = False,
    enum: bool = False,
) -> Column:
    base = type_.split("(")[0]
    return Column(
        name=name,
        attnum=0,
        type=type_,
        base_type=base,
        is_array=False,
        is_enum=enum,
        not_null=not_null or identity != Identity.NONE,
        has_default=default,
        generated=generated,
        identity=identity,
        binary_portable=base in BINARY_SAFE or enum,
    )


def table(name: str, *columns: Column, pk: tuple[str, ...] = (), fks: tuple[ForeignKey, ...] = ()) -> Table:
    return Table("public", name, tuple(columns), primary_key=pk, foreign_keys=fks)


def fk(name: str, column: str, ref: str, *, ref_column: str = "id", deferrable: bool = False) -> ForeignKey:
    return ForeignKey(name, (column,), "public", ref, (ref_column,), deferrable)


def catalog(*tables: Table, enums: dict[str, tuple[str, ...]] | None = None) -> Catalog:
    return Catalog({t.key: t for t in tables}, enums or {})


def plan_of(production: Catalog, staging: Catalog | None = None, config: str = "", selection=None) -> SyncPlan:
    return build_plan(production, staging or production, parse_config(yaml.safe_load(config)), selection)


PORTS = table("ports", col("id", not_null=True), col("name", "text"), col("fee", "numeric"), pk=("id",))


def test_columns_are_compared_exactly_or_through_their_text_and_identity_always_is_insert_only() -> None:
    prices = table(
        "prices",
        col("id", identity=Identity.ALWAYS),
        col("amount", "numeric(10,2)"),
        col("label", "text"),
        col("seq", identity=Identity.ALWAYS),
        pk=("id",),
    )
    tp = plan_of(catalog(prices)).table(("public", "prices"))
    assert tp.columns == ("id", "amount", "label", "seq")
    assert tp.key == ("id",)
    assert tp.exact_columns == ("label", "seq")
    assert tp.text_columns == ("amount",)  # numeric: 1.0 = 1.00, so its text tells a change
    assert tp.update_columns == ("amount", "label")  # identity ALWAYS is never updated
    assert tp.overriding_system_value is True
    assert tp.binary is True
    assert tp.notes == ("identity ALWAYS columns outside the key are written on insert only",)


@pytest.mark.parametrize(
    ("staging", "message"),
    [
        (
            table("ports", col("id", not_null=True), col("name", "text"), pk=("id",)),
            "column public.ports.fee (numeric) exists in production but not in staging: add it to staging's "
            "table, or exclude the table",
        ),
        (
            table("ports", col("id", not_null=True), col("name", "text"), col("fee", "integer"), pk=("id",)),
            "column public.ports.fee has incompatible types: numeric in production, integer in staging",
        ),
        (
            table(
                "ports",
                col("id", not_null=True),
                col("name", "text"),
                col("fee", "numeric"),
                col("owner", "text", not_null=True),
                pk=("id",),
            ),
            "column public.ports.owner exists only in staging and is NOT NULL without a default, so rows from "
            "production cannot be inserted: give it a default or drop NOT NULL",
        ),
    ],
    ids=["missing-column", "incompatible-type", "staging-only-not-null"],
)
def test_drift_names_the_column_and_the_fix(staging: Table, message: str) -> None:
    with pytest.raises(DriftError) as err:
        plan_of(catalog(PORTS), catalog(staging))
    assert str(err.value) == message


def test_a_table_staging_lacks_is_drift() -> None:
    with pytest.raises(DriftError, match=r"^staging has no table public\.ports \(production has it\): create it"):
        plan_of(catalog(PORTS), catalog())


def test_an_enum_label_staging_lacks_is_drift() -> None:
    status = col("status", "public.status", enum=True)
    status = Column(**{**status.__dict__, "base_type": "public.status"})
    production = catalog(table("t", col("id", not_null=True), status, pk=("id",)), enums={"public.status": ("a", "b")})
    staging = catalog(table("t", col("id", not_null=True), status, pk=("id",)), enums={"public.status": ("a",)})
    with pytest.raises(DriftError, match=r"^column public\.t\.status: staging's enum type public\.status lacks "):
        plan_of(production, staging)


def test_staging_only_and_generated_columns_are_noted_not_refused() -> None:
    production = table("t", col("id", not_null=True), col("total", generated=True), pk=("id",))
    staging = table("t", col("id", not_null=True), col("note", "text", default=True), pk=("id",))
    tp = plan_of(catalog(production), catalog(staging)).table(("public", "t"))
    assert tp.columns == ("id",)
    assert tp.extra_columns == ("note",)
    assert tp.notes == (
        "production's generated column total is not in staging",
        "staging-only column(s) note keep their defaults",
    )


def test_a_foreign_key_cycle_is_one_write_group_after_its_parents() -> None:
    a = table("a", col("id", not_null=True), col("b_id", not_null=True), pk=("id",), fks=(fk("a_b", "b_id", "b"),))
    b = table("b", col("id", not_null=True), col("a_id"), col("port_id"), pk=("id",))
    b = Table(**{**b.__dict__, "foreign_keys": (fk("b_a", "a_id", "a"), fk("b_port", "port_id", "ports"))})
    plan = plan_of(catalog(a, b, PORTS))
    assert plan.groups == ((("public", "ports"),), (("public", "b"), ("public", "a")))
    assert [tp.table_key[1] for tp in plan.tables] == ["ports", "b", "a"]


def test_incremental_falls_back_to_mirror_unless_asked_for_by_name() -> None:
    production = catalog(PORTS)
    tp = plan_of(production, config="mode: incremental").table(("public", "ports"))
    assert tp.mode == Mode.MIRROR
    assert tp.notes == ("not incremental: it has no column updated_at in production to tell changed rows by; synced "
                        "in mirror mode",)  # fmt: skip
    with pytest.raises(DriftError, match=r"^public\.ports is set to mode incremental, but it has no column updated_at"):
        plan_of(production, config="tables: {ports: {mode: incremental}}")


def test_a_merge_child_of_a_mirror_parent_is_refused() -> None:
    child = table("cabins", col("id", not_null=True), col("port_id"), pk=("id",), fks=(fk("c_p", "port_id", "ports"),))
    with pytest.raises(ConfigError, match=r"^public\.cabins is in mode merge but its parent public\.ports is in mode "):
        plan_of(catalog(PORTS, child), config="tables: {cabins: {mode: merge}}")


def test_a_keyless_table_others_reference_is_refused() -> None:
    keyless = table("tags", col("id"), col("name", "text"))
    child = table("uses", col("id", not_null=True), col("tag_id"), pk=("id",), fks=(fk("u_t", "tag_id", "tags"),))
    with pytest.raises(DriftError, match=r"^public\.tags has no primary key nor unique NOT NULL key, so the sync "):
        plan_of(catalog(keyless, child))


def test_roles_and_selection() -> None:
    users = table("users", col("id", not_null=True), col("port_id"), pk=("id",), fks=(fk("u_p", "port_id", "ports"),))
    production = catalog(PORTS, users)
    plan = plan_of(production, config="preserve: [users]")
    assert [tp.table_key for tp in plan.tables] == [("public", "ports")]
    assert plan.role_of(("public", "users")) == Role.PRESERVE
    assert [(r.table.name, r.role) for r in plan.children_outside] == [("users", Role.PRESERVE)]
    with pytest.raises(
        ConfigError, match=r"'preserve' names table 'user', which staging does not have .*did you mean 'users'\?"
    ):
        plan_of(production, config="preserve: [user]")
    with pytest.raises(SelectionError, match=r"^cannot sync public\.users: it is preserved"):
        plan_of(production, config="preserve: [users]", selection={("public", "users")})
