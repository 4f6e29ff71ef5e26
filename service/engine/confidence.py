"""How sure the model was of a translation: the geometric mean of its tokens' probabilities.

exp(total log-probability / tokens scored), over the sentences of a text together, in (0, 1]. On the
held-out test sets (`python -m loadtest.confidence`, README "Confidence") it ranks translations by
quality: the lowest quarter by confidence scores far lower chrF against the references than the
highest. Signals read off the attention (coverage deviation, attention entropy; Rikters & Fishel 2017)
were measured beside it on en-de/3 (`--attention-signals`): alone they rank the translations worse,
added to it better on one test set and worse on the other, so they are not part of it. Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from service.engine.types import TranslationResult


def confidence(results: Iterable[TranslationResult]) -> float | None:
    """The geometric mean of the probabilities the model gave every token of `results` (a text's
    sentences) it chose, eos included; None when nothing was scored (an empty text)."""
    total, tokens = 0.0, 0
    for result in results:
        total += result.score
        tokens += result.scored_tokens
    if tokens == 0:
        return None
    return math.exp(total / tokens)  # a -inf score (no hypothesis at all) gives 0.0
