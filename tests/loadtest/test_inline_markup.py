"""loadtest.inline_markup on a tiny corpus: a real server over the shipped model translates sentences with
words wrapped in <b> three ways; carried by attention, the text is the sentence's own translation."""

from __future__ import annotations

import json
import random
from pathlib import Path

from loadtest.inline_markup import main, text_of, wrap

SENTENCES = ["Click the button to save the document.", "Open the file menu and choose Print.",
             "The window closes when you press the Escape key.", "Too short."]


def test_wrap_puts_some_words_of_a_long_enough_sentence_in_an_element() -> None:
    rng = random.Random(1)
    for _ in range(20):
        wrapped = wrap("Fish & chips are sold here today", rng)
        assert wrapped is not None
        fragment, parts, count = wrapped
        assert 1 <= count <= 3 and fragment.count("<b>") == fragment.count("</b>") == 1
        assert text_of(fragment) == "Fish & chips are sold here today" == " ".join(parts)
        assert "&amp;" in fragment  # the text is escaped as HTML
    assert wrap("Too short.", rng) is None


def test_inline_markup_on_a_tiny_corpus(tmp_path: Path) -> None:
    for name in ("everyday", "technical"):
        (tmp_path / f"test_{name}.tsv").write_text("".join(f"{s}\tx\n" for s in SENTENCES), encoding="utf-8")
    out = tmp_path / "inline_markup.json"
    assert main(["--corpus-dir", str(tmp_path), "--out", str(out)]) == 0
    for entry in json.loads(out.read_text(encoding="utf-8"))["test_sets"].values():
        assert entry["sentences"] == 3  # the short one has too few words to wrap
        assert entry["carried_share"] > 0.5, entry
        if entry["carried_share"] == 1.0:  # every sentence translated whole: the text is the plain one
            assert entry["scores"]["html, carried by attention"] == entry["scores"]["no markup"]
