"""The Seq2SeqModel Protocol implemented with ONNX Runtime: one InferenceSession per graph.

Owns providers, threading options, the load-time check of graph inputs/outputs against the manifest
and, with IO binding (default on CUDA), keeping the step's memory and the decoder state on the
device between steps. Must not import fastapi, torch or training.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from model_store.manifest import (
    DECODER_STEP_INPUTS,
    DECODER_STEP_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    GraphSpec,
    Manifest,
)
from service.engine.model import DecoderState, EncoderOutput, Memory, StepOutput

Providers = Literal["cpu", "cuda"]
log = logging.getLogger("service.runtime")

CUDA_UNAVAILABLE = (
    "CUDA requested but onnxruntime has no CUDAExecutionProvider: "
    "install onnxruntime-gpu and run on a GPU machine"
)

# ONNX type of every contract tensor; a graph declaring another type would fail on the first request.
_TENSOR_TYPES = {
    "source_ids": "tensor(int64)",
    "source_lengths": "tensor(int64)",
    "previous_tokens": "tensor(int64)",
    "source_mask": "tensor(bool)",
}
_FLOAT = "tensor(float)"
# Inputs without which a graph cannot work (others, e.g. a `none` decoder's memory, may be dropped).
_REQUIRED_INPUTS = {"encoder": ("source_ids",), "decoder_step": ("previous_tokens", "hidden", "cell")}
_CONTRACT = {
    "encoder": (ENCODER_INPUTS, ENCODER_OUTPUTS),
    "decoder_step": (DECODER_STEP_INPUTS, DECODER_STEP_OUTPUTS),
}
_MEMORY_INPUTS = ("memory", "memory_keys", "source_mask")
# Decoder outputs that are the next step's state inputs: with IO binding they stay on the device.
_STATE_OUTPUTS = {"next_hidden": "hidden", "next_cell": "cell"}


def _preload_cuda_libraries() -> None:
    """onnxruntime-gpu finds CUDA/cuDNN from the nvidia-* pip wheels (as PyTorch installs them) only
    when they are loaded first; on a machine with system-wide CUDA this is a harmless no-op."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # the provider check after loading reports what matters
            log.warning("onnxruntime.preload_dlls failed: %s", exc)


class ModelLoadError(Exception):
    """An artifact's ONNX graphs cannot be loaded or do not match the manifest; names the graph."""


def _session_options(intra_op_threads: int, inter_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads  # 0: ORT's default (one per physical core)
    options.inter_op_num_threads = inter_op_threads
    # Between decoder steps the threads would spin waiting for work, stealing the cores the
    # event loop and the next step need (2-3x slower on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only; ORT's warnings about unused initializers are noise
    return options


@dataclass(frozen=True)
class _Graph:
    """One checked InferenceSession: feeds exactly the inputs it declares, returns outputs by name."""

    role: str
    path: Path
    session: ort.InferenceSession
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(list(self.outputs), {name: feeds[name] for name in self.inputs})
        return dict(zip(self.outputs, values, strict=True))


def _open_graph(
    role: str, artifact_dir: Path, spec: GraphSpec, options: ort.SessionOptions, providers: list[Any]
) -> _Graph:
    path = artifact_dir / spec.file
    if not path.is_file():
        raise ModelLoadError(f"{role} graph {path}: file not found")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for unreadable or invalid models
        raise ModelLoadError(f"{role} graph {path}: onnxruntime cannot load it: {exc}") from exc
    inputs = {arg.name: arg.type for arg in session.get_inputs()}
    outputs = {arg.name: arg.type for arg in session.get_outputs()}
    contract_inputs, contract_outputs = _CONTRACT[role]
    problems: list[str] = []
    if unknown := sorted(inputs.keys() - spec.inputs.keys()):
        problems.append(f"inputs {unknown} are not in the manifest's {sorted(spec.inputs)}")
    if unknown := sorted(spec.inputs.keys() - contract_inputs.keys()):
        problems.append(f"manifest inputs {unknown} are not in the contract {sorted(contract_inputs)}")
    if missing := [name for name in _REQUIRED_INPUTS[role] if name not in inputs]:
        problems.append(f"required inputs {missing} are missing (graph has {sorted(inputs)})")
    if missing := sorted(spec.outputs.keys() - outputs.keys()):
        problems.append(f"manifest outputs {missing} are missing (graph has {sorted(outputs)})")
    if unknown := sorted(outputs.keys() - spec.outputs.keys()):
        problems.append(f"outputs {unknown} are not in the manifest's {sorted(spec.outputs)}")
    if missing := sorted(contract_outputs.keys() - outputs.keys()):
        problems.append(f"contract outputs {missing} are missing")
    for name, actual in [*inputs.items(), *outputs.items()]:
        expected = _TENSOR_TYPES.get(name, _FLOAT)
        if actual != expected:
            problems.append(f"{name} has type {actual}, expected {expected}")
    if problems:
        raise ModelLoadError(f"{role} graph {path} does not match the manifest: " + "; ".join(problems))
    return _Graph(
        role=role,
        path=path,
        session=session,
        inputs=tuple(arg.name for arg in session.get_inputs()),
        outputs=tuple(name for name in contract_outputs if name in outputs),
    )


class _DeviceMemory:
    """IO binding: the step's memory tensors copied to the device once per batch composition.

    The engine keeps one Memory object per batch while its set of requests is unchanged, so
    identity is the cache key. Each decoder lane has its own batch and thread, so the last few are
    kept (one lane's copy must not push another's out on every step), behind a lock.
    """

    def __init__(self, device: str, device_id: int, entries: int = 4) -> None:
        self.device, self.device_id = device, device_id
        self._entries = entries
        self._lock = threading.Lock()
        # (the Memory itself, not id(): a dead object's id may be reused) -> its device values
        self._cache: list[tuple[Memory, dict[str, ort.OrtValue]]] = []

    def values(self, memory: Memory) -> dict[str, ort.OrtValue]:
        with self._lock:
            for i, (source, values) in enumerate(self._cache):
                if source is memory:
                    if i:
                        self._cache.insert(0, self._cache.pop(i))
                    return values
        arrays = {
            "memory": memory.memory,
            "memory_keys": memory.memory_keys,
            "source_mask": memory.source_mask,
        }
        values = {
            name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, self.device_id)
            for name, array in arrays.items()
        }
        with self._lock:
            self._cache = [(memory, values), *self._cache[: self._entries - 1]]
        return values


