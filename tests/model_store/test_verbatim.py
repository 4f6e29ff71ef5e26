"""Which text is kept verbatim (model_store.verbatim): addresses, paths and the numbers the model
mangles, and not the numbers and words a German translation may rightly change."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_store.verbatim import verbatim_spans


def kept(text: str, kinds: tuple = ("url", "email", "path", "number")) -> list[str]:
    return [text[start:end] for start, end in verbatim_spans(text, kinds)]


@pytest.mark.parametrize(("text", "expected"), [
    ("Visit https://example.com/docs/install?lang=en#top for details.", ["https://example.com/docs/install?lang=en#top"]),
    ("Download it (see www.libreoffice.org/download/).", ["www.libreoffice.org/download/"]),
    ("See github.com/org/Apply and example.org/docs/ for details.", ["github.com/org/Apply", "example.org/docs/"]),
    ("The wiki (https://en.wikipedia.org/wiki/Foo_(bar)) says so.", ["https://en.wikipedia.org/wiki/Foo_(bar)"]),
    ("Write to support@example.org, or to anna.schmidt@firma.de.", ["support@example.org", "anna.schmidt@firma.de"]),
    ("Open C:\\Users\\anna\\report.docx now.", ["C:\\Users\\anna\\report.docx"]),
    ("Run C:\\Program Files (x86)\\LibreOffice\\soffice.exe or \\\\srv\\My Share\\My Report.docx now.",
     ["C:\\Program Files (x86)\\LibreOffice\\soffice.exe", "\\\\srv\\My Share\\My Report.docx"]),
    # names with spaces only before another name or an extension; no name holds a colon or, spaced, a dot
    ("Copy C:\\a.txt to D:\\b.txt, C:\\x\\a.txt and b.txt; in C:\\Program Files the apps.",
     ["C:\\a.txt", "D:\\b.txt", "C:\\x\\a.txt", "C:\\Program"]),
    ("Edit /etc/nginx/nginx.conf and ~/notes/todo.txt.", ["/etc/nginx/nginx.conf", "~/notes/todo.txt"]),
    ("Copy data/2024/summary.csv here.", ["data/2024/summary.csv"]),
    ("Call 555-0199 or +49 30 1234567 or +1 (555) 123-4567.", ["555-0199", "+49 30 1234567", "+1 (555) 123-4567"]),
    ("On 2024-05-17, version 3.14.2 moved to 192.168.1.20.", ["2024-05-17", "3.14.2", "192.168.1.20"]),
    ("Invoice INV-2024-0815 covers 1990-1995, values 0-255.", ["INV-2024-0815", "1990-1995", "0-255"]),
    ("Codes ISO-8859-1, x86-64 and v1.2.3.", ["ISO-8859-1", "x86-64", "v1.2.3"]),
    ("It has 1,000,000 people and costs $1,234.56.", ["1,000,000", "1,234.56"]),  # the model lost digits
    ('He said \u201csee https://a.com/x\u201d. \u00abhttps://b.com/y\u00bb, https://c.com/z\u2026',
     ["https://a.com/x", "https://b.com/y", "https://c.com/z"]),  # quotes and an ellipsis close it
])
def test_addresses_paths_and_fragile_numbers_are_kept(text: str, expected: list[str]) -> None:
    assert kept(text) == expected


@pytest.mark.parametrize("text", [
    "It rose by 12.5% to 0.908789 at 17:45.",  # decimals and times: German writes 12,5 %
    "Export to Windows-1252 in the mid-1980s; COVID-19 and UTF-8.",  # a word joined to a number
    "My 5-year-old son has a 9-to-5 job, 3/4-inch bolts and COVID-19-related 2-factor-authentication.",
    "It has 25,000 pages and costs 12.5%, $3.50 or 1,234.",  # one separator: German writes 25.000
    "Use and/or in km/h, as in MM/DD/YYYY; cell A1:E10 holds 4711 or 1234567.",
    "The /s switch and a lone / or http:// mean nothing here.",
    "St.Gallen/Zurich by train, see Fig.3/4 or Abb.7/8.",  # no lowercase domain before the slash
])
def test_what_the_model_may_translate_is_left_to_it(text: str) -> None:
    assert kept(text) == []


def test_kinds_choose_what_is_kept() -> None:
    text = "Mail a@b.org about https://x.org/a and 2024-05-17."
    assert kept(text, ("email",)) == ["a@b.org"]
    assert kept(text, ("url", "number")) == ["https://x.org/a", "2024-05-17"]
    assert kept(text, ()) == []


@given(st.text(alphabet="ab1/.-@:+ ()\\~_", max_size=60))
def test_spans_are_sorted_disjoint_and_inside_the_text(text: str) -> None:
    spans = verbatim_spans(text)
    previous = 0
    for start, end in spans:
        assert previous <= start < end <= len(text)
        assert not text[start:end].isspace()
        previous = end


def test_terms_a_client_asked_for_are_kept_as_whole_words() -> None:
    text = "Use git commit, not git commits or legit commit; C++ and Save As... too."
    assert kept(text, ()) == []
    spans = verbatim_spans(text, (), ("git commit", "C++", "Save As...", "Save"))
    assert [text[start:end] for start, end in spans] == ["git commit", "C++", "Save As..."]  # longest first


def test_terms_are_whole_words_whatever_their_own_ends() -> None:
    text = "We use ASP.NET and .NET, C++11 and C++, US$5 and $ 5, (Apply) and Apply_All."
    spans = verbatim_spans(text, (), (".NET", "C++", "$", "Apply"))
    assert [text[start:end] for start, end in spans] == [".NET", "C++", "$", "Apply"]
    assert [start for start, _ in spans] == [text.index(" .NET") + 1, text.index("C++,"), text.index("$ 5"),
                                             text.index("Apply)")]


def test_a_term_holding_an_address_is_kept_whole() -> None:
    text = "Please Visit www.example.com today, or open the file /etc/hosts, or www.example.com/a b."
    terms = ("Visit www.example.com", "file /etc/hosts", "com/a b")
    spans = verbatim_spans(text, ("url", "path"), terms)
    # the first two hold their addresses whole; the third would cut one, which stays as found
    assert [text[start:end] for start, end in spans] == ["Visit www.example.com", "file /etc/hosts",
                                                         "www.example.com/a"]


def test_an_address_holding_a_term_is_kept_whole_and_a_term_holding_a_number_too() -> None:
    text = "See www.example.org/Writer and LibreOffice Writer 2024-05 or Writer 3.2.1 today."
    spans = verbatim_spans(text, ("url", "number"), ("LibreOffice Writer 2024-05", "Writer"))
    assert [text[start:end] for start, end in spans] == [
        "www.example.org/Writer", "LibreOffice Writer 2024-05", "Writer", "3.2.1"]
