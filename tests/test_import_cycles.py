"""No import cycle between the project's modules, imports inside functions included.

import-linter (CI) keeps the apps layered (incidents -> consent -> crm, nothing imports config); this test
keeps every module of every app acyclic, so an import moved into a function body cannot hide a cycle.
Imports under `if TYPE_CHECKING:` are left out: they never run. Where a lower module needs a higher one's
object it names it (a model through Django's app registry, a task by its Celery name) or is handed it
through a registry the higher module fills (crm.retention.participants).
"""

from __future__ import annotations

import grimp

PACKAGES = ("config", "crm", "consent", "incidents")


def _strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def _graph() -> tuple[grimp.ImportGraph, set[str]]:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if ".migrations" not in m}
    return graph, modules


def test_no_module_imports_itself_back_through_others() -> None:
    graph, modules = _graph()

    cycles = _strongly_connected(graph, modules)

    assert cycles == [], f"import cycles (each group imports itself back): {cycles}"


def test_the_check_finds_a_cycle_when_there_is_one() -> None:
    # given the real graph with one import added the wrong way (crm's gate importing the consent ledger)
    graph, modules = _graph()
    graph.add_import(importer="crm.permissions", imported="consent.models")

    cycles = _strongly_connected(graph, modules)

    # then the check names the modules of the cycle
    assert any("crm.permissions" in group and "consent.models" in group for group in cycles)
