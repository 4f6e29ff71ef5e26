"""Text a translation must carry over unchanged: web addresses, e-mail addresses, file paths, numbers.

The model spells these piece by piece and gets them wrong (en-de/3: "2024-05-17" -> "2024-17",
"support@example.org" -> "um@beispiel.org", "+49 30 1234567" -> "+49 3067"; of the sentences of
`python -m loadtest.kept_as_sent`, 0 of 72 web addresses, 0 of 54 e-mail addresses, 1 of 72 paths
and 38 of 126 numbers came back intact). Each span found here is given to the model as one unknown
token (`Codec.split_source(text, verbatim=...)`), which it has learnt to place in its output like
any word it cannot spell; the service's <unk> copy-through then writes the span back as sent, and
translates a sentence that left one out again with a beam that may not end before writing them all.
Stdlib only.

Numbers the model writes well, or that a German translation may rightly change, stay with the
model: integers, decimals ("12.5" -> "12,5"), times, and a word joined to a number ("Windows-1252").
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from typing import Literal

VerbatimKind = Literal["url", "email", "path", "number"]
VERBATIM_KINDS: tuple[VerbatimKind, ...] = ("url", "email", "path", "number")

# Each pattern starts only where a run of the characters it begins with starts (its lookbehind),
# so that a long run that matches nothing is read once, not once from each of its characters.
_URL = re.compile(r"(?<![\w@.+-])(?:[a-z][a-z0-9+.-]*://|www\.)[^\s<>\"“”„‘’‚«»‹›]+", re.IGNORECASE)
# A web address without a scheme or "www.", written as people write them: a lowercase domain and a
# path (github.com/org/repo, example.org/docs). Lowercase only: "St.Gallen/Zurich" is no address.
_BARE_URL = re.compile(r"(?<![\w@.+/-])(?:[a-z0-9][a-z0-9-]*\.)+[a-z]{2,}/[^\s<>\"“”„‘’‚«»‹›]*")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A Windows path's folder names may hold single spaces (C:\Program Files\...), as may its last name
# when it ends in an extension and has no other dot (My Report.docx, not "a.txt and b.txt"); no name
# holds a colon, so a second path in the sentence is never part of the first.
_WINDOWS_CHARACTER = r"[^\s<>\"|?*\\:]"
_WINDOWS_TAIL = (r"(?:" + _WINDOWS_CHARACTER + r"+(?: " + _WINDOWS_CHARACTER + r"+)*\\)*"  # folders
                 r"(?:[^\s<>\"|?*\\:.]+(?: [^\s<>\"|?*\\:.]+)+\.[A-Za-z0-9]{1,5}(?![\w.])"  # a name with spaces
                 r"|" + _WINDOWS_CHARACTER + r"*)")  # a name without
_PATH = re.compile(
    r"(?<![\w/\\.~%@+-])(?:"
    r"[A-Za-z]:\\" + _WINDOWS_TAIL +  # C:\Program Files\LibreOffice\program\soffice.exe
    r"|\\\\[\w.$-]+\\" + _WINDOWS_TAIL +  # \\server\My Share\file
    r"|(?:~|\.{1,2})?/[\w.@%+~-]+(?:/[\w.@%+~-]*)+"  # /etc/nginx/nginx.conf, ~/notes/a.txt, ./bin/run
    r"|[\w.-]+(?:/[\w.-]+)+\.[A-Za-z][A-Za-z0-9]{0,4}(?![\w/])"  # data/2024/summary.csv
    r")"
)
# An international phone number written in groups: +49 30 1234567, +1 (555) 123-4567.
_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d+\)|\d+))+")
# A word, separators inside it: 555-0199, 3.14.2, INV-2024-0815 (kept if _number_needs_keeping).
_WORD = re.compile(r"(?<![\w.,:/-])\w+(?:[-.,:/]\w+)*")
_TRAILING = ".,;:!?'\"…。、"  # sentence punctuation after an address is not part of it
# Every span holds one of these (a URL "://" or "www.", an e-mail "@", a path a slash, a number a
# digit): most sentences have none and are passed over with one search (~1 us, not ~30).
_ANY = re.compile(r"[0-9@/\\]|www\.", re.IGNORECASE)


def _trimmed(text: str, start: int, end: int) -> int:
    """End of the span text[start:end] without the punctuation that closes its sentence or clause,
    nor a closing bracket it does not open."""
    while end > start:
        last = text[end - 1]
        if last in _TRAILING or (last in ")]}" and text.count("([{"[")]}".index(last)], start, end) <
                                  text.count(last, start, end)):
            end -= 1
        else:
            break
    return end


def _number_needs_keeping(token: str) -> bool:
    """A number the model mangles: two or more separators (dates, versions, addresses, codes such as
    INV-2024-0815, thousands: en-de/3 wrote "1,000,000" as "1.000" and "1,234,567" as "1,567") or
    digits on both sides of a hyphen (phone numbers, ranges). The model's to write (a German
    translation may change them): one separator ("0.908789" -> "0,908789", "25,000" -> "25.000"),
    plain integers, which it copies well, and anything with a word in it ("Windows-1252",
    "5-year-old", "COVID-19-related"; capitals alone, as in "INV" or "ISO", are a code)."""
    if not any(character.isdigit() for character in token):
        return False
    if any(part.isalpha() and not part.isupper() for part in re.split(r"[-.,:/]", token)):
        return False
    return sum(token.count(mark) for mark in "-.,:/") >= 2 or bool(re.search(r"\d-\d", token))


@functools.lru_cache(maxsize=256)
def _terms_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    """Any of `terms` as whole words: no letter, digit or underscore glued to either end, whatever the
    term's own ends are (".NET" is not in "ASP.NET", "C++" not in "C++11"), longest first."""
    alternatives = [re.escape(term) for term in sorted(set(terms), key=len, reverse=True)]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")


