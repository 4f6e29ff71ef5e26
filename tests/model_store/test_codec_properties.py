"""Property tests (Hypothesis) of model_store.codec.Codec over a tiny REAL SentencePiece model.

Hostile text (control characters, emoji, RTL, combining marks, long words, whitespace or punctuation
only) must encode without raising into in-range ids; decode must invert encode on in-vocabulary text.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_store.codec import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Codec, word_index_of_pieces
from training.tokenizer import train_tokenizer

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TRAINING_PAIRS = [
    ("the house is small", "das haus ist klein"),
    ("the house is big", "das haus ist gross"),
    ("good morning", "guten morgen"),
    ("where is the station", "wo ist der bahnhof"),
    ("twenty one cats", "einundzwanzig katzen"),
    ("I have 42 apples and 7 pears", "ich habe 42 aepfel und 7 birnen"),
    ("Quick brown fox jumps over the lazy dog", "Franz jagt im komplett verwahrlosten Taxi quer durch Bayern"),
    ("1234567890 zero nine", "null neun 0987654321"),
    ("We visit Vienna with Xaver and Yvonne", "Wir besuchen Wien mit Xaver und Yvonne"),
    ("Zebras quietly judge", "Zebras urteilen leise"),
]
# Candidates for the round-trip alphabet; only those the model encodes without <unk> are kept.
ALPHABET_CANDIDATES = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

HOSTILE_SAMPLES = [
    "",
    " ",
    "\t\n\r  \u3000",
    "\x00\x01\x07\x1b\x7f",
    "?!...,;:()[]{}\"'«»—",
    "😀🇩🇪👨‍👩‍👧",
    "مرحبا بالعالم",
    "שלום עולם",
    "e\u0301a\u0308o\u0302\u0327",
    "a" * 5000,
    "Donaudampfschifffahrtsgesellschaftskapitänswitwe" * 20,
    "\u202e reversed \u202c",
    "\ufeff\u200b\u200d",
    "</s> <s> <pad> <unk>",
]


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> Codec:
    root = tmp_path_factory.mktemp("codec_properties")
    lines = [f"{english}\t{german}\tfixture" for english, german in TRAINING_PAIRS * 20]
    (root / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Codec(train_tokenizer(root / "train.tsv", root / "tokenizer", vocab_size=200, num_threads=1))


@pytest.fixture(scope="module")
def known_alphabet(codec: Codec) -> str:
    known = "".join(c for c in ALPHABET_CANDIDATES if UNK_ID not in codec.encode(c))
    assert len(known) >= 30, known  # the fixture corpus covers most letters and every digit
    return known


def check_encoding(codec: Codec, text: str) -> None:
    ids = codec.encode(text)
    assert all(0 <= token < codec.vocab_size for token in ids)
    # Control ids are never produced from text, even from the literal strings "</s>" or "<pad>".
    assert not {PAD_ID, BOS_ID, EOS_ID} & set(ids)
    assert codec.source_ids(text) == [*ids, EOS_ID]
    assert codec.target_ids(text) == [BOS_ID, *ids, EOS_ID]
    split = codec.split_source(text)
    assert split.ids == ids
    assert len(split.pieces) == len(split.surfaces) == len(split.word_index) == len(ids)
    # For <unk>, SentencePiece reports the (normalised) text it could not cover instead of "<unk>".
    named = codec.pieces(ids)
    assert all(p == n or (i == UNK_ID and p) for p, n, i in zip(split.pieces, named, ids, strict=True))
    assert split.word_index == word_index_of_pieces(split.pieces)
    if ids:
        assert split.word_index[0] == 0
    assert all(b - a in (0, 1) for a, b in zip(split.word_index, split.word_index[1:], strict=False))
    # surfaces are spans of the text as sent, every whitespace character read as a space
    spaced = "".join(" " if character.isspace() else character for character in text)
    assert all(surface in spaced for surface in split.surfaces)
    assert isinstance(codec.decode(codec.source_ids(text)), str)


def test_vocabulary_is_small_and_specials_are_fixed(codec: Codec) -> None:
    assert 50 <= codec.vocab_size <= 200
    assert codec.pieces([PAD_ID, UNK_ID, BOS_ID, EOS_ID]) == ["<pad>", "<unk>", "<s>", "</s>"]


@pytest.mark.parametrize("text", HOSTILE_SAMPLES, ids=range(len(HOSTILE_SAMPLES)))
def test_hostile_samples_encode(codec: Codec, text: str) -> None:
    check_encoding(codec, text)


@PROPERTY_SETTINGS
@given(text=st.text())
def test_any_text_encodes_into_valid_ids(codec: Codec, text: str) -> None:
    check_encoding(codec, text)


@PROPERTY_SETTINGS
@given(
    text=st.text(
        alphabet=st.characters(categories=["Cc", "Cf", "Mn", "Me", "So", "Zs", "Zl", "Zp", "Po", "Ps", "Pe"]),
        max_size=300,
    )
)
def test_control_format_marks_symbols_and_punctuation_encode(codec: Codec, text: str) -> None:
    check_encoding(codec, text)


@PROPERTY_SETTINGS
@given(text=st.text(alphabet=" \t\n\r\u3000\u00a0", max_size=50))
def test_whitespace_only_encodes_to_nothing(codec: Codec, text: str) -> None:
    assert codec.encode(text) == []
    assert codec.source_ids(text) == [EOS_ID]
    assert codec.decode(codec.source_ids(text)) == ""


@PROPERTY_SETTINGS
@given(data=st.data())
def test_round_trip_of_in_vocabulary_text(codec: Codec, known_alphabet: str, data: st.DataObject) -> None:
    """decode(encode(t)) == " ".join(t.split()) for NFKC-stable text of known letters/digits and spaces:
    SentencePiece drops leading/trailing spaces and collapses runs of spaces; nothing else changes."""
    text = data.draw(st.text(alphabet=known_alphabet + "   ", max_size=120))
    assert unicodedata.normalize("NFKC", text) == text
    ids = codec.encode(text)
    assert UNK_ID not in ids
    assert codec.decode(ids) == " ".join(text.split())
    assert codec.decode(codec.source_ids(text)) == codec.decode(codec.target_ids(text)) == " ".join(text.split())


@PROPERTY_SETTINGS
@given(data=st.data())
def test_round_trip_with_long_words(codec: Codec, known_alphabet: str, data: st.DataObject) -> None:
    words = data.draw(st.lists(st.text(alphabet=known_alphabet, min_size=30, max_size=400), min_size=1, max_size=4))
    text = " ".join(words)
    assert codec.decode(codec.encode(text)) == text


@PROPERTY_SETTINGS
@given(data=st.data())
def test_decode_ignores_pad_and_bos_and_stops_at_eos(codec: Codec, data: st.DataObject) -> None:
    piece_ids = st.integers(min_value=EOS_ID + 1, max_value=codec.vocab_size - 1) | st.just(UNK_ID)
    ids = data.draw(st.lists(piece_ids, max_size=40))
    expected = codec.decode(ids)
    noisy: list[int] = []
    for token in ids:
        noisy.extend(data.draw(st.lists(st.sampled_from([PAD_ID, BOS_ID]), max_size=3)))
        noisy.append(token)
    tail = data.draw(st.lists(st.integers(min_value=0, max_value=codec.vocab_size - 1), max_size=20))
    assert codec.decode(noisy) == expected
    assert codec.decode([*noisy, EOS_ID, *tail]) == expected
    assert codec.decode([BOS_ID, *ids, EOS_ID, *tail]) == expected
    assert codec.decode([EOS_ID, *ids]) == ""


@PROPERTY_SETTINGS
@given(data=st.data())
def test_decode_replacing_nothing_is_decode(codec: Codec, data: st.DataObject) -> None:
    ids = data.draw(st.lists(st.integers(min_value=0, max_value=codec.vocab_size - 1), max_size=40))
    assert codec.decode_replacing(ids, [None] * len(ids)) == codec.decode(ids)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_unknown_text_written_back_in_place_restores_the_text(
        codec: Codec, known_alphabet: str, data: st.DataObject) -> None:
    """What the service does with a translation's <unk>s, here on the source itself: each unknown
    piece written as the text it covers gives the text back, attached to its word or on its own
    (so "5€" stays "5€", "©2024" stays "©2024")."""
    text = data.draw(st.text(alphabet=known_alphabet + "☃€© ", min_size=1, max_size=60))
    split = codec.split_source(text)
    replacements = [surface if token == UNK_ID else None for token, surface in zip(split.ids, split.surfaces,
                                                                                  strict=True)]
    assert codec.decode_replacing(split.ids, replacements) == " ".join(text.split())


@PROPERTY_SETTINGS
@given(text=st.text(max_size=200))
def test_encode_decode_is_idempotent_after_one_pass(codec: Codec, text: str) -> None:
    """Text that went through the model once is stable: decoding it again and re-encoding changes nothing
    (so a translation's <unk>-free output can be fed back without drift)."""
    once = codec.decode(codec.encode(text))
    if "\u2047" in once:  # SentencePiece renders <unk> as " ⁇ ", which itself may be out of vocabulary
        return
    assert codec.decode(codec.encode(once)) == once


def test_codec_rejects_a_model_with_other_special_ids(tmp_path: Path) -> None:
    import sentencepiece as spm

    (tmp_path / "text.txt").write_text("\n".join(a + "\n" + b for a, b in TRAINING_PAIRS * 5), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "text.txt"), model_prefix=str(tmp_path / "other"), vocab_size=60,
        hard_vocab_limit=False, minloglevel=2, num_threads=1,
    )  # sentencepiece's defaults: unk=0 bos=1 eos=2 pad=-1
    with pytest.raises(ValueError, match="special ids"):
        Codec(tmp_path / "other.model")


