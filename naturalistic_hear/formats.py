"""The spatial formats the data tools render scenes in: binaural and first-order Ambisonics.

The enum itself is `hear_gram.formats.SpatialFormat` (one table of names and channel counts for
the models and the data tools); scene banks, external RIR sets, the Nat-HEAR generator and the
localization tasks accept only its two scene formats (no "mono" scene exists).
"""

from __future__ import annotations

from hear_gram.formats import SCENE_FORMATS, SpatialFormat

__all__ = ["CHANNELS", "NAMES", "SCENE_FORMATS", "SpatialFormat", "of_channels", "scene_format"]

NAMES: tuple[str, ...] = tuple(f.value for f in SCENE_FORMATS)
# Name -> channel count, for callers that index by the plain string.
CHANNELS: dict[str, int] = {f.value: f.channels for f in SCENE_FORMATS}


def scene_format(value: object, what: str = "fmt") -> SpatialFormat:
    """`value` as a scene format; ValueError naming `what` and the two names otherwise."""
    return SpatialFormat.parse(value, what, among=SCENE_FORMATS)


def of_channels(channels: int) -> SpatialFormat | None:
    """The scene format with `channels` channels (2 binaural, 4 Ambisonic), or None."""
    return SpatialFormat.of_channels(channels, among=SCENE_FORMATS)
