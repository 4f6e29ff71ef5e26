"""Every route and every error status through FastAPI's TestClient, over the echo model (fast, in-process).

The same behaviour against a real uvicorn process and the real tiny artifact is in test_live_server.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api import routes_attention
from service.api.errors import ClientDisconnected
from service.api.translation import cancel_on_disconnect
from service.app import create_app
from service.settings import Settings
from tests.service.api.conftest import echo_loader

ClientFactory = Callable[..., TestClient]
NOT_IN_VOCAB = "\u2603"  # as in conftest.py: a character the fake tokenizer never saw


def distinct_lines(count: int) -> list[str]:
    """`count` different lines of words the fake tokenizer knows: a request's repeated sentences are
    decoded once, so a test that needs the engine busy with many rows needs them all different."""
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    lines = [" ".join(words_in_order) for words_in_order in itertools.permutations(words, 3)]  # no word twice
    assert count <= len(lines)
    return lines[:count]


def assert_error(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


# ---- happy paths ---------------------------------------------------------------------------------


def test_translate_one_text(client: TestClient) -> None:
    response = client.post("/v1/translate", json={"text": "the house is small", "source": "en", "target": "de"})
    assert response.status_code == 200
    body = response.json()
    # the echo model gives each token it copies (and the eos) a probability of about 0.9
    confidence = body["translations"][0].pop("confidence")
    assert confidence == pytest.approx(0.9, abs=0.005)
    assert body == {
        "model": {"name": "en-de", "version": "1"},
        "translations": [{"text": "the house is small", "truncated": False, "alternatives": []}],
    }


def _counter(client: TestClient, name: str) -> float:
    """An unlabelled counter's value from /metrics."""
    match = re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.MULTILINE)
    assert match, f"no {name} in /metrics"
    return float(match.group(1))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_translation_cut_at_its_length_limit_says_so(client: TestClient, beam_size: int) -> None:
    """The echo model ends a sentence after its source's pieces. With max_length at exactly that many
    pieces the sentence ends where the model ends it; one piece less and it is cut short: the answer
    says which texts were (and the metric counts the sentences)."""
    pieces = len(client.post("/v1/attention", json={"text": "hello world"}).json()["target_tokens"]) - 1
    before = _counter(client, "translator_truncated_sentences_total")
    response = client.post("/v1/translate", json={"texts": ["hello world the house", "hello world", "hello world\nbig"],
                                                   "max_length": pieces, "beam_size": beam_size})
    assert response.status_code == 200, response.text
    cut, whole, lines = response.json()["translations"]
    assert cut["truncated"] and cut["text"] != "hello world the house"
    assert "hello world the house".startswith(cut["text"])
    # the eos forced at the limit counts as the model rates it (the echo model: ~1e-9), greedy or beam
    assert cut.pop("confidence") < 0.5
    assert whole.pop("confidence") == pytest.approx(0.9, abs=0.005)
    assert whole == {"text": "hello world", "truncated": False, "alternatives": []}  # ended by the model
    assert lines.pop("confidence") == pytest.approx(0.9, abs=0.005)
    assert lines == {"text": "hello world\nbig", "truncated": False, "alternatives": []}  # each line within it
    assert _counter(client, "translator_truncated_sentences_total") == before + 1
    attention = client.post("/v1/attention", json={"text": "hello world", "max_length": pieces - 1}).json()
    assert attention["truncated"] and len(attention["target_tokens"]) == pieces
    assert client.post("/v1/attention", json={"text": "hello world"}).json()["truncated"] is False


def test_translate_many_texts_keeps_order(client: TestClient) -> None:
    texts = ["good morning", "where is the station", "hello world", "the house is big"]
    response = client.post("/v1/translate", json={"texts": texts, "beam_size": 2})
    assert response.status_code == 200
    assert [t["text"] for t in response.json()["translations"]] == texts


def test_integral_floats_are_integers_like_json_schema_says(client: TestClient) -> None:
    response = client.post("/v1/translate", json={"text": "hello world", "beam_size": 2.0, "max_length": 20.0})
    assert response.status_code == 200, response.text


def test_translate_picks_the_model_for_the_pair(client: TestClient) -> None:
    response = client.post("/v1/translate", json={"text": "guten morgen", "source": "de", "target": "en"})
    assert response.json()["model"] == {"name": "de-en", "version": "1"}


def test_unknown_word_is_copied_from_the_source(client: TestClient) -> None:
    response = client.post("/v1/translate", json={"text": f"hello {NOT_IN_VOCAB} world"})
    assert response.status_code == 200
    assert NOT_IN_VOCAB in response.json()["translations"][0]["text"]
    assert "\u2047" not in response.json()["translations"][0]["text"]  # sentencepiece's rendering of <unk>


def test_unknown_text_is_copied_once_where_it_was(client: TestClient) -> None:
    """The echo model copies its source, <unk>s included: the translation must be the text itself,
    the unknown character attached to its word or standing alone as in the source (copying the whole
    attended word repeated what the model had written of it: "hello world world☃")."""
    texts = [f"hello world{NOT_IN_VOCAB}", f"{NOT_IN_VOCAB}hello world", f"hello {NOT_IN_VOCAB}{NOT_IN_VOCAB} world"]
    response = client.post("/v1/translate", json={"texts": texts})
    assert [t["text"] for t in response.json()["translations"]] == texts


def test_echoed_addresses_and_numbers_come_back_as_sent(client: TestClient) -> None:
    # The echo model copies its source: each kept span is one <unk>, copied back whole.
    text = "hello www.example.com/a 2024-05-17 world"
    assert client.post("/v1/translate", json={"text": text}).json()["translations"][0]["text"] == text


def test_a_model_without_attention_keeps_nothing_verbatim(make_client: Callable[..., TestClient]) -> None:
    """It cannot copy: a span given to it as <unk> would come back as nothing or "⁇"; it gets the text
    as written, as with TRANSLATOR_KEEP_VERBATIM empty."""
    body = {"text": "guten morgen www.example.com 2024-05-17", "source": "de", "target": "en"}
    answers = [make_client(keep_verbatim=kinds).post("/v1/translate", json=body).json() for kinds in (
        ["url", "email", "path", "number"], [])]
    assert answers[0]["model"]["name"] == "de-en"
    assert answers[0]["translations"] == answers[1]["translations"]


@pytest.mark.parametrize(("keep", "fragment"), [
    (["  "], "keep.0: must not be empty or only whitespace"),
    (["x" * 201], "keep.0"),
    ([f"t{i}" for i in range(65)], "keep"),
    ("abc", "keep: Input should be a valid list"),
    ([3], "keep.0"),
])
def test_keep_terms_are_checked(client: TestClient, keep: object, fragment: str) -> None:
    response = client.post("/v1/translate", json={"text": "hello world", "keep": keep})
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]["message"]


