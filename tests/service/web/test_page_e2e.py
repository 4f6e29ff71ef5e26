"""End-to-end: the page at `/` in a real headless Chromium against a real server process serving the tiny
number model. What the page shows is checked against the API's own answer to the same request."""

from __future__ import annotations

import itertools
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

SENTENCE = "three hundred and forty-two"
# Long enough to need sideways scrolling at 1200 px, short enough for the artifact's 64 source tokens.
LONG_SENTENCE = (
    "one thousand nine hundred and ninety-eight, one thousand seven hundred and seventy-three, "
    "eight hundred and fifty-six, six hundred and forty-one"
)
SVG = "{http://www.w3.org/2000/svg}"
README_SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "screenshots" / "attention.png"


def api_attention(base_url: str, text: str, beam_size: int = 1, **extra: Any) -> httpx.Response:
    body = {"text": text, "source": "en", "target": "de", "beam_size": beam_size, **extra}
    return httpx.post(f"{base_url}/v1/attention", json=body, timeout=60.0)


def open_page(page: Any) -> None:
    page.goto("/")
    # The pair select is filled from GET /v1/models; translating before that would use the default.
    expect(page.get_by_label("Language pair")).to_have_value("en:de")


def translate(page: Any, text: str, beam_size: int = 1) -> dict[str, Any]:
    """Type, choose the beam, click Translate; returns the JSON body the page sent."""
    page.get_by_label("Text to translate").fill(text)
    page.get_by_label("Beam size").select_option(str(beam_size))
    with page.expect_request("**/v1/attention") as sent:
        page.get_by_role("button", name="Translate").click()
    expect(page.locator("body")).to_have_attribute("data-state", "done")
    return sent.value.post_data_json


def weights_at_least(weights: list[list[float]], minimum: float) -> int:
    return sum(weight >= minimum for row in weights for weight in row)


def save_screenshot(page: Any, directory: Path, name: str) -> Path:
    path = directory / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_translate_shows_the_translation_heatmap_and_alignment(page: Any, live_server: str, artifact_dir: Path) -> None:
    open_page(page)
    sent = translate(page, SENTENCE)
    assert sent == {"text": SENTENCE, "beam_size": 1, "source": "en", "target": "de"}
    expected = api_attention(live_server, SENTENCE).json()
    rows, columns = len(expected["target_tokens"]), len(expected["source_tokens"])
    assert rows >= 2 and columns >= 2

    expect(page.locator("#translation")).to_have_text(expected["translation"])
    expect(page.locator("#translation")).not_to_be_empty()

    # Heatmap: one cell per (target, source) pair, the same weights as the API.
    expect(page.locator("#heatmap td.cell")).to_have_count(rows * columns)
    expect(page.locator("#heatmap th.row-label")).to_have_count(rows)
    expect(page.locator("#heatmap th.col-label")).to_have_count(columns)
    shown = page.eval_on_selector_all(
        "#heatmap td.cell", "cells => cells.map(c => [+c.dataset.t, +c.dataset.s, +c.dataset.weight])"
    )
    for t, s, weight in shown:
        assert weight == pytest.approx(expected["weights"][t][s], abs=1e-6)
    strongest = max(range(columns), key=lambda s: expected["weights"][0][s])
    cell = page.locator(f'#heatmap td.cell[data-t="0"][data-s="{strongest}"]')
    assert f"{expected['weights'][0][strongest]:.3f}" in (cell.get_attribute("title") or "")
    cell.hover()
    expect(page.locator("#heatmap-readout")).to_contain_text(f"{expected['weights'][0][strongest]:.3f}")

    # Alignment: one line per weight above the drawing threshold, thicker for heavier weights.
    alignment = page.locator("#alignment")
    minimum = float(alignment.get_attribute("data-min-weight") or "nan")
    expect(alignment.locator("line")).to_have_count(weights_at_least(expected["weights"], minimum))
    assert weights_at_least(expected["weights"], minimum) >= rows  # every row sums to 1
    expect(alignment.locator('.token[data-side="source"]')).to_have_count(columns)
    expect(alignment.locator('.token[data-side="target"]')).to_have_count(rows)
    drawn = alignment.locator("line").evaluate_all(
        "lines => lines.map(l => [+l.dataset.t, +l.dataset.s, +l.getAttribute('stroke-width'),"
        " +l.getAttribute('stroke-opacity')])"
    )
    by_weight = sorted((expected["weights"][t][s], width, opacity) for t, s, width, opacity in drawn)
    for (light, thin, faint), (heavy, thick, strong) in itertools.pairwise(by_weight):
        if heavy - light > 1e-3:  # a heavier weight is never drawn thinner or fainter
            assert thick > thin and strong > faint, by_weight

    # Hovering a target word highlights exactly its lines.
    alignment.locator('.token[data-side="target"][data-index="0"]').hover()
    expect(alignment.locator("line.hl")).to_have_count(weights_at_least([expected["weights"][0]], minimum))
    expect(alignment.locator('line.hl:not([data-t="0"])')).to_have_count(0)
    expect(page.locator("#alignment-readout")).to_contain_text("Writing")
    # A click pins the highlight: it stays when the pointer moves away, and a second click frees it.
    first_target = alignment.locator('.token[data-side="target"][data-index="0"]')
    first_target.click()
    expect(first_target).to_have_attribute("aria-pressed", "true")
    page.get_by_role("heading", name="Alignment").hover()
    expect(alignment.locator("line.hl")).to_have_count(weights_at_least([expected["weights"][0]], minimum))
    save_screenshot(page, artifact_dir, "attention.png")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":  # refresh the README's picture on purpose only
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact_dir / "attention.png", README_SCREENSHOT)
    first_target.click()
    expect(first_target).to_have_attribute("aria-pressed", "false")
    page.get_by_role("heading", name="Alignment").hover()
    expect(alignment.locator("line.hl")).to_have_count(0)
    # Without a mouse: focus walks along a row with the arrow keys and highlights as it goes.
    first_target.focus()
    page.keyboard.press("ArrowRight")
    expect(alignment.locator('.token[data-side="target"][data-index="1"]')).to_be_focused()
    expect(alignment.locator("line.hl")).to_have_count(weights_at_least([expected["weights"][1]], minimum))
    expect(page.locator("#moses")).to_have_text(expected["moses"] or "(none)")

    assert page.foreign_requests == []  # no CDN, no fonts: the page works offline
    assert page.page_errors == []


