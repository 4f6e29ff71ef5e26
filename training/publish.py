"""Publish a trained model into model_store: evaluate (attention vs none, greedy vs beam), export,
score the ONNX fp32 and int8 variants, keep int8 only if it costs at most 0.5 BLEU, write the manifest.

The one place that turns checkpoints into a shipped artifact. A version that exists is never replaced;
the artifact is built and gated in a hidden staging directory and moved into place only once complete
(training/export.py, staged_artifact). Never imports service.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from model_store import Manifest, write_manifest
from model_store.codec import Codec
from training import evaluate
from training.checkpoint import load_checkpoint, resolve_tokenizer
from training.decode import make_translate_fn
from training.export import (
    INT8_DECODER_FILE,
    INT8_ENCODER_FILE,
    build_artifact,
    check_version_free,
    staged_artifact,
)
from training.onnx_decode import make_onnx_translate_fn

MAX_INT8_BLEU_DROP = 0.5
REPORT_DIR = "report"


def _machine() -> str:
    """Where publish runs (train and publish usually share a machine; pass trained_on if not)."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {os.cpu_count()} cores"


def _scores(report: dict[str, dict[str, Any]], suffix: str = "") -> dict[str, dict[str, float]]:
    return {test_set: {f"bleu{suffix}": round(r["bleu"], 2), f"chrf{suffix}": round(r["chrf"], 2)}
            for test_set, r in report.items()}


