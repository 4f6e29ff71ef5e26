"""Does the service carry addresses, paths and numbers over as sent, and what does that cost in BLEU?

`python -m loadtest.kept_as_sent`: two servers over the same model, side by side, one with the default
TRANSLATOR_KEEP_VERBATIM and one with it empty (everything goes to the model as written).
1. Sentences built from everyday templates ("Please send the form to {} by Friday.") and real-looking
   web addresses, e-mail addresses, file paths and numbers: for each kind, how many translations hold
   every such text exactly as sent (the numbers a German translation may rewrite, "12.5%" -> "12,5%",
   are in the set and counted apart, as "left to the model").
2. With `--test-sets`: sacreBLEU and chrF of both servers on the held-out test sets (data/corpus, from
   `make data`; needs sacrebleu, which `make test` installs), over all sentences and over those where
   something is kept verbatim, since their references may localise it (LibreOffice's help writes
   "www.beispiel.org" for "www.example.org").
Prints a table and writes `loadtest/results/kept_as_sent.json`. Must not import service or torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loadtest.client import translations
from loadtest.machine import tool_report, write_report
from loadtest.servers import REPO_ROOT, ServerProcess, start_service
from model_store.verbatim import VERBATIM_KINDS, verbatim_spans

TEMPLATES = [
    "Visit {} for details.", "Please send the form to {} by Friday.", "You can download the new version from {}.",
    "The report is saved as {}.", "For questions, write to {}.", "Open {} in your browser.",
    "My phone number is {}.", "The meeting was moved to {}.", "Version {} fixes several bugs.",
    "The server runs at {}.", "I will call you at {} tomorrow.", "The invoice number is {}.",
    "Copy the file {} to the desktop.", "He lives at number {}.", "See {} and {} for more information.",
    "The price rose to {} last year.", "Contact us at {} or call {}.", "The document {} was deleted.",
    "Mirrors: {}, {} and {}.", "Links: {} {} {} {}",  # several in a row
]
VALUES = {
    "url": ["https://example.com/docs/install?lang=en#top", "www.libreoffice.org/download",
            "http://10.0.0.1:8080/status", "https://github.com/user/repo/issues/42"],
    "email": ["support@example.org", "anna.schmidt@firma.de", "info+news@mail.example.com"],
    "path": ["C:\\Users\\anna\\report.docx", "/etc/nginx/nginx.conf", "~/Documents/notes.txt", "data/2024/summary.csv"],
    "number": ["555-0199", "+49 30 1234567", "2024-05-17", "3.14.2", "1,234,567", "192.168.1.20", "INV-2024-0815"],
    # left to the model: a German translation may rightly rewrite these
    "number (left to the model)": ["17:45", "4711", "12.5%", "25,000"],
}
QUICK_TEMPLATES = 3


def probe_sentences(quick: bool = False) -> list[tuple[str, str, list[str]]]:
    """(kind, sentence, the texts it must hold as sent): every value in every template; a second slot
    gets one of the values that are kept, in turn."""
    others = [value for kind, values in VALUES.items() if kind in VERBATIM_KINDS for value in values]
    rows, turn = [], 0
    for kind, values in VALUES.items():
        for value in values:
            for template in TEMPLATES[:QUICK_TEMPLATES] if quick else TEMPLATES:
                fill = [value]
                for _ in range(template.count("{}") - 1):
                    fill.append(others[turn % len(others)])
                    turn += 1
                rows.append((kind, template.format(*fill), fill))
    return rows


def probe(servers: dict[str, ServerProcess], quick: bool) -> dict[str, Any]:
    rows = probe_sentences(quick)
    outputs = {name: [item["text"] for item in translations(server.base_url, [sentence for _, sentence, _ in rows])]
               for name, server in servers.items()}
    by_kind: dict[str, dict[str, Any]] = {}
    for position, (kind, _, kept) in enumerate(rows):
        entry = by_kind.setdefault(kind, {"sentences": 0} | {name: 0 for name in servers})
        entry["sentences"] += 1
        for name in servers:
            entry[name] += all(text in outputs[name][position] for text in kept)
    examples = [{"source": sentence} | {name: outputs[name][position] for name in servers}
                for position, (_, sentence, _) in enumerate(rows) if position % 7 == 0]
    return {"by_kind": by_kind, "examples": examples}


def _scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    import sacrebleu  # the train extra; only for --test-sets

    return {"bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2)}


def test_sets(servers: dict[str, ServerProcess], corpus: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in ("everyday", "technical"):
        pairs = [line.rstrip("\n").split("\t")[:2]
                 for line in (corpus / f"test_{name}.tsv").read_text(encoding="utf-8").splitlines()]
        sources, references = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
        outputs = {label: [item["text"] for item in translations(server.base_url, sources)]
                   for label, server in servers.items()}
        touched = [position for position, source in enumerate(sources) if verbatim_spans(source)]
        differ = sum(len({outputs[label][position] for label in servers}) > 1 for position in range(len(sources)))
        result[name] = {
            "sentences": len(sources),
            "with_kept_text": len(touched),
            "answers_that_differ": differ,
            "all": {label: _scores(outputs[label], references) for label in servers},
            "with_kept_text_only": {
                label: _scores([outputs[label][p] for p in touched], [references[p] for p in touched])
                for label in servers} if touched else {},
        }
    return result


def render(report: dict[str, Any]) -> str:
    names = report["servers"]
    machine = report["machine"]
    lines = [f"Kept as sent, {machine['date_utc']}; command: `{report['command']}`", "",
             "| kind | sentences | " + " | ".join(f"all kept, {name}" for name in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for kind, entry in report["probe"]["by_kind"].items():
        lines.append(f"| {kind} | {entry['sentences']} | " + " | ".join(str(entry[name]) for name in names) + " |")
    for name, entry in report.get("test_sets", {}).items():
        lines += ["", f"{name}: {entry['sentences']} sentences, {entry['with_kept_text']} with text kept verbatim, "
                  f"{entry['answers_that_differ']} answers differ"]
        for scope in ("all", "with_kept_text_only"):
            for label, scores in entry[scope].items():
                lines.append(f"- {scope}, {label}: BLEU {scores['bleu']}, chrF {scores['chrf']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--test-sets", action="store_true", help="also score both servers on data/corpus's test sets")
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT / "data" / "corpus")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TEMPLATES} templates, for the tests")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest" / "results" / "kept_as_sent.json")
    args = parser.parse_args(argv)
    logs = args.out.parent / "raw" / "kept_as_sent"
    servers: dict[str, ServerProcess] = {}
    try:
        servers["kept"] = start_service(args.store, logs / "kept.log", label="kept")
        servers["not kept"] = start_service(args.store, logs / "not_kept.log", {"keep_verbatim": ""}, label="not kept")
        report = tool_report("loadtest.kept_as_sent", argv, servers=list(servers), probe=probe(servers, args.quick))
        if args.test_sets:
            report["test_sets"] = test_sets(servers, args.corpus)
    finally:
        for server in servers.values():
            server.stop()
    write_report(args.out, report)
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
