"""The disclosure package: one ZIP with the registered sections as machine-readable JSON, a readable HTML
page in the requester's language and one CSV per table (APPI Art. 33(1): the method the person chose;
GDPR Art. 20(1): "structured, commonly used and machine-readable").

    disclosure.json        every section: its columns and rows (ISO 8601 instants in JST, exact amounts)
    disclosure.html        the same, to read (Japanese or English); style.css beside it, no script, no
                           inline style (the project's CSP)
    style.css
    csv/<section>.csv      one file per section, UTF-8 with a BOM (what spreadsheet software in Japan opens)

A person of whom nothing is held gets a package saying so (APPI Art. 33(3)): `has_data` false in the JSON,
a sentence at the top of the page. The published purposes of use are always included: they are what the
company does with the data, not data about the person.

Each section is one set-based query, streamed once: the JSON goes straight into the ZIP while the CSV and
the page are written to spooled temporary files (in memory while small, then an anonymous file that
disappears with the process), added once the JSON is complete.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import html
import io
import json
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from typing import IO, Any

from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext

from crm.disclosure.registry import (
    BOOL,
    DATE,
    DATETIME,
    JSON,
    JST,
    NUMBER,
    TEXT,
    Column,
    Section,
    SectionContext,
    disclosure_sections,
    json_value,
)

FORMAT = "crm.disclosure/1"
SPOOL_BYTES = 16 * 1024 * 1024
JSON_NAME, HTML_NAME, CSS_NAME = "disclosure.json", "disclosure.html", "style.css"


@dataclasses.dataclass
class PackageContents:
    """What a package holds: rows per section key, and whether any of them is data about the person."""

    rows: dict[str, int]
    has_data: bool


_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
_ROW = json.JSONEncoder(ensure_ascii=False)
EMPTY = "-"


def _text(value: Any) -> str:
    """A JSON-ready value as one CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return _JSON.encode(value)
    return str(value)


def display(column: Column, value: Any) -> str:
    """A value as the readable page shows it, in the active language (not yet escaped)."""
    if value is None or value == "" or value == {} or value == []:
        return EMPTY
    if column.choices:
        labels = dict(column.choices)
        if value in labels:
            return str(labels[value])
    if column.kind == BOOL or isinstance(value, bool):
        return gettext("はい") if value else gettext("いいえ")
    if column.kind == DATETIME and isinstance(value, dt.datetime):
        return value.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S") + " JST"
    if column.kind == DATE and isinstance(value, dt.date):
        return value.isoformat()
    if column.kind == JSON or isinstance(value, dict | list):
        return _JSON.encode(value)
    if column.kind == NUMBER and isinstance(value, int):
        return f"{value:,}"
    return str(json_value(value))


def _cell(column: Column) -> Callable[[Any], str]:
    """The escaped page cell of one column's value, specialised by the column's kind once per section (the
    writer calls it for every cell). Coded values (choices, yes/no) are translated and escaped once per
    section and value, not once per row: a section of 10,000 events repeats a few kinds."""
    if column.choices or column.kind == BOOL:
        seen: dict[Any, str] = {}

        def coded(value: Any) -> str:
            try:
                return seen[value]
            except KeyError:
                seen[value] = html.escape(display(column, value))
                return seen[value]
            except TypeError:  # an unhashable value in a coded column: shown as it is
                return html.escape(display(column, value))

        return coded
    if column.kind == TEXT:
        return lambda value: (
            html.escape(value) if isinstance(value, str) and value else html.escape(display(column, value))
        )
    if column.kind == DATETIME:

        def instant(value: Any) -> str:
            text = display(column, value)
            return text if isinstance(value, dt.datetime) else html.escape(text)

        return instant
    return lambda value: html.escape(display(column, value))


def _plain(column: Column) -> Callable[[Any], Any]:
    """How one column's values become JSON values: as they are for text, JSON documents and booleans (what
    the database gives those is JSON already), through json_value for the rest."""
    if column.kind in (TEXT, JSON, BOOL) and not column.choices:
        return lambda value: value
    return json_value


