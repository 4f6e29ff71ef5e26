"""A request's results on the target side: the engine's token ids back into text, with its layout.

Each <unk> a translation wrote becomes the source text it copies (or a glossary term's translation);
a text's sentences are joined with the whitespace that followed each; alternatives are put together
sentence by sentence; /v1/attention's matrix is assembled from its sentences' own. HTTP edge only:
must not import onnxruntime.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from model_store.codec import WORD_START, word_index_of_pieces
from model_store.sentences import LINE_BREAK
from service.api.errors import AttentionUnavailable
from service.api.source_text import Piece
from service.engine import (
    Alternative,
    TranslationResult,
    confidence,
    moses_format,
    unk_replace,
    word_alignment,
    word_weights,
)
from service.models import LoadedModel

EOS_TOKEN = "</s>"


@dataclass(frozen=True)
class Attended:
    model: LoadedModel
    translation: str
    truncated: bool  # as in TextTranslation
    confidence: float | None  # as in TextTranslation
    source_tokens: list[str]
    target_tokens: list[str]
    weights: np.ndarray  # [len(target_tokens), len(source_tokens)], rows sum to 1
    alignment: list[tuple[int, int]]
    moses: str
    # [target words, source words] over the whole text that write characters (service.engine.
    # word_weights, sentence by sentence on the diagonal; a lone "▁" piece is a word of none):
    # the attention between the translation's and the text's whitespace-separated words
    word_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def joined(translations: list[str], pieces: list[Piece]) -> str:
    """A text's sentence translations in order, each followed by the whitespace that followed its
    sentence, as it was sent (line endings, indentation, blank lines). A sentence that translates to
    nothing (only invisible characters) keeps its line but not its spaces."""
    parts: list[str] = []
    for translation, piece in zip(translations, pieces, strict=True):
        gap = piece.sentence.gap
        if translation:
            parts.append(translation + gap)
        elif LINE_BREAK.search(gap):
            parts.append(gap)
    return "".join(parts).rstrip()


def translated(model: LoadedModel, text: str, pieces: list[Piece],
               results: Sequence[TranslationResult | None]) -> tuple[str, list[str]]:
    """A text's translation in its layout (joined, in_layout_of) and its sentences' translations
    (decode_sentence; "" for a piece with no result: nothing to translate)."""
    sentences = ["" if result is None else decode_sentence(model, piece, result)
                 for piece, result in zip(pieces, results, strict=True)]
    return in_layout_of(text, joined(sentences, pieces)), sentences


def in_layout_of(text: str, translation: str) -> str:
    """`translation` with `text`'s own leading and trailing whitespace (an indent, a final line
    break), so that a document translated in chunks keeps its layout."""
    if not translation:
        return ""
    return text[: len(text) - len(text.lstrip())] + translation + text[len(text.rstrip()):]


def decode_sentence(loaded: LoadedModel, piece: Piece, result: TranslationResult | Alternative) -> str:
    """Target text, with each <unk> replaced by the unknown source text it attended to most (a
    glossary term: its translation, SourcePieces.copies)."""
    codec = loaded.codec
    if result.attention is None or codec.unk_id not in result.target_ids:
        return codec.decode(result.target_ids)
    split = piece.split(codec)
    replacements = unk_replace(result.target_ids, result.attention, split.ids, split.copies, codec.unk_id)
    kept = {copy.strip() for copy, whole in zip(split.copies, split.kept, strict=True) if whole}
    whole = [position for position, text in enumerate(replacements) if text and text in kept]
    return codec.decode_replacing(result.target_ids, replacements, whole)


def alternatives_of(model: LoadedModel, text: str, pieces: list[Piece], results: list[TranslationResult | None],
                  sentences: list[str], count: int, seen: set[str]) -> list[str]:
    """Up to `count` other translations of a text: the k-th puts together each sentence's k-th
    alternative, or its own translation (`sentences`) where it has fewer; none twice, nor one in
    `seen` (the translation itself). A sentence's alternatives are the beam's other hypotheses that
    write every <unk> of its source, as its translation was made to (a kept address, a glossary
    term: the copy retry), and some text."""
    unk = model.codec.unk_id
    own: list[list[str]] = []
    for piece, result in zip(pieces, results, strict=True):
        needed = piece.ids.count(unk)
        candidates = [] if result is None else [decode_sentence(model, piece, other) for other in result.alternatives
                                                if other.target_ids.count(unk) >= needed]
        own.append([candidate for candidate in candidates if candidate.strip()])
    found: list[str] = []
    for rank in range(count):
        parts = [others[rank] if rank < len(others) else sentence for others, sentence in zip(own, sentences,
                                                                                                strict=True)]
        alternative = in_layout_of(text, joined(parts, pieces))
        if alternative not in seen:
            seen.add(alternative)
            found.append(alternative)
    return found


def attended(model: LoadedModel, text: str, pieces: list[Piece], results: list[TranslationResult]) -> Attended:
    """One text's attention from its sentences' own: each sentence's block (its pieces and its eos,
    in both directions) on the diagonal, zeros elsewhere, since a sentence's rows attend only over
    its own source; word indices run over the whole text. The translation keeps the text's layout,
    as /v1/translate's does."""
    codec = model.codec
    source_tokens: list[str] = []
    target_tokens: list[str] = []
    blocks: list[np.ndarray] = []
    word_blocks: list[np.ndarray] = []
    pairs: list[tuple[int, int]] = []
    source_words = target_words = 0  # words of the sentences before this one
    for piece, result in zip(pieces, results, strict=True):
        if result.attention is None:
            raise AttentionUnavailable("the engine returned no attention for this request")
        split = piece.split(codec)
        target_pieces = codec.pieces(result.target_ids)
        target_word_index = word_index_of_pieces(target_pieces)
        weights = np.asarray(result.attention, dtype=np.float64)[: len(target_pieces) + 1, : len(piece.ids)]
        weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        counted = [not _punctuation_piece(piece) for piece in target_pieces]  # see word_weights
        pairs += [(source + source_words, target + target_words)
                  for source, target in word_alignment(weights, split.word_index, target_word_index, counted)]
        by_word = word_weights(weights, split.word_index, target_word_index, counted)
        # only the words that write characters: a lone "▁" piece is a word of none (a doubled space)
        word_blocks.append(by_word[np.ix_(_visible_words(target_pieces, target_word_index, by_word.shape[0]),
                                          _visible_words(split.pieces, split.word_index, by_word.shape[1]))])
        source_words += max(split.word_index, default=-1) + 1
        target_words += max(target_word_index, default=-1) + 1
        source_tokens += [*split.pieces, EOS_TOKEN]
        target_tokens += [*target_pieces, EOS_TOKEN]
        blocks.append(weights)
    matrix = _block_diagonal(blocks, (len(target_tokens), len(source_tokens)))
    return Attended(
        model=model,
        translation=translated(model, text, pieces, results)[0],
        truncated=any(result.cut_at_max_length for result in results),
        confidence=confidence(results),
        source_tokens=source_tokens,
        target_tokens=target_tokens,
        weights=matrix,
        alignment=pairs,
        moses=moses_format(pairs),
        word_weights=_block_diagonal(word_blocks, (sum(b.shape[0] for b in word_blocks),
                                                    sum(b.shape[1] for b in word_blocks))),
    )


def _visible_words(pieces: list[str], word_index: list[int], words: int) -> list[int]:
    """The words (of `words`) some piece of which writes a character."""
    visible = {word for piece, word in zip(pieces, word_index, strict=False) if piece.lstrip(WORD_START)}
    return [word for word in range(words) if word in visible]


def _punctuation_piece(piece: str) -> bool:
    text = piece.lstrip(WORD_START)
    return bool(text) and all(unicodedata.category(character).startswith("P") for character in text)


def _block_diagonal(blocks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    matrix = np.zeros(shape)
    row = column = 0
    for block in blocks:
        matrix[row: row + block.shape[0], column: column + block.shape[1]] = block
        row, column = row + block.shape[0], column + block.shape[1]
    return matrix
