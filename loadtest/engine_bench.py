"""Engine-only benchmark (no HTTP, no scheduler): sentences/s of the encoder call and rows/s of one
decoder step by batch size, through service.runtime.OnnxSeq2SeqModel, set against the machine's
measured fp32 matrix-multiply throughput (numpy) with the model's FLOPs per sentence.

`python -m loadtest.engine_bench [--quick]` writes loadtest/results/engine_bench.json and docs/benchmarks.md;
with `--providers cuda --batch-sizes 1,2,4,...,512` (on a GPU machine) engine_bench_cuda.json instead.
`--io-binding auto|on|off` (auto: on for CUDA, off for CPU, as served) is passed to the model; the
decoder step is timed as serving runs it, each step fed the state the previous one returned.
Imports service.runtime and model_store; never torch, locust or the HTTP layer.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.lone_model import lone_sentence
from loadtest.machine import describe_machine
from loadtest.report import write_benchmarks_doc
from loadtest.sentences import UNLOADED_SENTENCE, forced_length_tokens, load_sentences
from loadtest.servers import REPO_ROOT
from loadtest.stats import json_safe
from model_store.codec import Codec
from model_store.manifest import read_manifest, resolve_artifact
from service.engine.model import DecoderState, Memory
from service.runtime import OnnxSeq2SeqModel
from service.settings import default_encoder_threads

FULL_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUICK_BATCH_SIZES = (1, 4, 32)
REFERENCE_BATCH = 32  # the target: decoder step at batch 32 >= 60% of the matmul peak
IO_BINDING = {"auto": None, "on": True, "off": False}  # --io-binding -> OnnxSeq2SeqModel.load(io_binding=)


def lstm_flops(input_size: int, hidden: int, cell: str = "lstm") -> int:
    """Multiply-adds x 2 of one LSTM (4 gates) or GRU (3 gates) time step for one row."""
    gates = 4 if cell == "lstm" else 3
    return 2 * gates * hidden * (input_size + hidden)


def model_flops(config: dict[str, Any], source_tokens: int) -> dict[str, int]:
    """Matrix-multiply FLOPs (2 per multiply-add; elementwise work left out) of the model in the manifest:
    the encoder per sentence of `source_tokens` (eos included) and one decoder step per row."""
    e, he, le = config["embedding_dim"], config["encoder_hidden"], config["encoder_layers"]
    hd, ld, v = config["decoder_hidden"], config["decoder_layers"], config["vocab_size"]
    attention, cell, m = config.get("attention", "luong_general"), config.get("encoder_cell", "lstm"), 2 * he
    encoder_token = sum(2 * lstm_flops(e if layer == 0 else m, he, cell) for layer in range(le))
    keys = 2 * m * hd if attention in ("luong_general", "bahdanau") else 0
    bridges = 2 * (2 * m * ld * hd)
    encoder = source_tokens * (encoder_token + keys) + bridges
    s = source_tokens
    rnn = sum(lstm_flops((e + (m if attention == "bahdanau" else 0)) if layer == 0 else hd, hd) for layer in range(ld))
    if attention == "none":
        attend, context = 0, 0
    elif attention == "bahdanau":
        attend, context = 2 * hd * hd + 2 * s * hd + 2 * s * m, m
    else:  # Luong: scores against keys [S, hd] (general) or memory (dot, m == hd), then the context
        attend, context = 2 * s * hd + 2 * s * m, m
    a = attentional_size(config)
    step = rnn + attend + 2 * (hd + context) * a + 2 * a * v
    return {"encoder_per_sentence": encoder, "decoder_step_per_row": step, "output_projection_per_row": 2 * a * v}


def attentional_size(config: dict[str, Any]) -> int:
    """Width of the vector the output projection reads: the embedding width when it is tied to the
    embeddings (training.config.ModelConfig.attentional_size), else the decoder's."""
    return int(config["embedding_dim"] if config.get("tie_embeddings") else config["decoder_hidden"])


def timed(call: Callable[[], object], min_time_s: float, min_calls: int = 3) -> float:
    """Median seconds per call over calls made until both minimums are reached (after one warm-up)."""
    call()
    times: list[float] = []
    begin = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - begin < min_time_s:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(size: int, min_time_s: float) -> float:
    """Best-case fp32 GEMM throughput of this machine as numpy's BLAS reaches it (all cores)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    seconds = timed(lambda: a @ b, min_time_s)
    return 2 * size**3 / seconds / 1e9


def shaped_matmul_gflops(rows: int, inner: int, cols: int, min_time_s: float) -> float:
    """GEMM throughput at one decoder-step shape ([rows, inner] x [inner, cols]): the ceiling there."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((rows, inner), dtype=np.float32)
    b = rng.standard_normal((inner, cols), dtype=np.float32)
    seconds = timed(lambda: a @ b, min_time_s)
    return 2 * rows * inner * cols / seconds / 1e9