def verbatim_spans(text: str, kinds: Sequence[VerbatimKind] = VERBATIM_KINDS, terms: tuple[str, ...] = (),
                   ) -> list[tuple[int, int]]:
    """[start, end) spans of `text` to keep as they are, in order, never overlapping. `terms`: words
    or phrases a client asked to keep (product names, menu commands), as whole words; an address or
    path that holds one is kept whole, a term that holds whole addresses or numbers is kept whole
    (they are part of it)."""
    found: list[tuple[int, int]] = []  # sorted
    terms = tuple(term for term in terms if term.strip())
    if not terms and (not kinds or not _ANY.search(text)):
        return found

    def add(start: int, end: int) -> None:
        at = bisect.bisect(found, (start, end))
        if end > start and (at == 0 or found[at - 1][1] <= start) and (at == len(found) or end <= found[at][0]):
            found.insert(at, (start, end))

    def add_covering(start: int, end: int) -> None:
        """Add [start, end) in place of the spans wholly inside it, unless it cuts one."""
        inside = [span for span in found if start <= span[0] and span[1] <= end]
        for span in inside:
            found.remove(span)
        before = len(found)
        add(start, end)
        if len(found) == before:  # it overlaps a span it does not hold: that one stays, as found
            for span in inside:
                add(*span)

    if "url" in kinds:
        for pattern in (_URL, _BARE_URL):
            for match in pattern.finditer(text):
                add(match.start(), _trimmed(text, match.start(), match.end()))
    if "email" in kinds:
        for match in _EMAIL.finditer(text):
            add(match.start(), match.end())
    if "path" in kinds:
        for match in _PATH.finditer(text):
            add(match.start(), _trimmed(text, match.start(), match.end()))
    if terms:  # after the addresses and paths they may be part of or hold, before the numbers they may hold
        for match in _terms_pattern(terms).finditer(text):
            add_covering(match.start(), match.end())
    if "number" in kinds:
        for match in _PHONE.finditer(text):
            if sum(c.isdigit() for c in match.group()) >= 7:
                add(match.start(), match.end())
        for match in _WORD.finditer(text):
            if _number_needs_keeping(match.group()):
                add(match.start(), match.end())
    return found