def test_keep_terms_need_a_model_that_can_copy(client: TestClient) -> None:
    body = {"text": "guten morgen", "source": "de", "target": "en", "keep": ["morgen"]}
    response = client.post("/v1/translate", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "attention_unavailable"
    assert "cannot keep text as written" in response.json()["error"]["message"]
    assert client.post("/v1/translate", json={**body, "keep": []}).status_code == 200


def test_glossary_terms_are_written_as_the_client_translates_them(client: TestClient) -> None:
    # The echo model copies its source: each glossary term is one <unk>, written as its translation.
    glossary = {"house": "Haus", "hello world": "Hallo Welt", "small": "klein"}
    body = {"texts": ["the house is small", "hello world", "the houses are big"], "glossary": glossary}
    answer = client.post("/v1/translate", json=body)
    assert answer.status_code == 200, answer.text
    # whole words only: "houses" is another word
    assert [t["text"] for t in answer.json()["translations"]] == ["the Haus is klein", "Hallo Welt",
                                                                  "the houses are big"]
    attention = client.post("/v1/attention", json={"text": "the house is small", "glossary": glossary}).json()
    assert attention["translation"] == "the Haus is klein"
    assert "house" in attention["source_tokens"]  # the source shows what was sent
    # kept and translated terms together; normalised like the texts (whitespace runs, NFC)
    mixed = {"text": "hello world the house", "keep": ["house"], "glossary": {"hello  world": "Hallo\tWelt"}}
    assert client.post("/v1/translate", json=mixed).json()["translations"][0]["text"] == "Hallo Welt the house"
    # a term beside a character the vocabulary lacks (one <unk> with it), or two with one between them,
    # is still written as its translation, the character kept
    glued = {"texts": [f"the {NOT_IN_VOCAB}house is small", f"the house{NOT_IN_VOCAB}small"], "glossary": glossary}
    assert [t["text"] for t in client.post("/v1/translate", json=glued).json()["translations"]] == [
        f"the {NOT_IN_VOCAB}Haus is klein", f"the Haus{NOT_IN_VOCAB}klein"]
    # what the schema cannot rule out is settled, not refused (schema-valid input is accepted): an entry
    # with no text once normalised is ignored (a soft hyphen), of two that normalise alike the later
    # counts, and a term also kept is translated as the glossary says
    settled = {"text": "the house is small", "keep": ["house", "small"],
               "glossary": {"house": "Haus", "house ": "Gebäude", "is": "\u00ad", "\u00ad": "x"}}
    answer = client.post("/v1/translate", json=settled)
    assert answer.status_code == 200, answer.text
    assert answer.json()["translations"][0]["text"] == "the Gebäude is small"


@pytest.mark.parametrize(("glossary", "keep", "fragment"), [
    ({"house": "  "}, [], "glossary.house: must not be empty or only whitespace"),
    ({"house": "x" * 201}, [], "glossary.house"),
    ({"x" * 201: "y"}, [], "glossary"),
    ({f"t{i}": "x" for i in range(65)}, [], "glossary"),
    (["house"], [], "glossary: Input should be a valid dictionary"),
    ({"house": 3}, [], "glossary.house"),
])
def test_glossaries_are_checked(client: TestClient, glossary: object, keep: list[str], fragment: str) -> None:
    response = client.post("/v1/translate", json={"text": "the house", "glossary": glossary, "keep": keep})
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]["message"]


