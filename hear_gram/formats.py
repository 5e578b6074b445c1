"""The spatial audio formats of GRAM, defined once for the models and the data tools.

arXiv 2506.00934 trains on three inputs: mono (GRAM-Clean, dry single-channel audio), binaural
(2 channels: left, right ear) and first-order Ambisonics (4 channels, ACN order W, Y, Z, X with
SN3D normalisation). The encoder sees one log-mel per audio channel, plus for Ambisonics the three
active-intensity channels of the released extractor (labhamlet/GRAM-T
``hear_api/feature_helper_gram_t.py``): 1, 2 and 7 input channels.

Scenes are rendered in the two spatial formats only (`SCENE_FORMATS`): scene banks, external RIR
sets, Nat-HEAR and the localization tasks refuse "mono".

Members are `str`s equal to their names ("binaural", ...), so a plain string from a command line
or a JSON file compares equal, hashes the same and is written the same.
"""

from __future__ import annotations

from enum import Enum


class SpatialFormat(str, Enum):  # noqa: UP042 (setup.cfg allows Python 3.10: no StrEnum)
    """A spatial audio format: `.channels` audio channels, `.in_channels` encoder channels."""

    MONO = "mono"
    BINAURAL = "binaural"
    AMBISONIC = "ambisonic"

    def __str__(self) -> str:  # "binaural", not "SpatialFormat.BINAURAL" (Python < 3.11 too)
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def channels(self) -> int:
        """Audio channels: 1 mono, 2 binaural (left, right), 4 Ambisonic (W, Y, Z, X)."""
        return _CHANNELS[self]

    @property
    def in_channels(self) -> int:
        """Encoder input channels: one log-mel per audio channel; Ambisonics adds 3 intensity."""
        return 7 if self is SpatialFormat.AMBISONIC else self.channels

    @classmethod
    def parse(
        cls, value: object, what: str = "fmt", among: tuple[SpatialFormat, ...] | None = None
    ) -> SpatialFormat:
        """`value` as a member of `among` (default: all); ValueError naming `what` and the
        accepted names otherwise."""
        among = tuple(cls) if among is None else among
        try:
            fmt = cls(value)
        except ValueError:
            fmt = None
        if fmt not in among:
            names = tuple(f.value for f in among)
            raise ValueError(f"{what} must be one of {names}, got {value!r}")
        return fmt

    @classmethod
    def of_channels(
        cls, channels: int, among: tuple[SpatialFormat, ...] | None = None
    ) -> SpatialFormat | None:
        """The format of `among` (default: all) with `channels` audio channels, or None."""
        return next((f for f in (cls if among is None else among) if f.channels == channels), None)

    @classmethod
    def of_in_channels(cls, in_channels: object) -> SpatialFormat | None:
        """The format whose encoder takes `in_channels` channels, or None. Only a real int
        matches: True and 2.0 compare equal to 1 and 2 but are no channel counts."""
        if isinstance(in_channels, bool) or not isinstance(in_channels, int):
            return None
        return next((f for f in cls if f.in_channels == in_channels), None)


_CHANNELS = {SpatialFormat.MONO: 1, SpatialFormat.BINAURAL: 2, SpatialFormat.AMBISONIC: 4}
# The formats scenes are rendered in (arXiv 2506.00934, scene simulation).
SCENE_FORMATS: tuple[SpatialFormat, ...] = (SpatialFormat.BINAURAL, SpatialFormat.AMBISONIC)
