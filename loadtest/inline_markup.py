"""Does carrying inline markup by attention keep the translation of a sentence that runs through it?

`python -m loadtest.inline_markup`: one server over the shipped model; each test sentence of 6 words
or more (data/corpus/test_*.tsv, from `make data`) gets one to three of its words, chosen at random
(fixed seed), wrapped in `<b>`, and is translated three ways: as HTML through LibreTranslate's
`/translate` (the sentence whole, the element carried by attention, or node by node where it cannot
be), node by node (the text before, inside and after the element each translated on its own, as
every HTML text node was before), and without the markup (`/v1/translate`). Per test set: BLEU and
chrF of each against the references (markup removed), the share carried
(translator_html_runs_total) and examples. Prints a table and writes
`loadtest/results/inline_markup.json`. Needs sacrebleu (the train extra; `make test` installs it).
Must not import service or torch.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

from loadtest.client import translations
from loadtest.confidence import TEST_SETS, read_pairs
from loadtest.machine import tool_report, write_report
from loadtest.servers import REPO_ROOT, scrape_counters, start_service

MIN_WORDS = 6
BATCH = 16
RUNS = {"carried": 'translator_html_runs_total{markup="carried"}',
        "node_by_node": 'translator_html_runs_total{markup="node_by_node"}'}


def wrap(source: str, rng: random.Random) -> tuple[str, list[str], int] | None:
    """`source` with 1-3 of its words in <b>, as HTML, its text nodes (before, inside, after; the
    empty ones left out) and how many words the element holds; None for a sentence of fewer than
    MIN_WORDS words."""
    words = source.split()
    if len(words) < MIN_WORDS:
        return None
    count = rng.randint(1, 3)
    start = rng.randrange(len(words) - count + 1)
    before, inside, after = (" ".join(part) for part in (words[:start], words[start:start + count],
                                                         words[start + count:]))
    fragment = " ".join(part for part in (html.escape(before, quote=False),
                                          f"<b>{html.escape(inside, quote=False)}</b>",
                                          html.escape(after, quote=False)) if part)
    return fragment, [part for part in (before, inside, after) if part], count


def _html_translations(base_url: str, fragments: list[str]) -> list[str]:
    answers: list[str] = []
    for start in range(0, len(fragments), BATCH):
        body = json.dumps({"q": fragments[start:start + BATCH], "target": "de", "format": "html"}).encode()
        request = urllib.request.Request(base_url + "/translate", body, {"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            answers += json.load(response)["translatedText"]
    return answers


def _held_words(answer: str) -> int | None:
    """Words inside the <b> element of a translated fragment; None without one."""
    match = re.search(r"<b>(.*?)</b>", answer)
    return None if match is None else len(text_of(match.group(1)).split())


def text_of(fragment: str) -> str:
    """The text a reader sees: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", fragment))


def measure(base_url: str, pairs: list[tuple[str, str]], seed: int) -> dict[str, Any]:
    import sacrebleu  # the train extra

    rng = random.Random(seed)
    chosen = [(source, reference, wrapped) for source, reference in pairs
              if (wrapped := wrap(source, rng)) is not None]
    if not chosen:
        raise SystemExit(f"no test sentence of {MIN_WORDS}+ words")
    before = scrape_counters(base_url, RUNS)
    carried = _html_translations(base_url, [wrapped[0] for _, _, wrapped in chosen])
    after = scrape_counters(base_url, RUNS)
    nodes = [node for _, _, (_, parts, _) in chosen for node in parts]
    node_texts = iter(item["text"] for item in translations(base_url, nodes, per_request=BATCH))
    node_by_node = [" ".join(next(node_texts) for _ in parts) for _, _, (_, parts, _) in chosen]
    plain = [item["text"] for item in translations(base_url, [source for source, _, _ in chosen], per_request=BATCH)]
    references = [[reference for _, reference, _ in chosen]]
    held = [(wrapped[2], _held_words(answer)) for (_, _, wrapped), answer in zip(chosen, carried, strict=True)]
    wide = [target > 2 * source + 1 for source, target in held if target is not None]
    outputs = {"html, carried by attention": [text_of(answer) for answer in carried],
               "html, node by node (before)": node_by_node, "no markup": plain}
    return {
        "sentences": len(chosen),
        "carried_share": round((after["carried"] - before["carried"]) / len(chosen), 3),
        "node_by_node_runs": after["node_by_node"] - before["node_by_node"],
        # an element holding more than 2n + 1 words of the translation for n of the source: too wide
        "wide_share": round(sum(wide) / max(1, len(wide)), 3),
        "scores": {name: {"bleu": round(sacrebleu.corpus_bleu(texts, references).score, 2),
                          "chrf": round(sacrebleu.corpus_chrf(texts, references).score, 2)}
                   for name, texts in outputs.items()},
        "examples": [{"html": wrapped[0], "carried": answer, "node_by_node": nodes_joined, "reference": reference}
                     for (_, reference, wrapped), answer, nodes_joined
                     in list(zip(chosen, carried, node_by_node, strict=True))[:: max(1, len(chosen) // 10)]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--corpus-dir", type=Path, default=REPO_ROOT / "data" / "corpus")
    parser.add_argument("--limit", type=int, default=None, help="test sentences per set (default: all)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest" / "results" / "inline_markup.json")
    args = parser.parse_args(argv)
    logs = args.out.parent / "raw" / "inline_markup"
    server = start_service(args.store, logs / "service.log")
    try:
        results = {name: measure(server.base_url, read_pairs(args.corpus_dir / f"test_{name}.tsv", args.limit),
                                 args.seed) for name in TEST_SETS}
    finally:
        server.stop()
    report = tool_report("loadtest.inline_markup", argv, test_sets=results)
    write_report(args.out, report)
    print("| test set | sentences | carried | too wide | " + " | ".join(
        f"{name} BLEU / chrF" for name in next(iter(results.values()))["scores"]) + " |")
    print("|---|---|---|---|" + "---|" * len(next(iter(results.values()))["scores"]))
    for name, entry in results.items():
        scores = " | ".join(f"{s['bleu']} / {s['chrf']}" for s in entry["scores"].values())
        print(f"| {name} | {entry['sentences']} | {entry['carried_share']:.1%} | {entry['wide_share']:.1%} | "
              f"{scores} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
