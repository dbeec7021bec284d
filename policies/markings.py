"""Classification markings, their national schemes and normalised levels.

The catalogue is data (``markings.yaml`` beside this module); parsing is code.
Common spellings parse to the same marking:

>>> parse_marking("Diffusion Restreinte").id
'DR'
>>> parse_marking("vs-nur für den dienstgebrauch").id
'VS-NfD'
>>> parse_marking("Très Secret").level
4
>>> parse_marking("Secret Défense").id   # a legacy (pre-2021) spelling
'SECRET'
>>> parse_caveat("Spécial France").jurisdiction
'FR'
"""

from __future__ import annotations

import enum
import re
import unicodedata
from functools import lru_cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field

from policies.exceptions import UnknownCaveatError, UnknownMarkingError
from policies.loading import load_yaml_model

#: Highest level that may ever run on the platform (restricted).
MAX_PLACEABLE_LEVEL = 1


class Scheme(str, enum.Enum):
    """The national or international scheme a marking belongs to."""

    NONE = "NONE"  # unclassified data, no scheme
    FR = "FR"
    DE = "DE"
    EU = "EU"
    NATO = "NATO"


class Marking(BaseModel):
    """A classification marking in its own scheme, e.g. FR ``DR`` or DE ``VS-NfD``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(description="Canonical spelling, used in bundles, headers and the ledger.")
    scheme: Scheme = Field(description="Origin scheme of the marking.")
    level: int = Field(ge=0, le=4, description="0 unclassified … 1 restricted … 4 top secret.")
    aliases: tuple[str, ...] = Field(default=(), description="Other accepted spellings.")
    legacy: str | None = Field(
        default=None, description="Set when the scheme has abolished the marking: why, and since when.")
    legacy_aliases: tuple[str, ...] = Field(
        default=(), description="Abolished spellings that still parse to this marking.")

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every accepted spelling: the id, the aliases, then the legacy aliases."""
        return (self.id, *self.aliases, *self.legacy_aliases)

    @property
    def placeable(self) -> bool:
        """True for unclassified and restricted markings; above that never runs here."""
        return self.level <= MAX_PLACEABLE_LEVEL

    def __str__(self) -> str:
        return self.id


class Caveat(BaseModel):
    """A national-only caveat, e.g. « Spécial France »: the data stays in ``jurisdiction``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(description="Canonical spelling, used in headers, workloads and the ledger.")
    jurisdiction: str = Field(pattern=r"^(FR|DE)$", description="The only jurisdiction it may run in.")
    aliases: tuple[str, ...] = Field(default=(), description="Other accepted spellings.")
    source: str = Field(min_length=1, description="The text that defines the caveat.")

    def __str__(self) -> str:
        return self.id


class _Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    markings: list[Marking]
    caveats: list[Caveat] = []


_SEPARATORS = re.compile(r"[\s\-_.]+")


def normalise(value: str) -> str:
    """Fold a marking spelling for comparison.

    >>> normalise("  VS-Nur für den  Dienstgebrauch ")
    'vs nur fur den dienstgebrauch'
    """
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SEPARATORS.sub(" ", stripped.casefold()).strip()


@lru_cache(maxsize=1)
def _parsed() -> _Catalogue:
    source = resources.files("policies").joinpath("markings.yaml")
    return load_yaml_model("markings.yaml", _Catalogue, text=source.read_text("utf-8"))


@lru_cache(maxsize=1)
def catalogue() -> dict[str, Marking]:
    """All known markings by canonical id, in catalogue order."""
    return {marking.id: marking for marking in _parsed().markings}


@lru_cache(maxsize=1)
def caveat_catalogue() -> dict[str, Caveat]:
    """All known national-only caveats by canonical id, in catalogue order."""
    return {caveat.id: caveat for caveat in _parsed().caveats}


def _index(items: list, spellings) -> dict:
    index: dict = {}
    for item in items:
        for spelling in spellings(item):
            key = normalise(spelling)
            if key in index and index[key] is not item:
                raise RuntimeError(f"spelling {spelling!r} is ambiguous in markings.yaml")
            index[key] = item
    return index


@lru_cache(maxsize=1)
def _by_spelling() -> dict[str, Marking]:
    return _index(list(catalogue().values()), lambda m: m.spellings)


@lru_cache(maxsize=1)
def _caveats_by_spelling() -> dict[str, Caveat]:
    return _index(list(caveat_catalogue().values()), lambda c: (c.id, *c.aliases))


def parse_marking(value: str) -> Marking:
    """Parse a marking from any accepted spelling; unknown → :class:`UnknownMarkingError`."""
    marking = _by_spelling().get(normalise(value)) if isinstance(value, str) else None
    if marking is None:
        raise UnknownMarkingError(str(value), list(catalogue()))
    return marking



def parse_caveat(value: str) -> Caveat:
    """Parse a national-only caveat from any accepted spelling; unknown → :class:`UnknownCaveatError`."""
    caveat = _caveats_by_spelling().get(normalise(value)) if isinstance(value, str) else None
    if caveat is None:
        raise UnknownCaveatError(str(value), list(caveat_catalogue()))
    return caveat