def test_a_glossary_needs_a_model_that_can_copy(client: TestClient) -> None:
    body = {"text": "guten morgen", "source": "de", "target": "en", "glossary": {"morgen": "morning"}}
    response = client.post("/v1/translate", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "attention_unavailable"
    assert client.post("/v1/translate", json={**body, "glossary": {}}).status_code == 200


def test_attention_keeps_the_layout_translate_keeps(client: TestClient) -> None:
    text = "  hello world\n\tgood morning  \n"
    translated = client.post("/v1/translate", json={"text": text}).json()["translations"][0]["text"]
    assert translated == text  # the echo model copies; the layout comes back as sent
    assert client.post("/v1/attention", json={"text": text}).json()["translation"] == translated


def test_attention_shapes_rows_and_alignment(client: TestClient) -> None:
    response = client.post("/v1/attention", json={"text": f"hello {NOT_IN_VOCAB} world"})
    assert response.status_code == 200, response.text
    body = response.json()
    source, target, weights = body["source_tokens"], body["target_tokens"], body["weights"]
    assert source[-1] == "</s>" and target[-1] == "</s>"
    assert len(weights) == len(target) and all(len(row) == len(source) for row in weights)
    assert all(abs(sum(row) - 1.0) < 1e-5 for row in weights)
    # The echo model attends to the position it copies, so the word alignment is the diagonal.
    assert body["alignment"] == [[i, i] for i in range(3)]
    assert body["moses"] == "0-0 1-1 2-2"
    assert NOT_IN_VOCAB in body["translation"]


def _decoder_steps(client: TestClient) -> float:
    return _counter(client, "translator_decoder_steps_total")


@pytest.mark.parametrize("max_sentences", [8, 1])
def test_sentences_of_a_text_are_decoded_side_by_side(make_client: ClientFactory, max_sentences: int) -> None:
    client = make_client(max_sentences_per_text=max_sentences)
    sentences = ["one two three four five six seven eight nine ten", "the house is big", "good morning"]
    text = f"{sentences[0]}\n{sentences[1]}\n\n{sentences[2]}"
    alone, steps_alone = [], []
    for sentence in sentences:
        before = _decoder_steps(client)
        alone.append(client.post("/v1/translate", json={"text": sentence}).json()["translations"][0]["text"])
        steps_alone.append(_decoder_steps(client) - before)
    before = _decoder_steps(client)
    response = client.post("/v1/translate", json={"text": text})
    steps = _decoder_steps(client) - before
    assert response.status_code == 200, response.text
    if max_sentences > 1:
        # Each sentence translated as it is alone, line breaks kept; one row each, stepped together:
        # about the longest sentence's steps, far fewer than all of them one after another.
        assert response.json()["translations"][0]["text"] == f"{alone[0]}\n{alone[1]}\n\n{alone[2]}"
        assert max(steps_alone) <= steps < sum(steps_alone) - min(steps_alone)
    else:
        assert response.json()["translations"][0]["text"] == " ".join(alone)  # one row; line breaks normalised away
        assert steps > max(steps_alone)


@pytest.mark.parametrize("settings", [{}, {"max_batch_rows": 2, "max_queue_requests": 2}])
def test_every_line_of_a_long_text_comes_back_on_its_own_line(make_client: ClientFactory, settings: dict) -> None:
    """30 lines (more than the old 8 pieces a text could have): each is a row of its own and comes
    back where it was, as it translates alone (grouped lines lost their line breaks, and content).
    With a queue of 2 the request's sentences go in a batch's worth (2) at a time, so a text with more
    lines than the engine's queue holds is served whole too, and nobody else finds the queue full."""
    client = make_client(**settings)
    lines = distinct_lines(30)
    alone = {line: client.post("/v1/translate", json={"text": line}).json()["translations"][0]["text"]
             for line in set(lines)}
    response = client.post("/v1/translate", json={"text": "\n".join(lines)})
    assert response.status_code == 200, response.text
    assert response.json()["translations"][0]["text"].split("\n") == [alone[line] for line in lines]
    assert "queue;dur=" in response.headers["server-timing"]


def test_a_requests_sentences_times_beam_are_bounded_never_grouped(make_client: ClientFactory) -> None:
    """Every sentence and line is a row of its own; a request that would need more rows than
    TRANSLATOR_MAX_ROWS_PER_REQUEST, or a text with more sentences than TRANSLATOR_MAX_SENTENCES_PER_TEXT,
    is refused in words (it was grouped to fit before, and grouped lines came back as one line)."""
    client = make_client(max_rows_per_request=6, max_sentences_per_text=3, step_delay_s=0.001)
    text = "hello world\ngood morning\nthe house"
    before = _decoder_steps(client)
    two_beams = client.post("/v1/translate", json={"texts": [text], "beam_size": 2})  # 3 x 2 rows
    assert two_beams.status_code == 200, two_beams.text
    assert two_beams.json()["translations"][0]["text"].count("\n") == 2
    assert _decoder_steps(client) > before
    body = assert_error(client.post("/v1/translate", json={"texts": [text, text], "beam_size": 2}), 413, "too_large")
    assert body["error"]["message"].startswith("6 sentences and lines at beam_size 2 need 12 decoder rows; at most 6")
    assert_error(client.post("/v1/attention", json={"text": text, "beam_size": 3}), 413, "too_large")
    four_lines = assert_error(client.post("/v1/translate", json={"text": text + "\nbig"}), 413, "too_large")
    assert four_lines["error"]["message"].startswith("text 0 has 4 sentences and lines; at most 3 per text")


def test_a_one_sentence_request_is_not_queued_behind_all_of_a_big_one(make_client: ClientFactory) -> None:
    """The sentences of one HTTP request share an engine group: once they hold half the batch, a
    newcomer's sentence goes first (it waited for all 48 before)."""
    client = make_client(max_batch_rows=4, step_delay_s=0.005)  # the big one: >= 12 waves x 4 steps x 5 ms
    finished: list[str] = []
    steps_before = _decoder_steps(client)

    def big() -> None:
        response = client.post("/v1/translate", json={"text": "\n".join(distinct_lines(48))})
        assert response.status_code == 200
        finished.append("big")

    thread = threading.Thread(target=big)
    thread.start()
    deadline = time.monotonic() + 10
    while _decoder_steps(client) == steps_before:  # until the big request's sentences are decoding
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert client.post("/v1/translate", json={"text": "the house is big"}).status_code == 200
    finished.append("small")
    thread.join()
    assert finished == ["small", "big"]


def test_two_of_the_largest_requests_side_by_side_fit_a_small_queue(make_client: ClientFactory) -> None:
    """32 texts x 8 lines each, twice at once, with a queue of 128 sentences: each request keeps at
    most a batch's worth (64) of its 256 sentences in the engine, so neither is shed (before, every
    sentence took a place in the queue at once: the first alone was refused as too large)."""
    client = make_client(step_delay_s=0.002, max_queue_requests=128)
    lines = distinct_lines(512)
    statuses: list[int] = []

    def send(first: int) -> None:
        texts = ["\n".join(lines[line:line + 8]) for line in range(first, first + 256, 8)]
        statuses.append(client.post("/v1/translate", json={"texts": texts}).status_code)

    threads = [threading.Thread(target=send, args=(first,)) for first in (0, 256)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # the first request's sentences are queued and decoding
    for thread in threads:
        thread.join()
    assert statuses == [200, 200]
    attention = client.post("/v1/attention", json={"text": "\n".join(distinct_lines(130))})  # < 2,000 characters
    assert attention.status_code == 200 and attention.json()["translation"].count("\n") == 129


def test_a_sentence_limit_applies_to_each_sentence(make_client: ClientFactory) -> None:
    client = make_client(max_source_tokens=12)
    two_short = client.post("/v1/translate", json={"text": "the house is big\ngood morning"})
    assert two_short.status_code == 200, two_short.text
    body = assert_error(client.post("/v1/translate", json={"text": "good morning\n" + "hello world " * 4}),
                        413, "too_large")
    assert "a sentence of text 0" in body["error"]["message"]


def test_attention_of_several_sentences_is_block_diagonal(client: TestClient) -> None:
    body = client.post("/v1/attention", json={"text": "the house is small\nhello world"}).json()
    source, target, weights = body["source_tokens"], body["target_tokens"], body["weights"]
    assert source.count("</s>") == 2 and target.count("</s>") == 2  # each sentence's own eos
    first_source, first_target = source.index("</s>") + 1, target.index("</s>") + 1
    assert all(abs(sum(row) - 1.0) < 1e-5 for row in weights)
    # a sentence's rows attend over its own source only
    assert all(value == 0 for row in weights[:first_target] for value in row[first_source:])
    assert all(value == 0 for row in weights[first_target:] for value in row[:first_source])
    # word indices run over the whole text: the echo model's alignment is still the diagonal
    assert body["alignment"] == [[i, i] for i in range(6)]
    assert body["translation"] == "the house is small\nhello world"


def test_attention_as_svg(client: TestClient) -> None:
    response = client.post("/v1/attention", json={"text": "hello world", "format": "svg"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    json_body = client.post("/v1/attention", json={"text": "hello world"}).json()
    cells = len(json_body["source_tokens"]) * len(json_body["target_tokens"])
    assert "<svg" in response.text and response.text.count('class="cell"') == cells


def test_a_heatmap_too_large_for_svg_is_413_and_its_json_still_served(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "hello world. The house is big."
    json_body = client.post("/v1/attention", json={"text": text}).json()
    cells = len(json_body["source_tokens"]) * len(json_body["target_tokens"])
    monkeypatch.setattr(routes_attention, "MAX_SVG_CELLS", cells - 1)
    body = assert_error(client.post("/v1/attention", json={"text": text, "format": "svg"}), 413, "too_large")
    assert f"{cells} cells" in body["error"]["message"] and "JSON" in body["error"]["message"]
    assert client.post("/v1/attention", json={"text": text}).status_code == 200
    monkeypatch.setattr(routes_attention, "MAX_SVG_CELLS", cells)
    assert client.post("/v1/attention", json={"text": text, "format": "svg"}).status_code == 200


def test_models_lists_versions_scores_and_default(client: TestClient) -> None:
    models = client.get("/v1/models").json()["models"]
    assert [(m["name"], m["version"], m["default"]) for m in models] == [
        ("en-de", "1", True),
        ("de-en", "1", False),
    ]
    assert models[0]["evaluation"] == {"fp32": {"everyday": {"bleu": 12.5, "chrf": 40.0}}}
    assert models[0]["quantization"] == "none" and models[0]["providers"]
    # the limit a request meets (TRANSLATOR_MAX_SOURCE_TOKENS), and apart from it what the model was trained on
    assert (models[0]["max_source_tokens"], models[0]["trained_max_source_tokens"]) == (256, 64)


def test_libretranslate_form_json_and_lists(client: TestClient) -> None:
    form = client.post("/translate", data={"q": "good morning", "source": "en", "target": "de"})
    assert form.status_code == 200 and form.json() == {"translatedText": "good morning"}
    as_json = client.post(
        "/translate",
        json={"q": ["hello world", "good morning"], "source": "auto", "target": "de", "format": "text"},
    )
    assert as_json.json() == {"translatedText": ["hello world", "good morning"]}
    repeated = client.post("/translate", data={"q": ["hello world", "good morning"], "target": "de"})
    assert repeated.json() == {"translatedText": ["hello world", "good morning"]}


def test_alternatives_are_other_translations_the_beam_finished(make_client: ClientFactory) -> None:
    client = make_client(max_rows_per_request=12)
    texts = ["the house is small", "hello world\ngood morning"]
    answer = client.post("/v1/translate", json={"texts": texts, "alternatives": 2})
    assert answer.status_code == 200, answer.text
    for text, translation in zip(texts, answer.json()["translations"], strict=True):
        assert translation["text"] == text  # the echo model's best is the copy
        others = translation["alternatives"]
        assert 1 <= len(others) <= 2 and len(set(others)) == len(others) and text not in others
        if "\n" in text:  # a sentence's alternative in its place, the other sentence as translated
            assert all(other.count("\n") == 1 for other in others)
    # the beam is widened to alternatives + 1 rows a sentence: 3 sentences x 4 rows fit 12, 4 do not
    assert client.post("/v1/translate", json={"texts": texts, "alternatives": 3}).status_code == 200
    refused = client.post("/v1/translate", json={"texts": [*texts, "big"], "alternatives": 3, "beam_size": 2})
    message = assert_error(refused, 413, "too_large")["error"]["message"]
    assert "a beam of 4 (for 3 alternatives) need 16 decoder rows" in message and "fewer alternatives" in message
    # none unless asked for
    assert client.post("/v1/translate", json={"text": "hello world"}).json()["translations"][0]["alternatives"] == []
    for wrong in (8, -1, True, "2", 1.5):
        assert_error(client.post("/v1/translate", json={"text": "hello", "alternatives": wrong}), 422,
                     "invalid_request")


def test_libretranslate_alternatives_as_libretranslate_gives_them(client: TestClient) -> None:
    one = client.post("/translate", json={"q": "the house is small", "target": "de", "alternatives": 2}).json()
    assert one["translatedText"] == "the house is small" and 1 <= len(one["alternatives"]) <= 2
    listed = client.post("/translate", data={"q": ["hello world", "good morning"], "target": "de",
                                             "alternatives": "1"}).json()  # a form sends digits
    assert [len(others) for others in listed["alternatives"]] == [1, 1]
    html = client.post("/translate", json={"q": "<b>big</b>", "target": "de", "format": "html", "alternatives": 2})
    assert html.json() == {"translatedText": "<b>big</b>", "alternatives": []}  # none for markup
    assert "alternatives" not in client.post("/translate", json={"q": "big", "target": "de"}).json()
    for wrong in ("two", "8", True):
        response = client.post("/translate", json={"q": "big", "target": "de", "alternatives": wrong})
        assert_error(response, 422, "invalid_request")
    assert_error(client.post("/translate", data={"q": "big", "target": "de", "alternatives": "-1"}), 422,
                 "invalid_request")


def _finished_sentences(client: TestClient) -> float:
    """Sentences the engine decoded (the decode phase's histogram count)."""
    line = next(line for line in client.get("/metrics").text.splitlines()
                if line.startswith("translator_decode_seconds_count"))
    return float(line.split()[-1])


def _cache_lookups(client: TestClient) -> dict[str, float]:
    lines = client.get("/metrics").text.splitlines()
    return {result: float(next(line for line in lines if line.startswith(
        f'translator_cache_lookups_total{{result="{result}"}}')).split()[-1]) for result in ("hit", "miss")}


def test_a_sentence_asked_again_comes_from_the_cache(make_client: ClientFactory) -> None:
    client = make_client(cache_mb=1)
    model = client.app.state.service.registry.default.model  # type: ignore[attr-defined]
    body = {"texts": ["the house is small", "hello world\ngood morning"], "keep": ["world"]}
    first = client.post("/v1/translate", json=body).json()
    steps = model.steps
    again = client.post("/v1/translate", json={**body, "texts": body["texts"][::-1]}).json()
    assert model.steps == steps  # no decoder step: all three sentences were kept
    assert again["translations"][::-1] == first["translations"]
    assert _cache_lookups(client) == {"hit": 3, "miss": 3}
    # a glossary translates the kept text its own way from the same cached result
    glossary = client.post("/v1/translate", json={"text": "hello world", "glossary": {"world": "Welt"}}).json()
    assert glossary["translations"][0]["text"] == "hello Welt" and model.steps == steps
    # what decides the result is in the key: another beam is decoded, and so is attention asked for
    client.post("/v1/translate", json={"text": "the house is small", "beam_size": 2})
    assert model.steps > steps
    attention = client.post("/v1/attention", json={"text": "the house is small"}).json()
    assert attention["translation"] == "the house is small"
    assert len(attention["weights"]) == len(attention["target_tokens"])
    # off: every sentence is decoded
    plain = make_client(cache_mb=0)
    plain_model = plain.app.state.service.registry.default.model  # type: ignore[attr-defined]
    for _ in range(2):
        before = plain_model.steps
        plain.post("/v1/translate", json={"text": "the house is small"})
        assert plain_model.steps > before
    assert _cache_lookups(plain) == {"hit": 0, "miss": 2}
    # a sentence repeated within a request is decoded once, cache or not
    finished = _finished_sentences(plain)
    repeated = plain.post("/v1/translate", json={"texts": ["hello world\nhello world", "hello world", "good morning"]})
    assert [t["text"] for t in repeated.json()["translations"]] == ["hello world\nhello world", "hello world",
                                                                   "good morning"]
    assert _finished_sentences(plain) - finished == 2



@pytest.mark.parametrize(("cache_mb", "decoded"), [(1, 1), (0, 2)])
def test_equal_requests_at_once_are_decoded_once(make_client: ClientFactory, cache_mb: int, decoded: int) -> None:
    """A sentence in the engine for one request answers the same sentence asked meanwhile by another
    (the cache's flights), so a burst of one text costs one decode; with the cache off, two."""
    client = make_client(step_delay_s=0.05, cache_mb=cache_mb)
    model = client.app.state.service.registry.default.model  # type: ignore[attr-defined]
    finished, steps = _finished_sentences(client), model.steps
    body = {"text": "the house is small"}
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(client.post, "/v1/translate", json=body)
        deadline = time.monotonic() + 10
        while model.steps == steps and time.monotonic() < deadline:  # until the first is in the engine
            time.sleep(0.002)
        second = client.post("/v1/translate", json=body)
        answer = first.result()
    assert second.status_code == answer.status_code == 200
    assert second.json() == answer.json()
    assert _finished_sentences(client) - finished == decoded
    lines = client.get("/metrics").text.splitlines()
    shared = next(line for line in lines if line.startswith('translator_cache_lookups_total{result="shared"}'))
    assert float(shared.split()[-1]) == 2 - decoded


def _html_runs(client: TestClient) -> dict[str, float]:
    lines = client.get("/metrics").text.splitlines()
    return {markup: float(next(line for line in lines if line.startswith(
        f'translator_html_runs_total{{markup="{markup}"}}')).split()[-1]) for markup in ("carried", "node_by_node")}


def test_libretranslate_html_carries_inline_markup(make_client: ClientFactory) -> None:
    """A sentence running through inline elements is one text to the model and its elements are put
    back around the words its attention aligns (the echo model: each word to itself), an empty one
    before the word after it; one holding punctuation alone cannot be placed, and that run is
    translated node by node; a model without attention translates every run node by node."""
    client = make_client()
    fragment = ('<p>the <b>house</b> is <a href="/s">small</a></p><p>hello <i class="icon"> </i> world</p>'
                "<p>hello<b>,</b> world</p>")
    response = client.post("/translate", json={"q": fragment, "target": "de", "format": "html"})
    assert response.status_code == 200, response.text
    assert response.json() == {"translatedText": fragment.replace('<i class="icon"> </i> ', '<i class="icon"></i>')}
    assert _html_runs(client) == {"carried": 2, "node_by_node": 1}
    plain = client.post("/translate", json={"q": "hallo <b>welt</b> guten morgen", "source": "de", "target": "en",
                                            "format": "html"})
    assert plain.json() == {"translatedText": "hallo <b>welt</b> guten morgen"}
    assert _html_runs(client) == {"carried": 2, "node_by_node": 1}  # no attention: no run counted
    # inline code inside a sentence: copied as written where the model copies its text
    code = client.post("/translate", json={"q": '<p>the <code class="c">house&lt;1&gt;</code> is <b>small</b></p>',
                                           "target": "de", "format": "html"})
    assert code.json() == {"translatedText": '<p>the <code class="c">house&lt;1&gt;</code> is <b>small</b></p>'}
    assert _html_runs(client) == {"carried": 3, "node_by_node": 1}
    # a sentence too long as one text is translated as its text nodes, which fit; one that does not
    # is refused by the name of the text the client sent
    small = make_client(max_source_tokens=6)
    long_run = small.post("/translate", json={"q": ["big", "<p>the <b>house</b> is big big</p>"],
                                              "target": "de", "format": "html"})
    assert long_run.json() == {"translatedText": ["big", "<p>the <b>house</b> is big big</p>"]}
    assert _html_runs(small) == {"carried": 0, "node_by_node": 1}
    # translated node by node after all, the nodes are more rows than the run was: in parts, not refused
    few_rows = make_client(max_rows_per_request=4)
    fragment = "<p>Hello. Good morning. The house<b>,</b> big.</p>"
    answer = few_rows.post("/translate", json={"q": fragment, "target": "de", "format": "html"})
    assert answer.json() == {"translatedText": fragment} and _html_runs(few_rows) == {"carried": 0, "node_by_node": 1}
    too_long = small.post("/translate", json={"q": ["big", "<p>the <b>house</b> is big big big big big big</p>"],
                                              "target": "de", "format": "html"})
    message = assert_error(too_long, 413, "too_large")["error"]["message"]
    assert message.startswith("text 1's text node 2 is "), message

def test_libretranslate_html_keeps_the_markup(make_client: ClientFactory) -> None:
    """format html: every text node translated on its own (the echo model echoes), tags, attributes
    and code untouched; the limits on texts apply to the fragments as sent, not to their nodes, and a
    refusal names the fragment (a node's own index meant nothing to the client)."""
    client = make_client(max_texts_per_request=2, max_source_tokens=12)
    long_node = client.post("/translate", json={"q": ["<b>big</b>", "<p>hello</p><p>" + "big " * 20 + "</p>"],
                                                "target": "de", "format": "html"})
    message = assert_error(long_node, 413, "too_large")["error"]["message"]
    assert message.startswith("text 1's text node 1 is "), message
    fragment = ('<p title="x">hello world <b>big</b></p><code>the house</code>'
                "<ul>" + "<li>good morning</li>" * 5 + "</ul>")
    response = client.post("/translate", json={"q": fragment, "target": "de", "format": "html"})
    assert response.status_code == 200, response.text
    assert response.json() == {"translatedText": fragment}
    both = client.post("/translate", data={"q": ["<i>big</i>", "the house"], "target": "de", "format": "html"})
    assert both.json() == {"translatedText": ["<i>big</i>", "the house"]}
    assert_error(client.post("/translate", json={"q": ["<i>big</i>"] * 3, "target": "de", "format": "html"}),
                 413, "too_large")


def test_libretranslate_form_encodings(client: TestClient) -> None:
    """Percent-encoded UTF-8 and '+' read as LibreTranslate's clients send them; multipart too, but
    a file is not a text; bytes that are not UTF-8 are refused in words, not translated without them
    (Starlette's form parser had made them U+FFFD and the answer was 200)."""
    encoded = client.post("/translate", content=b"q=hello%20world&q=good+morning&target=%64e",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert encoded.json() == {"translatedText": ["hello world", "good morning"]}
    multipart = client.post("/translate", data={"q": ["hello world", "good morning"], "target": "de"},
                            files={"unused": ("", b"")})
    assert multipart.json() == {"translatedText": ["hello world", "good morning"]}
    a_file = client.post("/translate", data={"target": "de"}, files={"q": ("q.txt", b"hello")})
    assert "field 'q' must be text" in assert_error(a_file, 422, "invalid_request")["error"]["message"]
    for body, said in ((b"q=hallo%FFworld&target=de", "percent-encoded byte 0xff"),
                       (b"q=hallo\xffworld&target=de", "byte 0xff at position 7")):
        response = client.post("/translate", content=body,
                               headers={"content-type": "application/x-www-form-urlencoded"})
        message = assert_error(response, 422, "invalid_request")["error"]["message"]
        assert "not valid UTF-8" in message and said in message, message
    too_many = client.post("/translate", content=b"&".join([b"q=a"] * 1001) + b"&target=de",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert "more than 1000 fields" in assert_error(too_many, 422, "invalid_request")["error"]["message"]
    # multipart too: cp1252 quotes were read as latin-1, C1 controls in the translation
    multipart = (b'--xyz\r\nContent-Disposition: form-data; name="q"\r\n\r\n\x93hello\x94 world\r\n'
                 b'--xyz\r\nContent-Disposition: form-data; name="target"\r\n\r\nde\r\n--xyz--\r\n')
    response = client.post("/translate", content=multipart,
                           headers={"content-type": "multipart/form-data; boundary=xyz"})
    message = assert_error(response, 422, "invalid_request")["error"]["message"]
    assert "not valid UTF-8: byte 0x93" in message, message
    unsupported = client.post("/translate", content=b"q=hi", headers={"content-type": "text/plain"})
    assert "multipart/form-data" in assert_error(unsupported, 415, "unsupported_media_type")["error"]["message"]


def test_a_texts_own_leading_and_trailing_whitespace_is_kept(client: TestClient) -> None:
    texts = ["  hello world\n", "good morning\n\nthe house is big\n\n", "\tbig"]
    response = client.post("/v1/translate", json={"texts": texts})
    assert [t["text"] for t in response.json()["translations"]] == texts  # the echo model's translations
    libre = client.post("/translate", json={"q": "hello world\n", "target": "de"})
    assert libre.json() == {"translatedText": "hello world\n"}


def test_the_layout_between_sentences_and_lines_comes_back_as_sent(client: TestClient) -> None:
    """Line endings (CRLF, CR, form feed, U+2028), indentation and blank lines between a text's lines
    come back as they were; a line of invisible characters keeps its place; within a sentence, any
    whitespace is a word break (a vertical tab or U+001F glued words together when it was dropped)."""
    texts = ["hello world\r\n  good morning\r\n\r\nthe house is big",
             "hello world\fgood morning\u2028the house is big\rhello world",
             "hello world\n\u200b\ngood morning", "hello\x1fworld\x0bgood\u00a0morning"]
    response = client.post("/v1/translate", json={"texts": texts})
    assert [t["text"] for t in response.json()["translations"]] == [
        *texts[:2], "hello world\n\ngood morning", "hello world\x0bgood morning"]  # the echo model's


def test_invisible_and_c1_control_characters_are_dropped(client: TestClient) -> None:
    clean = client.post("/v1/translate", json={"text": "hello world"}).json()["translations"]
    for dirty in ("hel\u0093lo wor\u009fld", "hel\u00adlo\u200e world\ufeff"):
        assert client.post("/v1/translate", json={"text": dirty}).json()["translations"] == clean, dirty
    # decomposed characters are composed (NFC), as the training corpus is
    composed = client.post("/v1/translate", json={"text": "gross \u00fc"}).json()["translations"]
    assert client.post("/v1/translate", json={"text": "gross u\u0308"}).json()["translations"] == composed


def test_languages_in_libretranslate_form(client: TestClient) -> None:
    assert client.get("/languages").json() == [
        {"code": "en", "name": "English", "targets": ["de"]},
        {"code": "de", "name": "German", "targets": ["en"]},
    ]


def test_health_ready_and_page(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    # Every GET route answers HEAD (load balancers and uptime monitors probe with it): the status and
    # headers, no body.
    for path in ("/healthz", "/readyz", "/", "/metrics", "/v1/models", "/languages", "/openapi.json"):
        get, head = client.get(path), client.head(path)
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-type"] == get.headers["content-type"], path
    assert_error(client.post("/v1/translate", content=b"\x1f\x8b", headers={
        "content-type": "application/json", "content-encoding": "gzip"}), 415, "unsupported_media_type")
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in re.findall(r'(?:href|src)="/?(static/[^"]+)"', page.text):  # the page's own files
        assert client.get("/" + asset).status_code == 200, asset
    assert_error(client.get("/static/no-such-file.js"), 404, "not_found")


def server_timing(response) -> dict[str, float]:  # type: ignore[no-untyped-def]
    phases = {}
    for metric in response.headers["server-timing"].split(","):
        name, _, duration = metric.strip().partition(";dur=")
        phases[name] = float(duration)
    return phases


def test_server_timing_says_where_the_engine_spent_the_slowest_sentence(make_client: ClientFactory) -> None:
    client = make_client(step_delay_s=0.01)
    short = client.post("/v1/translate", json={"text": "hello"})
    phases = server_timing(short)
    assert set(phases) == {"queue", "encode", "decode"} and min(phases.values()) >= 0
    assert phases["decode"] >= 2 * 10  # "hello" + eos: at least two decoder steps of 10 ms
    # a text of two sentences: the timing is the longer one's (it ended last)
    longer = client.post("/v1/translate", json={"text": "hello. The house is very big and old today."})
    assert server_timing(longer)["decode"] >= 10 * 10
    assert server_timing(client.post("/v1/attention", json={"text": "hello world"}))["decode"] >= 3 * 10
    assert "server-timing" in client.post("/translate", json={"q": "hello", "source": "en", "target": "de"}).headers
    assert "server-timing" not in client.get("/healthz").headers
    assert "server-timing" not in client.post("/v1/translate", json={"text": ""}).headers  # refused: no engine time


def test_on_started_runs_once_the_models_are_loaded_before_ready(fake_store: Path) -> None:
    seen: list[tuple[bool, list[str]]] = []

    def on_started() -> None:
        state = app.state.service
        seen.append((state.ready, [f"{m.name}@{m.version}" for m in state.registry.models]))

    app = create_app(Settings(model_store=fake_store, models="en-de@1,de-en"), model_loader=echo_loader(),
                     on_started=on_started)
    with TestClient(app) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
    assert seen == [(False, ["en-de@1", "de-en@1"])]


# ---- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": ""},
        {"text": "   \n\t"},
        {"texts": []},
        {"texts": ["fine", " "]},
        {"text": 42},
        {"text": ["a list"]},
        {"text": "a", "texts": ["b"]},
        {"text": "a", "beam_size": 0},
        {"text": "a", "beam_size": 9},
        {"text": "a", "beam_size": 10**40},
        {"text": "a", "beam_size": "three"},
        {"text": "a", "beam_size": "2"},
        {"text": "a", "beam_size": True},
        {"text": "a", "beam_size": 2.5},
        {"text": "a", "max_length": 0},
        {"text": "a", "source": "english"},
        {"text": "a", "unknown_field": 1},
        [1, 2, 3],
    ],
)
def test_invalid_bodies_are_422(client: TestClient, body: object) -> None:
    assert_error(client.post("/v1/translate", json=body), 422, "invalid_request")


@pytest.mark.parametrize("text", [" ", "\t\n", "\u3000", "\u00a0 \u2028", "\ufeff"])
def test_whitespace_only_is_refused_in_words(client: TestClient, text: str) -> None:
    body = assert_error(client.post("/v1/translate", json={"text": text}), 422, "invalid_request")
    assert body["error"]["message"] == "text: must not be empty or only whitespace"


@pytest.mark.parametrize("text", ["\u0085", "\x1c\x1f"])
def test_what_the_schema_calls_text_is_accepted(client: TestClient, text: str) -> None:
    """JSON Schema's `pattern` is ECMAScript regex, whose `\\s` excludes U+0085 and U+001C-U+001F
    (Python's and Rust's include them): the server must accept what its documented schema allows."""
    assert client.post("/v1/translate", json={"text": text}).status_code == 200


def test_control_characters_are_dropped_before_translation(client: TestClient) -> None:
    clean = client.post("/v1/translate", json={"text": f"hello {NOT_IN_VOCAB}x world"}).json()
    dirty = client.post("/v1/translate", json={"text": f"hel\u0000lo {NOT_IN_VOCAB}\u0007x world\u007f"}).json()
    assert dirty["translations"] == clean["translations"]  # the copied <unk> word carries no NUL or BEL
    attention = client.post("/v1/attention", json={"text": "hello\u0000 world"}).json()
    assert attention == client.post("/v1/attention", json={"text": "hello world"}).json()


def test_text_with_nothing_translatable_translates_to_empty(client: TestClient) -> None:
    response = client.post("/v1/translate", json={"texts": ["\u0001\u0002", "hello world"]})
    assert response.status_code == 200
    assert [t["text"] for t in response.json()["translations"]] == ["", "hello world"]
    attention = client.post("/v1/attention", json={"text": "\u0001"}).json()
    assert (attention["translation"], attention["weights"], attention["alignment"]) == ("", [[1.0]], [])


def test_malformed_json_and_wrong_content_type_are_4xx(client: TestClient) -> None:
    bad_json = client.post("/v1/translate", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(bad_json, 422, "invalid_request")
    not_utf8 = client.post("/v1/translate", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert_error(not_utf8, 422, "invalid_request")
    assert_error(
        client.post("/translate", content=b"{oops", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )
    assert_error(
        client.post("/translate", content=b"q=hi", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert client.post("/v1/translate", content=b"text", headers={"content-type": "text/plain"}).status_code == 422
    # What Python's json module refuses beyond syntax: too deep a nesting, an integer over 4,300
    # digits, bytes that are not UTF-8; said in words on every route (FastAPI's own words were
    # "There was an error parsing the body").
    for body, said in ((b"[" * 5000 + b"]" * 5000, "nests too deeply"),
                       (b'{"q": "hi", "target": "de", "beam_size": 1' + b"0" * 5000 + b"}", "too many digits"),
                       (b'{"q": "hi\xff", "text": "hi\xff", "target": "de"}', "not valid UTF-8: byte 0xff at "
                                                                                   "position 9")):
        for path in ("/translate", "/v1/translate", "/v1/attention"):
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            message = assert_error(response, 422, "invalid_request")["error"]["message"]
            assert said in message, (path, message)


def test_what_is_wrong_with_the_body_as_a_whole_is_said_in_words(client: TestClient) -> None:
    def message(**kwargs: object) -> str:
        return assert_error(client.post("/v1/translate", **kwargs), 422, "invalid_request")["error"]["message"]

    assert message(content=b'{"text": }', headers={"content-type": "application/json"}).startswith(
        "the body is not valid JSON at character 9")
    assert message(content=b"hello", headers={"content-type": "text/plain"}) == (
        "the body must be a JSON object sent as content-type: application/json")
    assert message(content=b"").startswith("the body is empty")
    assert message(json={"text": "a", "texts": ["b"]}) == "give exactly one of 'text' or 'texts'"
    # A union's branches: the error of the branch the input matched, not the others' type mismatches.
    assert message(json={"texts": ["Hello", ""]}) == "texts.1: must not be empty or only whitespace"
    libre = client.post("/translate", json={"q": [], "target": "de"})
    libre_message = assert_error(libre, 422, "invalid_request")["error"]["message"]
    assert libre_message.startswith("q: List should have at least 1 item")
    # In a list of q, the item's error alone (not the string branch's "q: Input should be a valid string").
    listed = client.post("/translate", json={"q": ["Hello", 1], "target": "de"})
    assert assert_error(listed, 422, "invalid_request")["error"]["message"] == "q.1: Input should be a valid string"
    for body in ([], "hello", 1):  # the same words on both routes, no class names
        for path in ("/translate", "/v1/translate"):
            said = assert_error(client.post(path, json=body), 422, "invalid_request")["error"]["message"]
            assert said.startswith("the body must be a JSON object"), (path, said)
    # The configured limit (TRANSLATOR_MAX_OUTPUT_TOKENS, 256 by default), whatever the value.
    for max_length in (257, 1025, 10**30):
        too_long = client.post("/v1/translate", json={"text": "hello", "max_length": max_length})
        assert assert_error(too_long, 422, "invalid_request")["error"]["message"] == "max_length must be at most 256"


def test_libretranslate_form_fields_other_than_q_may_not_repeat(client: TestClient) -> None:
    repeated = client.post("/translate", data={"q": "hello", "target": ["de", "fr"]})
    assert "'target' is given 2 times" in assert_error(repeated, 422, "invalid_request")["error"]["message"]
    key_twice = client.post("/translate", data={"q": "hello", "target": "de", "api_key": ["k", "k"]})
    assert "'api_key' is given 2 times" in assert_error(key_twice, 422, "invalid_request")["error"]["message"]


def test_unknown_language_pair_and_libre_format(client: TestClient) -> None:
    assert_error(client.post("/v1/translate", json={"text": "a", "target": "fr"}), 422, "unsupported_language_pair")
    assert_error(client.post("/translate", json={"q": "a", "target": "fr"}), 422, "unsupported_language_pair")
    assert_error(client.post("/translate", json={"q": "a", "target": "de", "format": "xml"}), 422, "invalid_request")
    assert_error(client.post("/v1/attention", json={"text": "hallo", "source": "de"}), 422, "attention_unavailable")


def test_not_found_and_method_not_allowed_have_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/no/such/route"), 404, "not_found")
    assert_error(client.get("/v1/translate"), 405, "method_not_allowed")
    assert_error(client.delete("/v1/models"), 405, "method_not_allowed")


def test_limits_are_413(make_client: ClientFactory) -> None:
    client = make_client(max_text_chars=20, max_texts_per_request=2, max_source_tokens=6, max_body_bytes=2048)
    assert_error(client.post("/v1/translate", json={"text": "x" * 21}), 413, "too_large")
    assert_error(client.post("/v1/translate", json={"texts": ["a", "b", "c"]}), 413, "too_large")
    assert_error(client.post("/v1/translate", json={"text": "one two three four five six"}), 413, "too_large")
    assert_error(client.post("/v1/translate", json={"text": "a" * 3000}), 413, "too_large")
    chunked = client.post(
        "/v1/translate",
        content=iter([b'{"text": "', b"a" * 3000, b'"}']),
        headers={"content-type": "application/json"},
    )
    assert_error(chunked, 413, "too_large")


def test_api_keys(make_client: ClientFactory) -> None:
    client = make_client(api_keys="k1,k2")
    assert_error(client.post("/v1/translate", json={"text": "hello world"}), 401, "unauthorized")
    wrong = client.post("/v1/translate", json={"text": "hello world"}, headers={"Authorization": "Bearer nope"})
    assert_error(wrong, 401, "unauthorized")
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/translate", json={"text": "hi"}, headers={"Authorization": "Bearer k2"}).status_code == 200
    assert client.post("/v1/attention", json={"text": "hi"}, headers={"X-API-Key": "k1"}).status_code == 200
    assert_error(client.post("/translate", data={"q": "hi", "target": "de"}), 401, "unauthorized")
    assert client.post("/translate", data={"q": "hi", "target": "de", "api_key": "k1"}).status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
    # A non-ASCII key works in a header (sent as UTF-8; Starlette reads header bytes as latin-1) as in a body.
    accented = make_client(api_keys="k\u00e9y")
    for headers in ({"X-API-Key": "k\u00e9y".encode()}, {"Authorization": "Bearer k\u00e9y".encode()}):
        assert accented.post("/v1/translate", json={"text": "hi"}, headers=headers).status_code == 200, headers
    assert accented.post("/translate", json={"q": "hi", "target": "de", "api_key": "k\u00e9y"}).status_code == 200


def test_admin_is_disabled_without_keys(client: TestClient) -> None:
    assert_error(client.post("/v1/admin/reload", json={"name": "en-de"}), 403, "admin_disabled")


def test_reload_swaps_and_keeps_the_old_version_on_failure(make_client: ClientFactory) -> None:
    client = make_client(api_keys="admin")
    auth = {"Authorization": "Bearer admin"}
    assert_error(client.post("/v1/admin/reload", json={"name": "en-de", "version": "2"}), 401, "unauthorized")
    swapped = client.post("/v1/admin/reload", json={"name": "en-de", "version": "2"}, headers=auth)
    assert swapped.status_code == 200, swapped.text
    assert swapped.json() == {
        "model": {"name": "en-de", "version": "2"},
        "previous": {"name": "en-de", "version": "1"},
    }
    broken = client.post("/v1/admin/reload", json={"name": "en-de", "version": "3"}, headers=auth)
    body = assert_error(broken, 409, "reload_failed")
    assert "encoder.onnx" in body["error"]["message"]
    assert_error(
        client.post("/v1/admin/reload", json={"name": "en-de", "version": "9"}, headers=auth),
        404,
        "model_not_found",
    )
    translated = client.post("/v1/translate", json={"text": "hello world"}, headers=auth)
    assert translated.json()["model"] == {"name": "en-de", "version": "2"}
    metrics = client.get("/metrics").text
    assert "translator_model_load_failures_total 2.0" in metrics
    assert 'translator_model_info{name="en-de",provider="cpu",variant="fp32",version="2"} 1.0' in metrics
    assert 'translator_model_info{name="en-de",provider="cpu",variant="fp32",version="1"}' not in metrics


def test_an_artifact_copied_to_another_version_is_refused(fake_store: Path, tmp_path: Path,
                                                           make_client: ClientFactory) -> None:
    """en-de/1 copied to en-de/5 verifies (its files are intact) but would be served and reported as
    version 1 while the operator asked for 5."""
    store = tmp_path / "store"
    shutil.copytree(fake_store, store)
    shutil.copytree(store / "en-de" / "1", store / "en-de" / "5")
    client = make_client(model_store=store, api_keys="admin")
    refused = client.post("/v1/admin/reload", json={"name": "en-de", "version": "5"},
                          headers={"Authorization": "Bearer admin"})
    message = assert_error(refused, 409, "reload_failed")["error"]["message"]
    assert "its manifest says en-de version 1" in message, message


def test_reload_under_traffic_drops_no_request(make_client: ClientFactory) -> None:
    client = make_client(step_delay_s=0.005, api_keys="admin")
    auth = {"Authorization": "Bearer admin"}
    statuses: list[int] = []
    versions: set[str] = set()

    def traffic() -> None:
        for _ in range(15):
            response = client.post("/v1/translate", json={"texts": ["hello world", "good morning"]}, headers=auth)
            statuses.append(response.status_code)
            if response.status_code == 200:
                versions.add(response.json()["model"]["version"])

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    swapped = client.post("/v1/admin/reload", json={"name": "en-de", "version": "2"}, headers=auth)
    for thread in threads:
        thread.join()
    assert swapped.status_code == 200, swapped.text
    assert statuses == [200] * 60
    assert versions == {"1", "2"}


def test_queue_full_is_429_with_retry_after(make_client: ClientFactory) -> None:
    client = make_client(step_delay_s=0.05, max_queue_requests=2, max_batch_rows=1)
    scheduler = client.app.state.service.registry.default.scheduler  # type: ignore[attr-defined]
    earlier: list = []
    senders = [threading.Thread(target=lambda: earlier.append(client.post(
        "/v1/translate", json={"text": "one two three four five six seven eight nine ten"}))) for _ in range(3)]
    # One at a time, each seen by the engine before the next: the first decodes (the one row, ~0.6 s),
    # the other two wait and fill the queue.
    for sender, engine_holds in zip(senders, ((0, 1), (1, 1), (2, 1)), strict=True):
        sender.start()
        deadline = time.monotonic() + 10
        while (scheduler.snapshot().queue_depth, scheduler.snapshot().active_requests) != engine_holds:
            assert time.monotonic() < deadline, (scheduler.snapshot(), engine_holds)
            time.sleep(0.002)
    response = client.post("/v1/translate", json={"text": "big"})
    for sender in senders:
        sender.join()
    assert_error(response, 429, "overloaded")
    assert int(response.headers["retry-after"]) >= 1
    assert [answer.status_code for answer in earlier] == [200, 200, 200]  # the earlier requests are not hurt


def test_deadline_is_504(make_client: ClientFactory) -> None:
    client = make_client(step_delay_s=0.2, request_timeout_s=0.1)
    assert_error(client.post("/v1/translate", json={"text": "the house is small"}), 504, "deadline_exceeded")


def test_a_model_failure_fails_that_request_only(client: TestClient) -> None:
    client.app.state.service.registry.default.model.fail_next_steps = 1  # type: ignore[attr-defined]
    body = assert_error(client.post("/v1/translate", json={"text": "hello world"}), 500, "inference_failed")
    assert "the model failed" in body["error"]["message"]
    assert client.post("/v1/translate", json={"text": "hello world"}).status_code == 200
    assert 'translator_requests_rejected_total{reason="failed"} 1.0' in client.get("/metrics").text


def test_draining_refuses_work_and_fails_readiness(client: TestClient) -> None:
    client.app.state.service.begin_drain()  # type: ignore[attr-defined]
    assert_error(client.get("/readyz"), 503, "draining")
    assert_error(client.post("/v1/translate", json={"text": "hello"}), 503, "draining")
    assert_error(client.post("/translate", json={"q": "hello", "target": "de"}), 503, "draining")
    assert client.get("/healthz").status_code == 200
    assert "translator_ready 0.0" in client.get("/metrics").text


# ---- observability ------------------------------------------------------------------------------


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = [client.get("/healthz").headers["x-request-id"] for _ in range(3)]
    assert len(set(made)) == 3  # unique
    assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", request_id) for request_id in made), made
    hostile = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"}).headers["x-request-id"]
    assert hostile != "bad id <script>" and re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", hostile)


def test_metrics_after_traffic_use_route_templates(client: TestClient) -> None:
    client.post("/v1/translate", json={"text": "hello world"})
    client.post("/v1/translate", json={"text": ""})
    client.get("/static/../../etc/passwd")
    client.post("/v1/translate", content=b"x" * 300_000, headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    assert 'translator_http_requests_total{method="POST",route="/v1/translate",status="200"} 1.0' in text
    # refused at the edge, before routing: still its route, not "unmatched" like a 404
    assert 'translator_http_requests_total{method="POST",route="/v1/translate",status="413"} 1.0' in text
    assert 'translator_requests_rejected_total{reason="invalid"} 1.0' in text
    assert "passwd" not in text
    for name in (
        "translator_queue_wait_seconds",
        "translator_encode_seconds",
        "translator_decode_seconds",
        "translator_encoder_calls_total",
        "translator_batch_rows",
        "translator_decoder_steps_total",
        "translator_generated_tokens_total",
        "translator_ready 1.0",
    ):
        assert name in text


def test_request_text_stays_out_of_logs_unless_asked(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "where is the station"
    with caplog.at_level(logging.INFO):
        make_client().post("/v1/translate", json={"text": secret})
    assert caplog.records and all(secret not in json.dumps(vars(r), default=str) for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        make_client(log_request_text=True).post("/v1/translate", json={"text": secret})
    assert any(secret in json.dumps(vars(r), default=str) for r in caplog.records)


def test_openapi_documents_errors_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    translate = spec["paths"]["/v1/translate"]["post"]["responses"]
    assert {"200", "401", "413", "422", "429", "503", "504"} <= set(translate)
    assert "examples" in translate["429"]["content"]["application/json"]
    assert "Retry-After" in translate["429"]["headers"]
    assert {"422"} <= set(spec["paths"]["/v1/attention"]["post"]["responses"])
    assert {"401", "403", "409"} <= set(spec["paths"]["/v1/admin/reload"]["post"]["responses"])
    libre_body = spec["paths"]["/translate"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(libre_body)


# ---- disconnect -----------------------------------------------------------------------------------


class _DisconnectingRequest:
    def __init__(self, after_s: float) -> None:
        self.after_s = after_s

    async def receive(self) -> dict[str, str]:
        await asyncio.sleep(self.after_s)
        return {"type": "http.disconnect"}


def test_a_disconnect_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def forever() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async def scenario() -> None:
        with pytest.raises(ClientDisconnected):
            await cancel_on_disconnect(_DisconnectingRequest(0.01), forever())  # type: ignore[arg-type]
        assert cancelled.is_set()
        assert await cancel_on_disconnect(_DisconnectingRequest(5), asyncio.sleep(0, "done")) == "done"  # type: ignore[arg-type]

    asyncio.run(scenario())
