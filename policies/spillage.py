"""Spillage scanner: marking banners in request text, from the markings catalogue.

The gateway scans what a request carries (chat messages, prompts, batch lines,
embeddings input) and refuses it with ``MARKING_SPILLAGE`` when the highest
banner found is above the marking the caller declared. The scan is pure and
reads nothing but the text; callers log the banner's *marking*, never the text.

What counts as a banner
-----------------------
A *spelling* is any spelling of a marking above ``PUBLIC`` in
``markings.yaml`` (id, aliases, legacy aliases) of at least four letters,
matched with accents, case, spacing and hyphen/dash style ignored *between and
inside* its words ("VS – NUR FÜR DEN DIENSTGEBRAUCH", "VS-Nur fuer den
Dienstgebrauch", "RESTREINT UE / EU RESTRICTED"), standing as whole words on
one line. Abbreviations under four letters ("DR", "NR", "SD", "NFD" alone)
never count. A spelling is a banner in one of three forms:

1. **Upper-case banner** — a spelling of two or more words written entirely
   in upper case, anywhere: ``… DIFFUSION RESTREINTE …``, ``RESTREINT UE/EU
   RESTRICTED``, ``VS-NFD``, ``NATO SECRET``.
2. **Designator** — a spelling whose catalogue form mixes cases, written
   exactly so, anywhere: ``VS-NfD``.
3. **Header line** — a spelling that opens a line (after blanks and
   decoration such as ``*``, ``#``, ``=``, ``[``, ``«``), begins with a
   capital, and is followed by the end of the line or a separator (``:``,
   ``-``, ``–``, ``—``, ``/``, ``|``, ``)``, ``]``, ``»``, ``*``):
   ``Diffusion Restreinte – Ministère …``, ``Restreint UE``, ``SECRET``,
   ``GEHEIM:``. A one-word spelling (``SECRET``, ``GEHEIM``, ``VSNFD``)
   counts only in this form, and only in upper case.

Not banners, by design: prose in lower or mixed case ("la diffusion restreinte
de ce rapport", "nur für den Dienstgebrauch bestimmt", "Diffusion restreinte
aux membres du comité" — a header must end its line or be followed by a
separator), a one-word spelling inside a line ("THE SECRET SAUCE"), and the
words "restreint" or "Dienstgebrauch" on their own (no spelling is that short).

Speed
-----
Two cheap passes decide which work is needed. Every upper-case banner (forms 1
and 3) contains, within one word, an *anchor*: a few capital words chosen from
the catalogue (``SECRET``, ``RESTREINT``, ``NFD``, …). The text's UTF-8 bytes
are reduced by one ``bytes.translate`` to its capitals (accented capitals
folded to their letter); a designator's anchor (``NfD``) is looked up in the
text only when its capitals (``ND``) are there. Only if an anchor occurs is
the whole text scanned with the precompiled regex (each alternative starts
with a literal capital and the spellings are factored as a trie). Otherwise
only line starts are tried, with the same alternatives behind a literal line
break. Ordinary prose costs 25–40 µs per 8 KiB on the 2-core reference
machine, a text carrying a banner 70–130 µs (``benchmarks/spillage_bench.py``).

(One module because it is one contract and its scanner: it runs past 300 lines because its first 55
are the contract above.)

>>> highest_banner("Note\\nDIFFUSION RESTREINTE\\nobjet : …").id
'DR'
>>> highest_banner("la diffusion restreinte de ce rapport") is None
True
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from policies.decision import Reason, ReasonCode
from policies.markings import Marking, catalogue

#: Characters allowed between the words of a spelling (never a line break).
_SEP = r"[ \t\u00a0\u202f\-\u2010-\u2015_./]+"
#: Decoration allowed before a header line's banner, and separators allowed after it.
_LEAD = " \t*#=~_>|[(«\"'•-\u2010\u2011\u2012\u2013\u2014\u2015"
_TRAIL = frozenset(":-\u2010\u2011\u2012\u2013\u2014\u2015/|)]»*\"'")
_MIN_LETTERS = 4
_ACCENTS = {"a": "aàâä", "e": "eéèêë", "i": "iîï", "o": "oôö", "u": "uùûü", "c": "cç"}


class Banner(NamedTuple):
    """A banner found in text: its marking and where (character offsets)."""

    marking: Marking
    start: int
    end: int


def _fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _words(value: str) -> list[str]:
    """Folded words of a spelling: ``"RESTREINT UE/EU RESTRICTED"`` → restreint, ue, eu, restricted."""
    return re.findall(r"[^\W_]+", _fold(value))


def _word_pattern(word: str) -> str:
    """A pattern for one folded word with accented vowels accepted (case: the caller's flag).

    >>> _word_pattern("fur")
    'f[uùûü]r'
    """
    return "".join(f"[{_ACCENTS[ch]}]" if ch in _ACCENTS else re.escape(ch) for ch in word)


def _caps_table() -> tuple[bytes, bytes]:
    """A ``bytes.translate`` table keeping A–Z and folding the UTF-8 continuation bytes of
    À–Þ to their base capital, and the bytes to delete (everything else)."""
    table = bytearray(range(256))
    for byte in range(0x80, 0x9F):  # U+00C0..U+00DE are C3 80..C3 9E in UTF-8
        base = _fold(chr(0xC0 + byte - 0x80)).upper()[:1]
        if base.isascii() and base.isalpha():
            table[byte] = ord(base)
    kept = set(range(ord("A"), ord("Z") + 1))
    kept |= {b for b in range(0x80, 0x9F) if table[b] != b}
    delete = bytes(b for b in range(256) if b not in kept)
    return bytes(table), delete


def _anchors(forms: dict[str, set[str]]) -> list[str]:
    """Few words such that every banner form has a word containing one: a greedy cover,
    taking the candidate (a word of four letters or more, or a form's longest word) that
    covers most forms, then the longest, until all are covered.

    Anchors never span two words: between words the reduced bytes may hold anything.
    ``forms`` maps each form (a banner's words, space-separated) to its words.

    >>> _anchors({"SECRET UE": {"SECRET", "UE"}, "EU SECRET": {"EU", "SECRET"},
    ...           "STRENG GEHEIM": {"STRENG", "GEHEIM"}, "GEHEIM": {"GEHEIM"}})
    ['GEHEIM', 'SECRET']
    """
    candidates = sorted({w for words in forms.values() for w in words if len(w) >= 4}
                        | {max(words, key=len) for words in forms.values()})

    def covers(candidate: str, form: str) -> bool:
        return any(candidate in word for word in forms[form])

    uncovered, chosen = set(forms), []
    while uncovered:
        best = max(candidates, key=lambda c: (sum(covers(c, f) for f in uncovered), len(c)))
        chosen.append(best)
        uncovered = {f for f in uncovered if not covers(best, f)}
    return sorted(chosen)


def _trie(spellings: Iterable[list[str]]) -> str:
    """One regex for many spellings (lists of folded words), factored as a trie so that a
    shared prefix is matched once; each alternative starts with a literal capital, the rest
    is case-insensitive, each word must end a word, and longer continuations are tried first.

    >>> pattern = re.compile(_trie([["secret"], ["secret", "ue"], ["geheim"]]))
    >>> [pattern.match(t).group() for t in ("SECRET UE", "Secret ue", "SECRET UEX", "GEHEIM")]
    ['SECRET UE', 'Secret ue', 'SECRET', 'GEHEIM']
    >>> pattern.match("secret") is None  # the first letter is a capital
    True
    """
    root: dict[str, list] = {}
    for words in spellings:
        node = root
        for index, word in enumerate(words):
            entry = node.setdefault(word, [False, {}])
            entry[0] = entry[0] or index == len(words) - 1
            node = entry[1]

    def word(text: str) -> str:
        return _word_pattern(text) + r"(?![^\W_])"

    def tail(entry: list) -> str:
        end, children = entry
        if not children:
            return ""
        alternatives = "|".join(word(w) + tail(children[w]) for w in sorted(children, key=lambda w: (-len(w), w)))
        return f"(?:{_SEP}(?:{alternatives}))" + ("?" if end else "")

    by_letter: dict[str, list[str]] = {}
    for first in sorted(root, key=lambda w: (-len(w), w)):
        by_letter.setdefault(first[0].upper(), []).append(word(first[1:]) + tail(root[first]))
    return "|".join(f"{letter}(?i:{'|'.join(alternatives)})" for letter, alternatives in sorted(by_letter.items()))


class _Scanner:
    """The compiled catalogue: the regexes, the anchors, and what each spelling is."""

    def __init__(self, markings: Iterable[Marking]) -> None:
        self.by_key: dict[str, Marking] = {}
        self.single: set[str] = set()
        self.designators: set[str] = set()
        forms: dict[str, set[str]] = {}  # each upper-case form's words
        text_anchors: set[str] = set()
        spellings: list[list[str]] = []
        for marking in markings:
            if marking.level < 1:
                continue
            for spelling in marking.spellings:
                words = _words(spelling)
                if sum(len(w) for w in words) < _MIN_LETTERS:
                    continue
                key = " ".join(words)
                self.by_key[key] = marking
                spellings.append(words)
                if len(words) == 1:
                    self.single.add(key)
                upper = [w.upper() for w in words]
                forms.setdefault(" ".join(upper), set()).update(upper)
                if spelling != spelling.upper():
                    self.designators.add(re.sub(_SEP, "-", spelling))
                    text_anchors.add(max(re.findall(r"[^\W_]+", spelling), key=len))
        self.anchors = tuple(a.encode("ascii") for a in _anchors(forms))
        # a designator anchor ("NfD") is searched in the text only when its capitals ("ND") are
        # in the reduced bytes: that gate is cheap, the text search is not
        self.text_anchors = tuple((re.sub(r"[^A-Z]", "", a).encode("ascii"), a) for a in sorted(text_anchors))
        self.table, self.delete = _caps_table()
        alternatives = _trie(spellings)
        self.anywhere = re.compile(alternatives)
        self.first_line = re.compile(f"[{re.escape(_LEAD)}]*({alternatives})")
        self.line = re.compile(f"\n[{re.escape(_LEAD)}]*({alternatives})")

    def banners(self, text: str) -> list[Banner]:
        """Every banner in ``text``, in order."""
        caps = text.encode("utf-8", "surrogatepass").translate(self.table, self.delete)
        for anchor in self.anchors:
            if anchor in caps:
                return self._scan_all(text)
        for gate, anchor in self.text_anchors:
            if gate in caps and anchor in text:
                return self._scan_all(text)
        return self._scan_lines(text)

    def _scan_all(self, text: str) -> list[Banner]:
        found: list[Banner] = []
        search = self.anywhere.search
        pos = 0
        while (match := search(text, pos)) is not None:
            start, end = match.span()
            marking = self._banner(text, start, end)
            if marking is None:
                pos = start + 1
            else:
                found.append(Banner(marking, start, end))
                pos = end
        return found

    def _scan_lines(self, text: str) -> list[Banner]:
        found: list[Banner] = []
        matches = list(self.line.finditer(text))
        first = self.first_line.match(text)
        if first is not None:
            matches.insert(0, first)
        for match in matches:
            start, end = match.span(1)
            marking = self._banner(text, start, end)
            if marking is not None:
                found.append(Banner(marking, start, end))
        return found

    def _banner(self, text: str, start: int, end: int) -> Marking | None:
        """The marking if text[start:end], a regex match, is a banner in one of the three forms."""
        if (start and text[start - 1].isalnum()) or (end < len(text) and text[end].isalnum()):
            return None
        spelled = text[start:end]
        upper = spelled == spelled.upper()
        header: bool | None = None
        if not upper and _dashed(spelled) not in self.designators:
            header = _is_header(text, start, end)
            if not header:
                return None
        key = _key(spelled)
        marking = self.by_key.get(key)
        if marking is None:
            return None
        if key not in self.single:
            return marking
        if not upper:
            return None
        return marking if (header if header is not None else _is_header(text, start, end)) else None


@lru_cache(maxsize=1024)
def _key(spelled: str) -> str:
    return " ".join(_words(spelled))


@lru_cache(maxsize=1024)
def _dashed(spelled: str) -> str:
    return re.sub(_SEP, "-", spelled)


def _is_header(text: str, start: int, end: int) -> bool:
    """True when text[start:end] opens its line and is followed by the line's end or a separator."""
    line_start = text.rfind("\n", 0, start) + 1
    if text[line_start:start].strip(_LEAD):
        return False
    line_end = text.find("\n", end)
    rest = text[end:line_end if line_end >= 0 else len(text)].lstrip(" \t\u00a0\u202f")
    return not rest or rest[0] in _TRAIL or rest[0] == "\r"


@lru_cache(maxsize=1)
def _scanner() -> _Scanner:
    return _Scanner(catalogue().values())


def find_banners(text: str) -> list[Banner]:
    """Every banner in ``text``, in order (the module docstring says what counts).

    >>> [(b.marking.id, b.start) for b in find_banners("VS-NfD\\nBericht")]
    [('VS-NfD', 0)]
    """
    return _scanner().banners(text)


def highest_banner(*texts: str) -> Marking | None:
    """The marking of the highest-level banner in any of ``texts``, or None (ties: the first).

    Who calls it: the gateway, on every inference request and batch line, before deciding.
    """
    best: Marking | None = None
    scanner = _scanner()
    for text in texts:
        for banner in scanner.banners(text):
            if best is None or banner.marking.level > best.level:
                best = banner.marking
    return best


def spillage_reason(declared: Marking, *texts: str) -> Reason | None:
    """A ``MARKING_SPILLAGE`` reason when a banner in ``texts`` is above ``declared``, else None.

    The reason names the banner's marking and level and the declared marking, never the text.
    """
    banner = highest_banner(*texts)
    if banner is None or banner.level <= declared.level:
        return None
    return Reason.of(ReasonCode.MARKING_SPILLAGE, "marking-spillage", banner=banner.id,
                     level=banner.level, marking=declared.id)


def request_texts(payload: Mapping[str, Any]) -> Iterator[str]:
    """Every caller-written text of an OpenAI request body (chat, completions, embeddings).

    >>> list(request_texts({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
    ...                     "prompt": ["b", "c"], "input": "d"}))
    ['a', 'b', 'c', 'd']
    """
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    yield part["text"]
    for key in ("prompt", "input"):
        value = payload.get(key)
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (item for item in value if isinstance(item, str))
