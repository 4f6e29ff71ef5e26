"""Text <-> token ids, identical in training and serving: a SentencePiece model stored in the artifact.

Owns the id conventions: source = pieces + [eos]; target = [bos] + pieces + [eos].
Stdlib + sentencepiece (and model_store's stdlib modules) only; must not import torch, onnxruntime,
training or service.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from model_store.repetition import HAS_LETTER, STARTS_WORD

WORD_START = "\u2581"  # SentencePiece's marker for a piece that begins a new word
# Every whitespace character becomes a plain space (one for one, so piece surfaces keep their offsets):
# tokenizers trained without SentencePiece's NFKC rules (training.tokenizer) would otherwise read a
# no-break or ideographic space as a character of a word, and a text of spaces as something to translate.
_AS_SPACE = {code: " " for code in range(0x3001) if chr(code).isspace() and chr(code) != " "}

# Stands in for a span kept verbatim while the text is encoded: a Unicode noncharacter (reserved for
# a program's internal use, never in a tokenizer's vocabulary), so SentencePiece reads it as <unk>
# exactly as it reads any character it does not know, and the model places it as it learnt to.
VERBATIM_MARK = "\ufdd0"
# Stands in for a copy while a translation's pieces are decoded: SentencePiece passes a piece it does
# not know through as it is, but reads a copied text that spells a special piece ("<unk>", "</s>")
# as that piece (" ⁇ ", nothing). Another noncharacter, so no text the service accepts holds it.
_COPY_MARK = "\ufdd1"

# Fixed special ids, written into every tokenizer the project trains (see training.tokenizer).
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclass(frozen=True)
class SourcePieces:
    """A source text split into pieces, with each piece's character span in the (normalised) text."""

    ids: list[int]  # without eos
    pieces: list[str]
    surfaces: list[str]  # the text each piece covers, as the user wrote it
    word_index: list[int]  # piece position -> 0-based word number
    kept: list[bool]  # per piece: a span kept verbatim
    # per piece: what a translation writes where it copies the piece: its surface, with a kept span
    # written as the caller asked (split_source's `copies`: a glossary's translation)
    copies: list[str]


