"""The text of an HTML fragment, for LibreTranslate's `"format": "html"`: every text node is translated
on its own and put back where it was, everything else kept byte for byte as it was sent (as
LibreTranslate's own translatehtml does, node by node).

Text inside script, style, code, pre, textarea and similar elements is not prose and is kept as it
is, and so is text the page marks so: HTML's `translate="no"` (inherited by the element's content
until a `translate="yes"`) and the `notranslate` class that web translators honour. Entities are
decoded before translation and the translation is escaped again. Stdlib only;
HTTP edge only: must not import the engine or onnxruntime.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser

# Elements whose text is code or preformatted, never translated.
UNTRANSLATED_ELEMENTS = frozenset({"script", "style", "code", "pre", "textarea", "kbd", "samp", "var", "noscript"})
# Elements that never have content or an end tag: nothing to inherit from them.
VOID_ELEMENTS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                           "source", "track", "wbr"})
# HTML's own whitespace (ASCII only: a no-break space is text, not layout).
_HTML_SPACE = re.compile(r"[ \t\n\f\r]+")
_HTML_SPACE_CHARACTERS = " \t\n\f\r"


@dataclass
class _Span:
    """A stretch of the source from `start` to the next span's start: markup, or text that is
    translated when `translated`."""

    start: int
    text: bool
    translated: bool


class HtmlDocument(HTMLParser):
    """`texts`: the text nodes to translate, their whitespace collapsed to single spaces (HTML
    renders it so) and trimmed; `render(translations)` puts one translation back per text node, with
    the node's own leading and trailing whitespace around it, and every other character of the
    source as it was written (tags' case and spacing, declarations, CDATA, entities in code).

    The parser only says where each construct starts (`getpos`); a construct runs to the next one's
    start, so markup is copied from the source rather than rebuilt from what the parser made of it.
    """

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0] + [match.end() for match in re.finditer("\n", source)]
        self._spans: list[_Span] = []
        # open elements: tag, whether their text is translated, whether they are (inside) code
        self._open: list[tuple[str, bool, bool]] = []
        self.feed(source)
        self.close()
        self._parts: list[str | int] = []  # source text as written, or the index of a text node
        self._edges: list[tuple[str, str]] = []  # each text node's leading and trailing whitespace
        self.texts: list[str] = []
        self._collect()

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

    def _collect(self) -> None:
        """Cut the source at the spans' starts; consecutive text spans are one text node (the
        parser hands a stray "<" to handle_data on its own)."""
        if not self._spans:
            self._parts.append(self._source)
            return
        if self._spans[0].start:  # a construct the parser skipped without a callback ("</>"): markup
            self._parts.append(self._source[: self._spans[0].start])
        ends = [span.start for span in self._spans[1:]] + [len(self._source)]
        pending: list[str] = []  # raw text of the text node being gathered
        translated = False
        for span, end in zip(self._spans, ends, strict=True):
            raw = self._source[span.start:end]
            if span.text:
                # A construct the parser skipped without a callback ("</>") follows the text: markup.
                cut = raw.find("<", 1)
                text, rest = (raw, "") if cut < 0 else (raw[:cut], raw[cut:])
                pending.append(text)
                translated = translated or span.translated
                if not rest:
                    continue
                self._add_text("".join(pending), translated)
                pending, translated = [], False
                self._parts.append(rest)
            else:
                if pending:
                    self._add_text("".join(pending), translated)
                    pending, translated = [], False
                self._parts.append(raw)
        if pending:
            self._add_text("".join(pending), translated)

    def _add_text(self, raw: str, translated: bool) -> None:
        core = _HTML_SPACE.sub(" ", html.unescape(raw)).strip(_HTML_SPACE_CHARACTERS)
        if not translated or not core:
            self._parts.append(raw)
            return
        body = raw.strip(_HTML_SPACE_CHARACTERS)
        lead = raw[: len(raw) - len(raw.lstrip(_HTML_SPACE_CHARACTERS))]
        self._edges.append((lead, raw[len(lead) + len(body):]))
        self._parts.append(len(self.texts))
        self.texts.append(core)

    def _mark(self, text: bool = False, translated: bool = False) -> None:
        line, column = self.getpos()  # where the construct being handled starts
        self._spans.append(_Span(self._line_starts[line - 1] + column, text, translated))

    # ---- HTMLParser callbacks ------------------------------------------------------------------

    def _translating(self) -> bool:
        return self._open[-1][1] if self._open else True

    def _open_element(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_ELEMENTS:
            return
        code = (self._open[-1][2] if self._open else False) or tag in UNTRANSLATED_ELEMENTS
        translated = self._translating() and not code
        values = dict(attrs)
        choice = (values.get("translate") or "").lower()  # an enumerated attribute: " no " is invalid, inherit
        if choice == "no" or "notranslate" in (values.get("class") or "").split():
            translated = False
        elif choice in ("yes", "") and "translate" in values and not code:  # translate="yes" (or just translate)
            translated = True
        self._open.append((tag, translated, code))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open_element(tag, attrs)
        self._mark()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # "/>" closes nothing in HTML but a void element: <span translate="no"/> holds what follows
        self._open_element(tag, attrs)
        self._mark()

    def handle_endtag(self, tag: str) -> None:
        # Close it and whatever was left open inside it (HTML's implied end tags: <li>, <p>, ...);
        # an end tag without its element closes nothing.
        for depth in range(len(self._open) - 1, -1, -1):
            if self._open[depth][0] == tag:
                del self._open[depth:]
                break
        self._mark()

    def handle_data(self, data: str) -> None:
        self._mark(text=True, translated=self._translating() and self.cdata_elem is None)

    def handle_comment(self, data: str) -> None:
        self._mark()

    def handle_decl(self, decl: str) -> None:
        self._mark()

    def handle_pi(self, data: str) -> None:
        self._mark()

    def unknown_decl(self, data: str) -> None:
        self._mark()
