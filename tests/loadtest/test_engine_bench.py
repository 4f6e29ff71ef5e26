"""`loadtest.engine_bench --quick` on the tiny artifact: per-batch numbers exist, are positive and
agree with each other and with the FLOP count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import engine_bench


def test_quick_engine_bench(tiny_store: Path, number_sentences: Path, tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    code = engine_bench.main(["--quick", "--store", str(tiny_store), "--sentences", str(number_sentences),
                              "--batch-sizes", "1,8,32", "--out", str(tmp_path), "--docs", str(docs)])
    assert code == 0
    document = json.loads((tmp_path / "engine_bench.json").read_text(encoding="utf-8"))
    assert document["matmul_peak_gflops"] > 0
    assert document["matmul_peak_gflops"] == max(document["matmul_peak_samples_gflops"])
    flops = document["flops"]
    steps = document["sentences"]["decoder_steps"]
    assert flops["per_sentence"] == flops["encoder_per_sentence"] + steps * flops["decoder_step_per_row"]
    assert 0 < flops["output_projection_per_row"] < flops["decoder_step_per_row"]
    assert document["machine"]["io_binding"] == "auto"
    for variant in ("fp32", "int8"):
        assert document["variants"][variant]["io_binding"] is False  # auto on CPU
        rows = document["variants"][variant]["rows"]
        assert [row["batch"] for row in rows] == [1, 8, 32]
        for row in rows:
            assert row["encoder_ms"] > 0 and row["decoder_step_ms"] > 0
            assert row["decoder_step_rows_per_s"] == pytest.approx(row["batch"] / (row["decoder_step_ms"] / 1000))
            assert row["decoder_step_gflops"] == pytest.approx(
                row["batch"] * flops["decoder_step_per_row"] / (row["decoder_step_ms"] / 1000) / 1e9)
            assert row["decoder_step_fraction_of_peak"] == pytest.approx(
                row["decoder_step_gflops"] / document["matmul_peak_gflops"])
            # Encoder + every step of a batch take longer than the encoder alone.
            assert 0 < row["sentences_per_s"] < row["encoder_sentences_per_s"]
    target = document["target"]
    assert target["value"] == pytest.approx(document["variants"]["fp32"]["rows"][2]["decoder_step_fraction_of_peak"])
    assert "| 32 |" in docs.read_text(encoding="utf-8")


def test_quick_engine_bench_with_io_binding(tiny_store: Path, number_sentences: Path, tmp_path: Path) -> None:
    """--io-binding on (CPU): the chained decoder steps run with the state kept where ORT left it."""
    code = engine_bench.main(["--quick", "--store", str(tiny_store), "--sentences", str(number_sentences),
                              "--variants", "fp32", "--batch-sizes", "1,4", "--io-binding", "on",
                              "--out", str(tmp_path), "--docs", ""])
    assert code == 0
    document = json.loads((tmp_path / "engine_bench.json").read_text(encoding="utf-8"))
    assert document["machine"]["io_binding"] == "on"
    assert document["variants"]["fp32"]["io_binding"] is True
    assert [row["batch"] for row in document["variants"]["fp32"]["rows"]] == [1, 4]
    assert all(row["decoder_step_ms"] > 0 for row in document["variants"]["fp32"]["rows"])
