"""Near-duplicates of training sources: which test segments are "novel".

Stdlib only. Many LibreOffice help paragraphs are templates (`Choose Format - Cells - Numbers.` /
`Choose Format - Cells - Borders.`), so a test source can be all but identical to a train source while
sharing no dedup key with it; such segments score far higher than the rest. The evaluation therefore
also reports a "novel" subset: segments whose source has no train source with similarity >= THRESHOLD.

similarity(source, train source): `difflib.SequenceMatcher(None, key(train), key(source),
autojunk=False).ratio()` on the dedup keys (casefolded words joined by one space, punctuation ignored:
corpus.dedup_key), i.e. 2 * matched characters / (sum of the two lengths), in [0, 1], deterministic
(symmetric up to difflib's tie-breaking between equally long matches). The review that found the
problem used the same ratio with difflib's default autojunk, which ignores frequent characters in keys
of 200+ characters and so under-rates long paragraphs.

Search: the ratio can only reach t when the shorter key has at least t / (2 - t) of the longer one's
length, so only train keys in that length window are candidates. Among them, the CANDIDATES sharing the
most inverse-document-frequency weight of words with the query (words in more than MAX_WORD_SHARE of
the train keys are skipped, except the query's RAREST_WORDS rarest), and for keys of up to SHORT_KEY
characters also the CANDIDATES sharing the most weight of character trigrams, are compared, with
difflib's cheap upper bounds (real_quick_ratio, quick_ratio) pruning those that cannot reach the
threshold. Checked against an exhaustive search of the length window for every test source of the
corpus (1,260 everyday, 1,415 technical): the same near-duplicates (14 and 240) with the same similarity.
About 10 s for both test sets against the ~110k train sources on one core (the exhaustive search: 5 min).
"""

from __future__ import annotations

import difflib
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from training.data.corpus import dedup_key

THRESHOLD = 0.9
CANDIDATES = 100
MAX_WORD_SHARE = 0.02
RAREST_WORDS = 3
# Keys of up to SHORT_KEY characters (headings, UI labels) are also searched by character trigrams: their
# near-duplicates often share no word (`Recalculate` / `Recalculates`, `SUMXMY2` / `SUMX2MY2`).
SHORT_KEY = 40


def similarity(source: str, train_source: str) -> float:
    """difflib's ratio of the two texts' dedup keys (1.0: same key), the train text as difflib's first."""
    source_key, train_key = dedup_key(source), dedup_key(train_source)
    if source_key == train_key:
        return 1.0
    return difflib.SequenceMatcher(None, train_key, source_key, autojunk=False).ratio()


def length_window(length: int, threshold: float) -> tuple[int, int]:
    """Key lengths that can reach `threshold` against a key of `length` (2 * shorter / total >= t)."""
    if threshold <= 0:
        return 0, 1 << 62
    return math.ceil(length * threshold / (2 - threshold)), math.floor(length * (2 - threshold) / threshold)


class TrainIndex:
    """The train sources' dedup keys with a word index, for nearest-neighbour queries by similarity."""

    def __init__(self, train_sources: Iterable[str], threshold: float = THRESHOLD,
                 candidates: int = CANDIDATES) -> None:
        self.threshold, self.candidates = threshold, candidates
        self.keys = sorted({dedup_key(source) for source in train_sources} - {""})
        self.key_set = set(self.keys)
        self.postings: dict[str, list[int]] = defaultdict(list)
        for index, key in enumerate(self.keys):
            for word in set(key.split()):
                self.postings[word].append(index)
        self.max_postings = max(1, int(MAX_WORD_SHARE * len(self.keys)))
        # every train key a short query can reach, by trigram
        self.longest_short = length_window(SHORT_KEY, threshold)[1]
        self.trigrams: dict[str, list[int]] = defaultdict(list)
        for index, key in enumerate(self.keys):
            if len(key) <= self.longest_short:
                for trigram in _trigrams(key):
                    self.trigrams[trigram].append(index)
        self.max_trigram_postings = max(1, int(MAX_WORD_SHARE * sum(len(k) <= self.longest_short for k in self.keys)))

    def nearest(self, source: str) -> tuple[float, str | None]:
        """(similarity, train key) of the most similar train source if it reaches the threshold, else
        (0.0, None): train keys whose difflib upper bounds stay below the threshold are not compared."""
        query = dedup_key(source)
        if not query:
            return 0.0, None
        if query in self.key_set:
            return 1.0, query
        low, high = length_window(len(query), self.threshold)
        ranked = self._ranked(query.split(), self.postings, self.max_postings, low, high)
        if len(query) <= SHORT_KEY:
            ranked += self._ranked(_trigrams(query), self.trigrams, self.max_trigram_postings, low, high)
        best, best_key = 0.0, None
        matcher = difflib.SequenceMatcher(None, "", query, autojunk=False)  # difflib caches the 2nd text
        for index in ranked:
            matcher.set_seq1(self.keys[index])
            bound = max(best, self.threshold)
            if matcher.real_quick_ratio() < bound or matcher.quick_ratio() < bound:
                continue
            ratio = matcher.ratio()
            if ratio >= bound and ratio > best:
                best, best_key = ratio, self.keys[index]
        return best, best_key

    def _ranked(self, terms: Iterable[str], postings: dict[str, list[int]], max_postings: int,
                low: int, high: int) -> list[int]:
        """The CANDIDATES train keys of length low..high sharing the most inverse-document-frequency
        weight of `terms` (a term in more than max_postings keys counts only if among the RAREST_WORDS)."""
        ordered = sorted(set(terms), key=lambda term: (len(postings.get(term, ())), term))
        scores: dict[int, float] = defaultdict(float)
        for rank, term in enumerate(ordered):
            found = postings.get(term)
            if not found or (rank >= RAREST_WORDS and len(found) > max_postings):
                continue
            weight = math.log(len(self.keys) / len(found))
            for index in found:
                if low <= len(self.keys[index]) <= high:
                    scores[index] += weight
        return sorted(scores, key=lambda index: (-scores[index], index))[: self.candidates]

    def nearest_similarities(self, sources: Sequence[str]) -> list[float]:
        return [self.nearest(source)[0] for source in sources]


def _trigrams(key: str) -> set[str]:
    padded = f" {key} "
    return {padded[start : start + 3] for start in range(len(padded) - 2)}


def novel_mask(sources: Sequence[str], train_sources: Iterable[str] | TrainIndex,
               threshold: float = THRESHOLD) -> list[bool]:
    """True for each source with no train source of similarity >= threshold."""
    index = train_sources if isinstance(train_sources, TrainIndex) else TrainIndex(train_sources, threshold)
    return [similarity < threshold for similarity in index.nearest_similarities(sources)]
