"""Publishing the tiny real model end to end: evaluation, export, int8 gate, checksummed manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

from model_store import verify_artifact
from training.publish import MAX_INT8_BLEU_DROP, REPORT_DIR, publish


def test_publish_writes_a_verified_artifact_with_scores(number_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for test_set in ("test_everyday.tsv", "test_technical.tsv"):
        shutil.copyfile(number_model.corpus_dir / "test.tsv", corpus / test_set)
    shutil.copyfile(number_model.corpus_dir / "valid.tsv", corpus / "valid.tsv")  # the length penalty is tuned on it
    # The same checkpoint stands in for the attention-free twin: the comparison's path end to end.
    artifact = publish(number_model.checkpoint, number_model.checkpoint, corpus, tmp_path / "store", "en-de", "7",
                       beam_size=3, limit=80, threads=1)  # 80: both length buckets hold 30 segments
    assert artifact == tmp_path / "store" / "en-de" / "7"
    manifest = verify_artifact(artifact)
    for test_set in ("everyday", "technical"):
        fp32 = manifest.evaluation["fp32"][test_set]
        assert {"bleu", "chrf", "bleu_greedy", "bleu_onnx_greedy", "chrf_onnx_greedy"} <= fp32.keys()
        # German numbers are one word each, so sentence BLEU's 4-grams are empty: judge by chrF.
        assert fp32["chrf_onnx_greedy"] > 60  # the number model translates most numbers exactly
        twin = manifest.evaluation["none_fp32"][test_set]
        assert (twin["bleu"], twin["chrf"]) == (fp32["bleu"], fp32["chrf"])
        assert twin["gap_growth_with_length"] == twin["gap_growth_low"] == twin["gap_growth_high"] == 0.0
        drop = manifest.evaluation["int8"][test_set]["bleu_drop_vs_fp32"]
        assert ("int8" in manifest.variants) == (max(
            manifest.evaluation["int8"][s]["bleu_drop_vs_fp32"] for s in ("everyday", "technical")
        ) <= MAX_INT8_BLEU_DROP), drop
    report_files = {name for name in manifest.files if name.startswith(f"{REPORT_DIR}/")}
    assert {f"{REPORT_DIR}/evaluation.md", f"{REPORT_DIR}/bleu_by_length.png"} <= report_files
    assert any(name.startswith(f"{REPORT_DIR}/attention_") for name in report_files)
    assert manifest.training["steps"] > 0 and manifest.training["trained_on"]
    tuned = manifest.training["length_penalty_alpha_valid_bleu"]  # {alpha: valid BLEU}
    assert str(manifest.training["length_penalty_alpha"]) in tuned
    assert tuned[str(manifest.training["length_penalty_alpha"])] == max(tuned.values())
    twin = manifest.training["none_baseline"]  # the twin's own length penalty, tuned the same way
    assert twin["length_penalty_alpha_valid_bleu"][str(twin["length_penalty_alpha"])] == max(
        twin["length_penalty_alpha_valid_bleu"].values())
