"""What a well-formed answer of the service looks like: each function returns why an answer is wrong,
or None. Shared by the Locust traffic and the benchmark client, so a wrong answer is a failure in both.

Stdlib only (the Locust process imports it).
"""

from __future__ import annotations

from typing import Any

ROW_SUM_TOLERANCE = 1e-3


def translation_problem(body: Any, texts: int) -> str | None:
    """Why a /v1/translate answer is wrong, or None if it is well formed."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), dict):
        return "no model object"
    translations = body.get("translations")
    if not isinstance(translations, list) or len(translations) != texts:
        return f"expected {texts} translations, got {translations!r:.100}"
    for item in translations:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            return f"empty or malformed translation {item!r:.100}"
    return None


def attention_problem(body: Any) -> str | None:
    """Why a /v1/attention answer is wrong: shapes must agree and every weight row sum to 1."""
    if not isinstance(body, dict):
        return "not a JSON object"
    if not isinstance(body.get("translation"), str) or not body["translation"].strip():
        return "empty translation"
    source, target, weights = body.get("source_tokens"), body.get("target_tokens"), body.get("weights")
    if not (isinstance(source, list) and isinstance(target, list) and isinstance(weights, list)):
        return "tokens or weights missing"
    if not source or not target or len(weights) != len(target):
        return f"{len(weights)} weight rows for {len(target)} target tokens"
    for row in weights:
        if not isinstance(row, list) or len(row) != len(source):
            return f"a weight row has {len(row) if isinstance(row, list) else '?'} columns, not {len(source)}"
        if abs(sum(row) - 1.0) > ROW_SUM_TOLERANCE:
            return f"a weight row sums to {sum(row):.4f}"
    alignment = body.get("alignment")
    if not isinstance(alignment, list) or not isinstance(body.get("moses"), str):
        return "alignment missing"
    for pair in alignment:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, int) and i >= 0 for i in pair)):
            return f"malformed alignment pair {pair!r:.50}"
        # Word indices: never more words than tokens on either side.
        if pair[0] >= len(source) or pair[1] >= len(target):
            return f"alignment pair {pair} outside {len(source)} x {len(target)} tokens"
    return None


def libre_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "not a JSON object"
    text = body.get("translatedText")
    return None if isinstance(text, str) and text.strip() else f"empty translatedText {text!r:.100}"
