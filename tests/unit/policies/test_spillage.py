"""The spillage scanner: banner forms of every spelling, and no false positive on prose."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from policies import ReasonCode, parse_marking
from policies.markings import catalogue
from policies.spillage import _scanner, find_banners, highest_banner, spillage_reason

RESTRICTED = [m for m in catalogue().values() if m.level == 1]
ABOVE_PUBLIC = [m for m in catalogue().values() if m.level >= 1]


def letters(spelling: str) -> int:
    return len(re.findall(r"[^\W\d_]", spelling))


def spellings(markings):
    return [(m.id, s) for m in markings for s in m.spellings]


BANNERS = [(m, s) for m, s in spellings(ABOVE_PUBLIC) if letters(s) >= 4]
MULTIWORD = [(m, s) for m, s in BANNERS if re.search(r"[\s\-/]", s)]
SHORT = [(m, s) for m, s in spellings(ABOVE_PUBLIC) if letters(s) < 4]


def found(text: str) -> list[str]:
    return [b.marking.id for b in find_banners(text)]


def dashed(spelling: str) -> str:
    """The spelling with its separators written as ' – ' (en dash) and doubled spaces."""
    return re.sub(r"[\s\-/]+", " – ", spelling)


def deaccent(spelling: str) -> str:
    return spelling.replace("Ü", "U").replace("É", "E").replace("È", "E")


@pytest.mark.parametrize(("marking", "spelling"), spellings(RESTRICTED), ids=lambda v: v)
def test_every_spelling_of_every_restricted_marking_is_a_banner_on_its_own_line_unless_an_abbreviation(
        marking, spelling):
    text = f"Objet : note\n{spelling.upper()}\nLe texte suit."
    assert found(text) == ([marking] if letters(spelling) >= 4 else [])


@pytest.mark.parametrize(("marking", "spelling"), BANNERS, ids=lambda v: v)
class TestBannerForms:
    def test_an_upper_case_header_line_with_decoration_is_a_banner(self, marking, spelling):
        assert found(f"*** {spelling.upper()} ***\ntext") == [marking]

    def test_a_header_followed_by_a_separator_is_a_banner(self, marking, spelling):
        assert found(f"intro\n{spelling.upper()} – Ministère de l'Intérieur\n") == [marking]

    def test_accents_case_and_dashes_inside_a_header_do_not_matter(self, marking, spelling):
        title = dashed(deaccent(spelling)).title() if " " in spelling or "-" in spelling else spelling.upper()
        assert found(f"Bericht\n  {title}:\nText") == [marking]

    def test_the_scan_of_every_line_agrees_with_the_scan_of_the_whole_text(self, marking, spelling):
        text = f"a\n{spelling.upper()}\nb {spelling.upper()} c"
        scanner = _scanner()
        assert scanner.banners(text) == scanner._scan_all(text)


@pytest.mark.parametrize(("marking", "spelling"), MULTIWORD, ids=lambda v: v)
def test_an_upper_case_multiword_spelling_is_a_banner_anywhere(marking, spelling):
    assert found(f"Le document {dashed(spelling).upper()} est joint.") == [marking]


@pytest.mark.parametrize(("marking", "spelling"), SHORT, ids=lambda v: v)
def test_an_abbreviation_is_never_a_banner(marking, spelling):
    assert found(f"{spelling}\nvoir {spelling} ci-dessous\n{spelling}:") == []


PROSE = {
    "French prose on restricted diffusion":
        "La diffusion restreinte de ce rapport est demandée par le préfet.\n"
        "Diffusion restreinte aux membres du comité, merci.",
    "German prose mentioning Dienstgebrauch":
        "Das Dokument ist nur für den Dienstgebrauch bestimmt.\nDienstgebrauch heißt: intern.",
    "the word restreint alone":
        "Le périmètre est restreint.\nRESTREINT\nAccès restreint : oui.",
    "a one-word spelling inside a line, even in upper case":
        "THE SECRET SAUCE IS GEHEIM FOR NOW\nThis is a secret.\nGeheim ist das nicht.",
    "a one-word spelling in sentence case at the start of a line":
        "Secret: the recipe uses butter.\nGeheim: das Rezept.",
    "a lower-case mention of an EU marking":
        "Documents marked restreint ue are handled by the registry.",
    "a spelling glued to another word":
        "SECRETARIAT\nNATO RESTRICTEDNESS is not a word\nDIFFUSION RESTREINTES",
    "vertrag and vertraulich in German prose":
        "Der Vertrag ist vertraulich zu behandeln. VS-Vertragsstand: offen.",
}


@pytest.mark.parametrize("text", PROSE.values(), ids=PROSE.keys())
def test_ordinary_prose_is_not_a_banner(text):
    assert find_banners(text) == []


def test_the_highest_banner_wins_across_texts():
    assert highest_banner("VS-NfD\nBericht", "x\nSECRET UE\ny", "NATO RESTRICTED").id == "SECRET UE"
    assert highest_banner("nothing here", "") is None


def test_a_banner_above_the_declared_marking_is_spillage_and_the_reason_carries_no_text():
    reason = spillage_reason(parse_marking("VS-NfD"), "Lagebericht\nGEHEIM\nDie Lage ist ernst.")
    assert reason.code == ReasonCode.MARKING_SPILLAGE and reason.rule == "marking-spillage"
    assert reason.details == {"banner": "GEHEIM", "level": 3, "marking": "VS-NfD"}
    assert "ernst" not in reason.message and "GEHEIM" in reason.message


def test_a_banner_at_or_below_the_declared_marking_is_not_spillage():
    assert spillage_reason(parse_marking("DR"), "DIFFUSION RESTREINTE\nnote") is None
    assert spillage_reason(parse_marking("VS-NfD"), "DIFFUSION RESTREINTE\nnote") is None
    assert spillage_reason(parse_marking("PUBLIC"), "plain text") is None


def test_banner_offsets_point_at_the_banner():
    text = "Betreff\n\nVS – NUR FÜR DEN DIENSTGEBRAUCH\nText"
    [banner] = find_banners(text)
    assert text[banner.start:banner.end] == "VS – NUR FÜR DEN DIENSTGEBRAUCH"


fragments = st.sampled_from([
    " ", "\n", "-", "–", ":", "*", "la", "Diffusion", "RESTREINTE", "restreinte", "VS", "NfD", "NUR", "FÜR",
    "DEN", "DIENSTGEBRAUCH", "Dienstgebrauch", "SECRET", "Secret", "UE", "EU", "RESTRICTED", "NATO", "GEHEIM",
    "STRENG", "TRÈS", "DÉFENSE", "CONFIDENTIEL", "é", "x",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(fragments, max_size=40).map("".join))
def test_the_fast_path_finds_exactly_what_a_full_scan_finds(text):
    scanner = _scanner()
    assert scanner.banners(text) == scanner._scan_all(text)
