"""Scoring and the evaluation report: sacreBLEU/chrF per test set and per source-length bucket.

`evaluate_model` takes a `translate_fn(list[str]) -> list[str]`, so torch (greedy, beam) and ONNX
(fp32, int8) models are scored identically. Must not import service or onnxruntime.

Each test set may also be scored on its "novel" subset (`<name>_novel`): the segments whose source has
no train source of similarity >= the threshold (training/data/novelty.py), from the same translations.
Templated help paragraphs make near-copies of training sources, which score far higher than the rest.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF

from training.data import novelty
from training.length_gap import gap_by_length

TranslateFn = Callable[[list[str]], list[str]]
TestSets = dict[str, list[tuple[str, str]]]  # name -> [(source, reference)]
Heatmap = tuple[list[str], list[str], np.ndarray]  # source tokens, target tokens, weights [T, S]


@dataclass(frozen=True)
class Novelty:
    """Per segment of one test set: True if its source has no train source of similarity >= threshold."""
    mask: tuple[bool, ...]
    threshold: float


# Source-length buckets in whitespace words: (first, last or None for open-ended, label).
LENGTH_BUCKETS: tuple[tuple[int, int | None, str], ...] = (
    (1, 4, "1-4"), (5, 9, "5-9"), (10, 14, "10-14"), (15, 19, "15-19"), (20, 29, "20-29"), (30, None, "30+"),
)
TEST_SET_FILES = {"everyday": "test_everyday.tsv", "technical": "test_technical.tsv"}
EXAMPLES_PER_SET = 5
# Key of a test set's report holding its segments (sources, references, hypotheses) for the length-gap
# intervals; kept in memory only: evaluation.json would grow by ~0.3 MB per model and decoding.
SEGMENTS = "segments"
NOVEL_SUFFIX = "_novel"  # `everyday_novel`: the novel subset of `everyday`
SUBSET_OF = "subset_of"  # key of a subset's report naming the test set it was taken from


def length_bucket(source: str) -> str:
    words = max(1, len(source.split()))
    for first, last, label in LENGTH_BUCKETS:
        if words >= first and (last is None or words <= last):
            return label
    raise AssertionError("the last bucket is open-ended")


def score_translations(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """BLEU (13a) and chrF of one test set, plus BLEU per source-length bucket."""
    bleu, chrf = BLEU(), CHRF()
    by_length: dict[str, dict[str, Any]] = {}
    for _, _, label in LENGTH_BUCKETS:
        rows = [row for row, source in enumerate(sources) if length_bucket(source) == label]
        bucket_bleu = (
            BLEU().corpus_score([hypotheses[row] for row in rows], [[references[row] for row in rows]]).score
            if rows else None
        )
        by_length[label] = {"bleu": bucket_bleu, "sentences": len(rows)}
    return {
        "bleu": bleu.corpus_score(list(hypotheses), [list(references)]).score,
        "chrf": chrf.corpus_score(list(hypotheses), [list(references)]).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "sentences": len(sources),
        "by_length": by_length,
    }


def evaluate_model(
    translate_fn: TranslateFn, test_sets: TestSets, novel: dict[str, Novelty] | None = None,
) -> dict[str, dict[str, Any]]:
    """-> {test set: {bleu, chrf, bleu_signature, chrf_signature, sentences, seconds,
    sentences_per_second, by_length: {bucket: {bleu, sentences}}, examples, segments}}.

    novel: {test set: Novelty} adds `<test set>_novel`, scored from the same translations: score_translations
    of the novel segments, plus subset_of, novelty_threshold, near_duplicates {sentences, bleu, chrf}
    (left out when no segment is novel). Subsets come after the full test sets."""
    report: dict[str, dict[str, Any]] = {}
    subsets: dict[str, dict[str, Any]] = {}
    for name, pairs in test_sets.items():
        sources = [source for source, _ in pairs]
        references = [reference for _, reference in pairs]
        started = time.perf_counter()
        hypotheses = translate_fn(sources)
        seconds = time.perf_counter() - started
        if len(hypotheses) != len(sources):
            raise ValueError(
                f"{name}: translate_fn returned {len(hypotheses)} texts for {len(sources)} sources"
            )
        scores = score_translations(sources, hypotheses, references)
        scores["seconds"] = round(seconds, 3)
        scores["sentences_per_second"] = round(len(sources) / seconds, 2) if seconds > 0 else None
        scores["examples"] = [
            {"source": s, "reference": r, "hypothesis": h}
            for s, r, h in list(zip(sources, references, hypotheses, strict=True))[:EXAMPLES_PER_SET]
        ]
        scores[SEGMENTS] = {"sources": sources, "references": references, "hypotheses": list(hypotheses)}
        report[name] = scores
        if novel and name in novel:
            subset = novel_subset_scores(name, sources, hypotheses, references, novel[name])
            if subset is not None:
                subsets[name + NOVEL_SUFFIX] = subset
    return report | subsets


def novel_subset_scores(name: str, sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str],
                        novelty: Novelty) -> dict[str, Any] | None:
    """Scores of the novel segments of one test set and of the rest (None if none is novel)."""
    if len(novelty.mask) != len(sources):
        raise ValueError(f"{name}: novelty mask of {len(novelty.mask)} for {len(sources)} segments")
    rows = [row for row, novel in enumerate(novelty.mask) if novel]
    if not rows:
        return None
    near = [row for row, novel in enumerate(novelty.mask) if not novel]
    scores = score_translations([sources[row] for row in rows], [hypotheses[row] for row in rows],
                                [references[row] for row in rows])
    near_scores = {"sentences": len(near), "bleu": None, "chrf": None}
    if near:
        near_hypotheses, near_references = [hypotheses[row] for row in near], [[references[row] for row in near]]
        near_scores |= {"bleu": BLEU().corpus_score(near_hypotheses, near_references).score,
                        "chrf": CHRF().corpus_score(near_hypotheses, near_references).score}
    return scores | {SUBSET_OF: name, "novelty_threshold": novelty.threshold, "near_duplicates": near_scores}


# ---- the report ------------------------------------------------------------------------------------

def _headline_decoding(results: dict[str, dict[str, dict]]) -> str:
    """The decoding every model was scored with, preferring beam search: the one the plot compares."""
    first = next(iter(results.values()))
    common = [decoding for decoding in first if all(decoding in report for report in results.values())]
    if not common:
        raise ValueError("no decoding is shared by every model")
    beams = [decoding for decoding in common if decoding.startswith("beam")]
    return beams[-1] if beams else common[0]


def full_sets(report: dict[str, dict[str, Any]]) -> list[str]:
    """The test sets of an evaluate_model report, without their subsets (`<name>_novel`)."""
    return [name for name, scores in report.items() if SUBSET_OF not in scores]


def _format(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def length_gaps(results: dict[str, dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """{test set: length_gap.gap_by_length of the first two models (first minus second), headline
    decoding}; {} with fewer than two models or without their segments (a report read back from JSON)."""
    labels = list(results)
    if len(labels) < 2:
        return {}
    headline = _headline_decoding(results)
    first, second = results[labels[0]][headline], results[labels[1]][headline]
    gaps = {}
    for name in full_sets(first):
        if SEGMENTS not in first[name] or SEGMENTS not in second[name]:
            return {}
        segments, other = first[name][SEGMENTS], second[name][SEGMENTS]
        if segments["sources"] != other["sources"]:
            raise ValueError(f"{name}: the two models were scored on different segments")
        gaps[name] = gap_by_length([length_bucket(source) for source in segments["sources"]],
                                   [label for _, _, label in LENGTH_BUCKETS], segments["references"],
                                   segments["hypotheses"], other["hypotheses"])
    return gaps


def _gap_cell(entry: dict[str, Any] | None) -> str:
    return "–" if entry is None else f"{entry['gap']:+.1f} ({entry['low']:+.1f} to {entry['high']:+.1f})"


def _without_segments(results: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    return {label: {decoding: {name: {key: value for key, value in scores.items() if key != SEGMENTS}
                               for name, scores in report.items()}
                    for decoding, report in by_decoding.items()}
            for label, by_decoding in results.items()}


def _joined(tokens: Sequence[str]) -> str:
    """SentencePiece pieces back to text, for captions (special tokens dropped)."""
    text = "".join(token for token in tokens if not (token.startswith("<") and token.endswith(">")))
    return text.replace("\u2581", " ").strip()


def _novelty_markdown(results: dict[str, dict[str, dict]]) -> list[str]:
    """The novel subsets against their full test sets and the near-duplicates, every model and decoding."""
    first = next(iter(next(iter(results.values())).values()))
    subsets = [name for name in first if SUBSET_OF in first[name]]
    if not subsets:
        return []
    threshold = first[subsets[0]]["novelty_threshold"]
    lines = ["## Novel segments", "",
             f"A segment is novel when no train source has similarity >= {threshold} with its source "
             "(difflib ratio of the dedup keys, training/data/novelty.py); the rest are near-duplicates of "
             "training sources (templated help paragraphs, mostly). The full test sets are unchanged; "
             "`<test set>_novel` is scored from the same translations.", ""]
    header = ["model", "decoding", "test set", "all", "novel", "near-dup", "BLEU all", "BLEU novel",
              "BLEU near-dup", "chrF all", "chrF novel", "chrF near-dup"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, by_decoding in results.items():
        for decoding, report in by_decoding.items():
            for subset in subsets:
                novel = report[subset]
                full, near = report[novel[SUBSET_OF]], novel["near_duplicates"]
                cells = [label, decoding, novel[SUBSET_OF], str(full["sentences"]), str(novel["sentences"]),
                         str(near["sentences"])]
                cells += [_format(value) for metric in ("bleu", "chrf") for value in
                          (full[metric], novel[metric], near[metric])]
                lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _markdown(results: dict[str, dict[str, dict]], heatmap_files: list[tuple[str, Heatmap]],
              notes: dict[str, Any], gaps: dict[str, dict[str, Any]]) -> str:
    labels = list(results)
    test_names = list(next(iter(next(iter(results.values())).values())))  # subsets included
    full_names = full_sets(next(iter(next(iter(results.values())).values())))
    headline = _headline_decoding(results)
    lines = ["# Evaluation", ""]
    lines += [f"- {key}: {value}" for key, value in notes.items()]
    first = next(iter(next(iter(results.values())).values()))
    lines += [f"- sacreBLEU: `{first[test_names[0]]['bleu_signature']}`, "
              f"`{first[test_names[0]]['chrf_signature']}`", ""]

    lines += ["## Scores", ""]
    header = ["model", "decoding"]
    header += [f"{name} {metric}" for name in test_names for metric in ("BLEU", "chrF")]
    header.append("seconds")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in labels:
        for decoding, report in results[label].items():
            cells = [label, decoding]
            cells += [_format(report[name][metric]) for name in test_names for metric in ("bleu", "chrf")]
            cells.append(f"{sum(report[name]['seconds'] for name in full_names):.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += _novelty_markdown(results)

    lines += [f"## BLEU by source length ({headline})", ""]
    gap = len(labels) >= 2
    if gaps:
        resamples = next(iter(gaps.values()))["resamples"]
        lines += [f"The gap's 95% interval in parentheses: {resamples} paired bootstrap resamples of each bucket's "
                  "segments (training/length_gap.py); growth compares the longest bucket of at least "
                  "30 segments with the shortest.", ""]
    for name in full_names:
        header = ["source words", "sentences"] + labels + ([f"{labels[0]} − {labels[1]}"] if gap else [])
        lines += [f"### {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, _, bucket in LENGTH_BUCKETS:
            values = [results[label][headline][name]["by_length"][bucket]["bleu"] for label in labels]
            cells = [bucket, str(results[labels[0]][headline][name]["by_length"][bucket]["sentences"])]
            cells += [_format(value) for value in values]
            if gap and name in gaps:
                cells.append(_gap_cell(gaps[name]["buckets"][bucket]))
            elif gap:
                first, second = values[0], values[1]
                cells.append("–" if first is None or second is None else f"{first - second:+.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if (growth := gaps.get(name, {}).get("growth")) is not None:
            lines += [f"Gap growth from {growth['from']} to {growth['to']} words: {growth['gap']:+.1f} BLEU "
                      f"({growth['low']:+.1f} to {growth['high']:+.1f}): **{growth['verdict']}**.", ""]
    lines += ["![BLEU by source length](bleu_by_length.png)", ""]

    if heatmap_files:
        lines += ["## Attention", "", "Rows: generated target tokens; columns: source tokens.", ""]
        for file_name, (source_tokens, target_tokens, _) in heatmap_files:
            lines += [f"- source: {_joined(source_tokens)}", f"- output: {_joined(target_tokens)}", "",
                      f"![attention]({file_name})", ""]

    lines += [f"## Examples ({labels[0]}, {headline})", ""]
    for name in full_names:
        lines += [f"### {name}", ""]
        for example in results[labels[0]][headline][name]["examples"]:
            lines += [f"- source: {example['source']}", f"  - reference: {example['reference']}",
                      f"  - output: {example['hypothesis']}"]
        lines.append("")
    return "\n".join(lines)


def plot_bleu_by_length(results: dict[str, dict[str, dict]], path: Path,
                        gaps: dict[str, dict[str, Any]] | None = None) -> None:
    """One column per test set: BLEU against source length, one line per model (headline decoding);
    with `gaps` (length_gaps), a second row with the first two models' gap and its 95% interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend state
    from matplotlib.figure import Figure

    headline = _headline_decoding(results)
    test_names = full_sets(next(iter(results.values()))[headline])
    rows = 2 if gaps else 1
    figure = Figure(figsize=(5.5 * len(test_names), 4.2 * rows))
    FigureCanvasAgg(figure)
    buckets = [label for _, _, label in LENGTH_BUCKETS]
    labels = list(results)
    for panel, name in enumerate(test_names):
        counts = next(iter(results.values()))[headline][name]["by_length"]
        ticks = [f"{b}\n(n={counts[b]['sentences']})" for b in buckets]
        axes = figure.add_subplot(rows, len(test_names), panel + 1)
        for label, by_decoding in results.items():
            by_length = by_decoding[headline][name]["by_length"]
            values = [np.nan if by_length[b]["bleu"] is None else by_length[b]["bleu"] for b in buckets]
            axes.plot(buckets, values, marker="o", label=f"{label} ({headline})")
        axes.set_xticks(range(len(buckets)), ticks)
        axes.set_title(name)
        axes.set_xlabel("source length (words)")
        axes.set_ylabel("BLEU")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend()
        if gaps and name in gaps:
            entries = [gaps[name]["buckets"][b] for b in buckets]
            shown = [i for i, entry in enumerate(entries) if entry is not None]
            gap_values = np.array([entries[i]["gap"] for i in shown])
            errors = np.array([[gap_values[k] - entries[i]["low"], entries[i]["high"] - gap_values[k]]
                               for k, i in enumerate(shown)]).T.reshape(2, -1)
            below = figure.add_subplot(rows, len(test_names), len(test_names) + panel + 1)
            below.errorbar(shown, gap_values, yerr=errors, marker="o", capsize=4, color="tab:green")
            below.axhline(0.0, color="grey", linewidth=0.8)
            below.set_xticks(range(len(buckets)), ticks)
            below.set_title(f"{name}: {labels[0]} − {labels[1]}, 95% interval")
            below.set_xlabel("source length (words)")
            below.set_ylabel("BLEU gap")
            below.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_attention(heatmap: Heatmap, path: Path) -> None:
    """Heatmap: target tokens as rows, source tokens as columns, colour = attention weight."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    source_tokens, target_tokens, weights = heatmap
    weights = np.asarray(weights, dtype=np.float32)
    if weights.shape != (len(target_tokens), len(source_tokens)):
        raise ValueError(
            f"weights {weights.shape} != (target {len(target_tokens)}, source {len(source_tokens)})"
        )
    figure = Figure(figsize=(2.0 + 0.38 * len(source_tokens), 1.6 + 0.32 * len(target_tokens)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(source_tokens)), source_tokens, rotation=90)
    axes.set_yticks(range(len(target_tokens)), target_tokens)
    axes.set_xlabel("source")
    axes.set_ylabel("output")
    figure.colorbar(image, ax=axes, fraction=0.04)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_report(
    out_dir: Path | str, results: dict[str, dict[str, dict]], heatmaps: Sequence[Heatmap],
    notes: dict[str, Any] | None = None,
) -> list[Path]:
    """Write evaluation.md, evaluation.json, bleu_by_length.png and attention_<i>.png; -> their paths.

    results: {model label (e.g. "attention", "none"): {decoding (e.g. "greedy", "beam5"): evaluate_model
    report}}. The first two labels are compared in the length table (first minus second).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = dict(notes or {})
    gaps = length_gaps(results)
    written = [out_dir / "bleu_by_length.png"]
    plot_bleu_by_length(results, written[0], gaps)
    heatmap_files: list[tuple[str, Heatmap]] = []
    for index, heatmap in enumerate(heatmaps):
        path = out_dir / f"attention_{index}.png"
        plot_attention(heatmap, path)
        heatmap_files.append((path.name, heatmap))
        written.append(path)
    markdown = out_dir / "evaluation.md"
    markdown.write_text(_markdown(results, heatmap_files, notes, gaps) + "\n", encoding="utf-8")
    first = next(iter(next(iter(results.values())).values()))
    document = {
        "notes": notes,
        "novelty": {scores[SUBSET_OF]: {"threshold": scores["novelty_threshold"], "sentences":
                                         first[scores[SUBSET_OF]]["sentences"], "novel": scores["sentences"],
                                         "near_duplicates": scores["near_duplicates"]["sentences"]}
                    for scores in first.values() if SUBSET_OF in scores},
        "headline_decoding": _headline_decoding(results),
        "results": _without_segments(results),
        "length_gap": gaps,
        "heatmaps": [
            {"file": name, "source_tokens": source, "target_tokens": target,
             "weights": np.round(np.asarray(weights, dtype=np.float64), 4).tolist()}
            for name, (source, target, weights) in heatmap_files
        ],
    }
    json_path = out_dir / "evaluation.json"
    json_path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return [markdown, json_path, *written]


