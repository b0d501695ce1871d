"""No export reaches personal data for a recipient without a provision record (APPI 29; issue #16).

The export paths are found in the code, not listed by hand: every function that builds a download (a
Content-Disposition header, a streaming or file response, a CSV writer), calls an `*_export(` function or
is a management command writing a file, and every read of the integration API. Each must be declared in
consent.provision.exports with its destination; one going to a recipient must call the provision service.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from consent.provision import exports

ROOT = Path(__file__).resolve().parents[3]
APPS = ("crm", "consent", "incidents", "config")
MARKERS = re.compile(
    r"Content-Disposition|StreamingHttpResponse|FileResponse|csv\.writer|csv_response\(|\w+_export\("
)
WRITES_A_FILE = re.compile(r"open\([^)]*[\"'][wa]b?[\"']")


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _innermost(tree: ast.AST, line: int) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    around = [f for f in _functions(tree) if f.lineno <= line <= (f.end_lineno or f.lineno)]
    return min(around, key=lambda f: (f.end_lineno or f.lineno) - f.lineno, default=None)


def export_paths_in_code() -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    found = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "/migrations/" in rel:
                continue
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
            command = "/management/commands/" in rel
            for number, line in enumerate(source.splitlines(), 1):
                if line.lstrip().startswith(("from ", "import ", "#")):
                    continue
                if MARKERS.search(line) or (command and WRITES_A_FILE.search(line)):
                    function = _innermost(tree, number)
                    if function is not None:
                        found[f"{rel}:{function.name}"] = function
    return found


def _calls(function: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            target = node.func
            names.add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return names


def api_reads() -> set[str]:
    from config.api import api

    schema = api.get_openapi_schema()
    return {
        f"api:GET {path.removeprefix('/api/v1')}" for path, ops in schema["paths"].items() if "get" in ops
    }


def test_every_export_path_in_the_code_is_declared_with_its_destination():
    # given every function of the project that builds a download or writes an export
    found = export_paths_in_code()
    # then each is declared in the export registry (a new export cannot slip past the provision service)
    assert sorted(set(found) - set(exports.EXPORT_PATHS)) == []
    # and the recipient-bound ones were found (the scan itself works)
    assert "consent/provision/admin.py:provide_view" in found


def test_every_api_read_is_declared_with_its_destination():
    assert sorted(api_reads() - set(exports.EXPORT_PATHS)) == []


def test_no_declared_path_is_stale():
    # given the registry, then every entry still names code (or an API read) that exists
    known = set(export_paths_in_code()) | api_reads()
    assert sorted(set(exports.EXPORT_PATHS) - known) == []


def test_every_path_to_a_recipient_calls_the_provision_service():
    # given the declared paths that send personal data to a recipient
    found = export_paths_in_code()
    to_recipient = [k for k, v in exports.EXPORT_PATHS.items() if v.destination == exports.TO_RECIPIENT]
    assert to_recipient
    # then the code of each calls provision_record or provision_export (the record before the data)
    missing = [k for k in to_recipient if not (_calls(found[k]) & exports.PROVISION_CALLS)]
    assert missing == []


def test_the_scan_catches_a_new_download_view(tmp_path, monkeypatch):
    # given a module with a view that sends a CSV attachment, not declared anywhere
    app = tmp_path / "crm"
    app.mkdir()
    (app / "views.py").write_text(
        "def customers_csv(request):\n"
        "    response = HttpResponse(content_type='text/csv')\n"
        "    response['Content-Disposition'] = 'attachment; filename=x.csv'\n"
        "    return response\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    # when the scan runs, then it finds it, and it is not in the registry
    found = export_paths_in_code()
    assert list(found) == ["crm/views.py:customers_csv"]
    assert "crm/views.py:customers_csv" not in exports.EXPORT_PATHS
