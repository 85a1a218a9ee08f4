"""Foreign-key order and deterministic cycle breaking."""

from __future__ import annotations

from sync_assets.engine.column_types import types_compatible
from sync_assets.engine.graph import acyclic_parents, fk_order


def test_parents_come_first() -> None:
    parents = {"cruises": ["ships", "ports", "regions"], "ships": ["lines"], "itineraries": ["cruises", "ports"]}
    order = fk_order(["itineraries", "cruises", "ships", "lines", "ports", "regions"], parents)
    assert order == ["lines", "ports", "regions", "ships", "cruises", "itineraries"]


def test_self_reference_and_outside_references_are_ignored() -> None:
    order = fk_order(["regions", "b"], {"regions": ["regions", "elsewhere"], "b": ["regions"]})
    assert order == ["regions", "b"]
    assert acyclic_parents(order, {"regions": ["regions"], "b": ["regions"]}) == {"regions": [], "b": ["regions"]}


def test_cycles_are_broken_the_same_way_every_time() -> None:
    parents = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["c"]}
    for nodes in (["a", "b", "c", "d"], ["d", "c", "b", "a"]):
        order = fk_order(nodes, parents)
        # one edge of the cycle is dropped (a -> b), the others kept
        assert order == ["a", "c", "b", "d"]
        assert acyclic_parents(order, parents) == {"a": [], "c": ["a"], "b": ["c"], "d": ["c"]}


def test_long_chain_does_not_recurse() -> None:
    n = 5000
    parents = {f"t{i:05d}": [f"t{i - 1:05d}"] for i in range(1, n)}
    order = fk_order([f"t{i:05d}" for i in reversed(range(n))], parents)
    assert order == [f"t{i:05d}" for i in range(n)]


def test_type_compatibility() -> None:
    assert types_compatible("character varying(10)", "text")
    assert types_compatible("character varying(10)", "character varying(20)")
    assert not types_compatible("character varying(20)", "character varying(10)")
    assert types_compatible("integer", "bigint") and not types_compatible("bigint", "integer")
    assert types_compatible("numeric(10,2)", "numeric(12,2)") and not types_compatible("numeric(10,2)", "numeric(10,1)")
    assert types_compatible("numeric(10,2)", "numeric") and not types_compatible("numeric", "numeric(10,2)")
    assert types_compatible("json", "jsonb") and not types_compatible("jsonb", "json")
    assert types_compatible("integer[]", "bigint[]") and not types_compatible("integer[]", "bigint")
    assert not types_compatible("text", "integer")
    assert types_compatible("timestamp(3) with time zone", "timestamp with time zone")
    assert not types_compatible("timestamp with time zone", "timestamp(3) with time zone")
    assert not types_compatible("public.cruise_status", "text")
