"""The model registry: loads the configured models from the store, owns each one's codec and scheduler,
and swaps in a new version on reload while the old one keeps serving if the new one fails.

Talks to artifacts through model_store and to ONNX only through service.runtime; must not import
fastapi or service.api.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from model_store import Manifest, ManifestError, list_models, resolve_artifact, verify_artifact
from model_store.codec import Codec
from service.engine import Draining, Scheduler, SchedulerConfig, SchedulerSnapshot, Seq2SeqModel, SpecialIds
from service.engine.result_cache import ResultCache
from service.engine.types import DEFAULT_LENGTH_PENALTY
from service.metrics import ServiceMetrics
from service.settings import ModelSpec, Settings

log = logging.getLogger("service.models")
T = TypeVar("T")

# Blocking: verifies nothing (the registry did), builds the sessions and warms them up. Runs in a thread.
ModelLoader = Callable[[Path, Manifest, Settings], Seq2SeqModel]


class ModelNotFound(Exception):
    """No such model name or version in the store (or not loaded, for reload)."""


class ModelLoadFailed(Exception):
    """A model version could not be verified or loaded; the message names the file or the cause."""


def load_onnx_model(artifact_dir: Path, manifest: Manifest, settings: Settings) -> Seq2SeqModel:
    from service.runtime import OnnxSeq2SeqModel  # the only place serving touches onnxruntime

    model = OnnxSeq2SeqModel.load(
        artifact_dir,
        manifest,
        variant=settings.variant,
        providers=settings.providers,
        intra_op_threads=settings.decoder_threads,
        inter_op_threads=settings.inter_op_threads,
        encoder_intra_op_threads=settings.encoder_threads,
    )
    model.warm_up()
    return model


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One served model version: what a request needs to be encoded, scheduled and decoded."""

    manifest: Manifest
    artifact_dir: Path
    codec: Codec
    model: Seq2SeqModel
    scheduler: Scheduler
    variant: str
    providers: list[str] = field(default_factory=list)
    # this version's finished sentences (TRANSLATOR_CACHE_MB; a reload starts with an empty one)
    cache: ResultCache = field(default_factory=lambda: ResultCache(0))

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def length_penalty_alpha(self) -> float:
        """The beam's GNMT alpha the artifact was scored with (tuned on its validation split), so a
        served beam ranks hypotheses as the published scores did."""
        alpha = self.manifest.training.get("length_penalty_alpha")
        return float(alpha) if isinstance(alpha, int | float) else DEFAULT_LENGTH_PENALTY

    @property
    def source_language(self) -> str:
        return self.manifest.source_language

    @property
    def target_language(self) -> str:
        return self.manifest.target_language


