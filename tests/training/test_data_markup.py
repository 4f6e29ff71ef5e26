"""Ding rules v2 (`<..>` keywords, `~` cross-references, slash alternatives and parentheses in sentences)
and the split rules that keep the sources of the previous corpus where they were, on small fixtures."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from training.data import build, corpus, ding
from training.data.corpus import Pair


@pytest.mark.parametrize(("text", "expected"), [
    ("Verfilmungsrechte {pl} <Romanrechte>", "Verfilmungsrechte"),
    ("Worauf wartest du? <warten>", "Worauf wartest du?"),
    ("name-dropping <name-drop> <name--dropping <namedrop>> <name--dropping <name drop>>", "name-dropping"),
    ("to pay down <> sth.", "to pay down sth."),
    ("industrial biology<F3>", "industrial biology"),
    ("Tränengas <chemische Keule> [ugs.]", "Tränengas"),
    # comparisons are text, not keywords
    ("Plastikfolie (Dicke: > 0,25 mm)", "Plastikfolie (Dicke: > 0,25 mm)"),
    ("Plastikfolie (Stärke < 0,25 mm)", "Plastikfolie (Stärke < 0,25 mm)"),
])
def test_v2_strips_angle_bracket_keywords(text, expected):
    assert ding.strip_annotations(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Morgenmensch {m} ~Frühaufsteher", "Morgenmensch"),
    ("anomisch {adj} ~ Anomie", "anomisch"),
    ("Seekuh {f} [ugs.] [zool.] ~Seekühe ~Manatis", "Seekuh"),
    ("Großer Gesellschaftsanzug des Abend ~Frack", "Großer Gesellschaftsanzug des Abend"),
    ("Reizstoffspray {n} ~Tränengas <chemische Keule>", "Reizstoffspray"),
    ("Hybridauto {n} [ugs.] ~Elektrofahrzeug [auto]", "Hybridauto"),
    ("bad ~worse (of a low standard)", "bad (of a low standard)"),
])
def test_v2_strips_tilde_cross_references(text, expected):
    assert ding.strip_annotations(text) == expected


def test_v1_rules_are_unchanged():
    v1 = ding.RULES_V1
    assert ding.strip_annotations("Verfilmungsrechte {pl} <Romanrechte>", v1) == "Verfilmungsrechte <Romanrechte>"
    assert ding.strip_annotations("Morgenmensch {m} ~Frühaufsteher", v1) == "Morgenmensch ~Frühaufsteher"


@pytest.mark.parametrize(("text", "expected"), [
    ("Hast du Bier im Haus/da?", "Hast du Bier im Haus?"),
    ("Wenn/Falls es regnet, bleiben wir zu Hause.", "Wenn es regnet, bleiben wir zu Hause."),
    ("This is my favourite/favorite song.", "This is my favourite song."),
    ("It’s time to put a/the lid on it.", "It’s time to put a lid on it."),
    ("I/We won’t have it!", "I won’t have it!"),
    ("Come on. There’s a good boy/girl/child!", "Come on. There’s a good boy!"),
    ("It is time-honoured/time-honored.", "It is time-honoured."),
    ("Das waren (noch) Zeiten!", "Das waren Zeiten!"),
    ("Er war enttäuscht (darüber), dass er durchgefallen war.", "Er war enttäuscht, dass er durchgefallen war."),
    ("Ihr Verschwinden wurde nie (auf)geklärt.", "Ihr Verschwinden wurde nie geklärt."),
    ("Ich bin Amerikaner (Kanadier; Deutscher).", "Ich bin Amerikaner."),
    ("(All) hell broke loose.", "Hell broke loose."),
    ("Das Stück ist für mich (gedacht/vorgesehen).", "Das Stück ist für mich."),
    ("Have you got any beer in (the house)?", "Have you got any beer in?"),
    # abbreviations and numbers are not alternatives
    ("He drove at 50 km/h.", "He drove at 50 km/h."),
    ("Please write n/a here.", "Please write n/a here."),
    ("It is open 24/7.", "It is open 24/7."),
])
def test_simplest_reading(text, expected):
    assert ding.simplest_reading(text) == expected


def test_sentences_with_alternatives_are_simplified_and_may_not_be_held_out():
    [pair] = ding.parse_line("Hast du Bier im Haus/da? :: Have you got any beer in (the house)?")
    assert pair == Pair("Have you got any beer in?", "Hast du Bier im Haus?", "ding_sentence")
    assert not pair.may_hold_out
    assert pair.split_source == "Have you got any beer in (the house)?"  # the English v1 extracted
    [v1] = ding.parse_line("Hast du Bier im Haus/da? :: Have you got any beer in (the house)?", ding.RULES_V1)
    assert v1 == Pair("Have you got any beer in (the house)?", "Hast du Bier im Haus/da?", "ding_sentence")
    assert v1.may_hold_out

    [plain] = ding.parse_line("Ich bin pleite. [ugs.] :: I'm broke. [coll.]")
    assert plain.may_hold_out and plain.split_source == ""
    [simplified_german_only] = ding.parse_line("Mit dem Urlaub ist es aus/vorbei. :: That's the end of our holiday.")
    assert simplified_german_only.german == "Mit dem Urlaub ist es aus."
    assert not simplified_german_only.may_hold_out and simplified_german_only.split_source == ""


def test_sentences_with_multi_word_alternatives_are_dropped():
    assert ding.parse_line("Damit hat er den Vogel abgeschossen. :: He really took the biscuit/ the cake.") == []
    assert ding.parse_line("Sie hat es nicht erkannt. :: She failed to understand /recognise/grasp it.") == []


def test_angle_brackets_give_sentences_back_their_status():
    line = "Worauf wartest du? <warten> :: What are you waiting for?"
    assert ding.parse_line(line, ding.RULES_V1) == [
        Pair("What are you waiting for?", "Worauf wartest du? <warten>", "ding_phrase")]
    [pair] = ding.parse_line(line)
    assert pair == Pair("What are you waiting for?", "Worauf wartest du?", "ding_sentence")
    assert pair.may_hold_out  # nothing was guessed: a keyword was removed


def test_phrase_rules_are_unchanged_by_v2():
    for line in ("ich/er/sie stieß :: I/he/she pushed", "Nachricht (in order) :: message (in order)"):
        assert ding.parse_line(line) == []
    assert ding.parse_line("Morgenmensch {m} ~Frühaufsteher :: morning person") == []  # one German word
    assert ding.parse_line("Hafen ~Stauer :: port area ~stevedore") == []  # one German word
    assert ding.parse_line("auf einem Plakat ~Poster :: on a poster") == [
        Pair("on a poster", "auf einem Plakat", "ding_phrase")]


# ---- the split -----------------------------------------------------------------------------------

def _sentence_in(split: str, template: str = "Sentence {} is here.") -> Pair:
    """A ding_sentence whose source hashes into `split`."""
    for number in itertools.count():
        pair = Pair(template.format(number), f"Satz {number} ist hier.", "ding_sentence")
        if corpus.assign_split(pair) == split:
            return pair
    raise AssertionError


def test_edited_pairs_train_but_are_never_held_out():
    held_out = _sentence_in("test_everyday")
    trained = _sentence_in("train")
    edited = [Pair(p.english, p.german, p.origin, may_hold_out=False) for p in (held_out, trained)]
    splits = corpus.split_corpus(edited)
    assert splits["train"] == [trained]
    assert splits["test_everyday"] == []  # dropped: a held-out bucket never feeds train


def test_unedited_text_wins_among_duplicates():
    pair = _sentence_in("test_everyday")
    edited = Pair(pair.english, "Aaa edited.", pair.origin, may_hold_out=False)
    assert corpus.split_corpus([edited, pair])["test_everyday"] == [pair]


def test_previous_train_sources_stay_in_train():
    """The shipped model was trained on the previous corpus: none of its training sources may move
    into a held-out set, by the new key or by the key of the text before the new rules."""
    by_key = _sentence_in("test_everyday")
    by_old_key = _sentence_in("valid", "Other sentence {} here.")
    old_text = "Other sentence (old form) here."
    changed = Pair(by_old_key.english, by_old_key.german, by_old_key.origin, split_source=old_text)
    previous = {corpus.dedup_key(by_key.english): "train", corpus.dedup_key(old_text): "train"}
    splits, notes = corpus.split_corpus_with_notes([by_key, changed], previous)
    assert sorted(splits["train"]) == sorted([by_key, changed])
    assert splits["valid"] == splits["test_everyday"] == []
    assert notes == {"train as in the previous corpus (hash bucket: test_everyday)": 1,
                     "train as in the previous corpus (hash bucket: valid)": 1}
    assert corpus.split_corpus([by_key, changed]) == {  # without `previous`: the hash alone
        "train": [], "valid": [changed], "test_everyday": [by_key], "test_technical": []}


def test_previous_key_of_a_merged_duplicate_counts_too():
    pair = _sentence_in("test_everyday")
    twin = Pair(pair.english + "!", "Zzz.", "ding_phrase", split_source="Its old phrase text")
    previous = {corpus.dedup_key("Its old phrase text"): "train"}
    splits = corpus.split_corpus([pair, twin], previous)
    assert splits["train"] == [pair] and splits["test_everyday"] == []


def test_previous_held_out_sources_stay_held_out_or_leave():
    trains_by_hash = _sentence_in("train")
    key = corpus.dedup_key(trains_by_hash.english)
    assert corpus.split_corpus([trains_by_hash], {key: "test_everyday"})["test_everyday"] == [trains_by_hash]
    phrase = Pair(trains_by_hash.english, trains_by_hash.german, "ding_phrase")
    edited = Pair(trains_by_hash.english, trains_by_hash.german, "ding_sentence", may_hold_out=False)
    for pair in (phrase, edited):  # cannot be held out any more: left out, not trained on
        splits, notes = corpus.split_corpus_with_notes([pair], {key: "test_everyday"})
        assert all(not pairs for pairs in splits.values()), notes


def test_sources_in_two_previous_splits_are_left_out():
    pair = _sentence_in("train")
    moved = Pair(pair.english, pair.german, pair.origin, split_source="Old text.")
    previous = {corpus.dedup_key(pair.english): "test_everyday", corpus.dedup_key("Old text."): "train"}
    splits, notes = corpus.split_corpus_with_notes([moved], previous)
    assert all(not pairs for pairs in splits.values())
    assert notes == {"dropped: source keys in test_everyday and train of the previous corpus": 1}


def test_build_keeps_v1_training_sources_in_train(tmp_path: Path):
    """End to end: a line v1 read as a phrase (train) and v2 as a sentence whose hash is held out."""
    template = "Worauf wartest du {}? <warten> :: What are you waiting for {}?"
    number = next(n for n in itertools.count() if corpus.assign_split(
        Pair(f"What are you waiting for {n}?", "x", "ding_sentence")) == "test_everyday")
    ding_path = tmp_path / "de-en"
    ding_path.write_text("\n".join([template.format(number, number),
                                    *(f"Das ist Satz {n}. :: This is sentence {n}." for n in range(300))]),
                         encoding="utf-8")
    (tmp_path / "help" / "en-US").mkdir(parents=True)
    (tmp_path / "help" / "de").mkdir(parents=True)
    argv = ["--ding", str(ding_path), "--help-root", str(tmp_path / "help"), "--no-ui", "--min-test-pairs", "0"]
    sentence = f"What are you waiting for {number}?\tWorauf wartest du {number}?\tding_sentence"

    assert build.main([*argv, "--out", str(tmp_path / "kept")]) == 0
    assert sentence in (tmp_path / "kept" / "train.tsv").read_text(encoding="utf-8").splitlines()
    stats = json.loads((tmp_path / "kept" / "stats.json").read_text(encoding="utf-8"))
    assert stats["split_exceptions"] == {"train as in the previous corpus (hash bucket: test_everyday)": 1}

    assert build.main([*argv, "--out", str(tmp_path / "hashed"), "--no-previous-split"]) == 0
    assert sentence in (tmp_path / "hashed" / "test_everyday.tsv").read_text(encoding="utf-8").splitlines()