class _DeviceState(DecoderState):
    """IO binding: next_hidden/next_cell where ORT left them (on the device), copied to the host
    only when the engine reads `hidden`/`cell` (rows reordered, leaving or joining). Otherwise the
    next decode_step of the model that made it binds the device values as inputs, with no copy."""

    __slots__ = ("_host", "owner", "values")

    def __init__(self, owner: OnnxSeq2SeqModel, values: dict[str, ort.OrtValue]) -> None:
        # DecoderState.__init__ is not called: there are no host arrays until they are read.
        self.owner = owner
        self.values = values  # keyed by the decoder's input names: "hidden", "cell"
        self._host: dict[str, np.ndarray] = {}

    def _read(self, name: str) -> np.ndarray:
        if name not in self._host:
            self._host[name] = self.values[name].numpy()  # device -> host, once
        return self._host[name]

    @property
    def hidden(self) -> np.ndarray:
        return self._read("hidden")

    @property
    def cell(self) -> np.ndarray:
        return self._read("cell")


class OnnxSeq2SeqModel:
    """Encoder + decoder_step InferenceSessions behind the engine's Seq2SeqModel Protocol."""

    def __init__(
        self,
        encoder: _Graph,
        decoder: _Graph,
        vocab_size: int,
        probe_token: int,
        device_memory: _DeviceMemory | None = None,
    ) -> None:
        self._encoder = encoder
        self._decoder = decoder
        self._device_memory = device_memory
        self.io_binding = device_memory is not None
        self.vocab_size = vocab_size
        self.providers: list[str] = list(decoder.session.get_providers())
        self._probe_token = probe_token  # a valid source id (eos) for probes and warm-up
        probe = self.encode(np.array([[probe_token]], dtype=np.int64), np.array([1], dtype=np.int64))
        self.num_layers = int(probe.hidden.shape[0])
        self.hidden_size = int(probe.hidden.shape[2])
        self.memory_size = int(probe.memory.shape[2])

    @classmethod
    def load(
        cls,
        artifact_dir: Path,
        manifest: Manifest,
        variant: str = "fp32",
        providers: Providers = "cpu",
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        device_id: int = 0,
        io_binding: bool | None = None,
        encoder_intra_op_threads: int | None = None,
    ) -> OnnxSeq2SeqModel:
        """Open and check both graphs of `variant`. `io_binding` (default: on for CUDA) keeps the
        decoder's memory and state on the device between steps. `encoder_intra_op_threads` (default:
        `intra_op_threads`) sizes the encoder's own thread pool."""
        artifact_dir = Path(artifact_dir)
        if variant not in manifest.variants:
            raise ModelLoadError(f"{artifact_dir}: no variant {variant!r} (has {sorted(manifest.variants)})")
        graphs = manifest.variants[variant]
        if missing := sorted({"encoder", "decoder_step"} - graphs.keys()):
            raise ModelLoadError(f"{artifact_dir}: variant {variant!r} lacks graphs {missing}")
        if providers == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelLoadError(CUDA_UNAVAILABLE)
            _preload_cuda_libraries()
            provider_list: list[Any] = [
                ("CUDAExecutionProvider", {"device_id": device_id}),
                "CPUExecutionProvider",
            ]
        elif providers == "cpu":
            provider_list = ["CPUExecutionProvider"]
        else:
            raise ModelLoadError(f"unknown providers {providers!r}: use 'cpu' or 'cuda'")
        encoder_threads = intra_op_threads if encoder_intra_op_threads is None else encoder_intra_op_threads
        encoder = _open_graph("encoder", artifact_dir, graphs["encoder"],
                              _session_options(encoder_threads, inter_op_threads), provider_list)
        decoder = _open_graph("decoder_step", artifact_dir, graphs["decoder_step"],
                              _session_options(intra_op_threads, inter_op_threads), provider_list)
        if providers == "cuda" and decoder.session.get_providers()[0] != "CUDAExecutionProvider":
            # ORT silently falls back to CPU when the CUDA libraries fail to initialise.
            raise ModelLoadError(f"{decoder.path}: the CUDA provider failed to initialise (see ORT's log)")
        use_binding = providers == "cuda" if io_binding is None else io_binding
        device = "cuda" if providers == "cuda" else "cpu"
        device_memory = _DeviceMemory(device, device_id) if use_binding else None
        try:
            return cls(encoder, decoder, manifest.vocab_size, manifest.special_tokens.eos_id, device_memory)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{artifact_dir}: probe encode failed: {exc}") from exc

    def encode(self, source_ids: np.ndarray, source_lengths: np.ndarray) -> EncoderOutput:
        out = self._encoder.run(
            {
                "source_ids": np.ascontiguousarray(source_ids, dtype=np.int64),
                "source_lengths": np.ascontiguousarray(source_lengths, dtype=np.int64),
            }
        )
        return EncoderOutput(
            memory=out["memory"], memory_keys=out["memory_keys"], hidden=out["hidden"], cell=out["cell"]
        )

    def decode_step(self, previous_tokens: np.ndarray, state: DecoderState, memory: Memory) -> StepOutput:
        if self._device_memory is not None:
            return self._run_bound(previous_tokens, state, memory)
        out = self._decoder.run(
            {
                "previous_tokens": np.ascontiguousarray(previous_tokens, dtype=np.int64),
                "hidden": np.ascontiguousarray(state.hidden, dtype=np.float32),
                "cell": np.ascontiguousarray(state.cell, dtype=np.float32),
                "memory": memory.memory,
                "memory_keys": memory.memory_keys,
                "source_mask": np.ascontiguousarray(memory.source_mask, dtype=np.bool_),
            }
        )
        return StepOutput(
            log_probs=out["log_probs"],
            state=DecoderState(hidden=out["next_hidden"], cell=out["next_cell"]),
            attention=out["attention"],
        )

    def _run_bound(self, previous_tokens: np.ndarray, state: DecoderState, memory: Memory) -> StepOutput:
        """IO binding: memory from the device cache; hidden/cell from the device when `state` is
        this model's unchanged output, else from the host; the next state left on the device."""
        device_memory = self._device_memory
        assert device_memory is not None
        binding = self._decoder.session.io_binding()
        memory_values = device_memory.values(memory)
        # Another model's device values may live on another device or provider: read those instead.
        state_values = state.values if isinstance(state, _DeviceState) and state.owner is self else {}
        for name in self._decoder.inputs:
            if name in _MEMORY_INPUTS:
                binding.bind_ortvalue_input(name, memory_values[name])
            elif name in state_values:
                binding.bind_ortvalue_input(name, state_values[name])
            elif name == "previous_tokens":
                binding.bind_cpu_input(name, np.ascontiguousarray(previous_tokens, dtype=np.int64))
            else:  # hidden/cell held on the host (first step, or rows reordered/joined)
                array = state.hidden if name == "hidden" else state.cell
                binding.bind_cpu_input(name, np.ascontiguousarray(array, dtype=np.float32))
        for name in self._decoder.outputs:
            if name in _STATE_OUTPUTS:  # ORT allocates them on the device
                binding.bind_output(name, device_memory.device, device_memory.device_id)
            else:  # log-probs and attention are read on the host by the search every step
                binding.bind_output(name, "cpu")
        self._decoder.session.run_with_iobinding(binding)
        out = dict(zip(self._decoder.outputs, binding.get_outputs(), strict=True))
        return StepOutput(
            log_probs=out["log_probs"].numpy(),
            state=_DeviceState(self, {_STATE_OUTPUTS[name]: out[name] for name in _STATE_OUTPUTS}),
            attention=out["attention"].numpy(),
        )

    def warm_up(self, rows: int = 2, source_length: int = 4) -> None:
        """One small encode + decoder step, so the first request does not pay for lazy initialisation."""
        source = np.full((rows, source_length), self._probe_token, dtype=np.int64)
        lengths = np.full(rows, source_length, dtype=np.int64)
        lengths[-1] = 1  # exercise the padded path too
        encoded = self.encode(source, lengths)
        mask = np.arange(source_length)[None, :] < lengths[:, None]
        self.decode_step(
            np.full(rows, self._probe_token, dtype=np.int64),
            DecoderState(encoded.hidden, encoded.cell),
            Memory(encoded.memory, encoded.memory_keys, mask),
        )