class Codec:
    """Encodes and decodes with one SentencePiece model shared by both languages."""

    def __init__(self, model_path: Path) -> None:
        self._sp = spm.SentencePieceProcessor(model_file=str(model_path))
        self.pad_id, self.unk_id = self._sp.pad_id(), self._sp.unk_id()
        self.bos_id, self.eos_id = self._sp.bos_id(), self._sp.eos_id()
        if (self.pad_id, self.unk_id, self.bos_id, self.eos_id) != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(
                f"{model_path}: special ids (pad, unk, bos, eos) = "
                f"{(self.pad_id, self.unk_id, self.bos_id, self.eos_id)}, expected "
                f"{(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}"
            )

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    def encode(self, text: str) -> list[int]:
        """Piece ids of `text`, without bos/eos."""
        return list(self._sp.encode(text.translate(_AS_SPACE), out_type=int))

    def source_ids(self, text: str) -> list[int]:
        return [*self.encode(text), self.eos_id]

    def target_ids(self, text: str) -> list[int]:
        """Teacher-forcing sequence for training: [bos] + pieces + [eos]."""
        return [self.bos_id, *self.encode(text), self.eos_id]

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, ignoring pad/bos/eos; stops at the first eos."""
        kept: list[int] = []
        for token in ids:
            if token == self.eos_id:
                break
            if token not in (self.pad_id, self.bos_id):
                kept.append(int(token))
        return str(self._sp.decode(kept))

    def decode_replacing(self, ids: list[int], replacements: Sequence[str | None], whole: Collection[int] = ()) -> str:
        """Text of `ids` as `decode` gives it, with the token at position i written as
        `replacements[i]` where that is not None: its text as it is, joined to the piece before it
        unless the model began a new word there (a piece that is only the word-start marker).
        `whole`: positions whose replacement is a span kept verbatim, complete as it is."""
        pieces: list[str] = []
        copied: list[int] = []  # per piece: 0 the model's, 1 a copy, 2 a copy of a whole kept span
        copies: list[str] = []  # the copied texts, in order: each is a _COPY_MARK among the pieces
        repeated = None  # punctuation the model wrote before an <unk> with nothing to copy
        for position, (token, replacement) in enumerate(zip(ids, replacements, strict=True)):
            if token == self.eos_id:
                break
            if token in (self.pad_id, self.bos_id):
                continue
            if replacement is None:
                piece = str(self._sp.id_to_piece(int(token)))
                # "A , <unk> , B" with nothing left to copy for that <unk> (the model wrote more than the
                # source has, in a list): its item goes, and so does the comma it repeated ("A, B").
                if piece == repeated:
                    repeated = None
                    continue
                repeated = None
                # Letters the model glued to a kept span, as to a word of its own ("Ich love" + "e",
                # "Oh" + "Be"), would change the text it had to keep: dropped, up to the next word.
                if copied and copied[-1] == 2 and not piece.startswith(WORD_START) \
                        and any(character.isalpha() for character in piece):
                    continue
                pieces.append(piece)
                copied.append(0)
            elif replacement:
                pieces.append(_COPY_MARK)
                copies.append(replacement)
                copied.append(2 if position in whole else 1)
            else:  # nothing to copy: nor the word break before it
                if pieces and pieces[-1] == WORD_START:
                    pieces.pop()
                    copied.pop()
                if pieces and not any(character.isalnum() for character in pieces[-1]):
                    repeated = pieces[-1]
        # A bare word start right after a copy and before another word start (or the end): the model
        # wrote a word break either side of the copy, which came back as two spaces.
        pieces = [piece for position, piece in enumerate(pieces)
                  if not (piece == WORD_START and position > 0 and copied[position - 1]
                          and (position + 1 == len(pieces) or pieces[position + 1].startswith(WORD_START)))]
        decoded = str(self._sp.decode_pieces(pieces)).split(_COPY_MARK)
        return "".join(part for pair in zip(decoded, [*copies, ""], strict=True) for part in pair)

    def pieces(self, ids: list[int]) -> list[str]:
        return [str(self._sp.id_to_piece(int(token))) for token in ids]

    def loop_marks(self) -> list[int]:
        """Every token's marks for the rule against loops (word_marks, model_store.repetition)."""
        return word_marks(self.pieces(list(range(self.vocab_size))),
                          special_ids=(self.pad_id, self.unk_id, self.bos_id, self.eos_id))

    def split_source(self, text: str, verbatim: Sequence[tuple[int, int]] = (),
                     copies: Sequence[str] | None = None) -> SourcePieces:
        """Pieces of `text` with the surface string each covers, for display and <unk> replacement.

        `verbatim`: sorted, disjoint [start, end) spans of `text` to encode as one <unk> each (with
        the word-start piece SentencePiece gives an unknown word), whose surface is the span as sent,
        so that the <unk> copy-through writes it back unchanged; `copies`: per span, what to write
        instead (default: the span). An <unk> may hold more than its span: SentencePiece reads the
        unknown characters beside it ("‘", "®", another span) as one unknown word with it. `text` must
        not contain VERBATIM_MARK when there are spans (ValueError)."""
        if verbatim and VERBATIM_MARK in text:
            raise ValueError("a text with spans kept verbatim may not contain U+FDD0")
        if copies is not None and len(copies) != len(verbatim):
            raise ValueError(f"{len(copies)} copies for {len(verbatim)} verbatim spans")
        marked, span_texts, previous = [], [], 0
        for start, end in verbatim:
            if not previous <= start < end <= len(text):
                raise ValueError(f"verbatim spans must be sorted, disjoint and inside the text: {list(verbatim)}")
            marked += [text[previous:start], VERBATIM_MARK]
            span_texts.append(text[start:end])
            previous = end
        marked.append(text[previous:])
        proto = self._sp.encode("".join(marked).translate(_AS_SPACE), out_type="proto")
        spans = iter(zip(span_texts, span_texts if copies is None else copies, strict=True))
        ids, pieces, surfaces, word_index, kept, copied = [], [], [], [], [], []
        word = -1
        for piece in proto.pieces:
            if piece.piece.startswith(WORD_START) or word < 0:
                word += 1
            surface, shown = str(piece.surface), str(piece.piece)
            copy, is_kept = surface, VERBATIM_MARK in surface
            if is_kept:  # an <unk>: the mark, or the mark and unknown characters beside it
                parts = [next(spans) if character == VERBATIM_MARK else (character, character) for character in surface]
                surface, copy = "".join(sent for sent, _ in parts), "".join(written for _, written in parts)
                shown = surface.lstrip()
            ids.append(int(piece.id))
            pieces.append(shown)
            surfaces.append(surface)
            word_index.append(word)
            kept.append(is_kept)
            copied.append(copy)
        return SourcePieces(ids=ids, pieces=pieces, surfaces=surfaces, word_index=word_index, kept=kept,
                            copies=copied)


def word_marks(pieces: Sequence[str], special_ids: Collection[int] = ()) -> list[int]:
    """Per token id (`pieces`: the vocabulary's pieces by id): STARTS_WORD | HAS_LETTER as they apply.
    A group is a word's when it has both (the start may be a bare word-start piece before "EUR"); others
    may repeat: letters inside a word ("XXXX", "ZZZZZZ" in a formula's example are copies), digits
    ("1,000,000,000"), punctuation, and `special_ids` (pad, <unk>, bos, eos: "<unk>" is spelt with
    letters, but three <unk> in a row are three copied addresses)."""
    return [0 if token in special_ids else
            (STARTS_WORD if piece.startswith(WORD_START) else 0)
            | (HAS_LETTER if any(character.isalpha() for character in piece) else 0)
            for token, piece in enumerate(pieces)]


def word_index_of_pieces(pieces: list[str]) -> list[int]:
    """0-based word number of each piece (a piece starting with WORD_START begins a word)."""
    result, word = [], -1
    for piece in pieces:
        if piece.startswith(WORD_START) or word < 0:
            word += 1
        result.append(word)
    return result
