"""The spatial formats of the data tools, defined once.

GRAM renders scenes in two formats (arXiv 2506.00934 and 2602.03307, scene simulation): binaural
(2 channels: left, right ear) and first-order Ambisonics (4 channels, ACN order W, Y, Z, X with
SN3D normalisation). Scene banks, external RIR sets, the Nat-HEAR generator and the localization
tasks all take the format by its name; this enum is the one table of names and channel counts.

Members are `str`s equal to their names ("binaural", "ambisonic"), so a plain string from a
command line or a JSON file compares equal, hashes the same and is written the same.
"""

from __future__ import annotations

from enum import Enum


class SpatialFormat(str, Enum):  # noqa: UP042 (setup.cfg allows Python 3.10: no StrEnum)
    """A spatial audio format; `.channels` is its channel count."""

    BINAURAL = "binaural"
    AMBISONIC = "ambisonic"

    def __str__(self) -> str:  # "binaural", not "SpatialFormat.BINAURAL" (Python < 3.11 too)
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def channels(self) -> int:
        return 2 if self is SpatialFormat.BINAURAL else 4

    @classmethod
    def parse(cls, value: object, what: str = "fmt") -> SpatialFormat:
        """`value` as a member; ValueError naming `what` and the accepted names otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{what} must be one of {NAMES}, got {value!r}") from None

    @classmethod
    def of_channels(cls, channels: int) -> SpatialFormat | None:
        """The format with `channels` channels, or None."""
        return next((f for f in cls if f.channels == channels), None)


NAMES: tuple[str, ...] = tuple(f.value for f in SpatialFormat)
# Name -> channel count, for callers that index by the plain string.
CHANNELS: dict[str, int] = {f.value: f.channels for f in SpatialFormat}
