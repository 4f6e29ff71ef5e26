"""Inline markup carried into a translation by the model's attention (LibreTranslate's `"format": "html"`).

A sentence with inline elements ("Click <b>Save</b> to keep your changes.") translated a text node at a
time gives three fragments the model never saw together ("Klicken <b>Speichern</b> sich auf die
Änderungen halten."). Translated whole instead, the tags are put back around the target words aligned
to the words they held ("Klicken Sie auf <b>Speichern</b>, um die Änderungen zu behalten."): alignment-
based tag projection (Hanneman & Dinu, 2020, "How should markup tags be translated?"), with the word
alignment the attention gives (service.engine.word_weights). An element goes around the stretch of
target words that attend most to a word it holds (_densest), or where none does, the target word each
of its words is attended by most (this model often attends elsewhere as it writes "nicht" for "not":
the column still finds it; for del/ins/s only if distinctly); punctuation the translation puts at its
edge stays outside unless the element's own text had some there. An element inside a word goes
inside it where the translation copies the word; an empty one before the word after it. Atoms
(inline code, text kept as written) are placeholder characters the model copies (put_atoms). Where
that cannot give well-formed markup in the source's nesting (a word left out, two elements whose
words came out interleaved, words that do not match the model's tokens, an atom not copied once)
the answer is None and the caller translates the text nodes one by one, as before. Numpy and
stdlib; HTTP edge only.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\S+")
_TRAILING = ".,;:!?"  # what a sentence puts after a word it copies ("H2O.")
# Target words aligned to an element's words with more than this many others between them belong to
# separate stretches, of which the element takes the one with the most attention on its words: an
# article between two aligned words ("<em>Anzahl der Zeilen</em>" for "<em>number of rows</em>")
# stays inside, a function word's stray alignment to the sentence's other end does not stretch it
# over the sentence. On 864 + 983 test sentences with 1-3 random words in <b>
# (loadtest.inline_markup), an element took more than 2n + 1 words for n 1.2-1.5% of the time,
# 2.5-3.4% at 2, 8.4-8.6% taking every aligned word; 0 (0.2%) cut that article's phrase in two.
MAX_GAP = 1
# Elements whose place is what they say (text deleted, inserted, struck through): put only where the
# attention says so distinctly (_Alignment).
PLACE_IS_MEANING = frozenset({"del", "ins", "s"})


@dataclass(frozen=True)
class Atom:
    """Inline code or text marked not to translate inside a run: the element as written (`html`), and
    the placeholder that stands for it at [start, end) of the run's text: a private-use character,
    which the vocabulary lacks, so the model gets one unknown word and copies it by attention where
    it belongs (the copy-retry beam makes sure it does); the element goes there, as written."""

    html: str
    placeholder: str
    start: int
    end: int


MAX_ATOMS = 0xF8FF - 0xE000  # private-use characters for placeholders


def atom_placeholder(index: int) -> str:
    return chr(0xE000 + index)


def is_placeholder(character: str) -> bool:
    return 0xE000 <= ord(character) < 0xE000 + MAX_ATOMS


@dataclass(frozen=True)
class InlineElement:
    """An inline element of a run of text, its tags as written and the characters of the run's text it holds."""

    open_tag: str
    close_tag: str
    start: int
    end: int

    @property
    def name(self) -> str:
        """Its tag name, lower case ("b" for "<B class=x>"; an empty element at its start may follow)."""
        match = re.match(r"<\s*([A-Za-z][A-Za-z0-9]*)", self.open_tag)
        return match.group(1).lower() if match else ""


def _is_punctuation(character: str) -> bool:
    return unicodedata.category(character).startswith("P")


