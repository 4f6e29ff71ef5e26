"""The queueing model of loadtest.p99_model: its CPU sharing, the two policies' mechanics as the
scheduler implements them, conservation, and the --quick CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from loadtest import p99_model as m

COSTS = m.Costs.linear(encoder_call_s=0.002, encoder_row_s=0.0005, step_s=0.001, step_row_s=0.0001)
NO_OVERHEADS = m.Overheads.none()
CONTINUOUS = m.Policy("continuous", "continuous", overheads=NO_OVERHEADS)
STATIC = m.Policy("static", "static", overheads=NO_OVERHEADS)


def one(source: int, target: int) -> m.Request:
    return (m.Sentence(source, target),)


def latencies(result: m.RunResult) -> list[float]:
    return result.latencies_s


def random_requests(count: int, seed: int, max_sentences: int = 1) -> list[m.Request]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        sentences = []
        for _ in range(int(rng.integers(1, max_sentences + 1))):
            source = int(rng.integers(3, 60))
            sentences.append(m.Sentence(source, m.capped_target(source, int(rng.integers(2, 2 * source)))))
        out.append(tuple(sentences))
    return out


# ----------------------------------------------------------------------------------- the CPU


@pytest.mark.parametrize(("cores", "threads", "expected"), [(1.0, 2, 0.02), (2.0, 2, 0.01), (2.0, 3, 0.015),
                                                            (4.0, 3, 0.01)])
def test_runnable_threads_share_the_cores_equally(cores: float, threads: int, expected: float) -> None:
    sim = m.Simulation(CONTINUOUS, COSTS, cores)
    ends: list[float] = []
    for thread in sim.threads[:threads]:
        sim.submit(thread, 0.01, lambda: ends.append(sim.now))
    sim.run()
    assert ends == pytest.approx([expected] * threads)
    assert sum(t.cpu_s for t in sim.threads) == pytest.approx(0.01 * threads)


def test_a_thread_runs_its_jobs_one_after_another() -> None:
    sim = m.Simulation(CONTINUOUS, COSTS, cores=2.0)
    ends: list[float] = []
    sim.submit(sim.loop, 0.01, lambda: ends.append(sim.now))
    sim.submit(sim.loop, 0.02, lambda: ends.append(sim.now))
    sim.run()
    assert ends == pytest.approx([0.01, 0.03])


# ----------------------------------------------------------------------------------- a lone request


def test_a_lone_request_takes_its_encoder_call_plus_its_steps() -> None:
    result = m.run_schedule(CONTINUOUS, COSTS, 2.0, [(0.0, one(12, 9))])
    assert latencies(result) == pytest.approx([COSTS.encoder(12, 1) + 9 * COSTS.step(1)], abs=1e-12)


def test_a_lone_request_pays_each_overhead_once() -> None:
    o = m.Overheads()
    policy = m.Policy("continuous", "continuous", overheads=o)
    result = m.run_schedule(policy, COSTS, 2.0, [(0.0, one(12, 9))])
    # inline encoder call (nothing in flight, one small row): encoder + hand-off on the event loop
    expected = (o.client_send_s + o.http_in_s + o.admission_s + COSTS.encoder(12, 1) + o.handoff_s
                + 9 * (COSTS.step(1) + o.step_python_s) + o.report_s + o.http_out_s + o.client_receive_s)
    assert latencies(result) == pytest.approx([expected], abs=1e-12)


def test_static_makes_a_lone_request_wait_its_fill_time() -> None:
    schedule = [(0.0, one(12, 9))]
    alone = latencies(m.run_schedule(CONTINUOUS, COSTS, 2.0, schedule))[0]
    assert latencies(m.run_schedule(STATIC, COSTS, 2.0, schedule)) == pytest.approx([alone + 0.005], abs=1e-12)


def test_a_long_source_is_encoded_on_the_encoder_thread() -> None:
    # 70 positions > 64: not inline, whatever else is going on
    sim = m.Simulation(CONTINUOUS, COSTS, 2.0)

    def send() -> None:
        sim.arrive(one(70, 3), 0)

    sim.at(0.0, send)
    sim.run()
    assert sim.encoder.cpu_s == pytest.approx(COSTS.encoder(70, 1))
    assert sim.loop.cpu_s == 0.0


# ----------------------------------------------------------------------------------- the two policies


def test_static_releases_a_batch_s_answers_together_and_continuous_does_not() -> None:
    schedule = [(0.0, one(10, 3)), (0.0, one(10, 30))]
    static = m.run_schedule(STATIC, COSTS, 8.0, schedule, keep_tickets=True)
    assert static.latencies_s[0] == pytest.approx(static.latencies_s[1], abs=1e-12)
    short, long = static.tickets
    assert short.finished_at < long.finished_at  # its row ended early, its answer waited for the batch
    continuous = m.run_schedule(CONTINUOUS, COSTS, 8.0, schedule)
    assert continuous.latencies_s[0] < continuous.latencies_s[1] - 20 * COSTS.step(1)


def test_continuous_admits_a_newcomer_at_the_next_step() -> None:
    flat = m.Costs.linear(encoder_call_s=0.002, encoder_row_s=0.0005, step_s=0.001, step_row_s=0.0)
    schedule = [(0.0, one(10, 200)), (0.01013, one(10, 5))]
    result = m.run_schedule(CONTINUOUS, flat, 8.0, schedule, keep_tickets=True)
    running, newcomer = result.tickets
    assert newcomer.encoded_at == pytest.approx(0.01013 + flat.encoder(10, 1))  # on the encoder thread
    steps_before = math.ceil((newcomer.encoded_at - running.first_step_at) / 0.001)
    assert newcomer.first_step_at == pytest.approx(running.first_step_at + steps_before * 0.001)
    assert 0 <= newcomer.first_step_at - newcomer.encoded_at < 0.001
    assert newcomer.finished_at == pytest.approx(newcomer.first_step_at + 5 * 0.001)
    # static: the newcomer waits for the running batch to end
    result = m.run_schedule(STATIC, flat, 8.0, schedule, keep_tickets=True)
    running, newcomer = result.tickets
    assert newcomer.admitted_at >= running.finished_at


def test_static_fills_a_batch_without_waiting_once_it_has_its_rows() -> None:
    policy = replace(STATIC, max_rows=4)
    result = m.run_schedule(policy, COSTS, 8.0, [(0.0, one(10, 5))] * 4, keep_tickets=True)
    assert {t.admitted_at for t in result.tickets} == {0.0}


def test_one_row_at_a_time_makes_the_policies_the_same() -> None:
    """With room for one row, static never waits to fill and both serve first come, first served:
    the same latencies for any arrivals and lengths, overheads included."""
    rng = np.random.default_rng(3)
    requests = random_requests(300, seed=4, max_sentences=3)
    times = np.cumsum(rng.exponential(1 / 40, size=len(requests)))
    schedule = list(zip(times.tolist(), requests, strict=True))
    results = [m.run_schedule(m.Policy(mode, mode, max_rows=1), COSTS, 2.0, schedule).latencies_s
               for mode in ("continuous", "static")]
    assert results[0] == pytest.approx(results[1], abs=1e-12)


def test_isolated_identical_requests_differ_only_by_static_s_fill_time() -> None:
    schedule = [(float(i), one(15, 12)) for i in range(20)]
    continuous = m.run_schedule(m.Policy("c", "continuous"), COSTS, 2.0, schedule).latencies_s
    assert max(continuous) == pytest.approx(min(continuous), abs=1e-12)
    no_wait = m.run_schedule(m.Policy("s", "static", static_wait_s=0.0), COSTS, 2.0, schedule).latencies_s
    assert no_wait == pytest.approx(continuous, abs=1e-12)
    # overheads included: the fill time counts from the submission, as in the scheduler (the pass that
    # set the timer ran inside it, the pass the timer wakes takes what the first pass took without one)
    waiting = m.run_schedule(m.Policy("s", "static"), COSTS, 2.0, schedule).latencies_s
    assert waiting == pytest.approx([c + 0.005 for c in continuous], abs=1e-12)


# ----------------------------------------------------------------------------------- conservation


@pytest.mark.parametrize("policy", list(m.policies().values()), ids=lambda p: p.name)
def test_every_arrival_completes_and_the_cpu_adds_up(policy: m.Policy) -> None:
    requests = random_requests(1500, seed=1, max_sentences=3)
    rng = np.random.default_rng(2)
    times = np.cumsum(rng.exponential(1 / 150, size=len(requests)))
    sim = m.Simulation(policy, COSTS, 2.0)
    states: list[m._RequestState] = []

    def sender(request: m.Request) -> Callable[[], None]:
        return lambda: states.append(sim.arrive(request, len(states)))

    for when, request in zip(times.tolist(), requests, strict=True):
        sim.at(when, sender(request))
    sim.run()
    assert len(states) == len(requests) == len(sim.finished)
    assert all(s.done_at >= s.arrival for s in states)
    assert sim.idle() and sim.held_rows == 0 and sim.decoding == 0 and not sim.batch_answers
    assert all(lane.live == lane.rows == 0 and not lane.running and not lane.inbox for lane in sim.lanes)
    assert sim.max_held_rows == policy.max_rows  # bursts fill the batch; the cap holds
    used = sum(t.cpu_s for t in sim.threads)
    assert used == pytest.approx(sim.work_submitted)
    assert used <= sim.cores * sim.now + 1e-9
    assert sum(lane.steps for lane in sim.lanes) > 0


def test_the_closed_loop_keeps_its_clients_busy() -> None:
    requests = random_requests(200, seed=5)
    result = m.run_closed(m.policies()["static"], COSTS, 2.0, m.drawer(requests, 0), 8, 20.0, 2.0)
    # 8 clients each with one request in flight: throughput x latency (Little's law) is about 8
    assert result.throughput_per_s * float(np.mean(result.latencies_s)) == pytest.approx(8, rel=0.05)


# ----------------------------------------------------------------------------------- inputs


def test_encoder_calls_never_mix_lanes_and_split_lengths_worth_splitting() -> None:
    lengths = [5, 6, 100, 7, 40, 5, 5]
    calls = m.encoder_calls(lengths, (32,))
    assert sorted(i for call in calls for i in call) == list(range(len(lengths)))
    for call in calls:
        assert len({length > 32 for length in (lengths[i] for i in call)}) == 1
    # one call of 4 rows padded to 30 costs 30 x 7 + 8 = 218 row-positions; 5 x 6 + 8 and 30 x 4 + 8: 166
    assert sorted(map(sorted, m.encoder_calls([5, 5, 5, 30], ()))) == [[0, 1, 2], [3]]
    assert m.encoder_calls([10, 11, 12], ()) == [[0, 1, 2]]


def test_costs_come_from_the_engine_benchmark() -> None:
    document = json.loads(m.ENGINE_BENCH.read_text(encoding="utf-8"))
    rows = {r["batch"]: r for r in document["variants"]["fp32"]["rows"]}
    costs = m.Costs.from_engine_bench(thread_factor=2.0)
    assert costs.step(1) == pytest.approx(2 * rows[1]["decoder_step_ms"] / 1000)
    assert costs.encoder(costs.reference_source, 32) == pytest.approx(2 * rows[32]["encoder_ms"] / 1000)
    steps = [costs.step(b) for b in range(1, 257)]
    assert steps == sorted(steps)
    assert costs.encoder(40, 4) > costs.encoder(20, 4) > costs.encoder(20, 1)


def test_pool_adjacent_violators() -> None:
    assert m._monotone([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert m._monotone([3.0, 2.0, 1.0]) == [2.0, 2.0, 2.0]


def test_lengths_are_counted_per_sentence_with_the_shipped_codec(tmp_path: Path) -> None:
    from model_store.codec import Codec
    from model_store.manifest import read_manifest, resolve_artifact

    artifact = resolve_artifact(m.REPO_ROOT / "model_store", "en-de", None)
    codec = Codec(artifact / read_manifest(artifact).tokenizer_file)
    tsv = tmp_path / "set.tsv"
    tsv.write_text("Open the file.\tÖffnen Sie die Datei.\n"
                   "Save it. Then close the window.\tSpeichern Sie sie. Schließen Sie dann das Fenster.\n"
                   "Save it. Then close it.\tSpeichern und schließen.\n", encoding="utf-8")
    first, second, third = m.load_requests([tsv])
    assert first == (m.Sentence(len(codec.encode("Open the file.")) + 1,
                                len(codec.encode("Öffnen Sie die Datei.")) + 1),)
    assert [s.source for s in second] == [len(codec.encode("Save it.")) + 1,
                                          len(codec.encode("Then close the window.")) + 1]
    assert [s.target for s in second] == [len(codec.encode("Speichern Sie sie.")) + 1,
                                          len(codec.encode("Schließen Sie dann das Fenster.")) + 1]
    # one German sentence for two English ones: its pieces shared out by source length
    assert len(third) == 2
    assert sum(s.target for s in third) == len(codec.encode("Speichern und schließen.")) + 2


def test_lengthened_requests_stay_within_the_service_caps() -> None:
    long = m.lengthen((m.Sentence(100, 120), m.Sentence(10, 8)), 4)
    assert long == (m.Sentence(256, 257), m.Sentence(40, 32))


# ----------------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_quick_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tsv = tmp_path / "set.tsv"
    pairs = [("Open the file.", "Öffnen Sie die Datei."),
             ("Please save the document before you close the main window.",
              "Bitte speichern Sie das Dokument, bevor Sie das Hauptfenster schließen."),
             ("Click Apply. The dialog closes.", "Klicken Sie auf Übernehmen. Der Dialog wird geschlossen."),
             ("The weather is nice today, and we are going for a long walk along the river after lunch.",
              "Das Wetter ist heute schön, und wir machen nach dem Mittagessen einen langen Spaziergang am Fluss.")]
    tsv.write_text("".join(f"{en}\t{de}\n" for en, de in pairs * 5), encoding="utf-8")
    out = tmp_path / "p99_model.json"
    assert m.main(["--quick", "--sentences", str(tsv), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "continuous / static" in printed and "Target (continuous / static p99 <= 0.5" in printed
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["quick"] is True and document["seeds"] == [0]
    main = document["main"]
    assert [load["fraction"] for load in main["loads"]] == [0.35, 0.7, 0.84]
    static_rate = main["saturated"]["static"]["throughput_per_s"]
    for load in main["loads"]:
        assert load["offered_per_s"] == pytest.approx(load["fraction"] * static_rate, rel=1e-4)  # JSON: 6 digits
        assert set(load["policies"]) == set(m.policies())
        for name, cell in load["policies"].items():
            assert 0 < cell["p50_ms"]["median"] <= cell["p99_ms"]["median"]
            if name != "static":
                ratio = load["p99_ratio_to_static"][name]["median"]
                static = load["policies"]["static"]["p99_ms"]["median"]
                assert ratio == pytest.approx(cell["p99_ms"]["median"] / static, rel=1e-4)
    assert len(document["sensitivity"]) == len(m.SENSITIVITY)
    assert {row["scenario"] for row in document["verdict"]} == {m.BASE.name, *(s.name for s in m.SENSITIVITY)}
    assert document["inputs"]["lengths"]["requests"] == 20
