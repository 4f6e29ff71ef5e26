"""model_store.sentences: where a text is cut into sentences, and that the pieces give the text back."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_store.sentences import split_sentences


def texts(text: str, max_sentences: int = 8) -> list[str]:
    return [sentence.text for sentence in split_sentences(text, max_sentences)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Click OK. The dialog closes.", ["Click OK.", "The dialog closes."]),
        ("Is it saved? Yes! Close it.", ["Is it saved?", "Yes!", "Close it."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("Choose Format (see below.) 3 options appear.", ["Choose Format (see below.)", "3 options appear."]),
        ("Line one\nline two", ["Line one", "line two"]),  # a line break always ends one
        ("One\r\ntwo\rthree\ffour\u2028five\x85six", ["One", "two", "three", "four", "five", "six"]),
        # no end: abbreviations, initials, decimals, a lower-case continuation, an ellipsis inside
        ("Use e.g. The Navigator or i.e. Styles.", ["Use e.g. The Navigator or i.e. Styles."]),
        ("J. R. Smith met Dr. Who at No. 5.", ["J. R. Smith met Dr. Who at No. 5."]),
        ("Version 3.5 is out. it is late.", ["Version 3.5 is out. it is late."]),
        ("Click the Password… button.", ["Click the Password… button."]),
        ("Das ist z. B. Dateien usw. Dann weiter.", ["Das ist z. B. Dateien usw. Dann weiter."]),
        ("Das ist gut. Dann weiter.", ["Das ist gut.", "Dann weiter."]),
        ("  One sentence only.  ", ["One sentence only."]),
        # a numbered item's number stays with its item, in a line or across lines
        ("1. Open the menu. 2. Click Save.", ["1. Open the menu.", "2. Click Save."]),
        ("Steps:\n1. Open it.\n2. Save it.", ["Steps:", "1. Open it.", "2. Save it."]),
        ("I have 2. Then I had 3.", ["I have 2.", "Then I had 3."]),
        ("Mt. Everest is high. Gen. Smith came at 5 p.m. Today.", ["Mt. Everest is high.",
                                                                     "Gen. Smith came at 5 p.m. Today."]),
        ("See Smith et al. For details.", ["See Smith et al. For details."]),
        # "no", "max": abbreviations before a number only
        ("Go to No. 5 now. I said no. Then he left.", ["Go to No. 5 now.", "I said no.", "Then he left."]),
        ("Use max. 10 items. Or max. Then stop.", ["Use max. 10 items.", "Or max.", "Then stop."]),
        # German quotes close with \u201c; capitals of any script begin a sentence
        ("\u201eEr ging.\u201c Sie sagte nichts.", ["\u201eEr ging.\u201c", "Sie sagte nichts."]),
        ("Wir fahren. \u0141\u00f3d\u017a ist weit. \u0394elta.", ["Wir fahren.", "\u0141\u00f3d\u017a ist weit.",
                                                            "\u0394elta."]),
    ],
)
def test_sentence_ends(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


def test_splitting_is_linear_in_the_texts_length() -> None:
    """Texts a client may send (2,000 characters): a long word before every full stop, a long run of
    dots or of spaces. The word lookup and the boundary search were quadratic: one such request of 32
    texts held the event loop for ~90 s. Linear, 32 of them take milliseconds; 1 s is a wide margin."""
    hostile = ["a" * 1400 + ". A" * 200, "." * 2000, "a" + " " * 1998 + "b", ("x" * 60 + ". ") * 32]
    started = time.perf_counter()
    for text in hostile * 32:
        split_sentences(text)
    assert time.perf_counter() - started < 1.0


def test_gaps_keep_the_whitespace_between_sentences() -> None:
    sentences = split_sentences("First one.  Second one.\n\nThird one.", 8)
    assert [(s.text, s.gap) for s in sentences] == [("First one.", "  "), ("Second one.", "\n\n"), ("Third one.", "")]
    indented = split_sentences("Steps: \r\n  open it\r\n\tclose it", 8)
    assert [(s.text, s.gap) for s in indented] == [("Steps:", " \r\n  "), ("open it", "\r\n\t"), ("close it", "")]


def test_more_sentences_than_allowed_are_grouped_evenly() -> None:
    text = " ".join(f"Sentence number {i}." for i in range(12))
    grouped = texts(text, 4)
    assert len(grouped) == 4
    assert " ".join(grouped) == text
    assert all(piece.count(".") == 3 for piece in grouped)  # 12 equal sentences: 3 a piece
    assert texts(text, 1) == [text]  # 1: not split


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(alphabet=st.sampled_from(list("aB3 .!?\n\r\t\f\u2028\u00a0\"')(…e.g")), max_size=80),
       max_sentences=st.integers(1, 6))
def test_pieces_give_the_text_back(text: str, max_sentences: int) -> None:
    sentences = split_sentences(text, max_sentences)
    assert 1 <= len(sentences) <= max_sentences
    assert "".join(s.text + s.gap for s in sentences) == text.strip()
    assert all(s.text and not s.text[0].isspace() and not s.text[-1].isspace() for s in sentences[:-1] if text.strip())
    assert all(s.gap.strip() == "" for s in sentences)
    assert sentences[-1].gap == ""