# ---- command line: evaluate checkpoints on the held-out test sets -----------------------------------

def read_test_sets(corpus_dir: Path, *, direction: str = "en-de", limit: int = 0) -> TestSets:
    """{everyday, technical} -> [(source, reference)] from the corpus TSVs (the first `limit` rows if > 0)."""
    return {name: _read_split(corpus_dir / file_name, "test set", direction, limit)
            for name, file_name in TEST_SET_FILES.items()}


def _read_split(path: Path, what: str, direction: str, limit: int) -> list[tuple[str, str]]:
    """[(source, reference)] of one corpus TSV in `direction` (the first `limit` rows if > 0)."""
    from training.data.corpus import read_tsv

    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing {what} (run `make data`)")
    rows = read_tsv(path)
    rows = rows[:limit] if limit > 0 else rows
    return [(r.english, r.german) if direction == "en-de" else (r.german, r.english) for r in rows]


def novelty_masks(corpus_dir: Path, test_sets: TestSets, *, direction: str = "en-de",
                  threshold: float | None = None) -> dict[str, Novelty]:
    """{test set: Novelty} of each test segment against the sources of the corpus's train split
    (training/data/novelty.py; threshold None: its THRESHOLD); {} when there is no train.tsv."""
    threshold = novelty.THRESHOLD if threshold is None else threshold
    path = corpus_dir / "train.tsv"
    if not path.is_file():
        return {}
    index = novelty.TrainIndex((source for source, _ in _read_split(path, "train split", direction, 0)), threshold)
    return {name: Novelty(tuple(novelty.novel_mask([source for source, _ in pairs], index)), threshold)
            for name, pairs in test_sets.items()}


