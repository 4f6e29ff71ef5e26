"""loadtest.kept_as_sent in its quick mode: two real servers over the shipped model, one keeping
addresses, paths and numbers verbatim and one not, and the probe's counts from their answers."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.kept_as_sent import VALUES, main, probe_sentences
from model_store.verbatim import VERBATIM_KINDS, verbatim_spans


def test_every_probe_value_is_what_the_service_keeps_or_leaves() -> None:
    # the probe measures the rules it documents: kept kinds are found whole, the others not at all
    for kind, values in VALUES.items():
        for value in values:
            sentence = f"Visit {value} for details."
            found = [sentence[start:end] for start, end in verbatim_spans(sentence)]
            assert found == ([value] if kind in VERBATIM_KINDS else []), (kind, value, found)
    rows = probe_sentences(quick=True)
    assert {kind for kind, _, _ in rows} == set(VALUES)
    assert all(text in sentence for _, sentence, kept in rows for text in kept)


def test_quick_probe_against_real_servers(tmp_path: Path) -> None:
    out = tmp_path / "kept.json"
    assert main(["--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["servers"] == ["kept", "not kept"]
    by_kind = report["probe"]["by_kind"]
    for kind in VERBATIM_KINDS:
        entry = by_kind[kind]
        assert entry["sentences"] == len(VALUES[kind]) * 3
        assert entry["kept"] == entry["sentences"], (kind, entry)  # every address and number as sent
        assert entry["not kept"] <= entry["kept"]
    assert report["probe"]["examples"] and "test_sets" not in report