def test_verbatim_spans_are_one_unk_each_and_come_back_as_sent(codec: Codec) -> None:
    text = "the house 192.168.1.20 is small at www.a.org/x"
    spans = [(10, 22), (35, 46)]
    split = codec.split_source(text, spans)
    unknowns = [surface for token, surface in zip(split.ids, split.surfaces, strict=True) if token == UNK_ID]
    assert unknowns == ["192.168.1.20", "www.a.org/x"]
    assert "192.168.1.20" in split.pieces and "www.a.org/x" in split.pieces  # what the attention view shows
    before = codec.split_source("the house").ids
    assert split.ids[:len(before)] == before  # the text around them is encoded as usual
    replacements = [surface if token == UNK_ID else None for token, surface in zip(split.ids, split.surfaces,
                                                                                  strict=True)]
    assert codec.decode_replacing(split.ids, replacements) == text


@pytest.mark.parametrize("spans", [[(3, 2)], [(0, 4), (2, 6)], [(5, 4)], [(0, 99)]])
def test_verbatim_spans_must_be_sorted_disjoint_and_inside(codec: Codec, spans: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError, match="verbatim spans"):
        codec.split_source("the house", spans)


def test_a_text_with_verbatim_spans_may_not_hold_the_mark(codec: Codec) -> None:
    with pytest.raises(ValueError, match="U\\+FDD0"):
        codec.split_source("the \ufdd0 house", [(0, 3)])


