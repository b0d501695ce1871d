"""House rule: no private name (`_something`) of Django, django-guardian or django-auditlog outside one
adapter module per library (crm/django_adapter.py, crm/auditlog_adapter.py, crm/guardian_adapter.py).

The private names are read from the installed libraries themselves (what they define: functions, methods,
classes, class and module attributes, `self._x` attributes, and the permission caches Django's ModelBackend
names at run time), so a new release's new internals are covered without a list to keep. The project's code
is read with `ast`, so comments and docstrings may name an internal. A hit is:
- an attribute `x._name` where `_name` is a library's private name (and not one the project itself defines
  as a function, class or `self._name` attribute: those are its own);
- `from django… import _name` (or guardian, auditlog);
- a method of a project class overriding a private method of a library class it inherits from;
- `getattr/setattr/hasattr/delattr(x, "_name")`.
Model._meta, Model._state and the managers' _default_manager / _base_manager are documented by Django, and
namedtuple's _asdict/_replace/_fields/_make by Python: allowed.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("django", "guardian", "auditlog")
SCANNED = ("crm", "consent", "incidents", "config")
ADAPTERS = {"crm/django_adapter.py", "crm/auditlog_adapter.py", "crm/guardian_adapter.py"}
DOCUMENTED = {
    "_meta",
    "_state",
    "_default_manager",
    "_base_manager",
    "_asdict",
    "_replace",
    "_fields",
    "_make",
}
# Named at run time by django.contrib.auth.backends.ModelBackend ("_%s_perm_cache"), so no definition shows.
DYNAMIC = {"_user_perm_cache", "_group_perm_cache", "_perm_cache"}

# Uses that other branches of issue #12 were removing (file, name): all merged, so none is left. Nothing may
# be added here: a new internal goes into the library's adapter, with its tests.
BEING_REMOVED: set[tuple[str, str]] = set()


def _private(name: str) -> bool:
    return len(name) > 1 and name.startswith("_") and not name.startswith("__")


def _defined_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, module/class attributes, `self._x` attributes."""
    names: set[str] = set()
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef))]
    for scope in scopes:
        for statement in scope.body:  # type: ignore[attr-defined]
            targets = []
            if isinstance(statement, ast.Assign):
                targets = statement.targets
            elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
                targets = [statement.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {n for n in names if _private(n)}


@functools.cache
def _library_private_names() -> frozenset[str]:
    names: set[str] = set(DYNAMIC)
    for library in LIBRARIES:
        package = Path(importlib.util.find_spec(library).origin).parent  # type: ignore[arg-type,union-attr]
        for path in package.rglob("*.py"):
            if "tests" in path.relative_to(package).parts:
                continue
            names |= _defined_names(ast.parse(path.read_bytes()))
    return frozenset(names - DOCUMENTED)


def _project_files() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))


def _overrides(module_name: str, class_name: str, method: str) -> bool:
    """Whether the project class overrides `method` of a library class among its bases."""
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not isinstance(cls, type):
        return False
    return any(
        method in vars(base) and base.__module__.split(".")[0] in LIBRARIES for base in cls.__mro__[1:]
    )


def _uses(path: Path, relative: str, library_names: frozenset[str], own: set[str]) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_bytes())
    foreign = library_names - own
    hits: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in foreign:
            hits.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
            hits += [(node.lineno, a.name) for a in node.names if _private(a.name)]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in foreign
        ):
            hits.append((node.lineno, node.args[1].value))
    module_name = relative.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    for node in tree.body:  # the module's classes
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if (
                    isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef)
                    and statement.name in library_names
                    and "migrations" not in relative
                    and _overrides(module_name, node.name, statement.name)
                ):
                    hits.append((statement.lineno, statement.name))
    return hits


def _violations() -> list[str]:
    library_names = _library_private_names()
    files = _project_files()
    # The project's own private names, outside the adapters (an adapter's override of a library's method is
    # not the project's own name elsewhere).
    trees = {p: ast.parse(p.read_bytes()) for p in files if p.relative_to(ROOT).as_posix() not in ADAPTERS}
    own = set().union(*(_defined_names(tree) for tree in trees.values()))
    found = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        if relative in ADAPTERS:
            continue
        for line, name in _uses(path, relative, library_names, own):
            if (relative, name) not in BEING_REMOVED:
                found.append(f"{relative}:{line}: {name}")
    return found


def test_no_private_name_of_django_guardian_or_auditlog_outside_the_adapters():
    # given every module of crm, consent, incidents and config but the adapters
    # when they are read for the libraries' private names
    found = _violations()
    # then there is none: an internal the project needs goes into the library's adapter, with its tests
    assert not found, (
        "Private names of Django / guardian / auditlog outside their adapter module (move the use into "
        "crm/django_adapter.py, crm/auditlog_adapter.py or crm/guardian_adapter.py, with a test pinning "
        "it):\n" + "\n".join(found)
    )


def test_the_scan_sees_each_kind_of_private_use(tmp_path):
    # given a module using Django's internals in every way the scan knows
    (tmp_path / "crm").mkdir()
    (tmp_path / "crm" / "probe.py").write_text(
        "from django.db.models.base import _has_contribute_to_class\n"
        "def f(connection, user):\n"
        "    connection._prepare_cursor(None)\n"
        "    user._perm_cache = set()\n"
        "    return getattr(connection, '_cursor')\n"
    )
    # when it is read, then each use is reported with its line
    hits = _uses(tmp_path / "crm" / "probe.py", "crm/probe.py", _library_private_names(), set())
    assert sorted(hits) == [
        (1, "_has_contribute_to_class"),
        (3, "_prepare_cursor"),
        (4, "_perm_cache"),
        (5, "_cursor"),
    ]
    # and Django's documented underscore names are not
    assert not {"_meta", "_state", "_default_manager"} & _library_private_names()


def test_the_permission_caches_django_names_at_run_time_are_still_named_so():
    # given the names DYNAMIC adds because ModelBackend builds them from a pattern
    import inspect

    from django.contrib.auth.backends import ModelBackend

    source = inspect.getsource(ModelBackend)
    # then the pattern and the combined cache are still there (else DYNAMIC is stale: update it)
    assert '"_%s_perm_cache"' in source and "user_obj._perm_cache" in source