def _growth(length_gap: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The attention - none gap's growth from short to long sources, BLEU points with its 95% interval
    (evaluate.length_gaps), per test set where one was measured."""
    return {test_set: {"gap_growth_with_length": gap["growth"]["gap"], "gap_growth_low": gap["growth"]["low"],
                       "gap_growth_high": gap["growth"]["high"]}
            for test_set, gap in length_gap.items() if gap.get("growth") is not None}


def _merge(*parts: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, float]] = {}
    for part in parts:
        for test_set, metrics in part.items():
            merged.setdefault(test_set, {}).update(metrics)
    return merged


def _tune_length_penalty(checkpoint: Path, corpus_dir: Path, beam_size: int, limit: int) -> tuple[float, dict]:
    model, codec, _ = load_checkpoint(checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
    alpha, valid_bleu = evaluate.tune_length_penalty(
        lambda alpha: make_translate_fn(model, codec, beam_size=beam_size, length_penalty_alpha=alpha),
        corpus_dir, limit=limit)
    print(f"{checkpoint}: length penalty tuned on the valid split: alpha {alpha} ({valid_bleu})", flush=True)
    return alpha, valid_bleu


def publish(
    checkpoint: Path, none_checkpoint: Path | None, corpus_dir: Path, store: Path, name: str, version: str,
    beam_size: int = 5, limit: int = 0, threads: int = 0, trained_on: str | None = None,
    length_penalty_alpha: float | None = None,
) -> Path:
    """length_penalty_alpha None: tune it on the validation split (evaluate.tune_length_penalty), for
    the attention model and its `none` twin each (the comparison gives each model its best decoding).

    Returns `<store>/<name>/<version>`; raises training.export.VersionExistsError, before any of the
    evaluation's minutes, if that version exists. Nothing of the version appears in the store unless
    the whole export (parity, int8 gate, manifest) succeeded."""
    check_version_free(store, name, version)
    if threads > 0:
        torch.set_num_threads(threads)
    tuning: dict[str, Any] = {}
    none_tuning: dict[str, Any] = {}
    none_alpha = length_penalty_alpha
    if length_penalty_alpha is None:
        length_penalty_alpha, valid_bleu = _tune_length_penalty(checkpoint, corpus_dir, beam_size, limit)
        tuning = {"length_penalty_alpha_valid_bleu": valid_bleu}
        if none_checkpoint is not None:
            none_alpha, none_valid_bleu = _tune_length_penalty(none_checkpoint, corpus_dir, beam_size, limit)
            none_tuning = {"length_penalty_alpha": none_alpha, "length_penalty_alpha_valid_bleu": none_valid_bleu}
    work = Path(tempfile.mkdtemp(prefix="publish-"))
    try:
        report_dir = work / REPORT_DIR
        argv = ["--checkpoint", str(checkpoint), "--corpus", str(corpus_dir), "--out", str(report_dir),
                "--beam", str(beam_size), "--alpha", str(length_penalty_alpha), "--limit", str(limit),
                "--threads", str(threads)]
        if none_checkpoint is not None:
            argv += ["--none-checkpoint", str(none_checkpoint), "--none-alpha", str(none_alpha)]
        evaluate.main(argv)
        report = json.loads((report_dir / "evaluation.json").read_text(encoding="utf-8"))
        results = report["results"]

        model, _, info = load_checkpoint(checkpoint)
        tokenizer = resolve_tokenizer(checkpoint, info["tokenizer_model"])
        beam = f"beam{beam_size}"
        attention = results["attention"]
        evaluation = {"fp32": _merge(_scores(attention.get(beam, attention["greedy"])),
                                     _scores(attention["greedy"], "_greedy"))}
        if "none" in results:
            none = results["none"]
            evaluation["none_fp32"] = _merge(_scores(none.get(beam, none["greedy"])),
                                             _scores(none["greedy"], "_greedy"), _growth(report["length_gap"]))
        train_state = info.get("train_state", {})
        training_info = {
            "trained_on": trained_on or _machine(),
            "torch_version": info.get("torch_version", torch.__version__),
            "train_config": info["train_config"],
            "epochs_completed": train_state.get("epoch"),
            "steps": train_state.get("step"),
            "training_seconds": round(float(train_state.get("elapsed_seconds", 0.0)), 1),
            "best_valid_loss": train_state.get("best_valid_loss"),
            "history": train_state.get("history"),
            "decoding_for_scores": f"beam {beam_size}, GNMT length penalty alpha {length_penalty_alpha} "
                                   "(see report/evaluation.md)",
            "length_penalty_alpha": length_penalty_alpha,
            **tuning,
        }
        if none_checkpoint is not None:
            _, _, none_info = load_checkpoint(none_checkpoint)
            none_state = none_info.get("train_state", {})
            training_info["none_baseline"] = {"steps": none_state.get("step"),
                                              "training_seconds": none_state.get("elapsed_seconds"), **none_tuning}
        stats_path = corpus_dir / "stats.json"
        data_info = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.is_file() else {}
        data_info["licences"] = {"ding (trans-de-en)": "GPL-2.0-or-later", "libreoffice help/ui": "MPL-2.0"}
        max_source = int(info["train_config"].get("max_source_tokens", 100))

        # Built, checked and gated out of the readers' sight; moved into place as the last step.
        with staged_artifact(store, name, version) as staged:
            manifest, _ = build_artifact(
                model, tokenizer, staged, name, version, source_language="en", target_language="de",
                max_source_tokens=max_source, training_info=training_info, data_info=data_info,
                evaluation=evaluation, with_int8=True,
                extra_files={f"{REPORT_DIR}/{p.name}": p for p in sorted(report_dir.iterdir()) if p.is_file()},
            )
            manifest = _gate_int8(staged, manifest, corpus_dir, limit, threads)
        print(json.dumps(manifest.evaluation, indent=1))
        return Path(store) / name / version
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _gate_int8(artifact_dir: Path, manifest: Manifest, corpus_dir: Path, limit: int, threads: int) -> Manifest:
    """Score both ONNX variants greedily (as served); drop int8 if it loses more than MAX_INT8_BLEU_DROP."""
    codec = Codec(artifact_dir / manifest.tokenizer_file)
    test_sets = evaluate.read_test_sets(corpus_dir, limit=limit)
    scores = {}
    for variant in ("fp32", "int8"):
        graphs = manifest.variants[variant]
        translate = make_onnx_translate_fn(artifact_dir / graphs["encoder"].file,
                                           artifact_dir / graphs["decoder_step"].file, codec, threads=threads)
        report = evaluate.evaluate_model(translate, test_sets)
        scores[variant] = _merge(_scores(report, "_onnx_greedy"),
                                 {s: {"onnx_greedy_sentences_per_second": r["sentences_per_second"]}
                                  for s, r in report.items()})
    drops = {s: round(scores["fp32"][s]["bleu_onnx_greedy"] - scores["int8"][s]["bleu_onnx_greedy"], 2)
             for s in test_sets}
    keep = max(drops.values()) <= MAX_INT8_BLEU_DROP
    evaluation = dict(manifest.evaluation)
    evaluation["fp32"] = _merge(evaluation["fp32"], scores["fp32"])
    evaluation["int8"] = _merge(scores["int8"], {s: {"bleu_drop_vs_fp32": d, "kept": float(keep)}
                                                 for s, d in drops.items()})
    variants = dict(manifest.variants)
    if not keep:
        del variants["int8"]
        for file in (INT8_ENCODER_FILE, INT8_DECODER_FILE):
            (artifact_dir / file).unlink()
    print(f"int8 BLEU drop vs fp32 (greedy, ONNX): {drops} -> {'kept' if keep else 'dropped'}")
    return write_manifest(artifact_dir, replace(manifest, variants=variants, evaluation=evaluation))