def test_api_errors_are_shown_in_words_and_replace_stale_results(page: Any, live_server: str) -> None:
    open_page(page)
    translate(page, SENTENCE)
    expect(page.locator("#result")).to_be_visible()

    refused = api_attention(live_server, "")
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    page.get_by_label("Text to translate").fill("")
    page.get_by_role("button", name="Translate").click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("could not use this input")
    expect(alert).to_contain_text(message)
    expect(alert).to_contain_text("HTTP 422, invalid_request")
    expect(alert).to_contain_text("Type some text to translate")
    for section in ("#result", "#heatmap-section", "#alignment-section"):
        expect(page.locator(section)).to_be_hidden()

    translate(page, SENTENCE)
    expect(alert).to_be_hidden()
    expect(page.locator("#result")).to_be_visible()
    assert page.page_errors == []


def test_the_beam_size_choice_is_sent(page: Any, live_server: str) -> None:
    open_page(page)
    sent = translate(page, SENTENCE, beam_size=4)
    assert sent["beam_size"] == 4
    expected = api_attention(live_server, SENTENCE, beam_size=4).json()
    expect(page.locator("#translation")).to_have_text(expected["translation"])
    expect(page.locator("#model-info")).to_contain_text("beam search (4)")


def test_long_sentences_scroll_sideways_without_overlapping_labels(
    page: Any, live_server: str, artifact_dir: Path
) -> None:
    expected = api_attention(live_server, LONG_SENTENCE).json()
    assert len(expected["source_tokens"]) >= 30  # the sentence is long enough to matter
    open_page(page)
    translate(page, LONG_SENTENCE)
    expect(page.locator("#heatmap td.cell")).to_have_count(
        len(expected["target_tokens"]) * len(expected["source_tokens"])
    )
    for box in ("#alignment-scroll", "#heatmap-scroll"):
        overflow = page.locator(box).evaluate("el => [el.scrollWidth, el.clientWidth]")
        assert overflow[0] > overflow[1], f"{box} should scroll sideways: {overflow}"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # only the boxes scroll
    for side in ("source", "target"):
        boxes = page.locator(f'#alignment .token[data-side="{side}"] text').evaluate_all(
            "texts => texts.map(t => { const b = t.getBBox(); return [b.x, b.x + b.width]; })"
        )
        assert len(boxes) > 1
        for (_, right), (left, _) in itertools.pairwise(boxes):
            assert right <= left, f"{side} labels overlap: {boxes}"
    save_screenshot(page, artifact_dir, "attention-long.png")
    assert page.page_errors == []


def test_every_form_control_has_a_label(page: Any) -> None:
    open_page(page)
    unlabelled = page.eval_on_selector_all(
        "input, select, textarea, button",
        "els => els.filter(e => !(e.labels && e.labels.length) && !e.textContent.trim()).map(e => e.id)",
    )
    assert unlabelled == []
    expect(page.get_by_role("button", name="Translate")).to_be_enabled()


def test_the_svg_format_returns_the_same_heatmap_as_a_document(live_server: str) -> None:
    expected = api_attention(live_server, SENTENCE).json()
    response = api_attention(live_server, SENTENCE, format="svg")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{SVG}svg"
    cells = [rect for rect in root.iter(f"{SVG}rect") if rect.get("class") == "cell"]
    assert len(cells) == len(expected["target_tokens"]) * len(expected["source_tokens"])
