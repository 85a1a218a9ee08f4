"""Foreign-key order: parents before children, cycles broken the same way every time."""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def _components(nodes: list[K], parents: Mapping[K, set[K]]) -> list[list[K]]:
    """Strongly connected components (Tarjan, iterative so deep chains do not hit the recursion limit)."""
    index: dict[K, int] = {}
    low: dict[K, int] = {}
    on_stack: set[K] = set()
    stack: list[K] = []
    result: list[list[K]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[K, Iterable[K]]] = [(root, iter(sorted(parents.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(parents.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                result.append(sorted(comp))
    return result


def fk_order(
    nodes: Iterable[K], parents: Mapping[K, Iterable[K]], hard: Mapping[K, Iterable[K]] | None = None
) -> list[K]:
    """Nodes with every parent first; ties broken by sort order.

    `parents[child]` lists what child references; references to nodes outside `nodes` are ignored.
    Inside a cycle some reference must point forward: `hard[child]`, a subset of parents (NOT NULL
    foreign keys), are kept pointing backward where possible.
    """
    return [n for group in fk_groups(nodes, parents, hard) for n in group]


def fk_groups(
    nodes: Iterable[K], parents: Mapping[K, Iterable[K]], hard: Mapping[K, Iterable[K]] | None = None
) -> list[list[K]]:
    """The nodes in groups, every group after the groups it references: a group is one node, or the
    nodes of one cycle (ordered as fk_order orders them)."""
    node_list = sorted(set(nodes))
    known = set(node_list)
    par = {n: {p for p in parents.get(n, ()) if p in known and p != n} for n in node_list}
    comps = _components(node_list, par)
    comp_of = {n: i for i, comp in enumerate(comps) for n in comp}
    waiting = {i: {comp_of[p] for n in comp for p in par[n]} - {i} for i, comp in enumerate(comps)}
    children: dict[int, set[int]] = {i: set() for i in range(len(comps))}
    for i, deps in waiting.items():
        for d in deps:
            children[d].add(i)
    ready = [(comps[i][0], i) for i, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[list[K]] = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(_order_cycle(comps[i], par, {n: set(hard.get(n, ())) if hard else set() for n in comps[i]}))
        for c in sorted(children[i]):
            waiting[c].discard(i)
            if not waiting[c]:
                heapq.heappush(ready, (comps[c][0], c))
    return order


def _order_cycle(members: list[K], parents: Mapping[K, set[K]], hard: Mapping[K, set[K]]) -> list[K]:
    """Order the members of one cycle dropping few edges: place whatever has all its parents placed,
    and when nothing has, the member with the fewest unplaced hard parents, then parents, then name."""
    if len(members) == 1:
        return members
    left = set(members)
    placed: list[K] = []
    while left:
        pick = min(left, key=lambda m: (len(hard[m] & left), len(parents[m] & left), m))
        placed.append(pick)
        left.discard(pick)
    return placed


def acyclic_parents(order: list[K], parents: Mapping[K, Iterable[K]]) -> dict[K, list[K]]:
    """For each node, the parents placed before it in `order`: the FK graph with cycle edges dropped."""
    position = {n: i for i, n in enumerate(order)}
    return {n: sorted(p for p in set(parents.get(n, ())) if p in position and position[p] < position[n]) for n in order}