class ModelRegistry:
    """The loaded models, in configuration order; the first is the default."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics, loader: ModelLoader = load_onnx_model) -> None:
        self._settings = settings
        self._metrics = metrics
        self._loader = loader
        self._models: dict[str, LoadedModel] = {}
        self._reload_lock = asyncio.Lock()
        self._draining = False

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Verify, load, warm up and start every configured model; raise on the first failure."""
        specs = self._settings.models or [ModelSpec(name) for name in list_models(self._settings.model_store)]
        if not specs:
            raise ModelLoadFailed(f"no models found in the model store {self._settings.model_store}")
        for spec in specs:
            loaded = await self._load(spec)
            self._models[loaded.name] = loaded
            self._publish(loaded)

    async def drain(self, timeout_s: float) -> None:
        """Refuse new work and wait (at most `timeout_s`) for queued and running requests to finish."""
        self._draining = True
        await asyncio.gather(*(m.scheduler.drain(timeout_s) for m in self._models.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(m.scheduler.stop() for m in self._models.values()), return_exceptions=True)

    async def reload(self, name: str, version: str | None) -> tuple[LoadedModel, LoadedModel]:
        """Load `name` at `version` (newest if None) and swap it in; returns (new, old).

        The old version keeps serving until the new one is warmed up and started; if loading fails,
        nothing changes. Requests that reached the old scheduler finish there (drain); requests
        refused by it because of the swap are retried on the new one by `run`.
        """
        async with self._reload_lock:
            old = self._models.get(name)
            if old is None:
                raise ModelNotFound(f"model {name!r} is not loaded (loaded: {sorted(self._models)})")
            new = await self._load(ModelSpec(name, version))
            self._models[name] = new
            self._metrics.clear_model_info(old.name, old.version, old.variant, self._settings.providers)
            self._publish(new)
            log.info("model swapped", extra={"model": name, "version": new.version, "previous": old.version})
            await old.scheduler.drain(self._settings.drain_timeout_s)
            await old.scheduler.stop()
            return new, old

    # ---- lookup ----------------------------------------------------------------------------------
    @property
    def models(self) -> list[LoadedModel]:
        return list(self._models.values())

    @property
    def default(self) -> LoadedModel | None:
        return next(iter(self._models.values()), None)

    def for_pair(self, source: str | None, target: str | None) -> LoadedModel | None:
        """The first loaded model matching the given languages (None matches any); None if no match."""
        if source is None and target is None:
            return self.default
        for loaded in self._models.values():
            if source not in (None, loaded.source_language):
                continue
            if target not in (None, loaded.target_language):
                continue
            return loaded
        return None

    def snapshots(self) -> list[SchedulerSnapshot]:
        return [m.scheduler.snapshot() for m in self._models.values()]

    def cache_bytes(self) -> int:
        """Estimated bytes the loaded versions' translation caches hold."""
        return sum(m.cache.bytes for m in self._models.values())

    async def run(self, loaded: LoadedModel, work: Callable[[LoadedModel], Awaitable[T]]) -> T:
        """Run `work` on `loaded`; if a reload retired it meanwhile, run it once more on the new version."""
        try:
            return await work(loaded)
        except Draining:
            current = self._models.get(loaded.name)
            if self._draining or current is None or current is loaded:
                raise
            return await work(current)

    # ---- loading ---------------------------------------------------------------------------------
    async def _load(self, spec: ModelSpec) -> LoadedModel:
        store = self._settings.model_store
        try:
            artifact_dir = resolve_artifact(store, spec.name, spec.version)
        except ManifestError as exc:
            self._metrics.model_load_failures.inc()
            raise ModelNotFound(str(exc)) from exc
        try:
            manifest, codec, model = await asyncio.to_thread(self._load_blocking, artifact_dir)
        except Exception as exc:
            self._metrics.model_load_failures.inc()
            log.error("model load failed", extra={"model": str(spec), "error": str(exc)})
            raise ModelLoadFailed(f"{spec}: {exc}") from exc
        # Built on the event loop: the scheduler's queue and tasks belong to it.
        scheduler = self._scheduler(manifest, codec, model)
        await scheduler.start()
        providers = [str(p) for p in getattr(model, "providers", [self._settings.providers])]
        loaded = LoadedModel(
            manifest=manifest,
            artifact_dir=artifact_dir,
            codec=codec,
            model=model,
            scheduler=scheduler,
            variant=self._settings.variant,
            providers=providers,
            cache=ResultCache(int(self._settings.cache_mb * 2**20)),
        )
        log.info(
            "model loaded",
            extra={
                "model": loaded.name,
                "version": loaded.version,
                "variant": loaded.variant,
                "providers": loaded.providers,
                "artifact_dir": str(artifact_dir),
            },
        )
        return loaded

    def _load_blocking(self, artifact_dir: Path) -> tuple[Manifest, Codec, Seq2SeqModel]:
        manifest = verify_artifact(artifact_dir)  # raises naming the first missing or modified file
        if (manifest.name, manifest.version) != (artifact_dir.parent.name, artifact_dir.name):
            # A copied artifact: /v1/models, metrics and answers would name another version than was asked for.
            raise ModelLoadFailed(
                f"{artifact_dir}: its manifest says {manifest.name} version {manifest.version}; an artifact must lie "
                "in <store>/<name>/<version>/ as its manifest names it"
            )
        if self._settings.variant not in manifest.variants:
            raise ModelLoadFailed(
                f"{artifact_dir}: variant {self._settings.variant!r} not in the artifact "
                f"(has {sorted(manifest.variants)})"
            )
        codec = Codec(artifact_dir / manifest.tokenizer_file)
        return manifest, codec, self._loader(artifact_dir, manifest, self._settings)

    def _scheduler(self, manifest: Manifest, codec: Codec, model: Seq2SeqModel) -> Scheduler:
        settings = self._settings
        tokens = manifest.special_tokens
        special = SpecialIds(pad_id=tokens.pad_id, unk_id=tokens.unk_id, bos_id=tokens.bos_id, eos_id=tokens.eos_id,
                             word_marks=tuple(codec.loop_marks()))
        config = SchedulerConfig(
            mode=settings.batching,
            max_batch_rows=settings.max_batch_rows,
            max_queue_requests=settings.max_queue_requests,
            static_max_wait_ms=settings.static_max_wait_ms,
            default_timeout_s=settings.request_timeout_s,
            max_output_tokens=settings.max_output_tokens,
            inline_max_rows=settings.inline_max_rows,
            decoder_lane_bounds=tuple(settings.decoder_lane_bounds),
        )
        return Scheduler(model, special, config, on_stats=self._metrics.observe_step)

    def _publish(self, loaded: LoadedModel) -> None:
        self._metrics.set_model_info(loaded.name, loaded.version, loaded.variant, self._settings.providers)