def _edges(source: str, element: InlineElement, target: str, first: tuple[int, int],
           last: tuple[int, int]) -> tuple[int, int]:
    """Where the element's tags go in `target`: around its first to last word, less the punctuation
    at their outer edges that the element's own source text does not have there."""
    held = source[element.start:element.end].strip()
    opening, closing = first[0], last[1]
    if held and not _is_punctuation(held[0]):
        while opening < first[1] - 1 and _is_punctuation(target[opening]):
            opening += 1
    if held and not _is_punctuation(held[-1]):
        while closing > max(last[0], opening) + 1 and _is_punctuation(target[closing - 1]):
            closing -= 1
    return opening, closing


def _densest(targets: list[int], attention_to_element: np.ndarray) -> tuple[int, int]:
    """The first and last of the stretch of `targets` (sorted) with the most attention on the element,
    stretches being targets at most MAX_GAP words apart: a function word of the element aligned to
    some far word ("the" in "open the" to the sentence's first) must not stretch it over the sentence."""
    stretches = [[targets[0]]]
    for target in targets[1:]:
        if target - stretches[-1][-1] <= MAX_GAP + 1:
            stretches[-1].append(target)
        else:
            stretches.append([target])
    best = max(stretches, key=lambda stretch: float(attention_to_element[stretch].sum()))
    return best[0], best[-1]


def _nested_like_source(elements: Sequence[InlineElement], places: Sequence[tuple[int, int]]) -> bool:
    """Each pair of elements in the translation as in the source: one inside the other, or apart."""
    for i, outer in enumerate(elements):
        for j in range(i + 1, len(elements)):
            inner = elements[j]
            (a_open, a_close), (b_open, b_close) = places[i], places[j]
            if outer.start <= inner.start and inner.end <= outer.end:  # source: j inside i
                if not (a_open <= b_open and b_close <= a_close):
                    return False
            elif not (a_close <= b_open or b_close <= a_open):  # source: apart
                return False
    return True


def carry_markup(source: str, elements: Sequence[InlineElement], translation: str,
                 word_weights: np.ndarray) -> str | None:
    """`translation` as HTML (escaped) with `elements` (in document order, outer before inner) put
    around its words; `word_weights` [target words, source words] is the attention between the
    whitespace-separated words of `translation` and `source` as the model's tokens made them. None
    where the markup cannot be carried (the module's docstring)."""
    source_spans = [match.span() for match in _WORD.finditer(source)]
    target_spans = [match.span() for match in _WORD.finditer(translation)]
    if word_weights.shape != (len(target_spans), len(source_spans)) or not word_weights.size:
        return None  # words the tokens do not match (a copy holding spaces): indices would point elsewhere
    alignment = _Alignment(word_weights)
    places: list[tuple[int, int]] = []
    for element in elements:
        place = _place(source, element, translation, source_spans, target_spans, alignment)
        if place is None:
            return None
        places.append(place)
    # an outer element goes around its inner ones' words too
    for i in range(len(elements) - 1, -1, -1):
        for j in range(i + 1, len(elements)):
            if elements[i].start <= elements[j].start and elements[j].end <= elements[i].end:
                places[i] = (min(places[i][0], places[j][0]), max(places[i][1], places[j][1]))
    if not _nested_like_source(elements, places):
        return None
    return _tagged(translation, elements, places)


class _Alignment:
    """Which target words a source word's element goes around: those attending to it most, or where
    none does, the one attending to it most; for an element whose place is its meaning (a deletion,
    an insertion) only if it does so distinctly (at least DISTINCT times the next): a word the model
    left out ("now" in "..., später.") is attended by no word in particular, and a strikethrough on
    some other word would say something else. (Strict for every element, 8-10% of test sentences
    with 1-3 random words in <b> were translated node by node instead, loadtest.inline_markup.)"""

    DISTINCT = 2.0

    def __init__(self, word_weights: np.ndarray) -> None:
        self.weights = word_weights
        self.attends_most = np.argmax(word_weights, axis=1)  # each target word's source word

    def targets(self, held: list[int], strict: bool) -> list[int]:
        targets = [int(t) for t in np.flatnonzero(np.isin(self.attends_most, held))]
        if targets:
            return targets
        for word in held:
            column = np.sort(self.weights[:, word])[::-1]
            if column[0] > 0 and (not strict or len(column) == 1 or column[0] >= self.DISTINCT * column[1]):
                targets.append(int(np.argmax(self.weights[:, word])))
        return targets