def chained_steps(model: OnnxSeq2SeqModel, previous: np.ndarray, state: DecoderState,
                  memory: Memory) -> Callable[[], object]:
    """One decoder step per call, fed the state the previous call returned, as serving does: with IO
    binding that state stays on the device, so the timing includes (only) the copies serving makes."""
    current = state

    def step() -> object:
        nonlocal current
        current = model.decode_step(previous, current, memory).state
        return current

    return step


def bench_variant(model: OnnxSeq2SeqModel, vocab_size: int, batch_sizes: tuple[int, ...], source_tokens: int,
                  decoder_steps: int, flops: dict[str, int], min_time_s: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for batch in batch_sizes:
        source = rng.integers(4, vocab_size, size=(batch, source_tokens), dtype=np.int64)
        source[:, -1] = 3  # eos closes every source, as the codec makes them
        lengths = np.full(batch, source_tokens, dtype=np.int64)
        encoder_s = timed(functools.partial(model.encode, source, lengths), min_time_s)
        encoded = model.encode(source, lengths)
        state = DecoderState(encoded.hidden, encoded.cell)
        memory = Memory(encoded.memory, encoded.memory_keys, np.ones((batch, source_tokens), dtype=np.bool_))
        previous = rng.integers(4, vocab_size, size=batch, dtype=np.int64)
        step_s = timed(chained_steps(model, previous, state, memory), min_time_s)
        sentence_s = encoder_s + decoder_steps * step_s  # one batch of sentences, encoder + every step
        step_gflops = batch * flops["decoder_step_per_row"] / step_s / 1e9
        encoder_gflops = batch * flops["encoder_per_sentence"] / encoder_s / 1e9
        rows.append({
            "batch": batch,
            "encoder_ms": 1000 * encoder_s,
            "encoder_sentences_per_s": batch / encoder_s,
            "encoder_gflops": encoder_gflops,
            "decoder_step_ms": 1000 * step_s,
            "decoder_step_rows_per_s": batch / step_s,
            "decoder_step_gflops": step_gflops,
            "sentences_per_s": batch / sentence_s,
        })
        print(f"[engine] batch {batch:4d}: encoder {1000 * encoder_s:8.2f} ms, step {1000 * step_s:7.2f} ms "
              f"({step_gflops:6.1f} GFLOP/s), {batch / sentence_s:8.1f} sentences/s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (tests)")
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--model", default="en-de")
    parser.add_argument("--version")
    parser.add_argument("--variants", default="fp32,int8")
    parser.add_argument("--batch-sizes", help="comma-separated (default 1..256; on a GPU add 512)")
    parser.add_argument("--providers", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--io-binding", choices=sorted(IO_BINDING), default="auto",
                        help="ORT IO binding (auto: on for CUDA, off for CPU)")
    # Each graph alone with the whole machine: the service runs the encoder beside the decoder's lanes
    # and splits the CPUs between them (TRANSLATOR_ENCODER_INTRA_OP_THREADS, TRANSLATOR_INTRA_OP_THREADS),
    # which this sequential benchmark cannot show.
    parser.add_argument("--threads", type=int, default=0,
                        help="the decoder's ORT intra-op threads (0: ORT's default, every core)")
    parser.add_argument("--encoder-threads", type=int, default=0,
                        help=f"the encoder's intra-op threads (0: ORT's default; the service uses "
                             f"{default_encoder_threads()} here, beside the decoder)")
    parser.add_argument("--sentences", type=Path)
    parser.add_argument("--min-time-s", type=float, help="time spent per measurement (default 0.5, quick 0.02)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest/results")
    parser.add_argument("--docs", default=str(REPO_ROOT / "docs/benchmarks.md"), help="'' to skip")
    args = parser.parse_args(argv)
    min_time_s = args.min_time_s if args.min_time_s is not None else (0.02 if args.quick else 0.5)
    if args.batch_sizes:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    else:
        batch_sizes = QUICK_BATCH_SIZES if args.quick else FULL_BATCH_SIZES

    artifact_dir = resolve_artifact(args.store, args.model, args.version)
    manifest = read_manifest(artifact_dir)
    codec = Codec(artifact_dir / manifest.tokenizer_file)
    sentences, sentences_source = load_sentences(args.sentences)
    # Typical lengths of the traffic: the mean source in tokens (eos included) and the mean number of
    # decoder steps (reference pieces + eos; without references, about the source's).
    source_tokens = round(statistics.fmean(len(codec.encode(s.english)) + 1 for s in sentences))
    decoder_steps = round(statistics.fmean(
        (len(codec.encode(s.german)) if s.german else forced_length_tokens(s)) + 1 for s in sentences))
    flops = model_flops(manifest.model_config | {"vocab_size": manifest.vocab_size}, source_tokens)
    flops_per_sentence = flops["encoder_per_sentence"] + decoder_steps * flops["decoder_step_per_row"]

    machine = describe_machine()
    peak_size = 512 if args.quick else 1024
    # The peak is measured before and after each variant and the best kept: on a shared machine a
    # single measurement may land in a busy moment.
    peak_samples = [matmul_peak_gflops(peak_size, min_time_s)]
    hd, vocab = attentional_size(manifest.model_config), manifest.vocab_size  # the output projection's shape
    shaped = shaped_matmul_gflops(REFERENCE_BATCH, hd, vocab, min_time_s)

    variants: dict[str, Any] = {}
    for variant in args.variants.split(","):
        if variant not in manifest.variants:
            print(f"[engine] skipping {variant}: not in the manifest", file=sys.stderr)
            continue
        model = OnnxSeq2SeqModel.load(artifact_dir, manifest, variant=variant, providers=args.providers,
                                      intra_op_threads=args.threads, io_binding=IO_BINDING[args.io_binding],
                                      encoder_intra_op_threads=args.encoder_threads)
        print(f"[engine] {variant} on {model.providers[0]}, io binding {'on' if model.io_binding else 'off'}",
              flush=True)
        rows = bench_variant(model, manifest.vocab_size, batch_sizes, source_tokens, decoder_steps, flops, min_time_s)
        special = manifest.special_tokens
        lone = lone_sentence(model, codec.source_ids(UNLOADED_SENTENCE), special.bos_id, special.eos_id,
                             repeats=3 if args.quick else 50)
        print(f"[engine] lone {lone['source_tokens']}-token sentence, {lone['decoder_steps']} steps: "
              f"p50 {lone['p50_ms']:.2f} ms (min {lone['min_ms']:.2f})", flush=True)
        variants[variant] = {"providers": model.providers, "io_binding": model.io_binding, "rows": rows,
                             "lone_sentence": lone | {"text": UNLOADED_SENTENCE}}
        peak_samples.append(matmul_peak_gflops(peak_size, min_time_s))
    # numpy measures the CPU; against a GPU run its peak says nothing, so no fraction is given there.
    peak = max(peak_samples)
    on_cpu = args.providers == "cpu"
    for result in variants.values():
        for row in result["rows"]:
            row["decoder_step_fraction_of_peak"] = row["decoder_step_gflops"] / peak if on_cpu else None
    print(f"[engine] numpy fp32 GEMM {peak_size}^3: {peak:.1f} GFLOP/s (best of {len(peak_samples)}); "
          f"output-projection shape [{REFERENCE_BATCH}x{hd}]x[{hd}x{vocab}]: {shaped:.1f} GFLOP/s", flush=True)

    reference = next((r for r in variants.get("fp32", {}).get("rows", [])
                      if r["batch"] == REFERENCE_BATCH and r["decoder_step_fraction_of_peak"] is not None), None)
    document = {
        "kind": "engine_bench",
        "quick": args.quick,
        "command": "python -m loadtest.engine_bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine | {"ort_intra_op_threads": args.threads,
                              "ort_encoder_intra_op_threads": args.encoder_threads, "providers": args.providers,
                              "io_binding": args.io_binding,
                              "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "model": {"artifact": str(artifact_dir), "name": manifest.name, "version": manifest.version,
                  "model_config": manifest.model_config, "vocab_size": manifest.vocab_size,
                  "training": manifest.training.get("task") or manifest.training.get("trained_on")},
        "sentences": {"source": sentences_source, "source_tokens": source_tokens, "decoder_steps": decoder_steps},
        "flops": flops | {"per_sentence": flops_per_sentence},
        "matmul_peak_gflops": peak,
        "matmul_peak_samples_gflops": peak_samples,
        "matmul_peak_size": peak_size,
        "shaped_matmul_gflops": {"shape": [REFERENCE_BATCH, hd, vocab], "gflops": shaped},
        "min_time_s": min_time_s,
        "variants": variants,
        "target": {
            "target": f"decoder step at batch {REFERENCE_BATCH}: fraction of the measured fp32 matmul peak",
            "goal": ">= 0.6",
            "value": reference["decoder_step_fraction_of_peak"] if reference else None,
            "met": reference["decoder_step_fraction_of_peak"] >= 0.6 if reference else None,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    # One file per setting that report.py renders: CPU as served, CUDA as served (binding on), CUDA without binding.
    name = "engine_bench" if args.providers == "cpu" else f"engine_bench_{args.providers}"
    if args.providers != "cpu" and args.io_binding == "off":
        name += "_no_io_binding"
    out_file = args.out / f"{name}.json"
    out_file.write_text(json.dumps(json_safe(document), indent=2) + "\n", encoding="utf-8")
    print(f"[engine] wrote {out_file}")
    if args.docs:
        write_benchmarks_doc(args.out, Path(args.docs))
        print(f"[engine] wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
