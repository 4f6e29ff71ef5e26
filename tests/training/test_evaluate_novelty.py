"""The novel subsets in training.evaluate: scores, the report files, the CLI, and the manifest's keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data.corpus import Pair, write_tsv
from training.evaluate import (
    Novelty,
    evaluate_model,
    full_sets,
    length_gaps,
    novelty_masks,
    read_test_sets,
    write_report,
)

EVERYDAY = [
    ("I'm broke.", "Ich bin pleite."),
    ("Where is the station?", "Wo ist der Bahnhof?"),
    ("The weather is nice today.", "Das Wetter ist heute schön."),
    ("We have to leave now.", "Wir müssen jetzt gehen."),
]
TECHNICAL = [
    ("Click the Save button.", "Klicken Sie auf die Schaltfläche Speichern."),
    ("Select the text that you want to format.", "Wählen Sie den Text aus, den Sie formatieren möchten."),
    ("Opens a dialog where you can define the page layout.",
     "Öffnet einen Dialog, in dem Sie das Seitenlayout festlegen können."),
]
TEST_SETS = {"everyday": EVERYDAY, "technical": TECHNICAL}
# everyday: the first two are near-duplicates; technical: all novel
NOVEL = {"everyday": Novelty((False, False, True, True), 0.9), "technical": Novelty((True, True, True), 0.9)}


def translator(wrong: set[str]):
    """Right on every source but those in `wrong`."""
    lookup = {source: reference for pairs in TEST_SETS.values() for source, reference in pairs}
    return lambda sources: ["Nein." if source in wrong else lookup[source] for source in sources]


def test_novel_subsets_are_scored_from_the_same_translations():
    calls = []

    def translate(sources):
        calls.append(len(sources))
        return translator({"I'm broke.", "Where is the station?"})(sources)

    report = evaluate_model(translate, TEST_SETS, NOVEL)
    assert calls == [4, 3]  # each test set translated once
    assert list(report) == ["everyday", "technical", "everyday_novel", "technical_novel"]
    assert full_sets(report) == ["everyday", "technical"]
    novel = report["everyday_novel"]
    assert novel["subset_of"] == "everyday" and novel["novelty_threshold"] == 0.9
    assert novel["sentences"] == 2 and novel["bleu"] == pytest.approx(100.0) and novel["chrf"] == pytest.approx(100.0)
    assert novel["near_duplicates"]["sentences"] == 2 and novel["near_duplicates"]["bleu"] < 10
    assert report["everyday"]["bleu"] < novel["bleu"]
    assert "segments" not in novel and "seconds" not in novel
    assert report["technical_novel"]["sentences"] == 3
    assert report["technical_novel"]["near_duplicates"] == {"sentences": 0, "bleu": None, "chrf": None}
    assert report["technical_novel"]["bleu"] == pytest.approx(report["technical"]["bleu"])


def test_no_novel_segment_no_subset_and_masks_must_fit():
    none_novel = {"everyday": Novelty((False,) * 4, 0.9)}
    assert set(evaluate_model(translator(set()), TEST_SETS, none_novel)) == {"everyday", "technical"}
    with pytest.raises(ValueError, match="novelty mask"):
        evaluate_model(translator(set()), TEST_SETS, {"everyday": Novelty((True,), 0.9)})


def test_report_shows_the_novel_subsets(tmp_path):
    wrong = {"I'm broke.", "Where is the station?"}
    results = {"attention": {"greedy": evaluate_model(translator(wrong), TEST_SETS, NOVEL),
                             "beam5": evaluate_model(translator(wrong), TEST_SETS, NOVEL)},
               "none": {"greedy": evaluate_model(translator(set()), TEST_SETS, NOVEL),
                        "beam5": evaluate_model(translator(set()), TEST_SETS, NOVEL)}}
    assert set(length_gaps(results)) == {"everyday", "technical"}  # full sets only
    write_report(tmp_path, results, [])
    markdown = (tmp_path / "evaluation.md").read_text(encoding="utf-8")
    assert "| everyday_novel BLEU | everyday_novel chrF | technical_novel BLEU |" in markdown
    assert "## Novel segments" in markdown and "similarity >= 0.9" in markdown
    assert "| attention | beam5 | everyday | 4 | 2 | 2 |" in markdown
    assert "### everyday_novel" not in markdown  # by-length tables and examples: full sets only
    document = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    assert document["novelty"]["everyday"] == {"threshold": 0.9, "sentences": 4, "novel": 2, "near_duplicates": 2}
    scores = document["results"]["attention"]["beam5"]["everyday_novel"]
    assert scores["bleu"] == pytest.approx(100.0) and scores["sentences"] == 2
    assert set(document["length_gap"]) == {"everyday", "technical"}


def test_the_manifest_gets_the_novel_subsets_as_test_sets(tmp_path):
    """publish turns every test set of the report into manifest scores: the subsets come along as
    `everyday_novel` and `technical_novel` with float BLEU and chrF (what model_store accepts)."""
    from training.publish import _merge, _scores

    beam = evaluate_model(translator(set()), TEST_SETS, NOVEL)
    greedy = evaluate_model(translator({"I'm broke."}), TEST_SETS, NOVEL)
    evaluation = _merge(_scores(beam), _scores(greedy, "_greedy"))
    assert set(evaluation) == {"everyday", "technical", "everyday_novel", "technical_novel"}
    assert set(evaluation["everyday_novel"]) == {"bleu", "chrf", "bleu_greedy", "chrf_greedy"}
    assert all(isinstance(value, float) for metrics in evaluation.values() for value in metrics.values())


def test_novelty_masks_read_the_train_split(tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_tsv([Pair(s, r, "ding_sentence") for s, r in EVERYDAY], corpus / "test_everyday.tsv")
    write_tsv([Pair(s, r, "libreoffice_help") for s, r in TECHNICAL], corpus / "test_technical.tsv")
    test_sets = read_test_sets(corpus)
    assert novelty_masks(corpus, test_sets) == {}  # no train split: no subsets
    write_tsv([Pair("i'm broke!", "Ich bin blank.", "ding_phrase"),
               Pair("Click the Save buttons.", "Klicken Sie auf Speichern.", "libreoffice_ui"),
               Pair("Something else entirely.", "Etwas anderes.", "ding_sentence")], corpus / "train.tsv")
    masks = novelty_masks(corpus, test_sets)
    assert masks["everyday"] == Novelty((False, True, True, True), 0.9)
    assert masks["technical"] == Novelty((False, True, True), 0.9)
    assert novelty_masks(corpus, test_sets, threshold=1.0)["technical"].mask == (True, True, True)
    german = novelty_masks(corpus, read_test_sets(corpus, direction="de-en"), direction="de-en")
    assert german["everyday"].mask == (True, True, True, True)  # German sources: "Ich bin blank." is not near
