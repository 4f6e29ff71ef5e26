"""Locust traffic for the translation service: single and batch translations, attention requests and
LibreTranslate form posts, drawn from the held-out test sentences; every answer is validated.

Run by loadtest/run_loadtest.py (which starts the server as a separate process: importing locust
monkey-patches this process with gevent). Must not import service, onnxruntime or torch.
Environment: LOADTEST_SENTENCES (file), LOADTEST_BATCH_TEXTS (texts per batch request, default 4),
LOADTEST_USER_RPS (requests/s each user offers, as a Poisson process; default 1, 0 = no pause), LOADTEST_LENGTHS
(`model` default, or `reference`: send max_length = the reference length, for untrained stand-ins),
LOADTEST_API_KEY, LOADTEST_WEIGHTS (e.g. "single=6,batch=2,attention=1,libre=2").
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

# `locust -f loadtest/locustfile.py` puts loadtest/ (not the repo root) on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loadtest.answers import attention_problem, libre_problem, translation_problem
from loadtest.pacing import poisson_pacing
from loadtest.sentences import Sentence, forced_length_tokens, load_sentences

SENTENCES_PATH = os.environ.get("LOADTEST_SENTENCES")
SENTENCES, SENTENCES_SOURCE = load_sentences(Path(SENTENCES_PATH) if SENTENCES_PATH else None)
BATCH_TEXTS = int(os.environ.get("LOADTEST_BATCH_TEXTS", "4"))
USER_RPS = float(os.environ.get("LOADTEST_USER_RPS", "1"))
FORCE_LENGTHS = os.environ.get("LOADTEST_LENGTHS", "model") == "reference"
API_KEY = os.environ.get("LOADTEST_API_KEY", "")
DEFAULT_WEIGHTS = {"single": 6, "batch": 2, "attention": 1, "libre": 2}

# Request names carry the number of texts, so the summary can turn requests/s into sentences/s.
NAME_SINGLE = "POST /v1/translate [text x1]"
NAME_BATCH = f"POST /v1/translate [texts x{BATCH_TEXTS}]"
NAME_ATTENTION = "POST /v1/attention [text x1]"
NAME_LIBRE = "POST /translate form [q x1]"


def _weights() -> dict[str, int]:
    weights = dict(DEFAULT_WEIGHTS)
    for item in filter(None, os.environ.get("LOADTEST_WEIGHTS", "").split(",")):
        key, _, value = item.partition("=")
        if key.strip() not in weights:
            raise ValueError(f"LOADTEST_WEIGHTS: unknown task {key!r} (known: {sorted(weights)})")
        weights[key.strip()] = int(value)
    return weights


WEIGHTS = _weights()


def forced_max_length(sentence: Sentence) -> int | None:
    return forced_length_tokens(sentence) if FORCE_LENGTHS else None


class TranslatorUser(FastHttpUser):
    wait_time = poisson_pacing(USER_RPS) if USER_RPS > 0 else constant(0)

    def on_start(self) -> None:
        self.random = random.Random()
        self.headers = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
        if USER_RPS > 0:  # users spawned together start at random moments, not in one burst
            gevent.sleep(self.random.uniform(0, 1 / USER_RPS))
        self.next_request_at = time.monotonic()  # the first request's start

    def _pick(self) -> Sentence:
        return self.random.choice(SENTENCES)

    def _check(self, name: str, path: str, problem: Any, **kwargs: Any) -> None:
        with self.client.post(path, name=name, headers=self.headers, catch_response=True, **kwargs) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                body = response.json()
            except ValueError:
                response.failure("response is not JSON")
                return
            reason = problem(body)
            if reason:
                response.failure(reason)
            else:
                response.success()

    @task(WEIGHTS["single"])
    def translate_one(self) -> None:
        sentence = self._pick()
        payload: dict[str, Any] = {"text": sentence.english}
        if (length := forced_max_length(sentence)) is not None:
            payload["max_length"] = length
        self._check(NAME_SINGLE, "/v1/translate", lambda body: translation_problem(body, 1), json=payload)

    @task(WEIGHTS["batch"])
    def translate_batch(self) -> None:
        sentences = [self._pick() for _ in range(BATCH_TEXTS)]
        payload: dict[str, Any] = {"texts": [s.english for s in sentences]}
        lengths = [forced_max_length(s) for s in sentences]
        if lengths[0] is not None:
            payload["max_length"] = max(x for x in lengths if x is not None)  # one cap per request
        self._check(NAME_BATCH, "/v1/translate", lambda body: translation_problem(body, BATCH_TEXTS), json=payload)

    @task(WEIGHTS["attention"])
    def attention(self) -> None:
        sentence = self._pick()
        payload: dict[str, Any] = {"text": sentence.english}
        if (length := forced_max_length(sentence)) is not None:
            payload["max_length"] = length
        self._check(NAME_ATTENTION, "/v1/attention", attention_problem, json=payload)

    @task(WEIGHTS["libre"])
    def libretranslate_form(self) -> None:
        # A LibreTranslate client's form post (libretranslatepy sends exactly these fields).
        form = {"q": self._pick().english, "source": "en", "target": "de", "format": "text"}
        if API_KEY:
            form["api_key"] = API_KEY
        self._check(NAME_LIBRE, "/translate", libre_problem, data=form)
