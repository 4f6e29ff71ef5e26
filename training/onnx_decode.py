"""Batched greedy decoding over an exported artifact's ONNX graphs, to score the fp32 and int8
variants exactly as serving runs them (for the int8 keep-or-drop gate). onnxruntime + numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model_store.codec import Codec


def cpu_session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """A CPU session as serving runs it: no intra-op spinning between decoder steps."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def make_onnx_translate_fn(
    encoder_path: Path, decoder_path: Path, codec: Codec, batch_sentences: int = 64,
    max_length_cap: int = 200, threads: int = 0,
) -> Callable[[list[str]], list[str]]:
    encoder, decoder = cpu_session(encoder_path, threads), cpu_session(decoder_path, threads)
    decoder_inputs = {i.name for i in decoder.get_inputs()}
    decoder_outputs = [o.name for o in decoder.get_outputs()]

    def translate_batch(sources: list[list[int]]) -> list[list[int]]:
        lengths = np.array([len(s) for s in sources], dtype=np.int64)
        ids = np.full((len(sources), int(lengths.max())), codec.pad_id, dtype=np.int64)
        for row, source in enumerate(sources):
            ids[row, : len(source)] = source
        memory, memory_keys, hidden, cell = encoder.run(
            ["memory", "memory_keys", "hidden", "cell"], {"source_ids": ids, "source_lengths": lengths})
        values = {"memory": memory, "memory_keys": memory_keys, "source_mask": ids != codec.pad_id}
        tokens = np.full((len(sources),), codec.bos_id, dtype=np.int64)
        finished = np.zeros(len(sources), dtype=bool)
        outputs: list[list[int]] = [[] for _ in sources]
        for _ in range(min(int(lengths.max()) * 2 + 10, max_length_cap)):
            values.update(previous_tokens=tokens, hidden=hidden, cell=cell)
            result = dict(zip(decoder_outputs, decoder.run(
                None, {name: value for name, value in values.items() if name in decoder_inputs}), strict=True))
            hidden, cell = result["next_hidden"], result["next_cell"]
            tokens = result["log_probs"].argmax(-1)
            for row in np.flatnonzero(~finished).tolist():
                if tokens[row] == codec.eos_id:
                    finished[row] = True
                else:
                    outputs[row].append(int(tokens[row]))
            if finished.all():
                break
        return outputs

    def translate(texts: list[str]) -> list[str]:
        sources = [codec.source_ids(text) for text in texts]
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        results: list[str] = [""] * len(texts)
        for start in range(0, len(order), batch_sentences):
            chunk = order[start : start + batch_sentences]
            for index, ids in zip(chunk, translate_batch([sources[i] for i in chunk]), strict=True):
                results[index] = codec.decode(ids)
        return results

    return translate
