"""loadtest.same_text_burst on a tiny corpus: two real servers (cache on and off) over the shipped model,
each sent bursts of one text; the one that shares decodes fewer sentences and answers alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.same_text_burst import burst_sentences, main

LONG = ["The document that you open in the program is converted to the new format when you save it again.",
        "Please make sure that every window of the application is closed before you install the new version."]


def test_burst_sentences_are_long_and_different(tmp_path: Path) -> None:
    corpus = tmp_path / "test.tsv"
    corpus.write_text("".join(f"{text}\tx\n" for text in ["Good morning.", LONG[0], LONG[0], LONG[1]]),
                      encoding="utf-8")
    assert burst_sentences(corpus, 2) == LONG
    with pytest.raises(SystemExit, match=r"has 1 sentences of 18\+ words"):
        burst_sentences(corpus, 3, min_words=18)


def test_a_burst_of_one_text_is_decoded_once_with_sharing(tmp_path: Path) -> None:
    corpus = tmp_path / "test.tsv"
    corpus.write_text("".join(f"{text}\tx\n" for text in LONG), encoding="utf-8")
    out = tmp_path / "same_text_burst.json"
    assert main(["--corpus", str(corpus), "--clients", "4", "--rounds", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["answers_differing"] == 0
    off = [run["decoded"] for run in report["rounds"]["cache off"]]
    sharing = [run["decoded"] for run in report["rounds"]["sharing (cache on)"]]
    assert off == [4, 4]  # each client's sentence decoded
    assert all(decoded < 4 for decoded in sharing), sharing  # the requests behind the first waited for it
