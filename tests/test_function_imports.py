"""No module of the project is imported inside a function body, so that no such import hides a cycle or a
dependency pointing the wrong way (issue #12: incidents -> consent -> crm -> config, checked in CI by
import-linter and by tests/test_import_cycles.py).

Imports at module level say what a module needs; where a lower module needs a higher one's object it is
handed it (a registry the higher app fills from its AppConfig.ready(), e.g. crm.retention.participants) or
names it (a model through Django's app registry, a task by its Celery name). Allowed inside a function:
- AppConfig.ready() (the `ready` method of a class in an apps.py): Django's documented place to import the
  modules that register signals, checks, admin pages and what an app lends the apps below it;
- the entries of ALLOWED below, each with the reason Django or the process needs the import late.
`import_module("crm.…")` with a literal name counts as an import; imports under `if TYPE_CHECKING:` never run
and are left out. Migrations are Django's own generated code and are not read.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "crm", "consent", "incidents")

# (file, function, imported module): why the import cannot be at module level. Nothing else may be added
# without such a reason; a cycle is fixed in the design (move the function, split the module, pass the
# dependency in), not hidden here.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("config/celery.py", "verify_keys_or_exit", "crm.checks"): (
        "config/__init__.py imports config.celery while the settings load, before the apps are: crm.checks "
        "reads crm.models (the canary), which cannot be imported then. The function runs in the worker, "
        "after django.setup()."
    ),
}


def _is_project(module: str, level: int) -> bool:
    return level > 0 or module.split(".")[0] in PACKAGES


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_in(body: list[ast.stmt]) -> Iterator[tuple[int, str]]:
    """(line, module) of every project import in `body`, nested blocks and functions included."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if _is_project(a.name, 0))
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if _is_project(node.module or "", node.level):
                yield node.lineno, module
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and _is_project(node.args[0].value, 0)
        ):
            yield node.lineno, node.args[0].value
        stack.extend(ast.iter_child_nodes(node))


def _function_imports(path: str, source: str) -> list[tuple[str, int, str, str]]:
    """(file, line, function, module) of each project import inside a function outside AppConfig.ready()."""
    tree = ast.parse(source)
    found = []
    ready = set()
    if path.endswith("apps.py"):
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            ready |= {id(f) for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "ready"}
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    # A function inside a function is read with the outer one (a helper nested in ready() is ready()'s).
    ids = {id(f) for f in functions}
    nested = {id(m) for f in functions for m in ast.walk(f) if m is not f and id(m) in ids}
    for function in functions:
        if id(function) in ready or id(function) in nested:
            continue
        found += [(path, line, function.name, module) for line, module in _imports_in(function.body)]
    return sorted(found)


def _project_function_imports() -> list[tuple[str, int, str, str]]:
    found = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            if "/migrations/" not in path:
                found += _function_imports(path, file.read_text(encoding="utf-8"))
    return found


def test_no_project_module_is_imported_inside_a_function() -> None:
    found = _project_function_imports()

    hidden = [
        f"{path}:{line} {fn}() imports {module}"
        for path, line, fn, module in found
        if (path, fn, module) not in ALLOWED
    ]
    assert hidden == [], "import these at module level (or fix the cycle they hide):\n" + "\n".join(hidden)


def test_every_allowed_entry_is_still_needed() -> None:
    found = {(path, fn, module) for path, _line, fn, module in _project_function_imports()}

    assert set(ALLOWED) - found == set(), "remove the entries of ALLOWED that no longer match an import"


def test_the_check_finds_an_import_inside_a_function() -> None:
    # given a module with imports inside functions, in the forms the check must see
    source = """
from typing import TYPE_CHECKING
import json


def plain():
    import json
    from crm.models import Customer
    if TYPE_CHECKING:
        from crm.permissions import Team


class Service:
    async def method(self):
        def inner():
            from . import selectors
        import consent.rules


def by_name():
    return importlib.import_module("incidents.services")


class AppConfigLike:
    def ready(self):
        from crm import checks
"""
    # when it is read as a module that is not an apps.py
    found = _function_imports("crm/example.py", source)

    # then every project import is named by its function, and only those
    assert {(fn, module) for _path, _line, fn, module in found} == {
        ("plain", "crm.models"),
        ("method", "."),
        ("method", "consent.rules"),
        ("by_name", "incidents.services"),
        ("ready", "crm"),
    }
    # and ready() is left alone only where Django calls it, in an apps.py
    in_apps = _function_imports("crm/apps.py", source)
    assert ("ready", "crm") not in {(fn, module) for _path, _line, fn, module in in_apps}
