"""Parsers for LibreOffice help pages (aligned by element id) and UI catalogs (.mo), English -> German.

Stdlib + lxml only. Help: Debian `libreoffice-help-en-us`/`-de`; UI: `libreoffice-l10n-de` (MPL-2.0).
"""

from __future__ import annotations

import gettext
import re
from collections.abc import Iterator
from pathlib import Path

import lxml.html

from training.data.corpus import Pair, normalise_text

HELP_ROOT = Path("/usr/share/libreoffice/help")
UI_CATALOG_DIR = Path("/usr/lib/libreoffice/program/resource/de/LC_MESSAGES")
ALIGNABLE_ID = re.compile(r"^(par_id|hd_id|bm_id)")
# UI strings with format placeholders or markup are templates, not sentences.
UI_TEMPLATE = re.compile(r"%|\$\(|[<>{}\\]|\bhttps?:")
MSGCTXT_SEPARATOR = "\x04"


def texts_by_id(html_path: Path) -> dict[str, list[str]]:
    """Whitespace-normalised text of every alignable element, keyed by id (ids may repeat in a page)."""
    # The help pages are UTF-8; say so rather than let lxml guess from a meta tag that may be missing.
    tree = lxml.html.parse(str(html_path), parser=lxml.html.HTMLParser(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for element in tree.iter():
        element_id = element.get("id") if isinstance(element.tag, str) else None
        if element_id and ALIGNABLE_ID.match(element_id):
            found.setdefault(element_id, []).append(normalise_text(element.text_content()))
    return found


def align_help_file(english_path: Path, german_path: Path) -> list[Pair]:
    """Pairs of elements with the same id in the two language versions of one help page."""
    english_texts, german_texts = texts_by_id(english_path), texts_by_id(german_path)
    pairs = []
    for element_id, english_list in english_texts.items():
        german_list = german_texts.get(element_id)
        if german_list is None or len(german_list) != len(english_list):
            continue
        for english, german in zip(english_list, german_list, strict=True):
            # Equal sides are code, function names or untranslated text: nothing to learn.
            if english and german and english != german:
                pairs.append(Pair(english=english, german=german, origin="libreoffice_help"))
    return pairs


def read_help(
    english_root: Path = HELP_ROOT / "en-US", german_root: Path = HELP_ROOT / "de"
) -> Iterator[Pair]:
    """Aligned paragraphs of every page present in both languages (same relative path), in path order."""
    for english_path in sorted((english_root / "text").rglob("*.html")):
        german_path = german_root / english_path.relative_to(english_root)
        if german_path.is_file():
            yield from align_help_file(english_path, german_path)


def clean_ui_string(text: str) -> str:
    """Drop accelerator markers: `~` (LibreOffice) and a single `_` mnemonic (GTK .ui files)."""
    text = text.replace("~", "")
    if text.count("_") == 1:
        text = re.sub(r"_(?=\w)", "", text)
    return normalise_text(text)


def read_ui_catalog(mo_path: Path) -> list[Pair]:
    with mo_path.open("rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    pairs = []
    for key, translated in catalog.items():
        if not isinstance(key, str) or not key or not translated:  # tuple keys are plural forms
            continue
        source = key.split(MSGCTXT_SEPARATOR, 1)[-1]
        if UI_TEMPLATE.search(source) or UI_TEMPLATE.search(translated):
            continue
        english, german = clean_ui_string(source), clean_ui_string(translated)
        if english and german and english != german:
            pairs.append(Pair(english=english, german=german, origin="libreoffice_ui"))
    return pairs


def read_ui(catalog_dir: Path = UI_CATALOG_DIR) -> Iterator[Pair]:
    for mo_path in sorted(catalog_dir.glob("*.mo")):
        yield from read_ui_catalog(mo_path)
