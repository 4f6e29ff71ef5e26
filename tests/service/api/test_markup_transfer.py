"""carry_markup: inline elements put around the target words the attention aligns to their own, in the
source's nesting, or None (the caller then translates node by node)."""

from __future__ import annotations

import numpy as np
import pytest

from service.api.markup_transfer import Atom, InlineElement, atom_placeholder, carry_markup, put_atoms


def element(source: str, held: str, tag: str = "b", attributes: str = "", occurrence: int = 0) -> InlineElement:
    start = -1
    for _ in range(occurrence + 1):
        start = source.index(held, start + 1)
    return InlineElement(f"<{tag}{attributes}>", f"</{tag}>", start, start + len(held))


def aligned(pairs: list[tuple[int, int]], target_words: int, source_words: int) -> np.ndarray:
    """A word attention matrix where target word t attends to source word s for each (t, s)."""
    weights = np.full((target_words, source_words), 0.01)
    for target, source in pairs:
        weights[target, source] = 0.9
    return weights


def test_an_element_goes_around_the_words_aligned_to_its_own() -> None:
    source = "Click Save to keep your changes."
    translation = "Klicken Sie auf Speichern, um die Änderungen zu behalten."
    weights = aligned([(0, 0), (1, 0), (2, 0), (3, 1), (4, 2), (5, 4), (6, 5), (7, 3), (8, 3)], 9, 6)
    assert carry_markup(source, [element(source, "Save")], translation, weights) == \
        "Klicken Sie auf <b>Speichern</b>, um die Änderungen zu behalten."  # its comma stays outside


def test_elements_follow_their_words_where_the_translation_reorders_them() -> None:
    source = "Select the Print command in the File menu."
    translation = "Wählen Sie im Menü Datei drucken."
    weights = aligned([(0, 0), (1, 1), (2, 4), (3, 7), (4, 6), (5, 2)], 6, 8)
    elements = [element(source, "Print", "strong"), element(source, "File", "em")]
    assert carry_markup(source, elements, translation, weights) == \
        "Wählen Sie im Menü <em>Datei</em> <strong>drucken</strong>."


def test_a_word_no_target_word_attends_to_is_found_by_its_column() -> None:
    """'nicht' attends most to 'You', yet of all target words it is the one attending most to 'not'."""
    source = "You can not undo this."
    translation = "Das kannst du nicht entgehen lassen."
    weights = aligned([(0, 3), (1, 0), (2, 0), (3, 0), (4, 3), (5, 4)], 6, 5)
    weights[3, 2] = 0.06
    assert carry_markup(source, [element(source, "not")], translation, weights) == \
        "Das kannst du <b>nicht</b> entgehen lassen."
    weights[:, 2] = 0.0  # nothing attends to it at all: nowhere to put it
    assert carry_markup(source, [element(source, "not")], translation, weights) is None


def test_nested_elements_stay_nested_and_the_outer_holds_the_inner() -> None:
    source = "It explains all print options."
    translation = "Sie erklärt alle Druckoptionen."
    # "Druckoptionen" attends to "options"; "print" is held by nothing but its column
    weights = aligned([(0, 0), (1, 1), (2, 2), (3, 4)], 4, 5)
    weights[3, 3] = 0.3
    outer = element(source, "all print options", "b")
    inner = element(source, "print", "i")
    assert carry_markup(source, [outer, inner], translation, weights) == \
        "Sie erklärt <b>alle <i>Druckoptionen</i></b>."
    same = [InlineElement("<b>", "</b>", inner.start, inner.end), inner]  # <b><i>print</i></b>
    assert carry_markup(source, same, translation, weights) == "Sie erklärt alle <b><i>Druckoptionen</i></b>."


def test_siblings_whose_words_interleave_in_the_translation_are_not_carried() -> None:
    source = "red and blue cars"
    translation = "rote blaue und Autos"
    weights = aligned([(0, 0), (1, 2), (2, 1), (3, 3)], 4, 4)
    first, second = element(source, "red and"), element(source, "blue", "i")
    assert carry_markup(source, [first, second], translation, weights) is None


def test_punctuation_the_element_holds_stays_inside() -> None:
    source = "Press Stop! now"
    translation = "Drücke Stopp! jetzt"
    weights = aligned([(0, 0), (1, 1), (2, 2)], 3, 3)
    assert carry_markup(source, [element(source, "Stop!")], translation, weights) == "Drücke <b>Stopp!</b> jetzt"
    assert carry_markup(source, [element(source, "Stop")], translation, weights) == "Drücke <b>Stopp</b>! jetzt"


def test_the_translation_is_escaped_and_the_tags_kept_as_written() -> None:
    source = "Fish & chips"
    translation = "Fisch & <Pommes>"
    weights = aligned([(0, 0), (1, 1), (2, 2)], 3, 3)
    assert carry_markup(source, [element(source, "chips", "a", ' href="/x?a=1&amp;b=2"')], translation, weights) \
        == 'Fisch &amp; <a href="/x?a=1&amp;b=2">&lt;Pommes&gt;</a>'


@pytest.mark.parametrize("shape", [(3, 2), (2, 3), (0, 0)])
def test_words_the_tokens_do_not_match_are_not_guessed(shape: tuple[int, int]) -> None:
    """The matrix counts the model's words; when the text's whitespace words differ in number (a copy
    holding spaces), indices would point at other words."""
    assert carry_markup("two words", [element("two words", "two")], "zwei Wörter", np.ones(shape)) is None


