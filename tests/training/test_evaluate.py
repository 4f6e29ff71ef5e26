"""training.evaluate: sacreBLEU/chrF scoring, length buckets, the report files and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.corpus import Pair, write_tsv
from training.evaluate import (
    LENGTH_BUCKETS,
    evaluate_model,
    heatmap_sources,
    length_bucket,
    main,
    plot_attention,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

EVERYDAY = [
    ("I'm broke.", "Ich bin pleite."),
    ("Where is the station?", "Wo ist der Bahnhof?"),
    ("If you should change your mind, do let me know.",
     "Falls du es dir anders überlegen solltest, lass es mich wissen."),
    ("The weather is nice today.", "Das Wetter ist heute schön."),
    ("He reads a book every evening before he goes to sleep.",
     "Er liest jeden Abend ein Buch, bevor er schlafen geht."),
    ("We have to leave now.", "Wir müssen jetzt gehen."),
]
TECHNICAL = [
    ("Click the Save button.", "Klicken Sie auf die Schaltfläche Speichern."),
    ("Choose Format - Cells and then click the Numbers tab to change the number format of the "
     "selected cells in the current spreadsheet document.",
     "Wählen Sie Format - Zellen und klicken Sie dann auf das Register Zahlen, um das Zahlenformat der "
     "ausgewählten Zellen im aktuellen Tabellendokument zu ändern."),
    ("Select the text that you want to format.", "Wählen Sie den Text aus, den Sie formatieren möchten."),
    ("This function returns the sum of all numbers in the given range of cells, ignoring any text "
     "entries, empty cells and logical values that appear in the range you selected before, as long "
     "as the option is set.",
     "Diese Funktion gibt die Summe aller Zahlen im angegebenen Zellbereich zurück und ignoriert dabei "
     "Texteinträge, leere Zellen und Wahrheitswerte, die im zuvor ausgewählten Bereich vorkommen, "
     "solange die Option gesetzt ist."),
    ("Opens a dialog where you can define the page layout.",
     "Öffnet einen Dialog, in dem Sie das Seitenlayout festlegen können."),
]
TEST_SETS = {"everyday": EVERYDAY, "technical": TECHNICAL}


def reference_translator(test_sets):
    lookup = {source: reference for pairs in test_sets.values() for source, reference in pairs}
    return lambda sources: [lookup[source] for source in sources]


def shuffled_translator(test_sets):
    def translate(sources):
        references = reference_translator(test_sets)(sources)
        return references[1:] + references[:1]  # every sentence gets its neighbour's reference
    return translate


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize(("words", "bucket"), [
    (1, "1-4"), (4, "1-4"), (5, "5-9"), (9, "5-9"), (10, "10-14"), (14, "10-14"), (15, "15-19"),
    (19, "15-19"), (20, "20-29"), (29, "20-29"), (30, "30+"), (120, "30+"),
])
def test_length_bucket_counts_source_words(words, bucket):
    assert length_bucket(" ".join(["word"] * words)) == bucket
    assert length_bucket("  ".join(["word"] * words) + " ") == bucket  # whitespace runs are one gap


def test_identical_hypotheses_score_100():
    report = evaluate_model(reference_translator(TEST_SETS), TEST_SETS)
    assert set(report) == {"everyday", "technical"}
    for name, scores in report.items():
        assert scores["bleu"] == pytest.approx(100.0)
        assert scores["chrf"] == pytest.approx(100.0)
        assert scores["sentences"] == len(TEST_SETS[name])
        assert sum(bucket["sentences"] for bucket in scores["by_length"].values()) == len(TEST_SETS[name])
        for bucket in scores["by_length"].values():
            assert bucket["bleu"] == (pytest.approx(100.0) if bucket["sentences"] else None)
        assert scores["examples"][0]["hypothesis"] == TEST_SETS[name][0][1]
        assert "13a" in scores["bleu_signature"]
    assert report["technical"]["by_length"]["30+"]["sentences"] == 1
    assert report["technical"]["by_length"]["20-29"]["sentences"] == 1
    assert report["technical"]["by_length"]["1-4"]["sentences"] == 1


def test_shuffled_references_score_below_100():
    report = evaluate_model(shuffled_translator(TEST_SETS), TEST_SETS)
    for scores in report.values():
        assert scores["bleu"] < 50.0
        assert scores["chrf"] < 60.0


def test_translate_fn_must_return_one_text_per_source():
    with pytest.raises(ValueError, match="returned 1 texts"):
        evaluate_model(lambda sources: sources[:1], {"everyday": EVERYDAY})


def sample_heatmaps():
    generator = np.random.default_rng(0)
    heatmaps = []
    for source_tokens, target_tokens in (
        (["▁I", "'", "m", "▁broke", ".", "</s>"], ["▁Ich", "▁bin", "▁pleite", ".", "</s>"]),
        (["▁Click", "▁Save", "</s>"], ["▁Klicken", "▁Sie", "▁auf", "▁Speichern", "</s>"]),
    ):
        weights = generator.random((len(target_tokens), len(source_tokens)))
        heatmaps.append((source_tokens, target_tokens, weights / weights.sum(axis=1, keepdims=True)))
    return heatmaps


def test_write_report_writes_markdown_json_and_valid_pngs(tmp_path):
    results = {
        "attention": {"greedy": evaluate_model(reference_translator(TEST_SETS), TEST_SETS),
                      "beam5": evaluate_model(reference_translator(TEST_SETS), TEST_SETS)},
        "none": {"greedy": evaluate_model(shuffled_translator(TEST_SETS), TEST_SETS),
                 "beam5": evaluate_model(shuffled_translator(TEST_SETS), TEST_SETS)},
    }
    written = write_report(tmp_path / "eval", results, sample_heatmaps(), notes={"device": "cpu"})
    out = tmp_path / "eval"
    assert {path.name for path in written} == {
        "evaluation.md", "evaluation.json", "bleu_by_length.png", "attention_0.png", "attention_1.png"}
    for name in ("bleu_by_length.png", "attention_0.png", "attention_1.png"):
        assert is_png(out / name)
    from matplotlib.image import imread

    height, width, _ = imread(out / "bleu_by_length.png").shape
    assert width > height > 100  # two panels side by side

    markdown = (out / "evaluation.md").read_text(encoding="utf-8")
    assert "| attention | beam5 | 100.0 | 100.0 | 100.0 | 100.0 |" in markdown
    assert "## BLEU by source length (beam5)" in markdown
    assert "attention − none" in markdown
    for _, _, bucket in LENGTH_BUCKETS:
        assert f"| {bucket} |" in markdown
    assert "![BLEU by source length](bleu_by_length.png)" in markdown
    assert "![attention](attention_1.png)" in markdown
    assert "- device: cpu" in markdown

    assert "paired bootstrap" in markdown
    assert "| 1-4 | 2 | 100.0 | 0.0 | +100.0 (+100.0 to +100.0) |" in markdown  # both segments always wrong

    document = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert document["headline_decoding"] == "beam5"
    assert document["length_gap"]["everyday"]["buckets"]["1-4"]["gap"] == pytest.approx(100.0)
    assert document["length_gap"]["technical"]["growth"] is None  # no bucket has 30 segments
    assert "segments" not in document["results"]["attention"]["beam5"]["everyday"]  # in memory only
    assert document["results"]["attention"]["beam5"]["everyday"]["bleu"] == pytest.approx(100.0)
    assert document["results"]["none"]["greedy"]["technical"]["bleu"] < 50.0
    assert np.array(document["heatmaps"][0]["weights"]).shape == (5, 6)


def test_report_says_whether_the_gap_grows_with_length(tmp_path):
    """Thirty copies of each everyday pair: 60 segments each of 1-4, 5-9 and 10-14 words. The
    second model is right on sources of up to 5 words and wrong beyond: the gap grows."""
    test_sets = {"everyday": EVERYDAY * 30}
    lookup = reference_translator(test_sets)
    results = {
        "attention": {"beam5": evaluate_model(lookup, test_sets)},
        "none": {"beam5": evaluate_model(
            lambda sources: [reference if len(source.split()) <= 5 else "Nein." for source, reference
                             in zip(sources, lookup(sources), strict=True)], test_sets)},
    }
    write_report(tmp_path, results, [])
    markdown = (tmp_path / "evaluation.md").read_text(encoding="utf-8")
    assert "Gap growth from 1-4 to 10-14 words: +100.0 BLEU (+100.0 to +100.0): **grows**." in markdown
    document = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    assert document["length_gap"]["everyday"]["growth"]["verdict"] == "grows"
    from matplotlib.image import imread

    assert imread(tmp_path / "bleu_by_length.png").shape[0] > 800  # BLEU above, the gap's intervals below


def test_report_with_one_model_and_greedy_only(tmp_path):
    results = {"attention": {"greedy": evaluate_model(reference_translator(TEST_SETS), TEST_SETS)}}
    write_report(tmp_path, results, [])
    markdown = (tmp_path / "evaluation.md").read_text(encoding="utf-8")
    assert "## BLEU by source length (greedy)" in markdown
    assert " − " not in markdown
    assert is_png(tmp_path / "bleu_by_length.png")
    from matplotlib.image import imread

    assert imread(tmp_path / "bleu_by_length.png").shape[0] < 450  # one row: no gap to show
    assert not list(tmp_path.glob("attention_*.png"))


def test_attention_heatmap_checks_its_shape(tmp_path):
    source, target, weights = sample_heatmaps()[0]
    with pytest.raises(ValueError, match="weights"):
        plot_attention((source, target[:-1], weights), tmp_path / "bad.png")
    plot_attention((source, target, weights), tmp_path / "good.png")
    assert is_png(tmp_path / "good.png")


def test_heatmap_sources_alternate_between_test_sets():
    chosen = heatmap_sources(TEST_SETS, 4, min_words=3, max_words=14)
    assert chosen == [EVERYDAY[1][0], TECHNICAL[0][0], EVERYDAY[2][0], TECHNICAL[2][0]]


def test_cli_scores_checkpoints_and_writes_the_report(tmp_path, monkeypatch):
    import training.decode
    from training.checkpoint import save_checkpoint
    from training.config import ModelConfig, TrainConfig
    from training.model import Seq2Seq
    from training.tokenizer import train_tokenizer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # EVERYDAY[3:] are not train sources: of the first 4 everyday segments scored, the 4th is novel
    write_tsv([Pair(s, r, "ding_sentence") for s, r in EVERYDAY[:3] * 3 + TECHNICAL * 3], corpus / "train.tsv")
    write_tsv([Pair(s, r, "ding_sentence") for s, r in EVERYDAY], corpus / "test_everyday.tsv")
    write_tsv([Pair(s, r, "libreoffice_help") for s, r in TECHNICAL], corpus / "test_technical.tsv")
    tokenizer = train_tokenizer(corpus / "train.tsv", tmp_path / "tokenizer", vocab_size=120, num_threads=1)
    from model_store.codec import Codec

    vocab_size = Codec(tokenizer).vocab_size
    for name, attention in (("att", "luong_general"), ("none", "none")):
        torch.manual_seed(0)
        config = ModelConfig(vocab_size=vocab_size, embedding_dim=16, encoder_hidden=16, encoder_layers=1,
                             decoder_hidden=32, decoder_layers=1, attention=attention)
        model = Seq2Seq(config)
        save_checkpoint(tmp_path / name / "best.pt", model, TrainConfig(), tokenizer)

    beam_alphas = {}  # each model's beam decoding and the length penalty it was given
    real_make_translate_fn = training.decode.make_translate_fn

    def recording_make_translate_fn(model, codec, *, beam_size, length_penalty_alpha, **kwargs):
        if beam_size > 1:
            beam_alphas[model.config.attention] = length_penalty_alpha
        return real_make_translate_fn(model, codec, beam_size=beam_size, length_penalty_alpha=length_penalty_alpha,
                                      **kwargs)

    monkeypatch.setattr(training.decode, "make_translate_fn", recording_make_translate_fn)
    previous_threads = torch.get_num_threads()
    try:
        code = main([
            "--checkpoint", str(tmp_path / "att" / "best.pt"),
            "--none-checkpoint", str(tmp_path / "none" / "best.pt"),
            "--corpus", str(corpus), "--out", str(tmp_path / "eval"), "--beam", "2", "--limit", "4",
            "--max-length-cap", "12", "--heatmaps", "2", "--threads", "1", "--device", "cpu",
            "--alpha", "1.4", "--none-alpha", "0.6",
        ])
    finally:
        torch.set_num_threads(previous_threads)
    assert code == 0
    assert beam_alphas == {"luong_general": 1.4, "none": 0.6}
    out = tmp_path / "eval"
    document = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert set(document["results"]) == {"attention", "none"}
    assert set(document["results"]["none"]) == {"greedy", "beam2"}
    assert document["results"]["attention"]["beam2"]["everyday"]["sentences"] == 4
    assert len(document["heatmaps"]) == 2
    for heatmap in document["heatmaps"]:
        weights = np.array(heatmap["weights"])
        assert weights.shape == (len(heatmap["target_tokens"]), len(heatmap["source_tokens"]))
        assert heatmap["source_tokens"][-1] == "</s>"
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-3)
        assert is_png(out / heatmap["file"])
    assert is_png(out / "bleu_by_length.png")
    assert document["novelty"] == {"everyday": {"threshold": 0.9, "sentences": 4, "novel": 1, "near_duplicates": 3}}
    assert set(document["results"]["none"]["beam2"]) == {"everyday", "technical", "everyday_novel"}
    assert document["results"]["attention"]["greedy"]["everyday_novel"]["sentences"] == 1
    markdown = (out / "evaluation.md").read_text(encoding="utf-8")
    assert "- novel subsets: everyday 1 of 4, technical 0 of 4 segments have no train source" in markdown
    assert "| none | beam2 |" in markdown
    assert "GNMT length penalty alpha attention 1.4, none 0.6" in markdown


@pytest.mark.parametrize("loop_rule", [True, False])
def test_cli_scores_a_published_artifact_as_served(tmp_path, monkeypatch, number_model, tiny_artifact, loop_rule):
    """`--artifact`: a shipped model scored from its graphs' weights, decoded with the service's loop
    rule unless `--no-loop-rule`."""
    import training.decode

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = (number_model.corpus_dir / "test.tsv").read_text(encoding="utf-8").splitlines(keepends=True)[:6]
    for name in ("test_everyday.tsv", "test_technical.tsv"):
        (corpus / name).write_text("".join(lines), encoding="utf-8")
    rules = []
    real_make_translate_fn = training.decode.make_translate_fn

    def recording_make_translate_fn(model, codec, **kwargs):
        rules.append(kwargs["loop_rule"])
        return real_make_translate_fn(model, codec, **kwargs)

    monkeypatch.setattr(training.decode, "make_translate_fn", recording_make_translate_fn)
    previous_threads = torch.get_num_threads()
    try:
        code = main(["--artifact", str(tiny_artifact), "--corpus", str(corpus), "--out", str(tmp_path / "eval"),
                     "--beam", "2", "--heatmaps", "1", "--threads", "1", "--device", "cpu", "--novelty-threshold", "0",
                     *([] if loop_rule else ["--no-loop-rule"])])
    finally:
        torch.set_num_threads(previous_threads)
    assert code == 0 and rules == [loop_rule, loop_rule]  # greedy and beam
    document = json.loads((tmp_path / "eval" / "evaluation.json").read_text(encoding="utf-8"))
    scores = document["results"]["attention"]["beam2"]["everyday"]
    assert scores["sentences"] == 6 and scores["chrf"] > 50  # the number model translates numbers
    assert str(tiny_artifact) in (tmp_path / "eval" / "evaluation.md").read_text(encoding="utf-8")