def _place(source: str, element: InlineElement, translation: str, source_spans: list[tuple[int, int]],
           target_spans: list[tuple[int, int]], alignment: _Alignment) -> tuple[int, int] | None:
    """Where `element`'s tags go in `translation` ([open, close) characters), or None."""
    held_text = source[element.start:element.end]
    if not held_text.strip():  # empty (an icon, an anchor): before the word after it, or at the end
        following = [word for word, (start, _) in enumerate(source_spans) if start >= element.start]
        if not following:
            return len(translation), len(translation)
        targets = alignment.targets(following[:1], strict=False)
        return (target_spans[min(targets)][0],) * 2 if targets else None
    if not any(character.isalnum() for character in held_text):
        return None  # punctuation alone ("Hello<b>,</b>"): the words around it would take the tags
    inside = [(start, end) for start, end in source_spans
              if _splits(source[start:end], element.start - start) or _splits(source[start:end], element.end - start)]
    if inside:  # an edge inside a word ("H<sub>2</sub>O"): only within that word, copied as it was
        word = inside[0]
        if any(span != word for span in inside) or not (word[0] <= element.start and element.end <= word[1]):
            return None
        copies = [start for start, end in target_spans if translation[start:end].rstrip(_TRAILING) ==
                  source[word[0]:word[1]].rstrip(_TRAILING)]
        if len(copies) != 1:
            return None
        return copies[0] + element.start - word[0], copies[0] + element.end - word[0]
    held = [word for word, (start, end) in enumerate(source_spans) if start < element.end and end > element.start]
    targets = alignment.targets(held, strict=element.name in PLACE_IS_MEANING)
    if not targets:
        return None
    first, last = _densest(sorted(set(targets)), alignment.weights[:, held].sum(axis=1))
    return _edges(source, element, translation, target_spans[first], target_spans[last])


def _splits(word: str, at: int) -> bool:
    """An element's edge `at` characters into `word` cuts it between letters or digits (not merely
    off its punctuation: "options." at 7, "Stop!" at 4 do not)."""
    return 0 < at < len(word) and any(c.isalnum() for c in word[:at]) and any(c.isalnum() for c in word[at:])


def _tagged(translation: str, elements: Sequence[InlineElement], places: Sequence[tuple[int, int]]) -> str:
    """`translation` escaped, each element's tags at its place: at one position the elements ending
    there close (innermost first), then those starting there open in document order (an empty one
    closing at once)."""
    order = sorted(range(len(elements)), key=lambda index: (places[index][0], index))
    out: list[str] = []
    open_ones: list[int] = []
    position = 0

    def advance(to: int) -> None:
        nonlocal position
        while open_ones and places[open_ones[-1]][1] <= to:
            closing = places[open_ones[-1]][1]
            out.append(html.escape(translation[position:closing], quote=False))
            out.append(elements[open_ones.pop()].close_tag)
            position = closing

    for index in order:
        opening, closing = places[index]
        advance(opening)
        out.append(html.escape(translation[position:opening], quote=False))
        out.append(elements[index].open_tag)
        position = opening
        if closing == opening:
            out.append(elements[index].close_tag)
        else:
            open_ones.append(index)
    advance(len(translation))
    out.append(html.escape(translation[position:], quote=False))
    return "".join(out)


def put_atoms(markup: str, atoms: Sequence[Atom]) -> str | None:
    """`markup` (a run's translation as HTML) with each atom's placeholder replaced by the atom as
    written; None unless every atom was copied exactly once (the model left one out, or wrote it
    twice)."""
    for atom in atoms:
        if markup.count(atom.placeholder) != 1:
            return None
        markup = markup.replace(atom.placeholder, atom.html)
    return markup
