"""The text of an HTML fragment, for LibreTranslate's `"format": "html"`: every text node is translated
and put back where it was, everything else kept byte for byte as it was sent. Text nodes joined only
by inline elements ("Click <b>Save</b> to keep your changes.") also form a run, translated as the one
sentence it is, its elements carried into the translation by attention (service.api.markup_transfer);
a run whose markup cannot be carried is translated node by node (as LibreTranslate's own
translatehtml does). Inline code (code, kbd, samp, var) and inline elements the page marks not to
translate inside such a sentence are atoms of its run: the model gets a placeholder character it
cannot spell (one unknown word, copied by attention) and the element goes where the copy goes,
kept whole as written ("Press <kbd>Ctrl</kbd>+<kbd>P</kbd> to print.").

Text inside script, style, code, pre, textarea and similar elements is not prose and is kept as it
is, and so is text the page marks so: HTML's `translate="no"` (inherited by the element's content
until a `translate="yes"`) and the `notranslate` class that web translators honour. Entities are
decoded before translation and the translation is escaped again. Stdlib (and markup_transfer's
types); HTTP edge only: must not import the engine or onnxruntime.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

from service.api.markup_transfer import MAX_ATOMS, Atom, InlineElement, atom_placeholder, is_placeholder

# Elements whose text is code or preformatted, never translated.
UNTRANSLATED_ELEMENTS = frozenset({"script", "style", "code", "pre", "textarea", "kbd", "samp", "var", "noscript"})
# Elements that never have content or an end tag: nothing to inherit from them.
VOID_ELEMENTS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                           "source", "track", "wbr"})
_RUN_KINDS = frozenset({"text", "space", "open", "close", "atom"})
# Phrasing elements a sentence runs through ("Click <b>Save</b> now"); not code (kept as written) nor
# void ones (an image or a line break ends the run).
INLINE_ELEMENTS = frozenset({"a", "abbr", "b", "bdi", "bdo", "cite", "data", "del", "dfn", "em", "font", "i", "ins",
                             "mark", "q", "s", "small", "span", "strong", "sub", "sup", "time", "u"})
# Inline code a sentence runs through ("Press <kbd>Ctrl</kbd> to ..."): kept as written inside a run,
# like an inline element the page marks not to translate (an atom of the run).
INLINE_CODE_ELEMENTS = frozenset({"code", "kbd", "samp", "var"})
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
    tag: str = ""  # the start or end tag of an inline element (role "inline") or an atom ("atom")
    closing: bool = False  # an end tag
    role: str = ""


@dataclass(frozen=True)
class Run:
    """Text nodes joined only by inline elements: `text`, the nodes' text as one (whitespace collapsed,
    trimmed), the `elements` within it, in document order, and the `atoms` (kept as written);
    `nodes`, the text nodes it holds."""

    nodes: list[int]
    text: str
    elements: list[InlineElement]
    atoms: list[Atom]
    parts: tuple[int, int] = field(repr=False)  # the document's parts it replaces, [first, last)


def _empty_element(opening: tuple[str, int, int, str], closing: tuple[str, int, int, str]) -> bool:
    return opening[0] == "open" and closing[0] == "close" and opening[3] == closing[3]


class HtmlDocument(HTMLParser):
    """`texts`: the text nodes to translate, their whitespace collapsed to single spaces (HTML
    renders it so) and trimmed; `runs`: those of them joined by inline elements (two or more nodes,
    every element in it closed in it). `render(translations, carried)` puts one translation back per
    text node, with the node's own leading and trailing whitespace around it, or for a run in
    `carried` (by its index) that HTML in place of all of it, and every other character of the
    source as it was written (tags' case and spacing, declarations, CDATA, entities in code).

    The parser only says where each construct starts (`getpos`); a construct runs to the next one's
    start, so markup is copied from the source rather than rebuilt from what the parser made of it.
    """

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0] + [match.end() for match in re.finditer("\n", source)]
        self._spans: list[_Span] = []
        # open elements: tag, whether their text is translated, whether they are (inside) code, their
        # role in a run ("inline", "atom" or "": _role)
        self._open: list[tuple[str, bool, bool, str]] = []
        self.feed(source)
        self.close()
        self._parts: list[str | int] = []  # source text as written, or the index of a text node
        # each part's kind: "text", "space" (whitespace between inline elements), "open"/"close" (an
        # inline element's tag) or "" (anything else: it ends a run), and the tag's name
        self._kinds: list[tuple[str, str]] = []
        self._edges: list[tuple[str, str]] = []  # each text node's leading and trailing whitespace
        self.texts: list[str] = []
        self._collect()
        self.runs: list[Run] = self._find_runs()

    def render(self, translations: Sequence[str | None], carried: Mapping[int, str] | None = None) -> str:
        """The document with `translations` (one per text node; None only for a node of a carried run)
        and `carried` (run index -> its translation as HTML, markup_transfer.carry_markup)."""
        if len(translations) != len(self.texts):
            raise ValueError(f"{len(translations)} translations for {len(self.texts)} text nodes")
        replaced = {self.runs[index].parts[0]: (self.runs[index], html_text)
                    for index, html_text in (carried or {}).items()}
        out = []
        position = 0
        while position < len(self._parts):
            if position in replaced:
                run, html_text = replaced[position]
                first, last = self._parts[run.parts[0]], self._parts[run.parts[1] - 1]
                out.append((self._edges[first][0] if isinstance(first, int) else "") + html_text
                           + (self._edges[last][1] if isinstance(last, int) else ""))
                position = run.parts[1]
                continue
            part = self._parts[position]
            if isinstance(part, int):
                translation = translations[part]
                if translation is None:
                    raise ValueError(f"no translation for text node {part}")
                lead, trail = self._edges[part]
                out.append(lead + html.escape(translation, quote=False) + trail)
            else:
                out.append(part)
            position += 1
        return "".join(out)

    def _units(self) -> list[tuple[str, int, int, str]]:
        """The parts as (kind, first part, end part, tag): an atom's start tag, what it holds and its
        end tag are one unit of kind "atom"; every other part a unit of its own kind."""
        units = []
        position = 0
        while position < len(self._parts):
            kind, tag = self._kinds[position]
            if kind == "atom_open":
                end = next((later for later in range(position + 1, len(self._parts))
                            if self._kinds[later] == ("atom_close", tag)), None)
                if end is not None:
                    units.append(("atom", position, end + 1, tag))
                    position = end + 1
                    continue
                kind = ""  # never closed: it ends a run
            units.append((kind if kind != "atom_close" else "", position, position + 1, tag))
            position += 1
        return units

    def _find_runs(self) -> list[Run]:
        """Stretches of text nodes, whitespace, inline tags and atoms holding a text node and another
        text node or atom, trimmed of tags that close what opened before them or open what closes
        after them, every element in them closed in them in order."""
        units = self._units()
        runs: list[Run] = []
        position = 0
        while position < len(units):
            end = position
            while end < len(units) and units[end][0] in _RUN_KINDS:
                end += 1
            first, last = position, end
            while True:  # what closes before it or opens after it, and empty elements at its edges
                if first < last and units[first][0] in ("close", "space"):
                    first += 1
                elif last > first and units[last - 1][0] in ("open", "space"):
                    last -= 1
                elif last - first >= 2 and _empty_element(units[first], units[first + 1]):
                    first += 2
                elif last - first >= 2 and _empty_element(units[last - 2], units[last - 1]):
                    last -= 2
                else:
                    break
            stretch = units[first:last]
            texts = sum(kind == "text" for kind, *_ in stretch)
            atoms = sum(kind == "atom" for kind, *_ in stretch)
            if texts and texts + atoms >= 2 and self._balanced(stretch):
                run = self._run(stretch)
                if run is not None:
                    runs.append(run)
            position = max(end, position + 1)
        return runs

    @staticmethod
    def _balanced(stretch: list[tuple[str, int, int, str]]) -> bool:
        open_tags: list[str] = []
        for kind, _, _, tag in stretch:
            if kind == "open":
                open_tags.append(tag)
            elif kind == "close" and (not open_tags or open_tags.pop() != tag):
                return False
        return not open_tags

    def _run(self, stretch: list[tuple[str, int, int, str]]) -> Run | None:
        """The run of `stretch`: its text as HTML renders it (whitespace collapsed, trimmed, each atom
        a placeholder character) and where each element's tags and each atom stand in it. An empty
        element at the start or end of another goes with that one's tags (a link's trailing icon
        stays in the link). None where an atom holds text to translate (kept node by node), or the
        text holds placeholder characters of its own."""
        chunks: list[str] = []
        length = 0
        space_pending = False

        def add(raw: str) -> None:
            nonlocal length, space_pending
            for word in re.split(f"([{_HTML_SPACE_CHARACTERS}]+)", raw):
                if not word:
                    continue
                if word[0] in _HTML_SPACE_CHARACTERS:
                    space_pending = length > 0
                    continue
                if space_pending:
                    chunks.append(" ")
                    length += 1
                    space_pending = False
                chunks.append(word)
                length += len(word)

        # open elements: (place in document order, open tag as written, where its text starts, how
        # much the run held when it opened)
        opened: list[tuple[int, str, int, int]] = []
        elements: list[tuple[int, InlineElement]] = []
        atoms: list[Atom] = []
        nodes: list[int] = []
        close_prefix = ""  # an empty element that ends its parent: written before the parent's end tag
        held = 0  # text, atoms and elements so far
        for position, (kind, first, end, _) in enumerate(stretch):
            part = self._parts[first]
            if kind == "text":
                nodes.append(int(part))
                lead, trail = self._edges[int(part)]
                add(lead + self.texts[int(part)] + trail)
                held += 1
            elif kind == "space":
                space_pending = length > 0
            elif kind == "atom":
                inner = range(first, end)
                if any(isinstance(self._parts[index], int) for index in inner) or len(atoms) >= MAX_ATOMS:
                    return None
                begins = length + (1 if space_pending else 0)
                add(atom_placeholder(len(atoms)))
                atoms.append(Atom("".join(str(self._parts[index]) for index in inner), atom_placeholder(len(atoms)),
                                  begins, length))
                held += 1
            elif kind == "open":
                opened.append((len(opened) + len(elements), str(part), length + (1 if space_pending else 0), held))
            else:  # close: _balanced paired it with the last one opened
                order, open_tag, start, held_then = opened.pop()
                close_tag, close_prefix = close_prefix + str(part), ""
                if held_then == held and opened:  # empty, inside another element
                    if position + 1 < len(stretch) and stretch[position + 1][0] == "close":
                        close_prefix = open_tag + close_tag  # at its parent's end
                        continue
                    if opened[-1][3] == held:  # at its parent's start
                        parent = opened[-1]
                        opened[-1] = (parent[0], parent[1] + open_tag + close_tag, parent[2], parent[3])
                        continue
                elements.append((order, InlineElement(open_tag, close_tag, start, max(start, length))))
                held += 1
        text = "".join(chunks)
        if sum(is_placeholder(character) for character in text) != len(atoms):
            return None
        # document order: as the open tags stood (outer before inner)
        return Run(nodes, text, [element for _, element in sorted(elements, key=lambda item: item[0])],
                   atoms, (stretch[0][1], stretch[-1][2]))

    def _collect(self) -> None:
        """Cut the source at the spans' starts; consecutive text spans are one text node (the
        parser hands a stray "<" to handle_data on its own)."""
        if not self._spans:
            self._part(self._source)
            return
        if self._spans[0].start:  # a construct the parser skipped without a callback ("</>"): markup
            self._part(self._source[: self._spans[0].start])
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
                self._part(rest)
            else:
                if pending:
                    self._add_text("".join(pending), translated)
                    pending, translated = [], False
                kind = {"inline": "open", "atom": "atom_open"}.get(span.role, "")
                if span.closing and kind:
                    kind = kind.replace("open", "close")
                self._part(raw, kind, span.tag)
        if pending:
            self._add_text("".join(pending), translated)

    def _add_text(self, raw: str, translated: bool) -> None:
        if not translated:
            self._part(raw, "kept_text")
            return
        decoded = html.unescape(raw)
        core = _HTML_SPACE.sub(" ", decoded).strip(_HTML_SPACE_CHARACTERS)
        if all(character.isspace() or unicodedata.category(character) == "Cf" for character in core):
            # layout, not text: whitespace, also as &nbsp; or a character reference, or invisible
            # characters (a cell or paragraph of &nbsp; keeps it; between inline elements, a space)
            self._part(raw, "space")
            return
        body = raw.strip(_HTML_SPACE_CHARACTERS)
        lead = raw[: len(raw) - len(raw.lstrip(_HTML_SPACE_CHARACTERS))]
        trail = raw[len(lead) + len(body):]
        # whitespace written as a character reference ("&#32;now") is whitespace at the node's edge too
        self._edges.append((lead or (" " if decoded[:1] in _HTML_SPACE_CHARACTERS else ""),
                            trail or (" " if decoded[-1:] in _HTML_SPACE_CHARACTERS else "")))
        self._part(len(self.texts), "text")
        self.texts.append(core)

    def _part(self, part: str | int, kind: str = "", tag: str = "") -> None:
        self._parts.append(part)
        self._kinds.append((kind, tag))

    def _mark(self, text: bool = False, translated: bool = False, tag: str = "", closing: bool = False,
              role: str = "") -> None:
        line, column = self.getpos()  # where the construct being handled starts
        self._spans.append(_Span(self._line_starts[line - 1] + column, text, translated, tag if role else "",
                                 closing, role))

    # ---- HTMLParser callbacks ------------------------------------------------------------------

    def _role(self, tag: str, translating: bool) -> str:
        """What the element just opened is to a run, noted on it for its end tag: "inline" (its text
        translated as its parent's, which is translated), "atom" (inline code, or an inline element
        the page marks not to translate, inside translated text: kept whole) or "" (it ends a run)."""
        if not translating or not self._open or self._open[-1][0] != tag:  # a void element: not opened
            return ""
        translated = self._open[-1][1]
        role = ("inline" if translated else "atom") if tag in INLINE_ELEMENTS else \
            "atom" if tag in INLINE_CODE_ELEMENTS else ""
        self._open[-1] = (*self._open[-1][:3], role)
        return role

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
        self._open.append((tag, translated, code, ""))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        translating = self._translating()
        self._open_element(tag, attrs)
        self._mark(tag=tag, role=self._role(tag, translating))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # "/>" closes nothing in HTML but a void element: <span translate="no"/> holds what follows
        self._open_element(tag, attrs)
        self._mark()

    def handle_endtag(self, tag: str) -> None:
        # Close it and whatever was left open inside it (HTML's implied end tags: <li>, <p>, ...);
        # an end tag without its element closes nothing.
        role = ""
        for depth in range(len(self._open) - 1, -1, -1):
            if self._open[depth][0] == tag:
                if depth == len(self._open) - 1:  # the innermost: its role as its start tag had it
                    role = self._open[depth][3]
                del self._open[depth:]
                break
        self._mark(tag=tag, closing=True, role=role)

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
