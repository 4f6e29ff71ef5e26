"""Does the service's `confidence` rank its translations by quality? Measured on the held-out test sets.

`python -m loadtest.confidence`: one server over the shipped model translates each test set
(data/corpus/test_<name>.tsv, from `make data`), every text once; each translation's sentence chrF
against its reference is set beside its confidence. Reports Spearman's rank correlation between the
two, and the test set cut into quarters by confidence, with each quarter's corpus BLEU and chrF and
its share of translations under a sentence chrF of 30 (mostly wrong). With `--attention-signals`,
also signals read off each text's attention (/v1/attention, one request per text): coverage deviation
and attention entropy (Rikters & Fishel 2017), each alone and added to the confidence (z-scores), as
rank correlations with sentence chrF. Prints a table and writes `loadtest/results/confidence.json`.
Needs sacrebleu (the train extra; `make test` installs it).
Must not import service or torch.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import urllib.request
from pathlib import Path
from typing import Any

from loadtest.client import translations
from loadtest.machine import tool_report, write_report
from loadtest.servers import REPO_ROOT, start_service
from loadtest.stats import spearman

TEST_SETS = ("everyday", "technical")
QUARTERS = 4
POOR_CHRF = 30.0  # a sentence chrF below this: mostly wrong
SIGNAL_WEIGHTS = (0.25, 0.5, 1.0)  # an attention signal added to the confidence at these weights (z-scores)


def read_pairs(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(source, reference) per line of a tab-separated corpus file (data/corpus's format)."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0].strip():
            pairs.append((fields[0], fields[1]))
    return pairs[:limit]


def quarters(confidences: list[float]) -> list[list[int]]:
    """Positions of `confidences` in QUARTERS groups of (nearly) equal size, least confident first."""
    order = sorted(range(len(confidences)), key=lambda position: confidences[position])
    return [order[len(order) * part // QUARTERS: len(order) * (part + 1) // QUARTERS] for part in range(QUARTERS)]


def attention_signals(weights: list[list[float]]) -> dict[str, float]:
    """From one text's attention [target tokens, source tokens] (eos included, rows sum to 1): coverage
    deviation, -mean over source tokens of log(1 + (1 - attention received)^2), 0 when every source
    token got a whole token's attention; and the negative mean entropy of the rows (0: each target
    token looked at one source token)."""
    columns = len(weights[0])
    coverage = [sum(row[column] for row in weights) for column in range(columns)]
    deviation = -statistics.fmean(math.log1p((1 - value) ** 2) for value in coverage)
    entropy = statistics.fmean(-sum(value * math.log(value) for value in row if value > 0) for row in weights)
    return {"coverage_deviation": deviation, "attention_entropy": -entropy}


def _attention(base_url: str, text: str) -> list[list[float]]:
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(base_url + "/v1/attention", body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return list(json.load(response)["weights"])


def _z(values: list[float]) -> list[float]:
    mean, deviation = statistics.fmean(values), statistics.pstdev(values) or 1.0
    return [(value - mean) / deviation for value in values]


def compare_signals(confidences: list[float], chrf: list[float], signals: list[dict[str, float]]) -> dict[str, Any]:
    """Spearman against sentence chrF: each attention signal alone, and added to the confidence."""
    result: dict[str, Any] = {"confidence": round(spearman(confidences, chrf), 3)}
    sure = _z([math.log(value) if value > 0 else -1e9 for value in confidences])
    for name in signals[0]:
        values = [signal[name] for signal in signals]
        result[name] = round(spearman(values, chrf), 3)
        for weight in SIGNAL_WEIGHTS:
            mixed = [a + weight * b for a, b in zip(sure, _z(values), strict=True)]
            result[f"confidence + {weight} x {name}"] = round(spearman(mixed, chrf), 3)
    return result


def score_set(sources: list[str], references: list[str], items: list[dict[str, Any]],
              signals: list[dict[str, float]] | None = None) -> dict[str, Any]:
    import sacrebleu  # the train extra

    outputs = [item["text"] for item in items]
    confidences = [float(item["confidence"]) for item in items]
    chrf = [sacrebleu.sentence_chrf(output, [reference]).score for output, reference in zip(outputs, references,
                                                                                             strict=True)]
    by_quarter = []
    for part, positions in enumerate(quarters(confidences)):
        if not positions:
            continue
        hypotheses, wanted = [outputs[p] for p in positions], [references[p] for p in positions]
        by_quarter.append({
            "quarter": part + 1,
            "sentences": len(positions),
            "confidence_min": round(min(confidences[p] for p in positions), 3),
            "confidence_max": round(max(confidences[p] for p in positions), 3),
            "bleu": round(sacrebleu.corpus_bleu(hypotheses, [wanted]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(hypotheses, [wanted]).score, 2),
            "poor_share": round(sum(chrf[p] < POOR_CHRF for p in positions) / len(positions), 3),
        })
    return {
        "sentences": len(sources),
        "spearman_confidence_sentence_chrf": round(spearman(confidences, chrf), 3),
        **({"attention_signals_spearman": compare_signals(confidences, chrf, signals)} if signals else {}),
        "median_confidence": round(statistics.median(confidences), 3),
        "quarters": by_quarter,
        "examples": [{"source": sources[p], "translation": outputs[p], "reference": references[p],
                      "confidence": round(confidences[p], 3), "sentence_chrf": round(chrf[p], 1)}
                     for p in sorted(range(len(sources)), key=lambda p: confidences[p])[:: max(1, len(sources) // 8)]],
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"Confidence against quality, {report['machine']['date_utc']}; command: `{report['command']}`"]
    for name, entry in report["test_sets"].items():
        lines += ["", f"{name}: {entry['sentences']} texts, Spearman (confidence, sentence chrF) "
                  f"{entry['spearman_confidence_sentence_chrf']}, median confidence {entry['median_confidence']}", "",
                  "| quarter by confidence | texts | confidence | BLEU | chrF | sentence chrF < 30 |",
                  "|---|---|---|---|---|---|"]
        for quarter in entry["quarters"]:
            lines.append(f"| {quarter['quarter']} | {quarter['sentences']} | {quarter['confidence_min']:.3f}-"
                         f"{quarter['confidence_max']:.3f} | {quarter['bleu']} | {quarter['chrf']} | "
                         f"{quarter['poor_share']:.0%} |")
        for name, value in entry.get("attention_signals_spearman", {}).items():
            lines.append(f"- Spearman with sentence chrF, {name}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT / "data" / "corpus")
    parser.add_argument("--sets", default=",".join(TEST_SETS), help="test sets, read from <corpus>/test_<name>.tsv")
    parser.add_argument("--max-sentences", type=int, default=None, help="the first N texts of each set")
    parser.add_argument("--attention-signals", action="store_true",
                        help="also rank by signals read off each text's attention (one /v1/attention request per text)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest" / "results" / "confidence.json")
    args = parser.parse_args(argv)
    server = start_service(args.store, args.out.parent / "raw" / "confidence" / "service.log", label="confidence")
    try:
        scored = {}
        for name in [name.strip() for name in args.sets.split(",") if name.strip()]:
            pairs = read_pairs(args.corpus / f"test_{name}.tsv", args.max_sentences)
            sources, references = [source for source, _ in pairs], [reference for _, reference in pairs]
            signals = ([attention_signals(_attention(server.base_url, source)) for source in sources]
                       if args.attention_signals else None)
            scored[name] = score_set(sources, references, translations(server.base_url, sources), signals)
    finally:
        server.stop()
    report = tool_report("loadtest.confidence", argv, test_sets=scored)
    write_report(args.out, report)
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