LENGTH_PENALTY_GRID = (0.6, 1.0, 1.4, 1.8, 2.2)  # GNMT alphas tried by tune_length_penalty


def tune_length_penalty(
    make_translate_fn: Callable[[float], TranslateFn], corpus_dir: Path, grid: Sequence[float] = LENGTH_PENALTY_GRID,
    *, direction: str = "en-de", limit: int = 0,
) -> tuple[float, dict[str, float]]:
    """Pick the beam's length-penalty alpha by BLEU on the validation split (never the test sets).

    -> (best alpha, {alpha: valid BLEU}); ties go to the smaller alpha."""
    pairs = _read_split(corpus_dir / "valid.tsv", "validation split", direction, limit)
    sources, references = [s for s, _ in pairs], [r for _, r in pairs]
    scores = {}
    for alpha in grid:
        hypotheses = make_translate_fn(alpha)(sources)
        scores[str(alpha)] = round(BLEU().corpus_score(hypotheses, [references]).score, 2)
    best = max(grid, key=lambda alpha: (scores[str(alpha)], -alpha))
    return best, scores


def heatmap_sources(test_sets: TestSets, count: int, min_words: int = 5, max_words: int = 14) -> list[str]:
    """A few short-to-medium test sources, taken in turn from each test set, for readable heatmaps."""
    pools = [
        [source for source, _ in pairs if min_words <= len(source.split()) <= max_words]
        for pairs in test_sets.values()
    ]
    chosen: list[str] = []
    for index in range(count):
        pool = pools[index % len(pools)]
        position = index // len(pools)
        if position < len(pool):
            chosen.append(pool[position])
    return chosen


