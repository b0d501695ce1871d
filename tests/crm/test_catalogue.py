"""The English catalogue (locale/en): every Japanese message has a reviewed translation, and the compiled
file the application loads says the same as the source catalogue."""

from __future__ import annotations

import ast
import gettext
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

PO = Path(settings.BASE_DIR) / "locale" / "en" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|%[sdif]|\{\w*\}")


@dataclass
class Entry:
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False
    parts: dict[str, str] = field(default_factory=dict)  # "msgid", "msgid_plural", "msgstr", "msgstr[0]" …


def _entries() -> list[Entry]:
    """The catalogue's entries (a small reader of the PO format: keywords, quoted continuation lines)."""
    entries, current, key = [], Entry(), None
    for line in [*PO.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if current.parts:
                entries.append(current)
            current, key = Entry(), None
        elif line.startswith("#~"):
            current.obsolete = True
        elif line.startswith("#,"):
            current.flags |= {f.strip() for f in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            current.parts[key] += ast.literal_eval(line)
        else:
            key, _sep, quoted = line.partition(" ")
            current.parts[key] = ast.literal_eval(quoted)
    return [e for e in entries if not e.obsolete and e.parts.get("msgid")]


def _translations(entry: Entry) -> list[str]:
    return [v for k, v in entry.parts.items() if k.startswith("msgstr")]


def test_every_message_has_a_reviewed_english_translation():
    entries = _entries()
    assert len(entries) > 300
    untranslated = [e.parts["msgid"] for e in entries if not all(_translations(e))]
    fuzzy = [e.parts["msgid"] for e in entries if "fuzzy" in e.flags]
    assert untranslated == [], f"{len(untranslated)} without English: {untranslated[:5]}"
    assert fuzzy == [], f"{len(fuzzy)} guessed by gettext, not reviewed: {fuzzy[:5]}"


def test_translations_keep_every_placeholder_of_the_japanese_text():
    for entry in _entries():
        wanted = sorted(PLACEHOLDER.findall(entry.parts["msgid"]))
        for text in _translations(entry):
            assert sorted(PLACEHOLDER.findall(text)) == wanted, entry.parts["msgid"]


def test_the_compiled_catalogue_matches_the_source():
    # what Django loads (the .mo) answers each message with the .po's translation
    compiled = gettext.GNUTranslations(MO.open("rb"))
    for entry in _entries():
        if "msgid_plural" in entry.parts:
            got = compiled.ngettext(entry.parts["msgid"], entry.parts["msgid_plural"], 1)
            assert got == entry.parts["msgstr[0]"], entry.parts["msgid"]
        elif "msgctxt" in entry.parts:
            assert compiled.pgettext(entry.parts["msgctxt"], entry.parts["msgid"]) == entry.parts["msgstr"]
        else:
            assert compiled.gettext(entry.parts["msgid"]) == entry.parts["msgstr"], entry.parts["msgid"]
