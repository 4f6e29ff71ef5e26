"""A request's texts on the source side: options, normalisation, sentences, and each sentence's pieces.

Each text is normalised (NFC, no control characters) and cut into its sentences and lines
(model_store.sentences), each decoded as a row of its own; each sentence becomes piece ids with the
text the translation must carry over as sent (web addresses, numbers, the client's `keep` and
`glossary` terms: model_store.verbatim) one <unk> each. HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

from model_store.codec import Codec, SourcePieces
from model_store.sentences import Sentence, split_sentences
from model_store.verbatim import verbatim_spans
from service.api.deps import ServiceState
from service.api.errors import AttentionUnavailable, PayloadTooLarge
from service.models import LoadedModel

# Control characters that are not whitespace (C0, DEL, C1), and invisible format marks that do not
# separate words (soft hyphen, direction marks, word joiner, byte order mark): dropped before
# anything else. SentencePiece's normalisation drops some and makes others <unk> or a word break,
# and the <unk> copy-through takes source text as sent, so a NUL inside a word came back in the
# translation ("a\x00b" -> "a a\x00b b"). Whitespace controls (tab, form feed, the separators
# U+001C-U+001F, U+0085) are layout: line breaks to the sentence splitter, spaces within a sentence.
# Noncharacters (U+FDD0-U+FDEF, U+FFFE, U+FFFF) are no text either, and the codec's VERBATIM_MARK is one.
_CONTROL_CHARACTERS = re.compile(
    r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u180e\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    r"\ufdd0-\ufdef\ufeff\ufffe\uffff]")
# Within a sentence, any run of whitespace (and zero-width spaces) is one word break.
_SPACES = re.compile(r"[\s\u200b]+")


@dataclass(frozen=True)
class Options:
    source: str | None = None
    target: str | None = None
    beam_size: int = 1
    max_length: int | None = None
    keep: tuple[str, ...] = ()  # words or phrases the client asked to keep as written
    # (source term, its translation) pairs the client fixed: each term given to the model as one <unk>
    # like a kept one, its translation written where the model copies it
    glossary: tuple[tuple[str, str], ...] = ()
    alternatives: int = 0  # other translations wanted per text, besides the best

    @property
    def beam_rows(self) -> int:
        """Decoder rows per sentence: the beam, widened to find the alternatives asked for."""
        return max(self.beam_size, self.alternatives + 1)

    @property
    def terms(self) -> tuple[str, ...]:
        """Every client term found in the sentences as one <unk>: kept ones and glossary ones."""
        return self.keep + tuple(term for term, _ in self.glossary)


@dataclass
class Piece:
    """One sentence of a text (or the whole text, when it is not split), its source ids and pieces
    (spans kept verbatim are one <unk> each)."""

    sentence: Sentence
    ids: list[int]  # with eos
    _split: SourcePieces | None  # None until needed: most sentences keep nothing and need only ids
    kept_verbatim: bool = False  # some of its text is one <unk> each (model_store.verbatim)

    def split(self, codec: Codec) -> SourcePieces:
        """The pieces with the text each covers (for <unk> copies and the attention view)."""
        if self._split is None:
            self._split = codec.split_source(self.sentence.text)
        return self._split

    def as_written(self, ids: list[int]) -> None:
        """It was translated again as written (`ids`: codec.source_ids), nothing kept verbatim."""
        self.ids, self._split, self.kept_verbatim = ids, None, False

    @property
    def empty(self) -> bool:
        """Only eos: normalisation removed every character (control characters, ...); translates to ""."""
        return len(self.ids) < 2


def split_texts(state: ServiceState, texts: list[str], options: Options,
                names: list[str] | None = None) -> list[list[Sentence]]:
    """Each text cut into its sentences and lines, each decoded as a row of its own (whole when
    TRANSLATOR_MAX_SENTENCES_PER_TEXT is 1). Never grouped to fit a limit (grouped lines lost their
    line breaks, and content): a text with more sentences than TRANSLATOR_MAX_SENTENCES_PER_TEXT, or
    a request with more decoder rows in all (sentences x beam_size, widened for alternatives) than
    TRANSLATOR_MAX_ROWS_PER_REQUEST, is refused (413) before any work. `names`: what a refusal calls
    each text (default "text <position>")."""
    settings = state.settings
    per_text = settings.max_sentences_per_text
    layout = []
    for position, text in enumerate(texts):
        sentences = [Sentence(_SPACES.sub(" ", sentence.text).strip(), sentence.gap)
                     for sentence in split_sentences(text, 1 if per_text == 1 else None)]
        if len(sentences) > per_text:
            raise PayloadTooLarge(f"{text_name(names, position)} has {len(sentences)} sentences and lines; at most "
                                  f"{per_text} per text: send it in parts")
        layout.append(sentences)
    count = sum(len(sentences) for sentences in layout)
    rows = count * options.beam_rows
    if rows > settings.max_rows_per_request:
        beam = f"beam_size {options.beam_size}" if options.beam_rows == options.beam_size else \
            f"a beam of {options.beam_rows} (for {options.alternatives} alternatives)"
        raise PayloadTooLarge(f"{count} sentences and lines at {beam} need {rows} decoder rows; at "
                              f"most {settings.max_rows_per_request} per request: send fewer or shorter texts, "
                              + ("or fewer alternatives" if options.alternatives else "or a smaller beam"))
    return layout


def text_name(names: list[str] | None, position: int) -> str:
    return f"text {position}" if names is None else names[position]


def source_pieces(state: ServiceState, loaded: LoadedModel, name: str, sentences: list[Sentence],
            options: Options) -> list[Piece]:
    """The sentences of a text (`name`: what a refusal calls it) with their pieces, web addresses,
    numbers and the like (TRANSLATOR_KEEP_VERBATIM, model_store.verbatim) and the client's `keep`
    and `glossary` terms one <unk> each (a glossary term copied as its translation), and ids;
    TRANSLATOR_MAX_SOURCE_TOKENS applies to each, since each is decoded as a row of its own."""
    terms, glossary = options.terms, dict(options.glossary)
    limit = state.settings.max_source_tokens
    # a model without attention cannot copy: what it cannot spell would come back as "⁇"
    kinds = state.settings.keep_verbatim if loaded.manifest.attention != "none" else []
    if terms and loaded.manifest.attention == "none":
        raise AttentionUnavailable(f"model {loaded.name} version {loaded.version} has no attention: it cannot "
                                   "keep text as written or place a glossary's translations ('keep', 'glossary')")
    codec = loaded.codec
    pieces = []
    for sentence in sentences:
        spans = verbatim_spans(sentence.text, kinds, terms)
        copies = [glossary.get(sentence.text[start:end], sentence.text[start:end]) for start, end in spans]
        # Without spans, the plain encoding: the same ids, a fifth of the time on the event loop.
        split = codec.split_source(sentence.text, spans, copies) if spans else None
        ids = [*split.ids, codec.eos_id] if split is not None else codec.source_ids(sentence.text)
        if len(ids) > limit:
            what = name if len(sentences) == 1 else f"a sentence of {name}"
            raise PayloadTooLarge(f"{what} is {len(ids)} tokens long; at most {limit}")
        pieces.append(Piece(sentence, ids, split, kept_verbatim=split is not None))
    return pieces


def normalised(text: str) -> str:
    """NFC (as the training corpus is: a tokenizer without NFKC normalisation would not know a
    decomposed "ü"), without control characters."""
    return unicodedata.normalize("NFC", _CONTROL_CHARACTERS.sub("", text))


def client_terms(options: Options) -> Options:
    """`options` with its `keep` and `glossary` terms written as the sentences they are looked for in
    are (normalised, whitespace runs one space), the glossary's translations too. What the schema
    cannot rule out is settled, not refused: a term or translation with no text once normalised is
    dropped (its term goes to the model as written), of two entries that normalise to one term the
    later counts, and a term both kept and in the glossary is translated as the glossary says."""

    def clean(text: str) -> str:
        return _SPACES.sub(" ", normalised(text)).strip()

    glossary: dict[str, str] = {}
    for raw_term, raw_translation in options.glossary:
        term, translation = clean(raw_term), clean(raw_translation)
        if term and translation:
            glossary[term] = translation
    keep = tuple(term for term in map(clean, options.keep) if term and term not in glossary)
    return replace(options, keep=keep, glossary=tuple(glossary.items()))
