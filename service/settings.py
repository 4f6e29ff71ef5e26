"""The one typed settings object of the service, read from `TRANSLATOR_*` environment variables.

Built once (by `service.__main__` or a test) and passed down; importing this module reads nothing.
Must not import fastapi, onnxruntime or the engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import model_store
from model_store.verbatim import VERBATIM_KINDS, VerbatimKind

DEFAULT_MODEL_STORE = Path(model_store.__file__).resolve().parent
ENV_PREFIX = "TRANSLATOR_"


@dataclass(frozen=True)
class ModelSpec:
    """One entry of TRANSLATOR_MODELS: a model name, and a version or None for the newest."""

    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        name, _, version = text.strip().partition("@")
        if not name or (_ and not version):
            raise ValueError(f"{text!r} is not 'name' or 'name@version'")
        return cls(name=name, version=version or None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the service. Environment variable = TRANSLATOR_ + field name in upper case."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    model_store: Path = DEFAULT_MODEL_STORE
    # Empty: the newest version of every model in the store; the first entry is the default model.
    models: Annotated[list[ModelSpec], NoDecode] = Field(default_factory=list)
    variant: Literal["fp32", "int8"] = "fp32"
    providers: Literal["cpu", "cuda"] = "cpu"
    batching: Literal["continuous", "static", "off"] = "continuous"
    max_batch_rows: int = Field(default=64, ge=1, le=4096)
    # Sentences waiting for the engine. One request keeps at most max_batch_rows of its sentences in
    # the engine at once; single-sentence traffic is already bounded by max_inflight_requests.
    max_queue_requests: int = Field(default=1024, ge=1, le=1_000_000)
    # Translation requests inside the service at once (HTTP edge); more get 429 before any work.
    max_inflight_requests: int = Field(default=256, ge=1, le=1_000_000)
    static_max_wait_ms: float = Field(default=5.0, ge=0.0, le=10_000.0)
    # Encoder calls this small run on the event loop's thread when nothing could overlap them (a
    # lone request): saves a thread hand-off. 0: always on the encoder's thread.
    inline_max_rows: int = Field(default=4, ge=0, le=64)
    # Source lengths (tokens) at which the decoder's rows split into lanes, each stepped by its own
    # thread, so short sources do not attend over a long one's padding (a batch of ~50 rows nearly
    # always holds one long source: 70% of the attended positions were padding under load). 32
    # tokens keep 91% of the test sentences in the short lane. Empty ("" in the environment): one lane.
    decoder_lane_bounds: Annotated[list[Annotated[int, Field(ge=1, le=100_000)]], NoDecode] = Field(
        default_factory=lambda: [32])
    # How long a Python thread may hold the GIL while another waits (Python's default: 5 ms). The
    # decoder's thread needs it for a moment after every step, while the event loop's thread runs
    # HTTP work: with 5 ms the decoder idles behind it (0.5 ms: +19% int8, +11% fp32 sentences/s
    # on 2 cores, docs/benchmarks.md). Process-wide, set by `python -m service`; 0: Python's default.
    gil_switch_interval_ms: float = Field(default=0.5, ge=0.0, le=100.0)
    # The decoder session's, shared by its lanes: ONNX Runtime computes a step on the calling lane's
    # thread and this many - 1 pool threads, which every lane's steps share. Every lane steps at the
    # same time as the others and the encoder, so by default the lanes' own threads and the pool
    # together take the CPUs the encoder leaves (cpus - encoder - lanes + 1, at least 1; 1 = each lane
    # computes on its own thread only): on 2 cores, one thread per lane instead of ORT's two, whose
    # halves of each step waited for each other behind the other threads (under load: 16% lower mean
    # latency, 3-8% less CPU; a lone request pays ~1-1.5 ms, its steps no longer split over both
    # cores; docs/benchmarks.md). 0: that default.
    intra_op_threads: int = Field(default=0, ge=0, le=1024)
    # The encoder runs at the same time as the decoder's steps (on its own thread), so by default it
    # gets half the CPUs rather than competing for all of them: on 2 cores, +19% fp32 and +14% int8
    # throughput and a faster lone encode (docs/benchmarks.md). 0: that default.
    encoder_intra_op_threads: int = Field(default=0, ge=0, le=1024)
    inter_op_threads: int = Field(default=1, ge=0, le=1024)
    request_timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    drain_timeout_s: float = Field(default=20.0, ge=0.0, le=3600.0)
    max_text_chars: int = Field(default=2000, ge=1, le=1_000_000)
    max_source_tokens: int = Field(default=256, ge=2, le=100_000)  # including the end-of-sentence token
    max_texts_per_request: int = Field(default=32, ge=1, le=10_000)
    # A text's sentences (and lines) are decoded side by side, each as a row of its own: a paragraph
    # takes as many decoder steps as its longest sentence rather than all of them, and its line breaks
    # come back where they were. A text with more sentences is refused (413), never grouped to fit
    # (grouped lines came back as one line). 1: texts are not split (each is decoded whole).
    max_sentences_per_text: int = Field(default=256, ge=1, le=100_000)
    # Decoder rows one request may bring in all: its sentences x beam_size, refused (413) beyond, so a
    # big request's work stays bounded (1,024 sentences are a few seconds of the engine here, where 32
    # long texts at beam 8, 2,048 rows of ~60 tokens, ran past the request timeout).
    max_rows_per_request: int = Field(default=1024, ge=1, le=1_000_000)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    # A body that has not fully arrived by then is refused (408): a stalled client must not hold an
    # in-flight slot for ever (uvicorn itself waits for a body indefinitely).
    body_timeout_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    max_output_tokens: int = Field(default=256, ge=1, le=1024)  # cap on generated tokens per sentence
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    api_keys_file: Path | None = None  # one key per line (a mounted secret); adds to api_keys
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_request_text: bool = False  # privacy: request texts stay out of the logs unless asked
    # Text the translation carries over unchanged (model_store.verbatim): web addresses, e-mail
    # addresses, file paths, numbers the model would mangle ("2024-05-17" came back "2024-17").
    # Empty ("" in the environment): everything goes to the model as written.
    keep_verbatim: Annotated[list[VerbatimKind], NoDecode] = Field(default_factory=lambda: list(VERBATIM_KINDS))
    # Megabytes of finished sentence translations kept per model version (service.engine.result_cache,
    # estimated), so that a sentence asked again (menu labels, boilerplate) is answered without decoding
    # it again; 0: none. 64 MB: ~50,000 short sentences, or ~2,300 long ones kept with attention and 7
    # alternatives (python -m loadtest.cache_memory); a warm server is ~240 MB, the pod's limit 1 GiB.
    # The benchmarks and the test suite run with 0, to measure and test the engine.
    cache_mb: float = Field(default=64.0, ge=0.0, le=1_000_000.0)

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: object) -> object:
        items = _split_commas(value)
        if isinstance(items, list):
            return [ModelSpec.parse(item) if isinstance(item, str) else item for item in items]
        return items

    @field_validator("api_keys", "decoder_lane_bounds", "keep_verbatim", mode="before")
    @classmethod
    def _parse_lists(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("model_store")
    @classmethod
    def _store_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"model store {str(value)!r} is not a directory")
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        names = [spec.name for spec in self.models]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"TRANSLATOR_MODELS names a model more than once: {duplicates}")
        if self.batching == "static" and self.static_max_wait_ms >= self.request_timeout_s * 1000:
            raise ValueError(f"TRANSLATOR_STATIC_MAX_WAIT_MS ({self.static_max_wait_ms:g}) must be shorter than "
                             f"TRANSLATOR_REQUEST_TIMEOUT_S ({self.request_timeout_s:g} s): a request waiting to "
                             "fill a static batch would pass its deadline first")
        if self.api_keys_file is not None and not self.api_keys_file.is_file():
            raise ValueError(f"TRANSLATOR_API_KEYS_FILE {str(self.api_keys_file)!r} is not a readable file")
        return self

    @property
    def decoder_threads(self) -> int:
        """The decoder session's intra-op threads: TRANSLATOR_INTRA_OP_THREADS, else as many as keep
        the lanes' own threads and the session's pool within the CPUs the encoder leaves (at least 1)."""
        lanes = len(set(self.decoder_lane_bounds)) + 1
        return self.intra_op_threads or default_decoder_threads(lanes, self.encoder_threads)

    @property
    def encoder_threads(self) -> int:
        """The encoder session's intra-op threads: TRANSLATOR_ENCODER_INTRA_OP_THREADS, else half the
        CPUs this process may run on (at least 1)."""
        return self.encoder_intra_op_threads or default_encoder_threads()

    def all_api_keys(self) -> list[bytes]:
        """Keys from TRANSLATOR_API_KEYS plus TRANSLATOR_API_KEYS_FILE; empty means keys are off."""
        keys = [key.get_secret_value() for key in self.api_keys]
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return [key.encode("utf-8") for key in keys]


def default_encoder_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) // 2)


def default_decoder_threads(lanes: int, encoder_threads: int) -> int:
    """Intra-op threads for the one decoder session all `lanes` step with at once: each lane computes
    on its own thread plus the session's pool of (threads - 1), so lanes + threads - 1 CPUs, here the
    ones the encoder's threads leave (at least 1). (Divided per lane, 16 CPUs left 3 of the decoder's
    8 idle: a pool of 4 shared by 2 lanes.)"""
    return max(1, len(os.sched_getaffinity(0)) - encoder_threads - lanes + 1)


def describe_validation_error(error: ValidationError) -> str:
    """One readable line per bad setting, named as the environment variable the operator sets."""
    lines = ["invalid settings:"]
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        variable = ENV_PREFIX + field.upper() if field else "(settings)"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"  {variable}: {message}")
    return "\n".join(lines)
