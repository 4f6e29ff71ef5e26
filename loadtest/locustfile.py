"""Locust traffic for the translation service: single and batch translations, attention requests and
LibreTranslate form posts, drawn from the held-out test sentences; every answer is validated: its shape,
then each translation (each position of a batch) against the server's own answer to that text asked on
its own (LOADTEST_REFERENCES, written by run_loadtest before the first step; a text without one takes
the first answer seen as its reference). An fp32 translation that differs is a failure; for int8, whose
answers may change with the batch, the differing ones are counted (the reference file says which).

Each user's requests start on a Poisson schedule (loadtest/pacing.py) and each is timed from its
scheduled start (the request event's response_time is replaced), so a saturated server's queueing
shows in the latency rather than in fewer requests sent.

Run by loadtest/run_loadtest.py (which starts the server as a separate process: importing locust
monkey-patches this process with gevent). Must not import service, onnxruntime or torch.
Environment: LOADTEST_SENTENCES (file), LOADTEST_BATCH_TEXTS (texts per batch request, default 4),
LOADTEST_USER_RPS (requests/s each user offers, as a Poisson process; default 1, 0 = no pause), LOADTEST_LENGTHS
(`model` default, or `reference`: send max_length = the reference length, for untrained stand-ins),
LOADTEST_API_KEY, LOADTEST_WEIGHTS (e.g. "single=6,batch=2,attention=1,libre=2"), LOADTEST_REFERENCES (file).
"""

from __future__ import annotations

import json
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
from loadtest.answers import ReferenceBook, attention_problem, libre_problem, reference_key, translation_problem
from loadtest.pacing import PoissonSchedule, poisson_pacing
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


def _reference_book() -> ReferenceBook:
    path = os.environ.get("LOADTEST_REFERENCES")
    if not path:
        return ReferenceBook()  # every text's first answer becomes its reference
    book = ReferenceBook.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    if not book.answers:
        raise ValueError(f"LOADTEST_REFERENCES: {path} holds no reference answers")
    return book


REFERENCES = _reference_book()
# This process's tally: requests started (sent) since reset_tallies(), and every user's schedule.
SENT = [0]
SCHEDULES: list[PoissonSchedule] = []


def reset_tallies() -> None:
    """Start counting afresh (the measured window begins)."""
    SENT[0] = 0
    REFERENCES.reset_tally()


def scheduled_between(begin: float, end: float) -> int | None:
    """Requests the users' schedules meant to start in [begin, end) (monotonic clock); None without a
    schedule (users back to back)."""
    return sum(schedule.due_between(begin, end) for schedule in SCHEDULES) if USER_RPS > 0 else None


def forced_max_length(sentence: Sentence) -> int | None:
    return forced_length_tokens(sentence) if FORCE_LENGTHS else None


def translations_problem(body: Any, keys: list[str]) -> str | None:
    """A /v1/translate answer: its shape, then each translation against its text's reference."""
    if problem := translation_problem(body, len(keys)):
        return problem
    return REFERENCES.check(keys, [item["text"] for item in body["translations"]])


class TranslatorUser(FastHttpUser):
    wait_time = poisson_pacing() if USER_RPS > 0 else constant(0)

    def on_start(self) -> None:
        self.random = random.Random()
        self.headers = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
        self.schedule: PoissonSchedule | None = None
        if USER_RPS > 0:  # users spawned together start at random moments, not in one burst
            gevent.sleep(self.random.uniform(0, 1 / USER_RPS))
            self.schedule = PoissonSchedule(USER_RPS, self.random, time.monotonic())  # the first request's start
            SCHEDULES.append(self.schedule)

    def _pick(self) -> Sentence:
        return self.random.choice(SENTENCES)

    def _check(self, name: str, path: str, problem: Any, **kwargs: Any) -> None:
        scheduled = self.schedule.current if self.schedule is not None else None
        SENT[0] += 1
        with self.client.post(path, name=name, headers=self.headers, catch_response=True, **kwargs) as response:
            if scheduled is not None:  # timed from the scheduled start, not from the send
                response.request_meta["response_time"] = (time.monotonic() - scheduled) * 1000.0
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
        keys = [reference_key(sentence.english, length)]
        self._check(NAME_SINGLE, "/v1/translate", lambda body: translations_problem(body, keys), json=payload)

    @task(WEIGHTS["batch"])
    def translate_batch(self) -> None:
        sentences = [self._pick() for _ in range(BATCH_TEXTS)]
        payload: dict[str, Any] = {"texts": [s.english for s in sentences]}
        lengths = [forced_max_length(s) for s in sentences]
        if lengths[0] is not None:
            payload["max_length"] = max(x for x in lengths if x is not None)  # one cap per request
        keys = [reference_key(s.english, payload.get("max_length")) for s in sentences]  # each position its own
        self._check(NAME_BATCH, "/v1/translate", lambda body: translations_problem(body, keys), json=payload)

    @task(WEIGHTS["attention"])
    def attention(self) -> None:
        sentence = self._pick()
        payload: dict[str, Any] = {"text": sentence.english}
        if (length := forced_max_length(sentence)) is not None:
            payload["max_length"] = length
        key = reference_key(sentence.english, length)
        self._check(NAME_ATTENTION, "/v1/attention",
                    lambda body: attention_problem(body) or REFERENCES.check([key], [body["translation"]]),
                    json=payload)

    @task(WEIGHTS["libre"])
    def libretranslate_form(self) -> None:
        # A LibreTranslate client's form post (libretranslatepy sends exactly these fields; no max_length).
        sentence = self._pick()
        form = {"q": sentence.english, "source": "en", "target": "de", "format": "text"}
        if API_KEY:
            form["api_key"] = API_KEY
        key = reference_key(sentence.english)
        self._check(NAME_LIBRE, "/translate",
                    lambda body: libre_problem(body) or REFERENCES.check([key], [body["translatedText"]]), data=form)
