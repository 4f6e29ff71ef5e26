"""Corpus parsing and splitting on small inline fixtures: Ding lines, two tiny help pages, the split rules."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from training.data import build, corpus, ding, libreoffice
from training.data.corpus import Pair

DING_LINES = [
    "# Version :: devel 2023-01-30",
    "Abholort {m} | Abholorte {pl} :: collection location; pickup location | collection locations",
    "Ich bin pleite. [ugs.] :: I'm broke. [coll.]",
    "auf einem Plakat :: on a poster",
    "jdm. etw. geben | Er gab ihr das Buch. :: to give sb. sth. | He gave her the book.",
    "Was meinen Sie (damit; genau)?; Wie bitte? :: What do you mean (by that; exactly)?; Pardon?",
    "ich/er/sie stieß :: I/he/she pushed",
    "Das ist ... gut. :: That is ... good.",
    "ein Satz | zwei Sätze | drei :: one sentence | two sentences",
]


def test_strip_annotations_removes_braces_and_brackets():
    assert ding.strip_annotations("Abholstelle {f} [transp.] {pl}") == "Abholstelle"
    assert ding.strip_annotations("pickup point [Am.]; pick-up point") == "pickup point; pick-up point"


def test_first_alternative_ignores_semicolons_inside_parentheses():
    assert ding.first_alternative("collection location; pickup location") == "collection location"
    assert (
        ding.first_alternative("What do you mean (by that; exactly)?; Pardon?")
        == "What do you mean (by that; exactly)?"
    )
    assert ding.first_alternative("no alternatives") == "no alternatives"


@pytest.mark.parametrize(
    "text",
    ["jdm. etw. geben", "to give sb. sth.", "sb's car", "Das ist ... gut.", "warten auf …", "Katze / Hund"],
)
def test_placeholders_are_detected(text):
    assert ding.has_placeholder(text)


@pytest.mark.parametrize("text", ["Er gab ihr das Buch.", "He gave her the book.", "subject", "Jdx"])
def test_ordinary_text_has_no_placeholder(text):
    assert not ding.has_placeholder(text)


def test_parse_lines_classifies_sentences_and_phrases():
    pairs = list(ding.parse_lines(DING_LINES))
    assert Pair("I'm broke.", "Ich bin pleite.", "ding_sentence") in pairs
    assert Pair("He gave her the book.", "Er gab ihr das Buch.", "ding_sentence") in pairs
    assert Pair("What do you mean?", "Was meinen Sie?", "ding_sentence") in pairs  # simplest reading
    v1_pairs = list(ding.parse_lines(DING_LINES, ding.RULES_V1))
    assert (
        Pair("What do you mean (by that; exactly)?", "Was meinen Sie (damit; genau)?", "ding_sentence")
        in v1_pairs
    )
    assert Pair("on a poster", "auf einem Plakat", "ding_phrase") in pairs
    assert Pair("collection location", "Abholort", "ding_phrase") not in pairs  # one German token
    english = {pair.english for pair in pairs}
    assert "to give sb. sth." not in english  # placeholder
    assert "That is ... good." not in english  # placeholder
    assert "I/he/she pushed" not in english  # conjugation table
    assert "one sentence" not in english  # sub-entry counts differ: the line cannot be aligned
    assert all(pair.origin in corpus.ORIGINS for pair in pairs)


def _help_page(body: str, lang: str) -> str:
    return f'<!DOCTYPE html><html lang="{lang}"><head><title>t</title></head><body>{body}</body></html>'


def test_help_pages_align_by_id_not_by_position(tmp_path: Path):
    english_root, german_root = tmp_path / "en-US", tmp_path / "de"
    for root in (english_root, german_root):
        (root / "text" / "shared").mkdir(parents=True)
    (english_root / "text" / "shared" / "page.html").write_text(
        _help_page(
            '<h1 id="hd_id1">Find  Bar</h1>'
            '<p id="par_id2">Click the <span class="emph">Find</span>\n button.</p>'
            '<p id="par_id3">SUM()</p>'
            '<p id="other4">not alignable</p>'
            '<p id="par_id5">Only in English.</p>',
            "en-US",
        ),
        encoding="utf-8",
    )
    (german_root / "text" / "shared" / "page.html").write_text(
        _help_page(
            '<p id="par_id2">Klicken Sie auf die Schaltfläche <span class="emph">Suchen</span>.</p>'
            '<h1 id="hd_id1">Suchleiste</h1>'
            '<p id="par_id3">SUM()</p>'
            '<p id="other4">nicht ausrichtbar</p>',
            "de",
        ),
        encoding="utf-8",
    )
    pairs = list(libreoffice.read_help(english_root, german_root))
    assert pairs == [
        Pair("Find Bar", "Suchleiste", "libreoffice_help"),
        Pair("Click the Find button.", "Klicken Sie auf die Schaltfläche Suchen.", "libreoffice_help"),
    ]  # SUM() has equal sides; other4 is not an alignable id; par_id5 has no German twin


def test_ui_strings_lose_accelerators():
    assert libreoffice.clean_ui_string("~File") == "File"
    assert libreoffice.clean_ui_string("Fo_rmat") == "Format"
    assert libreoffice.clean_ui_string("a_b_c") == "a_b_c"


def test_normalise_text_unifies_spaces_and_drops_invisible_characters():
    assert corpus.normalise_text("Dienstag,\u00a05.\u202fMärz\t2024\n") == "Dienstag, 5. März 2024"
    assert corpus.normalise_text("Zeit\u00adung\u200b ") == "Zeitung"
    assert corpus.normalise_text("Mu\u0308ller") == "Müller"  # NFC


def test_clean_pairs_filters_and_deduplicates_by_normalised_source():
    pairs = [
        Pair("I'm broke.", "Ich bin pleite.", "ding_sentence"),
        Pair("i'm  broke!", "Ich bin blank.", "ding_phrase"),  # same source key, lower priority origin
        Pair("Hotel Europa", "Hotel Europa", "libreoffice_help"),  # equal sides
        Pair("one", "eins zwei drei vier fünf sechs", "ding_phrase"),  # length ratio
        Pair(" ".join(["word"] * 61), " ".join(["Wort"] * 61), "libreoffice_help"),  # too long
        Pair("123", "456", "libreoffice_ui"),  # no letters
    ]
    assert corpus.clean_pairs(pairs) == [Pair("I'm broke.", "Ich bin pleite.", "ding_sentence")]


def _synthetic_pairs(count: int) -> list[Pair]:
    pairs = []
    for number in range(count):
        pairs.append(
            Pair(f"Sentence number {number} is here.", f"Satz Nummer {number} ist hier.", "ding_sentence")
        )
        pairs.append(
            Pair(
                f"Help paragraph {number} explains it.",
                f"Hilfeabsatz {number} erklärt es.",
                "libreoffice_help",
            )
        )
        pairs.append(Pair(f"phrase {number} here", f"Ausdruck {number} hier", "ding_phrase"))
    return pairs


def test_split_is_deterministic_regardless_of_row_order():
    pairs = _synthetic_pairs(2000)
    shuffled = pairs[:]
    random.Random(7).shuffle(shuffled)
    assert corpus.split_corpus(pairs) == corpus.split_corpus(shuffled)
    assert corpus.split_corpus(pairs) == corpus.split_corpus(list(reversed(pairs)))


def test_test_sets_are_held_out_and_disjoint_from_train_and_valid():
    splits = corpus.split_corpus(_synthetic_pairs(2000))
    assert {pair.origin for pair in splits["test_everyday"]} == {"ding_sentence"}
    assert {pair.origin for pair in splits["test_technical"]} == {"libreoffice_help"}
    assert {pair.origin for pair in splits["valid"]} == {"ding_sentence", "libreoffice_help"}
    assert all(pair.origin != "ding_phrase" for split in corpus.SPLITS[1:] for pair in splits[split])
    # ~7% and ~4.5% of 2000 by hash: nonempty, and not a row-order artefact
    assert 80 <= len(splits["test_everyday"]) <= 200
    assert 40 <= len(splits["test_technical"]) <= 150
    seen: dict[str, str] = {}
    for split, pairs in splits.items():
        for pair in pairs:
            key = corpus.dedup_key(pair.english)
            assert seen.setdefault(key, split) == split, f"{pair.english!r} in {seen[key]} and {split}"
    assert sum(len(pairs) for pairs in splits.values()) == 6000


def test_train_loses_pairs_whose_german_target_is_held_out():
    test_pair = next(p for p in _synthetic_pairs(500) if corpus.assign_split(p) == "test_everyday")
    paraphrase = Pair("A different English source.", test_pair.german, "ding_phrase")
    splits = corpus.split_corpus([test_pair, paraphrase])
    assert splits["test_everyday"] == [test_pair]
    assert splits["train"] == []


def test_tsv_round_trip_and_refuses_tabs(tmp_path: Path):
    pairs = [
        Pair("I'm broke.", "Ich bin pleite.", "ding_sentence"),
        Pair("New query", "Neue Abfrage", "libreoffice_ui"),
    ]
    path = tmp_path / "train.tsv"
    assert corpus.write_tsv(pairs, path) == 2
    assert path.read_text(encoding="utf-8").splitlines()[0] == "I'm broke.\tIch bin pleite.\tding_sentence"
    assert corpus.read_tsv(path) == pairs
    with pytest.raises(ValueError):
        corpus.write_tsv([Pair("a\tb", "c", "ding_phrase")], tmp_path / "bad.tsv")


def test_build_cli_writes_the_documented_files(tmp_path: Path, capsys):
    ding_path = tmp_path / "de-en"
    ding_path.write_text(
        "\n".join([*DING_LINES, *(f"Das ist Satz {n}. :: This is sentence {n}." for n in range(600))]),
        encoding="utf-8",
    )
    for lang, word in (("en-US", "Paragraph"), ("de", "Absatz")):
        page = tmp_path / "help" / lang / "text" / "page.html"
        page.parent.mkdir(parents=True)
        body = "".join(f'<p id="par_id{n}">{word} {n} text.</p>' for n in range(600))
        page.write_text(_help_page(body, lang), encoding="utf-8")
    out = tmp_path / "corpus"
    argv = ["--out", str(out), "--ding", str(ding_path), "--help-root", str(tmp_path / "help")]
    assert build.main([*argv, "--no-ui", "--min-test-pairs", "5"]) == 0

    rows = {split: (out / f"{split}.tsv").read_text(encoding="utf-8").splitlines() for split in corpus.SPLITS}
    assert all(len(line.split("\t")) == 3 for lines in rows.values() for line in lines)
    assert "I'm broke.\tIch bin pleite.\tding_sentence" in {line for lines in rows.values() for line in lines}
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["totals"] == {split: len(lines) for split, lines in rows.items()}
    assert stats["counts"]["test_technical"] == {"libreoffice_help": len(rows["test_technical"])}
    assert "test_everyday" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        build.main([*argv, "--no-ui", "--min-test-pairs", "10000"])
