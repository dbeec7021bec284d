"""Markings: every scheme, aliases, and the unknown-marking error."""

import pytest

from policies import UnknownCaveatError, UnknownMarkingError, parse_caveat, parse_caveats, parse_marking
from policies.markings import Scheme, catalogue


@pytest.mark.parametrize(
    ("spelling", "marking_id", "scheme", "level"),
    [
        ("DR", "DR", Scheme.FR, 1),
        ("Diffusion Restreinte", "DR", Scheme.FR, 1),
        ("diffusion  restreinte", "DR", Scheme.FR, 1),
        ("SECRET", "SECRET", Scheme.FR, 3),
        ("Très Secret", "TRES SECRET", Scheme.FR, 4),
        ("TRES SECRET", "TRES SECRET", Scheme.FR, 4),
        ("VS-NfD", "VS-NfD", Scheme.DE, 1),
        ("vs-nfd", "VS-NfD", Scheme.DE, 1),
        ("VS-NUR FÜR DEN DIENSTGEBRAUCH", "VS-NfD", Scheme.DE, 1),
        ("VS-Nur fuer den Dienstgebrauch", "VS-NfD", Scheme.DE, 1),
        ("VS-VERTRAULICH", "VS-VERTRAULICH", Scheme.DE, 2),
        ("geheim", "GEHEIM", Scheme.DE, 3),
        ("Streng Geheim", "STRENG GEHEIM", Scheme.DE, 4),
        ("RESTREINT UE", "RESTREINT UE", Scheme.EU, 1),
        ("EU RESTRICTED", "RESTREINT UE", Scheme.EU, 1),
        ("CONFIDENTIEL UE", "CONFIDENTIEL UE", Scheme.EU, 2),
        ("SECRET UE", "SECRET UE", Scheme.EU, 3),
        ("Très Secret UE", "TRES SECRET UE", Scheme.EU, 4),
        ("NATO RESTRICTED", "NATO RESTRICTED", Scheme.NATO, 1),
        ("nato secret", "NATO SECRET", Scheme.NATO, 3),
        ("COSMIC TOP SECRET", "COSMIC TOP SECRET", Scheme.NATO, 4),
        ("public", "PUBLIC", Scheme.NONE, 0),
    ],
)
def test_spellings_parse_to_the_marking_of_their_scheme(spelling, marking_id, scheme, level):
    marking = parse_marking(spelling)
    assert (marking.id, marking.scheme, marking.level) == (marking_id, scheme, level)


def test_only_unclassified_and_restricted_markings_are_placeable():
    placeable = {m.id for m in catalogue().values() if m.placeable}
    assert placeable == {"PUBLIC", "DR", "VS-NfD", "RESTREINT UE", "NATO UNCLASSIFIED",
                         "NATO RESTRICTED"}


def test_an_unknown_marking_is_an_error_that_lists_the_known_ones():
    with pytest.raises(UnknownMarkingError) as info:
        parse_marking("TOP SECRET-ISH")
    message = str(info.value)
    assert "'TOP SECRET-ISH'" in message
    for known in ("DR", "VS-NfD", "RESTREINT UE", "SECRET", "PUBLIC"):
        assert known in message


def test_a_marking_that_is_not_a_string_is_unknown_not_a_crash():
    with pytest.raises(UnknownMarkingError):
        parse_marking(None)  # type: ignore[arg-type]


def test_the_legacy_french_markings_are_recognised_and_labelled_legacy():
    confidentiel = parse_marking("Confidentiel Défense")
    assert confidentiel.id == "CONFIDENTIEL DEFENSE" and confidentiel.legacy and not confidentiel.placeable
    assert parse_marking("Secret Défense").id == "SECRET"
    assert parse_marking("TRES SECRET DEFENSE").id == "TRES SECRET"
    assert "SECRET DEFENSE" in catalogue()["SECRET"].legacy_aliases


@pytest.mark.parametrize(("spelling", "caveat_id", "jurisdiction"), [
    ("Spécial France", "SPECIAL FRANCE", "FR"),
    ("SPECIAL FRANCE", "SPECIAL FRANCE", "FR"),
    ("sf", "SPECIAL FRANCE", "FR"),
    ("Nur für Deutsche", "NUR FUER DEUTSCHE", "DE"),
    ("NUR DEUTSCHEN ZUGÄNGLICH", "NUR FUER DEUTSCHE", "DE"),
])
def test_national_only_caveats_parse_from_their_spellings(spelling, caveat_id, jurisdiction):
    caveat = parse_caveat(spelling)
    assert (caveat.id, caveat.jurisdiction) == (caveat_id, jurisdiction) and caveat.source


def test_an_unknown_caveat_is_an_error_that_lists_the_known_ones():
    with pytest.raises(UnknownCaveatError, match="known caveats: SPECIAL FRANCE, NUR FUER DEUTSCHE"):
        parse_caveats("NOFORN")


def test_a_caveat_header_value_parses_to_canonical_ids():
    assert parse_caveats(" Spécial France , nur für deutsche ") == {"SPECIAL FRANCE", "NUR FUER DEUTSCHE"}
    assert parse_caveats(None) == frozenset() and parse_caveats("") == frozenset()