def main(argv: list[str] | None = None) -> int:
    import torch

    from training.checkpoint import load_checkpoint
    from training.decode import (
        DEFAULT_LENGTH_PENALTY_ALPHA,
        DEFAULT_MAX_LENGTH_CAP,
        make_translate_fn,
        translate_ids,
    )
    from training.from_artifact import load_artifact

    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    model_source = parser.add_mutually_exclusive_group(required=True)
    model_source.add_argument("--checkpoint", type=Path, help="the attention model (best.pt)")
    model_source.add_argument("--artifact", type=Path,
                              help="a published artifact (model_store/<name>/<version>): its fp32 graphs' weights "
                                   "in PyTorch (training.from_artifact), to score a shipped model as served")
    parser.add_argument("--none-checkpoint", type=Path, help="the `none` (no attention) model to compare")
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--beam", type=int, default=5, help="beam size; 1 = greedy only")
    parser.add_argument("--alpha", type=float, default=DEFAULT_LENGTH_PENALTY_ALPHA,
                        help="GNMT length penalty")
    parser.add_argument("--none-alpha", type=float,
                        help="the `none` model's own length penalty (each tuned on the valid split); default --alpha")
    parser.add_argument("--max-length-cap", type=int, default=DEFAULT_MAX_LENGTH_CAP)
    parser.add_argument("--limit", type=int, default=0, help="first N sentences per test set (0 = all)")
    parser.add_argument("--direction", choices=("en-de", "de-en"), default="en-de")
    parser.add_argument("--heatmaps", type=int, default=4, help="attention heatmaps of test sentences")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--no-loop-rule", action="store_true",
                        help="decode without the rule against loops (model_store.repetition) that the service applies")
    parser.add_argument("--novelty-threshold", type=float, default=novelty.THRESHOLD,
                        help="also score each test set's segments with no train source of at least this "
                             "similarity (`<name>_novel`); 0 = off")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    test_sets = read_test_sets(args.corpus, direction=args.direction, limit=args.limit)
    novel = (novelty_masks(args.corpus, test_sets, direction=args.direction, threshold=args.novelty_threshold)
             if args.novelty_threshold > 0 else {})
    decodings = {"greedy": 1} | ({f"beam{args.beam}": args.beam} if args.beam > 1 else {})
    checkpoints = {"attention": args.checkpoint or args.artifact}
    alphas = {"attention": args.alpha}
    if args.none_checkpoint:
        checkpoints["none"] = args.none_checkpoint
        alphas["none"] = args.alpha if args.none_alpha is None else args.none_alpha

    results: dict[str, dict[str, dict]] = {}
    heatmaps: list[Heatmap] = []
    for label, checkpoint in checkpoints.items():
        if label == "attention" and args.artifact:
            model, codec, _ = load_artifact(args.artifact)
            model.to(device)
        else:
            model, codec, _ = load_checkpoint(checkpoint, device)
        results[label] = {}
        for decoding, beam_size in decodings.items():
            translate = make_translate_fn(model, codec, beam_size=beam_size, length_penalty_alpha=alphas[label],
                                          max_length_cap=args.max_length_cap, loop_rule=not args.no_loop_rule)
            results[label][decoding] = evaluate_model(translate, test_sets, novel)
            summary = ", ".join(
                f"{name} BLEU {r['bleu']:.2f} chrF {r['chrf']:.2f}"
                + (f" ({r['seconds']:.1f}s)" if "seconds" in r else f" ({r['sentences']} segments)")
                for name, r in results[label][decoding].items()
            )
            print(f"{label} {decoding}: {summary}", flush=True)
        if label == "attention" and args.heatmaps > 0:
            sources = heatmap_sources(test_sets, args.heatmaps)
            source_ids = [codec.source_ids(text) for text in sources]
            hypotheses = translate_ids(
                model, source_ids, beam_size=args.beam, length_penalty_alpha=args.alpha,
                max_length_cap=args.max_length_cap, return_attention=True,
                loop_marks=None if args.no_loop_rule else codec.loop_marks(),
            )
            for ids, hypothesis in zip(source_ids, hypotheses, strict=True):
                assert hypothesis.attention is not None
                target_tokens = codec.pieces(hypothesis.token_ids)
                if hypothesis.attention.shape[0] > len(target_tokens):
                    target_tokens.append("</s>")
                heatmaps.append((codec.pieces(ids), target_tokens, hypothesis.attention))
        del model

    notes = {
        "checkpoints": ", ".join(f"{label}: {path}" for label, path in checkpoints.items()),
        "test sets": ", ".join(f"{name} ({len(pairs)} sentences)" for name, pairs in test_sets.items()),
        "decoding": f"greedy and beam {args.beam} (GNMT length penalty alpha "
                    + (", ".join(f"{label} {alpha}" for label, alpha in alphas.items())
                       if len(set(alphas.values())) > 1 else f"{args.alpha}")
                    + f"), max length min(2 * source + 10, {args.max_length_cap})",
        "device": str(device) if device.type != "cpu" else f"cpu (torch threads: {torch.get_num_threads()})",
        "novel subsets": (", ".join(f"{name} {sum(n.mask)} of {len(n.mask)}" for name, n in novel.items())
                          + f" segments have no train source of similarity >= {args.novelty_threshold}"
                          if novel else "not scored (no train split or --novelty-threshold 0)"),
    }
    for path in write_report(args.out, results, heatmaps, notes):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
