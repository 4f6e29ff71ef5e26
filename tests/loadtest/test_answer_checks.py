"""Answers are checked for what they say, not only their shape: a server answering "falsch" to every
text, a batch in reverse order or answers that change under load are failures in the benchmark client,
bench, compare, the Locust step load and the overload bursts (tests/loadtest/stub_server.py plays the
server). int8, whose answers may change with the batch, has the differing share reported instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtest import bench, client, compare, overload, run_loadtest
from loadtest.answers import ReferenceBook, degenerate_references, reference_key, strict_for
from loadtest.sentences import Sentence

SENTENCES = [Sentence(f"sentence number {i}.", None) for i in range(12)]


def test_a_reference_book_checks_every_position_of_a_batch() -> None:
    book = ReferenceBook(answers={reference_key("a"): "A", reference_key("b"): "B"}, strict=True)
    assert book.check([reference_key("a"), reference_key("b")], ["A", "B"]) is None
    reason = book.check([reference_key("a"), reference_key("b")], ["B", "A"])  # a batch in reverse order
    assert reason is not None and "2 of 2 translations differ" in reason
    assert book.tally() | {} == {"checked": 4, "differing": 2, "learned": 0, "strict": True, "variant": None,
                                 "references": 2}
    int8 = ReferenceBook(answers={reference_key("a"): "A"}, strict=strict_for("int8"))
    assert int8.check([reference_key("a")], ["A'"]) is None and int8.differing == 1  # counted, not failed
    unknown = ReferenceBook(strict=True)  # no reference file: the first answer seen becomes the reference
    assert unknown.check([reference_key("c", 7)], ["C"]) is None and unknown.learned == 1
    assert unknown.check([reference_key("c", 7)], ["falsch"]) is not None
    assert reference_key("c", 7) != reference_key("c")  # a forced length changes a stand-in's answer
    assert strict_for("fp32") and strict_for(None) and not strict_for("int8")


def test_the_same_answer_to_every_sentence_is_not_a_translation() -> None:
    sources = [s.english for s in SENTENCES]
    assert degenerate_references(sources, ["falsch"] * len(sources)) is not None
    assert degenerate_references(sources, [f"DE:{s}" for s in sources]) is None
    assert degenerate_references(["one"], ["eins"]) is None


@pytest.mark.slow
def test_the_client_fails_answers_that_differ_from_the_servers_own(stub_server: Any) -> None:
    wrong, busy_wrong = stub_server("wrong"), stub_server("busy-wrong")
    passes = client.run(lambda: client.references({"wrong": wrong.base_url, "busy": busy_wrong.base_url},
                                                  SENTENCES, False, {"wrong": True, "busy": True}))
    assert isinstance(passes["wrong"], client.ReferencePassError) and "degenerate" in str(passes["wrong"])
    reference = passes["busy"]
    assert isinstance(reference, client.Reference)
    assert reference.answers == [f"DE:{s.english}" for s in SENTENCES]  # asked one at a time: right
    record = client.run(lambda: client.closed_loop(busy_wrong.base_url, SENTENCES, 6, 0.5, False,
                                                   reference=reference))
    assert record.errors and all("differs from this server's sequential answer" in (o.error or "")
                                 for o in record.errors)
    summary = bench.summarize_run(record, _Codec(), {}, {})
    assert summary["errors"] == len(record.errors) and summary["reference_differing"] == len(record.errors)
    # int8: the same differences are counted, not failed
    lenient = client.Reference(reference.answers, strict=False)
    record = client.run(lambda: client.closed_loop(busy_wrong.base_url, SENTENCES, 6, 0.5, False,
                                                   reference=lenient))
    summary = bench.summarize_run(record, _Codec(), {}, {})
    assert summary["errors"] == 0 and summary["reference_differing"] > 0
    assert summary["reference_agreement"] < 1.0


class _Codec:
    def encode(self, text: str) -> list[int]:
        return [0] * len(text.split())


def _stub_services(monkeypatch: pytest.MonkeyPatch, stub_server: Any, module: Any, mode: str) -> None:
    """Every service the tool starts is a stub server in `mode`."""
    def start_service(store: Path, log_path: Path, settings: dict[str, str] | None = None, label: str = "",
                      **_: Any) -> Any:
        return stub_server(mode, variant=(settings or {}).get("variant", "fp32"), log_path=log_path)

    monkeypatch.setattr(module, "start_service", start_service)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["wrong", "busy-wrong"])
def test_bench_fails_a_server_that_answers_wrongly(mode: str, monkeypatch: pytest.MonkeyPatch, stub_server: Any,
                                                   tiny_store: Path, number_sentences: Path, tmp_path: Path) -> None:
    _stub_services(monkeypatch, stub_server, bench, mode)
    monkeypatch.setattr(bench, "model_alone", lambda *args, **kwargs: {"p50_ms": 1.0, "min_ms": 1.0})
    code = bench.main(["--quick", "--configs", "static,continuous", "--skip-engine", "--store", str(tiny_store),
                       "--sentences", str(number_sentences), "--out", str(tmp_path), "--docs", ""])
    assert code == 1
    configs = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))["configs"]
    for result in configs.values():
        why = "degenerate" if mode == "wrong" else "differs from this server's sequential answer"
        assert why in result["error"], result


@pytest.mark.slow
def test_bench_counts_int8_answers_that_differ_instead_of_failing_them(
    monkeypatch: pytest.MonkeyPatch, stub_server: Any, tiny_store: Path, number_sentences: Path, tmp_path: Path
) -> None:
    _stub_services(monkeypatch, stub_server, bench, "busy-wrong")
    monkeypatch.setattr(bench, "model_alone", lambda *args, **kwargs: {"p50_ms": 1.0, "min_ms": 1.0})
    docs = tmp_path / "benchmarks.md"
    code = bench.main(["--quick", "--configs", "int8", "--skip-engine", "--store", str(tiny_store),
                       "--sentences", str(number_sentences), "--out", str(tmp_path), "--docs", str(docs)])
    assert code == 0
    int8 = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))["configs"]["int8"]
    assert int8["reference"]["policy"] == "share" and int8["reference"]["variant"] == "int8"
    runs = int8["closed"]["runs"]
    assert all(run["errors"] == 0 for run in runs)
    assert sum(run["reference_differing"] for run in runs) > 0
    assert " differ (" in docs.read_text(encoding="utf-8")  # the share, in the closed-loop table


@pytest.mark.slow
def test_compare_fails_a_server_whose_answers_change_under_load(
    monkeypatch: pytest.MonkeyPatch, stub_server: Any, tiny_store: Path, number_sentences: Path, tmp_path: Path
) -> None:
    _stub_services(monkeypatch, stub_server, compare, "wrong")
    assert compare.main(["a:batching=static", "b:batching=continuous", "--rate", "20", "--duration-s", "0.3",
                         "--repeats", "1", "--warmup-s", "0.1", "--store", str(tiny_store),
                         "--sentences", str(number_sentences), "--out", str(tmp_path / "c.json")]) == 1
    _stub_services(monkeypatch, stub_server, compare, "busy-wrong")
    out = tmp_path / "compare.json"
    assert compare.main(["a:batching=static", "b:variant=int8", "--rate", "60", "--duration-s", "0.5",
                         "--repeats", "1", "--closed", "6", "--closed-duration-s", "0.4", "--warmup-s", "0.1",
                         "--max-sentences", "24", "--store", str(tiny_store), "--sentences", str(number_sentences),
                         "--out", str(out)]) == 0
    configs = json.loads(out.read_text(encoding="utf-8"))["configs"]
    strict, lenient = configs["a"]["closed"]["runs"][0], configs["b"]["closed"]["runs"][0]
    assert strict["errors"] > 0 and strict["errors"] == strict["reference_differing"]  # fp32: errors
    assert lenient["errors"] == 0 and lenient["reference_differing"] > 0  # int8: counted


@pytest.mark.slow
def test_overload_validates_every_200(stub_server: Any, tmp_path: Path) -> None:
    wrong = stub_server("wrong")
    assert overload.main(["--url", wrong.base_url, "--quick"]) == 1  # degenerate: no references
    reversed_batches = stub_server("reversed")
    out = tmp_path / "overload.json"
    assert overload.main(["--url", reversed_batches.base_url, "--rates", "200", "--requests", "12",
                          "--texts-per-request", "4", "--out", str(out)]) == 1
    run = json.loads(out.read_text(encoding="utf-8"))["runs"][0]
    assert run["held"] == 0 and run["wrong_answers"] == 12 and "differ" in run["wrong_samples"][0]
    echo = stub_server("echo")
    assert overload.main(["--url", echo.base_url, "--rates", "200", "--requests", "12", "--texts-per-request", "4",
                          "--out", str(out)]) == 0
    run = json.loads(out.read_text(encoding="utf-8"))["runs"][0]
    assert run["held"] == 12 and run["wrong_answers"] == 0 and run["reference_checked"] == 48


@pytest.mark.slow
def test_locust_fails_each_wrong_position_and_counts_int8s(stub_server: Any, number_sentences: Path,
                                                           tmp_path: Path) -> None:
    def step_load(server: Any, out: Path) -> dict[str, Any]:
        code = run_loadtest.main(["--url", server.base_url, "--users", "2", "--step-s", "1.5", "--user-rps", "0",
                                  "--weights", "single=0,batch=1,attention=0,libre=0", "--sentences",
                                  str(number_sentences), "--out", str(out), "--docs", ""])
        assert code == 0
        document: dict[str, Any] = json.loads((out / "loadtest.json").read_text(encoding="utf-8"))
        return document

    assert run_loadtest.main(["--url", stub_server("wrong").base_url, "--users", "1", "--step-s", "1",
                              "--sentences", str(number_sentences), "--out", str(tmp_path / "w"),
                              "--docs", ""]) == 1  # degenerate reference answers: refused before the load
    (step,) = step_load(stub_server("reversed"), tmp_path / "r")["steps"]
    # every batch in reverse order (one drawn as a palindrome, a, b, b, a, is still right)
    assert step["requests"] > 0 and step["failures"] >= 0.98 * step["requests"]
    assert "translations differ from this server's sequential answers" in step["failure_samples"][0]
    document = step_load(stub_server("reversed", variant="int8"), tmp_path / "i")
    (step,) = document["steps"]
    assert document["references"]["policy"] == "share"
    assert step["failures"] == 0 and step["reference_differing"] > 0 and step["reference_policy"] == "share"
