"""A stand-in translation server for the load-test tools' own tests: answers of the right shape that are
right or wrong on purpose. `python tests/loadtest/stub_server.py PORT`; environment:

- STUB_MODE: `echo` ("DE:" + text), `wrong` ("falsch" for every text), `reversed` (a batch's
  translations in reverse order), `busy-wrong` (right when it is the only request in flight, "falsch"
  when others are: sequential answers are right, answers under load are not).
- STUB_SERVICE_S: seconds each request holds the one worker (requests are served one at a time).
- STUB_VARIANT: the variant GET /v1/models reports (default fp32).

aiohttp only (no service import): it runs as its own process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from aiohttp import web

MODE = os.environ.get("STUB_MODE", "echo")
SERVICE_S = float(os.environ.get("STUB_SERVICE_S", "0"))
VARIANT = os.environ.get("STUB_VARIANT", "fp32")
in_flight = 0
worker = asyncio.Lock()


def translate(text: str, alone: bool) -> str:
    if MODE == "wrong" or (MODE == "busy-wrong" and not alone):
        return "falsch"
    return "DE:" + text


async def answer(texts: list[str]) -> list[str]:
    global in_flight
    in_flight += 1
    try:
        await asyncio.sleep(0)  # let concurrent requests arrive
        alone = in_flight == 1
        async with worker:
            if SERVICE_S:
                await asyncio.sleep(SERVICE_S)
        out = [translate(text, alone) for text in texts]
        return out[::-1] if MODE == "reversed" else out
    finally:
        in_flight -= 1


async def v1_translate(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    texts = [body["text"]] if "text" in body else list(body["texts"])
    out = await answer(texts)
    return web.json_response({"model": {"name": "stub", "version": "1"},
                              "translations": [{"text": t, "truncated": False} for t in out]})


async def v1_attention(request: web.Request) -> web.Response:
    body = await request.json()
    (out,) = await answer([body["text"]])
    return web.json_response({"model": {"name": "stub", "version": "1"}, "translation": out, "truncated": False,
                              "source_tokens": ["a", "</s>"], "target_tokens": ["b", "</s>"],
                              "weights": [[1.0, 0.0], [0.0, 1.0]], "alignment": [[0, 0]], "moses": "0-0"})


async def libre(request: web.Request) -> web.Response:
    form = await request.post()
    (out,) = await answer([str(form["q"])])
    return web.json_response({"translatedText": out})


async def models(request: web.Request) -> web.Response:
    return web.json_response({"models": [{"name": "stub", "version": "1", "variant": VARIANT, "default": True}]})


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.add_routes([web.post("/v1/translate", v1_translate), web.post("/v1/attention", v1_attention),
                    web.post("/translate", libre), web.get("/v1/models", models), web.get("/readyz", ok),
                    web.get("/healthz", ok)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