def test_a_stray_alignment_far_away_does_not_stretch_an_element_over_the_sentence() -> None:
    """'a' attends back to 'Wählen' two words before the rest: the element keeps the stretch with
    the most attention on its words; one word between aligned words (an article) stays inside."""
    source = "Select a color for the start"
    translation = "Wählen Sie eine Farbe für den Anfang"
    weights = aligned([(0, 1), (1, 0), (2, 0), (3, 2), (4, 3), (5, 4), (6, 5)], 7, 6)
    assert carry_markup(source, [element(source, "a color for")], translation, weights) == \
        "Wählen Sie eine <b>Farbe für</b> den Anfang"
    weights = aligned([(0, 0), (1, 0), (2, 0), (3, 2), (4, 0), (5, 3), (6, 5)], 7, 6)  # 'für' to 'Select'
    assert carry_markup(source, [element(source, "color for the")], translation, weights) == \
        "Wählen Sie eine <b>Farbe für den</b> Anfang"


def test_atoms_are_copied_as_placeholders_and_put_back_as_written() -> None:
    first, second, third = (atom_placeholder(index) for index in range(3))
    assert len({first, second, third}) == 3
    atoms = [Atom("<kbd>Ctrl</kbd>", first, 6, 7), Atom('<kbd class="k">P</kbd>', second, 8, 9),
             Atom("<kbd>Ctrl</kbd>", third, 17, 18)]
    assert put_atoms(f"Drücken Sie {first}+{second}, dann {third}.", atoms) == \
        'Drücken Sie <kbd>Ctrl</kbd>+<kbd class="k">P</kbd>, dann <kbd>Ctrl</kbd>.'
    assert put_atoms(f"Drücken Sie {first}+{second}.", atoms) is None  # one left out
    assert put_atoms(f"{second} {second} {first} {third}", atoms) is None  # one written twice


def test_an_atom_is_one_word_to_the_alignment() -> None:
    placeholder = atom_placeholder(0)
    source = f"Choose {placeholder} to change the default settings"
    atom = Atom('<span translate="no">Tools - Options</span>', placeholder, 7, 8)
    translation = f"Wählen Sie {placeholder}, um die Standard Einstellungen zu ändern"
    weights = aligned([(0, 0), (1, 0), (2, 1), (3, 2), (4, 4), (5, 5), (6, 6), (7, 3), (8, 3)], 9, 7)
    carried = carry_markup(source, [element(source, "default", "em")], translation, weights)
    assert carried == f"Wählen Sie {placeholder}, um die <em>Standard</em> Einstellungen zu ändern"
    assert put_atoms(carried, [atom]) == ('Wählen Sie <span translate="no">Tools - Options</span>, um die '
                                          '<em>Standard</em> Einstellungen zu ändern')


def test_an_element_inside_a_word_goes_inside_the_word_copied_as_it_was() -> None:
    source = "Water is H2O and E = mc2 here."
    translation = "Wasser ist H2O und E = mc2 hier."
    weights = aligned([(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7)], 8, 8)
    elements = [InlineElement("<sub>", "</sub>", 10, 11), InlineElement("<sup>", "</sup>", 23, 24)]
    assert carry_markup(source, elements, translation, weights) == \
        "Wasser ist H<sub>2</sub>O und E = mc<sup>2</sup> hier."
    # not copied as it was ("manual1" is "Handbuch1"): nowhere to put it
    assert carry_markup("the manual1 here", [InlineElement("<sup>", "</sup>", 10, 11)], "das Handbuch1 hier",
                        aligned([(0, 0), (1, 1), (2, 2)], 3, 3)) is None


def test_an_empty_element_goes_before_the_word_after_it_or_at_the_end() -> None:
    source = "Click Save now"
    translation = "Klicken Sie jetzt auf Speichern"
    weights = aligned([(0, 0), (1, 0), (2, 2), (3, 0), (4, 1)], 5, 3)
    icon = InlineElement('<i class="icon">', "</i>", 6, 6)
    bold = element(source, "Save")
    assert carry_markup(source, [icon, bold], translation, weights) == \
        'Klicken Sie jetzt auf <i class="icon"></i><b>Speichern</b>'
    inside = [InlineElement("<b>", "</b>", 6, 10), InlineElement('<i class="icon">', "</i>", 6, 6)]  # <b><i/>Save</b>
    assert carry_markup(source, inside, translation, weights) == \
        'Klicken Sie jetzt auf <b><i class="icon"></i>Speichern</b>'
    anchor = InlineElement('<a name="end">', "</a>", 14, 14)
    assert carry_markup(source, [anchor], translation, weights) == 'Klicken Sie jetzt auf Speichern<a name="end"></a>'


def test_a_word_the_model_left_out_is_attended_by_no_word_in_particular() -> None:
    """'now' in 'Klicken Sie auf Speichern, später.': no target word attends to it most, and of those
    attending to it a little none stands out: a strikethrough cannot be placed (its place is what it
    says); bold goes on the word attending to it most."""
    source = "Click Save now later."
    translation = "Klicken Sie auf Speichern, später."
    weights = aligned([(0, 0), (1, 0), (2, 0), (3, 1), (4, 3)], 5, 4)
    weights[:, 2] = [0.05, 0.04, 0.16, 0.15, 0.1]
    assert carry_markup(source, [element(source, "now", "s")], translation, weights) is None
    assert carry_markup(source, [element(source, "now", "b")], translation, weights) == \
        "Klicken Sie <b>auf</b> Speichern, später."
    weights[2, 2] = 0.3  # one target word attends to it twice as much as any other
    assert carry_markup(source, [element(source, "now", "s")], translation, weights) == \
        "Klicken Sie <s>auf</s> Speichern, später."


def test_punctuation_alone_in_an_element_is_not_carried() -> None:
    source = "Hello, world"
    weights = aligned([(0, 0), (1, 1)], 2, 2)
    assert carry_markup(source, [InlineElement("<b>", "</b>", 5, 6)], "Hallo, Welt", weights) is None