class _SectionWriter:
    """One section's CSV and page fragment, written as its rows stream by."""

    def __init__(self, section: Section, columns: list[Column]) -> None:
        self.section = section
        self.columns = columns
        self.names = [c.name for c in columns]
        self.cells = [_cell(c) for c in columns]
        self.plains = [_plain(c) for c in columns]
        self.count = 0
        self.csv_file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        self._csv_text = io.TextIOWrapper(self.csv_file, encoding="utf-8-sig", newline="")
        self._csv = csv.writer(self._csv_text)
        self._csv.writerow(self.names)
        self.html: IO[str] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+", encoding="utf-8")

    def row(self, values: Sequence[Any]) -> str:
        """Write the row's CSV line and page row; return its JSON object."""
        self.count += 1
        plain = [f(v) for f, v in zip(self.plains, values, strict=True)]
        self._csv.writerow([_text(v) for v in plain])
        self.html.write("<tr><td>" + "</td><td>".join(f(v) for f, v in zip(self.cells, values, strict=True)))
        self.html.write("</td></tr>\n")
        return _ROW.encode(dict(zip(self.names, plain, strict=True)))

    def close(self) -> None:
        self._csv_text.flush()
        self._csv_text.detach()
        self.csv_file.seek(0)
        self.html.seek(0)


def _info(name: str, when: dt.datetime) -> zipfile.ZipInfo:
    local = when.astimezone(JST)
    info = zipfile.ZipInfo(name, date_time=local.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _copy(zf: zipfile.ZipFile, name: str, when: dt.datetime, src: IO[bytes]) -> None:
    with zf.open(_info(name, when), "w", force_zip64=True) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def disclosure_package_write(
    *,
    out: IO[bytes],
    customer_id: int | None,
    language: str,
    as_of: dt.datetime,
    reference: str = "",
    progress: Callable[[int], None] | None = None,
) -> PackageContents:
    """Write the package about `customer_id` (None: nobody matched) to `out`, a binary file open for writing,
    in `language` ("ja" or "en"). `progress(percent)` is called after each section. `reference` names the
    request in the package (an id, never personal data)."""
    sections = disclosure_sections()
    ctx = SectionContext(customer_id=customer_id, language=language, as_of=as_of)
    writers: list[_SectionWriter] = []
    with translation.override(language), zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(_info(JSON_NAME, as_of), "w", force_zip64=True) as raw:
            js = io.TextIOWrapper(raw, encoding="utf-8")
            head = {"format": FORMAT, "generated_at": json_value(as_of), "language": language}
            js.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "reference": ')
            js.write(json.dumps(reference) + ', "sections": [')
            for number, section in enumerate(sections):
                columns = section.columns(ctx)
                writer = _SectionWriter(section, columns)
                described = {
                    "key": section.key,
                    "title": str(section.title),
                    "about_person": section.about_person,
                    "columns": [{"name": c.name, "label": str(c.label)} for c in columns],
                }
                js.write(("," if number else "") + json.dumps(described, ensure_ascii=False)[:-1])
                js.write(', "rows": [')
                for values in section.rows(ctx):
                    record = writer.row(values)
                    js.write(("," if writer.count > 1 else "") + record)
                js.write(f'], "count": {writer.count}}}')
                writer.close()
                writers.append(writer)
                if progress is not None:
                    progress(int(90 * (number + 1) / max(len(sections), 1)))
            has_data = any(w.count for w in writers if w.section.about_person)
            js.write(f'], "has_data": {json.dumps(has_data)}}}')
            js.flush()
            js.detach()
        for w in writers:
            _copy(zf, f"csv/{w.section.key}.csv", as_of, w.csv_file)
        _write_page(zf, writers, has_data=has_data, as_of=as_of, reference=reference, language=language)
    for w in writers:
        w.csv_file.close()
        w.html.close()
    return PackageContents(rows={w.section.key: w.count for w in writers}, has_data=has_data)


def _write_page(
    zf: zipfile.ZipFile,
    writers: list[_SectionWriter],
    *,
    has_data: bool,
    as_of: dt.datetime,
    reference: str,
    language: str,
) -> None:
    sections = [
        {
            "key": w.section.key,
            "title": w.section.title,
            "count": w.count,
            "about_person": w.section.about_person,
        }
        for w in writers
    ]
    context = {
        "language": language,
        "generated_at": as_of.astimezone(JST),
        "reference": reference,
        "has_data": has_data,
        "sections": sections,
    }
    with zf.open(_info(HTML_NAME, as_of), "w", force_zip64=True) as raw:
        page = io.TextIOWrapper(raw, encoding="utf-8")
        page.write(render_to_string("disclosure/page_head.html", context))
        for described, w in zip(sections, writers, strict=True):
            head = {"section": described, "columns": w.columns}
            page.write(render_to_string("disclosure/section_head.html", head))
            while chunk := w.html.read(1 << 20):
                page.write(chunk)
            page.write(render_to_string("disclosure/section_foot.html", head))
        page.write(render_to_string("disclosure/page_foot.html", context))
        page.flush()
        page.detach()
    zf.writestr(_info(CSS_NAME, as_of), render_to_string("disclosure/style.css"))
