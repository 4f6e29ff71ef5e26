"""The unloaded request's model time alone: one sentence encoded, then greedy decoder steps until
eos, straight through service.runtime.OnnxSeq2SeqModel (no HTTP, no scheduler).

The side-by-side benchmark runs `python -m loadtest.lone_model` right after each service
configuration's unloaded requests, with the model loaded as that server loads it, so its report
can say how much of the unloaded latency was the model at that moment and how much the service
added: on a shared machine the model alone swings 2x with the neighbours' load. The engine
benchmark records it too. Imports service.runtime and model_store; never torch or the HTTP layer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.sentences import UNLOADED_SENTENCE
from loadtest.servers import REPO_ROOT
from model_store.codec import Codec
from model_store.manifest import read_manifest, resolve_artifact
from service.engine.model import DecoderState, Memory
from service.runtime import OnnxSeq2SeqModel
from service.settings import Settings


def lone_sentence(model: OnnxSeq2SeqModel, source_ids: list[int], bos_id: int, eos_id: int,
                  repeats: int) -> dict[str, Any]:
    """Encode one sentence, then greedy steps until eos, in this process; p50 and min over
    `repeats` runs (after one warm-up)."""
    source = np.array([source_ids], dtype=np.int64)
    lengths = np.array([len(source_ids)], dtype=np.int64)
    mask = np.ones((1, len(source_ids)), dtype=np.bool_)
    max_steps = 2 * len(source_ids) + 10

    def translate() -> int:
        encoded = model.encode(source, lengths)
        state, memory = DecoderState(encoded.hidden, encoded.cell), Memory(encoded.memory, encoded.memory_keys, mask)
        token, steps = np.array([bos_id], dtype=np.int64), 0
        while steps < max_steps:
            out = model.decode_step(token, state, memory)
            state, token, steps = out.state, out.log_probs.argmax(axis=1), steps + 1
            if int(token[0]) == eos_id:
                break
        return steps

    steps = translate()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        translate()
        times.append(time.perf_counter() - started)
    return {"source_tokens": len(source_ids), "decoder_steps": steps, "repeats": repeats,
            "p50_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--model", default="en-de")
    parser.add_argument("--version")
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--text", default=UNLOADED_SENTENCE)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    artifact_dir = resolve_artifact(args.store, args.model, args.version)
    manifest = read_manifest(artifact_dir)
    codec = Codec(artifact_dir / manifest.tokenizer_file)
    # Threads as `python -m service` sets them in this environment (by default: the encoder half the
    # CPUs, each decoder lane a share of the rest). The side-by-side benchmark runs this module in the
    # environment of the server it stands beside (loadtest.servers.service_env: that server's
    # TRANSLATOR_* settings, --server-env included, and none of the benchmark's own).
    settings = Settings()
    model = OnnxSeq2SeqModel.load(artifact_dir, manifest, variant=args.variant,
                                  intra_op_threads=settings.decoder_threads,
                                  encoder_intra_op_threads=settings.encoder_threads)
    special = manifest.special_tokens
    result = lone_sentence(model, codec.source_ids(args.text), special.bos_id, special.eos_id, args.repeats)
    print(json.dumps(result | {"text": args.text, "variant": args.variant}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
