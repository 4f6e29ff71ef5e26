"""What a well-formed answer of the service looks like: each function returns why an answer is wrong,
or None. Shared by the Locust traffic, the benchmark client and the overload test, so a wrong answer is a
failure in all of them: first its shape, then (ReferenceBook, below) whether it is the answer the same
server gave to the same text asked on its own.

Stdlib only (the Locust process imports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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


# ---- reference answers -------------------------------------------------------------------------------
# A well-formed answer can still be the wrong one: "falsch" for every text, or a batch's translations in
# another order. Every server under test first translates the run's sentences one request at a time; its
# answers under load are then compared with those, position by position in batch requests. The fp32
# answers of this service do not depend on what else is in the batch (checked under load), so any fp32
# answer that differs is an error; int8's may (dynamic quantization scales by the batch's values), so
# for int8 only the share that differs is reported.

# Fewer distinct answers than this share of the distinct sentences asked: the server is not translating.
MIN_DISTINCT_SHARE = 0.5


def reference_key(text: str, max_length: int | None = None) -> str:
    """What a reference answer is filed under: the text, and the max_length the request sent (a forced
    length changes the answer of an untrained stand-in; None: the model's own length)."""
    return text if max_length is None else f"{text}\x1f{max_length}"


def strict_for(variant: str | None) -> bool:
    """Whether an answer that differs from the server's sequential one is an error: yes for fp32 (and a
    variant nobody reported), no for int8, whose answers may change with the batch."""
    return variant != "int8"


def degenerate_references(sources: Sequence[str], answers: Sequence[str | None]) -> str | None:
    """Why a server's sequential answers cannot be a translation (a few answers for many different
    sentences, e.g. "falsch" for everything), or None."""
    distinct_sources = len(set(sources))
    distinct_answers = len({answer for answer in answers if answer is not None})
    if distinct_sources >= 2 and distinct_answers < MIN_DISTINCT_SHARE * distinct_sources:
        return (f"its sequential answers are degenerate: {distinct_answers} distinct translations for "
                f"{distinct_sources} distinct sentences")
    return None


def differing_positions(outputs: Sequence[str], expected: Sequence[str | None]) -> list[int]:
    """Positions whose answer differs from the reference for that position (None: no reference)."""
    return [i for i, (got, want) in enumerate(zip(outputs, expected, strict=True))
            if want is not None and got != want]


def mismatch_reason(outputs: Sequence[str], expected: Sequence[str | None], positions: Sequence[int]) -> str:
    first = positions[0]
    where = f"text {first} of {len(outputs)}" if len(outputs) > 1 else "the text"
    return (f"{len(positions)} of {len(outputs)} translations differ from this server's sequential answers "
            f"({where}: {outputs[first]!r:.60} instead of {expected[first]!r:.60})")


@dataclass
class ReferenceBook:
    """A server's sequential answers by reference_key, and the running tally of the answers compared
    with them. Keys without a reference take the first answer seen as theirs (counted as `learned`)."""

    answers: dict[str, str] = field(default_factory=dict)
    strict: bool = True
    variant: str | None = None
    checked: int = 0  # translations compared with a reference
    differing: int = 0  # of which differed
    learned: int = 0  # translations that became the reference of their key (first seen, not compared)

    def check(self, keys: Sequence[str], outputs: Sequence[str]) -> str | None:
        """Compare a request's translations with the references of its texts' keys, position by
        position; -> why the answer is wrong (strict and a translation differs), else None."""
        expected: list[str | None] = []
        for key, output in zip(keys, outputs, strict=True):
            if key in self.answers:
                expected.append(self.answers[key])
            else:
                self.answers[key] = output
                self.learned += 1
                expected.append(None)
        positions = differing_positions(outputs, expected)
        self.checked += sum(want is not None for want in expected)
        self.differing += len(positions)
        if positions and self.strict:
            return mismatch_reason(outputs, expected, positions)
        return None

    def tally(self) -> dict[str, Any]:
        return {"checked": self.checked, "differing": self.differing, "learned": self.learned,
                "strict": self.strict, "variant": self.variant, "references": len(self.answers)}

    def reset_tally(self) -> None:
        self.checked = self.differing = self.learned = 0

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.variant, "strict": self.strict, "answers": self.answers}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ReferenceBook:
        return cls(answers=dict(document.get("answers", {})), strict=bool(document.get("strict", True)),
                   variant=document.get("variant"))


def default_variant(models_document: Any) -> str | None:
    """The graph variant (fp32, int8) of the default model in a GET /v1/models body; None when it
    does not say."""
    models = models_document.get("models", []) if isinstance(models_document, dict) else []
    default = next((m for m in models if isinstance(m, dict) and m.get("default")), models[0] if models else {})
    variant = default.get("variant") if isinstance(default, dict) else None
    return str(variant) if variant else None
