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
Two cheap passes decide which work is needed. Every form-1, form-2 and
one-word banner contains, in its exact case, an *anchor*: the longest word of
one of its spellings (upper case, or as written for a designator). The text's
UTF-8 bytes are reduced in one ``bytes.translate`` to its capitals (accented
capitals folded to their letter) and the letters designators use; only if an
anchor occurs there is the whole text scanned with the one precompiled regex.
Otherwise only line starts are tried (a regex whose literal prefix is the line
break). About 30 µs for 8 KiB of ordinary prose (``benchmarks/spillage_bench.py``).

>>> highest_banner("Note\\nDIFFUSION RESTREINTE\\nobjet : …").id
'DR'
>>> highest_banner("la diffusion restreinte de ce rapport") is None
True
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

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


def _caps_table(keep_lower: str) -> tuple[bytes, bytes]:
    """A ``bytes.translate`` table keeping A–Z and ``keep_lower``, folding the UTF-8
    continuation bytes of À–Þ to their base capital, and the bytes to delete."""
    table = bytearray(range(256))
    for byte in range(0x80, 0x9F):  # U+00C0..U+00DE are C3 80..C3 9E in UTF-8
        base = _fold(chr(0xC0 + byte - 0x80)).upper()[:1]
        if base.isascii() and base.isalpha():
            table[byte] = ord(base)
    kept = {*range(ord("A"), ord("Z") + 1), *map(ord, keep_lower)}
    kept |= {b for b in range(0x80, 0x9F) if table[b] != b}
    delete = bytes(b for b in range(256) if b not in kept)
    return bytes(table), delete


def _anchors(forms: dict[str, set[str]]) -> list[str]:
    """Few words such that every banner form contains one: a greedy cover, taking the word
    of four letters or more (shorter only when a form has none) that covers most forms,
    then the longest, until all are covered.

    ``forms`` maps each form (a banner's letters run together) to its words.

    >>> _anchors({"SECRETUE": {"SECRET", "UE"}, "EUSECRET": {"EU", "SECRET"},
    ...           "STRENGGEHEIM": {"STRENG", "GEHEIM"}, "GEHEIM": {"GEHEIM"}})
    ['GEHEIM', 'SECRET']
    """
    candidates = sorted({w for words in forms.values() for w in words if len(w) >= 4}
                        | {max(words, key=len) for words in forms.values()})
    uncovered, chosen = set(forms), []
    while uncovered:
        best = max(candidates, key=lambda c: (sum(c in f for f in uncovered), len(c)))
        chosen.append(best)
        uncovered = {f for f in uncovered if best not in f}
    return sorted(chosen)


class _Scanner:
    """The compiled catalogue: the regexes, the anchors, and what each spelling is."""

    def __init__(self, markings: Iterable[Marking]) -> None:
        self.by_key: dict[str, Marking] = {}
        self.single: set[str] = set()
        self.designators: set[str] = set()
        forms: dict[str, set[str]] = {}  # each banner's letters as they reach the reduced bytes
        branches: dict[str, set[str]] = {}
        for marking in markings:
            if marking.level < 1:
                continue
            for spelling in marking.spellings:
                words = _words(spelling)
                if sum(len(w) for w in words) < _MIN_LETTERS:
                    continue
                key = " ".join(words)
                self.by_key[key] = marking
                if len(words) == 1:
                    self.single.add(key)
                upper = [w.upper() for w in words]
                forms.setdefault("".join(upper), set()).update(upper)
                if spelling != spelling.upper():
                    self.designators.add(re.sub(_SEP, "-", spelling))
                    written = re.findall(r"[^\W_]+", spelling)
                    forms.setdefault("".join(written), set()).update(written)
                body = _word_pattern(words[0][1:]) + "".join(_SEP + _word_pattern(w) for w in words[1:])
                branches.setdefault(words[0][0].upper(), set()).add(body)
        kept = _anchors(forms)
        self.anchors = tuple(a.encode("ascii") for a in kept)
        keep_lower = "".join(sorted({ch for a in kept for ch in a if ch.islower()}))
        self.table, self.delete = _caps_table(keep_lower)
        # each alternative starts with a literal capital; longest first ("TRES SECRET UE" > "TRES SECRET")
        alternatives = "|".join(f"{first}(?i:{'|'.join(sorted(bodies, key=lambda b: (-len(b), b)))})"
                                for first, bodies in sorted(branches.items()))
        self.anywhere = re.compile(alternatives)
        self.first_line = re.compile(f"[{re.escape(_LEAD)}]*({alternatives})")
        self.line = re.compile(f"\n[{re.escape(_LEAD)}]*({alternatives})")

    def banners(self, text: str) -> list[Banner]:
        """Every banner in ``text``, in order."""
        caps = text.encode("utf-8", "surrogatepass").translate(self.table, self.delete)
        for anchor in self.anchors:
            if anchor in caps:
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
        key = " ".join(_words(spelled))
        marking = self.by_key.get(key)
        if marking is None:
            return None
        upper = spelled == spelled.upper()
        if key not in self.single and (upper or re.sub(_SEP, "-", spelled) in self.designators):
            return marking
        if key in self.single and not upper:
            return None
        return marking if _is_header(text, start, end) else None


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