def test_an_unk_with_nothing_to_copy_takes_its_word_break_along(codec: Codec) -> None:
    # "▁the ▁ <unk> ▁ <unk> ▁house": the second <unk> copies nothing (each source <unk> is copied once)
    the, house = codec.encode("the"), codec.encode("house")
    word_start = codec.split_source("the x", [(4, 5)]).ids[len(the)]
    ids = [*the, word_start, UNK_ID, word_start, UNK_ID, *house]
    replacements: list[str | None] = [None] * len(ids)
    replacements[len(the) + 1], replacements[len(the) + 3] = "555-0102", ""
    assert codec.decode_replacing(ids, replacements) == "the 555-0102 house"


def test_the_loop_marks_leave_special_tokens_out(codec: Codec) -> None:
    marks = codec.loop_marks()
    assert len(marks) == codec.vocab_size
    assert [marks[token] for token in (PAD_ID, UNK_ID, BOS_ID, EOS_ID)] == [0, 0, 0, 0]
    assert any(marks)


def test_a_word_break_either_side_of_a_copy_is_one_space(codec: Codec) -> None:
    # The model wrote "▁", <unk>, "▁", "▁house": the copy came back with two spaces after it.
    the, house = codec.encode("the"), codec.encode("house")
    word_start = codec.split_source("the x", [(4, 5)]).ids[len(the)]  # the bare word start before an unknown word
    ids = [*the, word_start, UNK_ID, word_start, *house]
    replacements: list[str | None] = [None] * len(ids)
    replacements[len(the) + 1] = "1900-1999"
    assert codec.decode_replacing(ids, replacements) == "the 1900-1999 house"
    assert codec.decode_replacing(ids[:len(the) + 3], replacements[:len(the) + 3]) == "the 1900-1999"


