"""The naive baseline of the benchmark: FastAPI + the PyTorch model run eagerly, one request at a
time, greedy decoding one sentence after another (what the PyTorch seq2seq tutorial leads to).

Lives with the benchmark, never in service/; imports torch and training. Speaks the subset of the
service's API the benchmark uses: POST /v1/translate ({"text"} or {"texts"}, optional max_length),
GET /healthz, GET /readyz. Run: python -m loadtest.naive_server --checkpoint X.pt --port 8001, or
--artifact model_store/en-de/3 for the weights of an artifact's fp32 graphs (no checkpoint needed).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel

DEFAULT_MAX_OUTPUT_TOKENS = 256  # the service's TRANSLATOR_MAX_OUTPUT_TOKENS default


class TranslateBody(BaseModel):
    text: str | None = None
    texts: list[str] | None = None
    max_length: int | None = None


def build_app(checkpoint: Path | None = None, max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS, *,
              artifact: Path | None = None) -> Any:
    """The app over a training checkpoint or, exactly one or the other, a model_store artifact directory."""
    import torch
    from fastapi import FastAPI, HTTPException

    if (checkpoint is None) == (artifact is None):
        raise ValueError("give exactly one of checkpoint or artifact")
    if artifact is not None:
        from training.from_artifact import load_artifact

        # Checksums verified and torch-vs-ONNX Runtime parity checked on load: the same model the service runs.
        model, codec, info = load_artifact(artifact)
        weights_label = f"{info['name']}@{info['version']} (artifact)"
    else:
        assert checkpoint is not None  # exactly one of the two, checked above
        from torch.torch_version import TorchVersion

        from training.checkpoint import load_checkpoint

        # The trainer records torch.__version__ (a TorchVersion) in its checkpoints; allow just that class
        # so the weights-only (no arbitrary pickle code) load still works.
        with torch.serialization.safe_globals([TorchVersion]):
            model, codec, _ = load_checkpoint(checkpoint)
        weights_label = Path(checkpoint).name
    lock = threading.Lock()  # one request at a time: the model is never shared between requests

    @torch.no_grad()
    def greedy(text: str, max_length: int | None) -> str:
        source = codec.source_ids(text)
        # The service's rule: 2 * source tokens + 10, capped (eos excluded), so both do the same work.
        limit = min(max_length or 2 * len(source) + 10, max_output_tokens)
        source_ids = torch.tensor([source], dtype=torch.long)
        memory, keys, hidden, cell = model.encode(source_ids, torch.tensor([len(source)]))
        mask = source_ids != codec.pad_id
        token = torch.tensor([codec.bos_id])
        output: list[int] = []
        for _ in range(limit + 1):
            log_probs, hidden, cell, _ = model.decode_step(token, hidden, cell, memory, keys, mask)
            if len(output) >= limit:  # like the service: this step's token is a forced eos
                break
            log_probs[:, [codec.pad_id, codec.bos_id]] = -float("inf")
            token = log_probs.argmax(dim=-1)
            if int(token) == codec.eos_id:
                break
            output.append(int(token))
        return codec.decode(output)

    app = FastAPI(title="naive baseline (PyTorch eager, one request at a time)")

    @app.post("/v1/translate")
    def translate(body: TranslateBody) -> dict[str, Any]:
        # A sync route runs in FastAPI's thread pool; the lock serialises the model calls.
        if (body.text is None) == (body.texts is None):
            raise HTTPException(422, "give exactly one of 'text' or 'texts'")
        texts = [body.text] if body.text is not None else list(body.texts or [])
        with lock:
            translations = [{"text": greedy(text, body.max_length)} for text in texts]
        return {"model": {"name": "naive", "version": weights_label}, "translations": translations}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    greedy("warm up", 4)
    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="a training checkpoint (.pt)")
    weights.add_argument("--artifact", type=Path,
                         help="a model_store artifact directory: its fp32 graphs' weights, rebuilt in PyTorch")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    app = build_app(args.checkpoint, artifact=args.artifact)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
