"""The text of an HTML fragment, for LibreTranslate's `"format": "html"`: every text node is translated
on its own and put back where it was, tags, attributes and comments untouched (as LibreTranslate's
own translatehtml does, node by node).

Text inside script, style, code, pre, textarea and similar elements is not prose and is kept as it
is. Entities are decoded before translation and the translation is escaped again. Stdlib only;
HTTP edge only: must not import the engine or onnxruntime.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

# Elements whose text is code or preformatted, never translated.
UNTRANSLATED_ELEMENTS = frozenset({"script", "style", "code", "pre", "textarea", "kbd", "samp", "var", "noscript"})
_SPACE = re.compile(r"\s+")


class HtmlDocument(HTMLParser):
    """`texts`: the text nodes to translate, their whitespace collapsed to single spaces (HTML
    renders it so) and trimmed; `render(translations)` puts one translation back per text node, with
    the node's own leading and trailing whitespace around it."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str | int] = []  # markup as written, or the index of a text node
        self._edges: list[tuple[str, str]] = []  # each text node's leading and trailing whitespace
        self.texts: list[str] = []
        self._untranslated_depth = 0
        self.feed(source)
        self.close()

    def render(self, translations: list[str]) -> str:
        if len(translations) != len(self.texts):
            raise ValueError(f"{len(translations)} translations for {len(self.texts)} text nodes")
        out = []
        for part in self._parts:
            if isinstance(part, int):
                lead, trail = self._edges[part]
                out.append(lead + html.escape(translations[part], quote=False) + trail)
            else:
                out.append(part)
        return "".join(out)

    # ---- HTMLParser callbacks ------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in UNTRANSLATED_ELEMENTS:
            self._untranslated_depth += 1
        self._parts.append(self.get_starttag_text() or f"<{tag}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._parts.append(self.get_starttag_text() or f"<{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if tag in UNTRANSLATED_ELEMENTS and self._untranslated_depth:
            self._untranslated_depth -= 1
        self._parts.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        core = _SPACE.sub(" ", data).strip()
        if not core or self._untranslated_depth or self.cdata_elem is not None:
            self._parts.append(data if self.cdata_elem is not None else html.escape(data, quote=False))
            return
        start = len(data) - len(data.lstrip())
        end = len(data.rstrip())
        self._edges.append((data[:start], data[end:]))
        self._parts.append(len(self.texts))
        self.texts.append(core)

    def handle_comment(self, data: str) -> None:
        self._parts.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self._parts.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self._parts.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self._parts.append(f"<![{data}]>")
