"""loadtest.confidence on a tiny corpus: a real server over the shipped model, its answers' confidence
set beside their sentence chrF, the texts cut into quarters by confidence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from loadtest.confidence import attention_signals, main, quarters

PAIRS = [
    ("Good morning.", "Guten Morgen."),
    ("Open the file menu.", "Öffnen Sie das Menü Datei."),
    ("The house is small.", "Das Haus ist klein."),
    ("Save the document before you close the window.", "Speichern Sie das Dokument, bevor Sie das Fenster schließen."),
    ("Blorf zibble quux wibble frobnicate.", "Blorf zibble quux wibble frobnicate."),
    ("Where is the station?", "Wo ist der Bahnhof?"),
    ("Select the cells you want to format.", "Wählen Sie die Zellen aus, die Sie formatieren möchten."),
    ("I have no time today.", "Ich habe heute keine Zeit."),
    ("Click OK to close the dialog.", "Klicken Sie auf OK, um den Dialog zu schließen."),
]


def test_quarters_split_by_confidence_least_first() -> None:
    parts = quarters([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4])
    assert parts == [[1, 5], [3, 7], [2, 4], [6, 0]]
    assert sorted(p for part in quarters([0.5] * 9) for p in part) == list(range(9))


def test_attention_signals_by_hand() -> None:
    # each target token on its own source token: every source token covered once, no spread
    assert attention_signals([[1.0, 0.0], [0.0, 1.0]]) == {"coverage_deviation": 0.0, "attention_entropy": 0.0}
    # both target tokens on the first source token: coverage 2 and 0, each deviating by 1
    assert attention_signals([[1.0, 0.0], [1.0, 0.0]])["coverage_deviation"] == pytest.approx(-math.log(2))
    assert attention_signals([[0.5, 0.5], [0.5, 0.5]])["attention_entropy"] == pytest.approx(-math.log(2))


def test_confidence_against_quality_on_a_tiny_corpus(tmp_path: Path) -> None:
    (tmp_path / "test_tiny.tsv").write_text("".join(f"{en}\t{de}\n" for en, de in PAIRS), encoding="utf-8")
    out = tmp_path / "confidence.json"
    assert main(["--corpus", str(tmp_path), "--sets", "tiny", "--attention-signals", "--out", str(out)]) == 0
    entry = json.loads(out.read_text(encoding="utf-8"))["test_sets"]["tiny"]
    assert entry["sentences"] == len(PAIRS)
    assert sum(quarter["sentences"] for quarter in entry["quarters"]) == len(PAIRS)
    for lower, upper in zip(entry["quarters"], entry["quarters"][1:], strict=False):
        assert lower["confidence_max"] <= upper["confidence_min"]  # least confident first
    assert all(0 < quarter["confidence_min"] <= quarter["confidence_max"] <= 1 for quarter in entry["quarters"])
    assert -1 <= entry["spearman_confidence_sentence_chrf"] <= 1
    signals = entry["attention_signals_spearman"]
    assert signals["confidence"] == entry["spearman_confidence_sentence_chrf"]
    assert {"coverage_deviation", "attention_entropy", "confidence + 0.5 x coverage_deviation"} <= set(signals)
    assert all(-1 <= value <= 1 for value in signals.values()), signals
    # the gibberish is among the least confident answers
    assert any(example["source"].startswith("Blorf") for example in entry["examples"][:2])