def test_letters_glued_to_a_kept_span_are_dropped_and_to_an_unknown_character_kept(codec: Codec) -> None:
    # The model wrote "▁the ▁ <unk> e ▁house": "e" glued to a kept span would change it ("lovee");
    # glued to an unknown character inside a word it is the rest of that word, as in the source.
    the, house = codec.encode("the"), codec.encode("house")
    word_start = codec.split_source("the x", [(4, 5)]).ids[len(the)]
    pieces = codec.pieces(list(range(codec.vocab_size)))
    suffix = next(token for token, piece in enumerate(pieces)
                  if token > EOS_ID and not piece.startswith("\u2581") and piece.isalpha())
    ids = [*the, word_start, UNK_ID, suffix, *house]
    replacements: list[str | None] = [None] * len(ids)
    replacements[len(the) + 1] = "love"
    glued = codec.decode_replacing(ids, replacements)
    assert glued == f"the love{pieces[suffix]} house"
    assert codec.decode_replacing(ids, replacements, whole=[len(the) + 1]) == "the love house"


@pytest.mark.parametrize("copy", ["<unk>", "</s>", "<s>", "<pad>", "a\u2581b", "\u2581x", "\u2047"])
def test_copied_text_is_written_as_it_is_even_when_it_spells_a_piece(codec: Codec, copy: str) -> None:
    # SentencePiece reads a piece string "<unk>" as its unknown token (" ⁇ ") and "</s>" as nothing: a
    # kept "<unk>" in a tokenizer manual, or a glossary translation, must come back as written
    text = "the x house"
    split = codec.split_source(text, [(4, 5)])
    replacements = [copy if token == UNK_ID else None for token in split.ids]
    assert codec.decode_replacing(split.ids, replacements) == f"the {copy} house"


def test_an_unk_with_nothing_to_copy_takes_the_comma_it_repeated_along() -> None:
    # "the, <unk>, <unk>, house" with one source <unk>: the second stands for nothing (a model writing a
    # list longer than the source's); its comma went with it, where "the, 555,, house" came back.
    # The shipped tokenizer: the fixture's has no punctuation.
    codec = Codec(Path(__file__).resolve().parents[2] / "model_store" / "en-de" / "3" / "tokenizer.model")
    the, house = codec.encode("the"), codec.encode("house")
    comma = codec.encode("the,")[len(the):]
    word_start = codec.split_source("the x", [(4, 5)]).ids[len(the)]
    ids = [*the, *comma, word_start, UNK_ID, *comma, word_start, UNK_ID, *comma, *house]
    replacements: list[str | None] = [None] * len(ids)
    first = len(the) + len(comma) + 1
    replacements[first], replacements[first + len(comma) + 2] = "555", ""
    assert codec.decode_replacing(ids, replacements) == "the, 555, house"


def test_a_kept_span_may_be_copied_as_something_else(codec: Codec) -> None:
    # a glossary term: shown as sent (the attention view), written as its translation
    split = codec.split_source("the x house \u2603y", [(4, 5), (13, 14)], ["Xaver", "Yvonne"])
    unknown = [position for position, token in enumerate(split.ids) if token == UNK_ID]
    assert [split.surfaces[p].strip() for p in unknown] == ["x", "\u2603y"]  # the snowman joins the span's <unk>
    assert [split.copies[p].strip() for p in unknown] == ["Xaver", "\u2603Yvonne"]
    others = [p for p in range(len(split.ids)) if p not in unknown]
    assert [split.copies[p] for p in others] == [split.surfaces[p] for p in others]
    with pytest.raises(ValueError, match="copies"):
        codec.split_source("the x house", [(4, 5)], ["a", "b"])
