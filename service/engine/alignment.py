"""Pure functions over a translation's attention matrix: <unk> replacement and word alignment.

The attention matrix has one row per generated target token (the final eos row included) and one
column per source token (the source eos column included); both extra row/column are ignored here.
Numpy only; must not import onnxruntime, fastapi or prometheus_client.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _merge_columns(weights: np.ndarray, word_index: Sequence[int]) -> np.ndarray:
    """[rows, pieces] -> [rows, words]: a word's weight is the sum over its pieces."""
    words = max(word_index) + 1
    merged = np.zeros((weights.shape[0], words), dtype=np.float64)
    np.add.at(merged.T, np.asarray(word_index), weights.T)
    return merged


def unk_replace(
    target_ids: Sequence[int],
    attention: np.ndarray,
    source_ids: Sequence[int],
    source_surfaces: Sequence[str],
    unk_id: int,
) -> list[str | None]:
    """For each target token: None, or for an <unk> the source text it stands for (Luong et al. 2015).

    Only the source's own <unk> pieces are candidates: the text the vocabulary lacks (an emoji, a
    currency sign) or that is kept verbatim (a URL) is all the model cannot write itself.
    `source_surfaces[j]` is the text piece j covers (source eos excluded); copying the whole attended
    word instead repeated what the model had already written of it ("5€" became "5 5€"). Each source
    <unk> is copied once: target and source <unk> are paired by attention, the strongest pair first
    (with two URLs attended alike, taking each <unk>'s own best copied one URL twice and lost the
    other). An <unk> left over when every source <unk> is copied, or when the source has none,
    stands for nothing new and becomes "".
    """
    result: list[str | None] = [None] * len(target_ids)
    weights = np.asarray(attention, dtype=np.float64)
    unknown = [j for j, token in enumerate(source_ids[: len(source_surfaces)]) if token == unk_id]
    written = [i for i, token in enumerate(target_ids) if token == unk_id]
    pairs = sorted(((i, j) for i in written if i < weights.shape[0] for j in unknown),
                   key=lambda pair: -weights[pair])  # stable: ties keep target, then source order
    copied: set[int] = set()
    for i, j in pairs:
        if result[i] is None and j not in copied:
            result[i] = source_surfaces[j].strip()
            copied.add(j)
    for i in written:
        if result[i] is None:
            result[i] = ""
    return result


def word_weights(
    attention: np.ndarray,
    source_word_index: Sequence[int],
    target_word_index: Sequence[int],
    target_pieces_counted: Sequence[bool] | None = None,
) -> np.ndarray:
    """[target words, source words]: a target word's row is the mean of its pieces' rows (still a
    distribution over the pieces, eos included, so a row may sum to less than 1 here), of those
    `target_pieces_counted` says (default all; a word none of whose pieces counts has all counted:
    punctuation written onto a word attends where the next word will come from, and "drucken."
    should not be read as "."); a source word's weight is the sum over its pieces. Eos row/column
    are dropped."""
    if not source_word_index or not target_word_index:
        return np.zeros((max(target_word_index, default=-1) + 1, max(source_word_index, default=-1) + 1))
    weights = np.asarray(attention, dtype=np.float64)[: len(target_word_index), : len(source_word_index)]
    by_source_word = _merge_columns(weights, source_word_index)  # [target pieces, source words]
    target_words = max(target_word_index) + 1
    index = np.asarray(target_word_index[: weights.shape[0]])
    counted = np.ones(len(index)) if target_pieces_counted is None \
        else np.asarray(target_pieces_counted[: len(index)], dtype=np.float64)
    per_word = np.zeros(target_words)
    np.add.at(per_word, index, counted)
    counted = np.where(per_word[index] > 0, counted, 1.0)  # a word of uncounted pieces only: all of them
    summed = np.zeros((target_words, by_source_word.shape[1]), dtype=np.float64)
    counts = np.zeros(target_words, dtype=np.float64)
    np.add.at(summed, index, by_source_word * counted[:, None])
    np.add.at(counts, index, counted)
    return summed / np.maximum(counts, 1.0)[:, None]


def word_alignment(
    attention: np.ndarray,
    source_word_index: Sequence[int],
    target_word_index: Sequence[int],
    target_pieces_counted: Sequence[bool] | None = None,
) -> list[tuple[int, int]]:
    """(source_word, target_word) pairs: each target word aligned to the source word it attends to
    most (word_weights, `target_pieces_counted` as there). Sorted by target word."""
    if not source_word_index or not target_word_index:
        return []
    present = np.bincount(np.asarray(target_word_index[: len(attention)]), minlength=max(target_word_index) + 1)
    by_word = word_weights(attention, source_word_index, target_word_index, target_pieces_counted)
    return [(int(np.argmax(by_word[target])), int(target)) for target in np.flatnonzero(present)]


def moses_format(pairs: Sequence[tuple[int, int]]) -> str:
    """Moses/fast_align text form: "source-target" pairs separated by spaces, e.g. "0-0 1-2 2-1"."""
    return " ".join(f"{source}-{target}" for source, target in pairs)
