"""The tokenizer trainer: special ids match model_store.codec; text survives an encode/decode round trip."""

from __future__ import annotations

from pathlib import Path

from model_store.codec import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Codec
from training.data.corpus import Pair, write_tsv
from training.tokenizer import train_tokenizer

ENGLISH = [
    "the cat sleeps on the mat",
    "open the file menu",
    "I am broke",
    "click the button",
    "close the window",
]
GERMAN = [
    "die Katze schläft auf der Matte",
    "öffnen Sie das Menü Datei\u2026",
    "ich bin pleite",
    "klicken Sie",
    "Fenster\u00b2",
]


def test_tiny_tokenizer_has_codec_ids_and_round_trips(tmp_path: Path):
    rows = [
        Pair(f"{english} {number}", f"{german} {number}", "ding_phrase")
        for number in range(40)
        for english, german in zip(ENGLISH, GERMAN, strict=True)
    ]
    write_tsv(rows, tmp_path / "train.tsv")
    model_path = train_tokenizer(tmp_path / "train.tsv", tmp_path / "tok", vocab_size=100)
    assert model_path == tmp_path / "tok" / "spm.model"
    assert (tmp_path / "tok" / "spm.vocab").is_file()

    codec = Codec(model_path)  # raises if pad/unk/bos/eos are not 0/1/2/3
    assert (codec.pad_id, codec.unk_id, codec.bos_id, codec.eos_id) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    assert 50 <= codec.vocab_size <= 100
    # Characters NFKC would rewrite come back as written ("…" was "...", "²" was "2").
    for text in ("die Katze schläft auf der Matte 7", "open the file menu 12", "Datei\u2026 12", "Fenster\u00b2 3"):
        ids = codec.target_ids(text)
        assert ids[0] == BOS_ID and ids[-1] == EOS_ID
        assert UNK_ID not in ids
        assert codec.decode(ids) == text


def test_tokenizer_training_is_reproducible(tmp_path: Path):
    rows = [
        Pair(f"{e} {n}", f"{g} {n}", "ding_phrase")
        for n in range(20)
        for e, g in zip(ENGLISH, GERMAN, strict=True)
    ]
    write_tsv(rows, tmp_path / "train.tsv")
    first = train_tokenizer(tmp_path / "train.tsv", tmp_path / "tok", vocab_size=80).read_bytes()
    second = train_tokenizer(tmp_path / "train.tsv", tmp_path / "tok", vocab_size=80).read_bytes()
    assert first == second
    assert sorted(path.name for path in (tmp_path / "tok").iterdir()) == ["spm.model", "spm.vocab"]
