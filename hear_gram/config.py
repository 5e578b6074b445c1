"""Configuration of GRAM models: one frozen dataclass per concept, named presets in one registry.

Every size, rate and shape the rest of the package uses comes from here (arXiv 2506.00934;
labhamlet/GRAM-T and GRAM-M), so a hyper-parameter is typed once. Checkpoints store a
`GramConfig` so they can rebuild their model.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hear_gram.formats import SpatialFormat

Backbone = Literal["transformer", "mamba"]
Mixer = Literal["mamba1", "mamba2"]

# Channel count of the encoder input -> the spatial format it was trained on (arXiv 2506.00934).
FORMATS: dict[int, str] = {f.in_channels: f.value for f in SpatialFormat}

# Sane bounds on sizes. A config can come from a weights file made by anyone: checking it against
# these before building anything keeps a few bytes of metadata from asking for terabytes (upstream's
# largest ViT, "huge", is 32 layers of width 1280; the released models are 12-24 of width 768).
LIMITS: dict[str, tuple[int, int]] = {
    "depth": (1, 256),
    "width": (1, 8192),
    "d_model": (1, 8192),  # a Mamba mixer's width
    "heads": (1, 8192),
    "mlp_dim": (1, 65536),
    "patch_f": (1, 1024),
    "patch_t": (1, 10000),
    "d_state": (1, 1024),
    "d_conv": (1, 64),
    "expand": (1, 16),
    "headdim": (1, 8192),
    "ngroups": (1, 1024),
    "dt_rank": (1, 8192),
    "sample_rate": (1000, 384000),
    "n_mels": (1, 1024),
    "n_fft": (2, 65536),
    "win_length": (1, 65536),
    "hop_length": (1, 65536),
    "chunk_frames": (1, 10000),
}
MAX_PATCHES = 16384  # tokens per chunk (upstream: 200 patch, 100 time variant)
# Entries of the fixed positional table, (1 + tokens) x width: it is computed (in float64) even
# to learn shapes, so it is bounded too (upstream: 201 x 768 = 154 k).
MAX_POSITIONS = 1 << 22


def check_int(name: str, value: Any) -> None:
    """An int (not a bool, not a float) within ``LIMITS[name]``; ValueError naming it otherwise."""
    lo, hi = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")


def check_float(name: str, value: Any, positive: bool = False) -> None:
    """A finite real number (strictly positive when asked); ValueError naming it otherwise."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        kind = "a finite positive number" if positive else "a finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


@dataclass(frozen=True)
class FeatureConfig:
    """The log-mel front-end the released weights expect (labhamlet/GRAM-T
    ``hear_api/feature_helper_gram_t.py``). Units: Hz, samples."""

    sample_rate: int = 32000
    n_mels: int = 128
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 320  # 10 ms at 32 kHz
    f_min: float = 50.0
    f_max: float = 16000.0
    chunk_frames: int = 200  # 2 s crops, each normalised on its own
    # The HEAR runtime of the released weights uses float32 machine epsilon as the log floor
    # (training used 1e-5); the Ambisonic extractor uses 1e-6 for its log-mels and intensity.
    log_eps: float = float(np.finfo(np.float32).eps)
    ambisonic_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "n_fft", "win_length", "hop_length", "chunk_frames"):
            check_int(name, getattr(self, name))
        for name in ("f_min", "f_max"):
            check_float(name, getattr(self, name))
        for name in ("log_eps", "ambisonic_eps"):
            check_float(name, getattr(self, name), positive=True)
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} must be <= n_fft {self.n_fft}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate/2, got {self.f_min}, {self.f_max}"
            )

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_frames * self.hop_length / self.sample_rate


@dataclass(frozen=True)
class MambaConfig:
    """Size of one Mamba mixer of GRAM-M; the field names follow ``mamba_ssm``'s constructor
    arguments (state-spaces/mamba ``Mamba`` and ``Mamba2``). Defaults: the released GRAM-M, a
    Mamba-2 mixer at mamba_ssm's defaults (labhamlet/GRAM-M).

    ``d_model`` is the width of the stream the mixer sits in. Inside a `GramConfig` it is always
    the encoder's width (the `GramConfig` fills it in); a mixer built on its own needs it set.
    ``headdim`` and ``ngroups`` are used by Mamba-2 only, ``dt_rank`` by Mamba-1 only (``None``
    means ``ceil(d_model / 16)``, upstream's ``"auto"``).
    """

    d_model: int | None = None
    mixer: Mixer = "mamba2"
    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    dt_rank: int | None = None

    def __post_init__(self) -> None:
        if self.mixer not in ("mamba1", "mamba2"):
            raise ValueError(f"mixer must be 'mamba1' or 'mamba2', got {self.mixer!r}")
        for name in ("d_state", "d_conv", "expand", "headdim", "ngroups"):
            check_int(name, getattr(self, name))
        if self.d_model is not None:
            check_int("d_model", self.d_model)
        if self.mixer == "mamba1":
            if self.dt_rank is not None:
                check_int("dt_rank", self.dt_rank)
            return
        if self.dt_rank is not None:
            raise ValueError("dt_rank applies to mixer='mamba1' only; leave it None for mamba2")
        if self.d_model is None:
            return  # the sizes below depend on the width
        if self.d_inner % self.headdim:
            raise ValueError(
                f"d_inner = expand * d_model = {self.d_inner} must be divisible by "
                f"headdim = {self.headdim}"
            )
        if self.nheads % self.ngroups:
            raise ValueError(
                f"the {self.nheads} heads must split evenly into ngroups = {self.ngroups} groups"
            )

    @property
    def width(self) -> int:
        if self.d_model is None:
            raise ValueError("this MambaConfig has no d_model: set it, or use it in a GramConfig")
        return self.d_model

    @property
    def d_inner(self) -> int:
        """Width of the inner (expanded) stream."""
        return self.expand * self.width

    @property
    def nheads(self) -> int:
        """Number of Mamba-2 heads."""
        return self.d_inner // self.headdim

    @property
    def resolved_dt_rank(self) -> int:
        """Mamba-1 time-step rank, with upstream's ``"auto"`` rule applied."""
        return math.ceil(self.width / 16) if self.dt_rank is None else self.dt_rank


MAMBA_FIELDS = tuple(f.name for f in dataclasses.fields(MambaConfig) if f.name != "d_model")


@dataclass(frozen=True)
class DecoderConfig:
    """The MAE decoder used in pretraining only: multi-window transformer blocks (one attention
    window per head; labhamlet/GRAM-T ``hear_api/runtime.py`` ``decoder_window_sizes``)."""

    width: int = 512
    depth: int = 8
    heads: int = 8

    def __post_init__(self) -> None:
        check_int("width", self.width)
        check_int("depth", self.depth)
        check_int("heads", self.heads)
        if self.width % self.heads:
            raise ValueError(f"decoder width {self.width} is not divisible by heads {self.heads}")


# Named decoders: the released models' (upstream's 8 blocks of width 512, 8 heads) and the small
# one of the CPU demo runs.
DECODERS: dict[str, DecoderConfig] = {
    "gram": DecoderConfig(),
    "demo": DecoderConfig(width=128, depth=2),
}


@dataclass(frozen=True)
class GramConfig:
    """Architecture of a GRAM encoder: patching, backbone and spatial input format.

    ``mamba`` sizes the mixers of a GRAM-M (``backbone="mamba"``; None there means the released
    GRAM-M's `MambaConfig()`); a transformer has none. `replace` and `preset` also take the
    `MambaConfig` fields by name (``preset("gram-m", d_state=16)``).
    """

    backbone: Backbone = "transformer"
    in_channels: int = 2  # 1 mono, 2 binaural, 7 Ambisonic (4 log-mels + 3 intensity)
    patch_f: int = 16  # mel bins per patch
    patch_t: int = 8  # frames per patch
    depth: int = 12
    width: int = 768
    # transformer (GRAM-T): ViT-B by default
    heads: int = 12
    mlp_dim: int = 3072
    # mamba (GRAM-M): released code = Mamba-2 with its defaults, no MLP
    mamba: MambaConfig | None = None
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.features, FeatureConfig):
            raise ValueError(
                f"features must be a FeatureConfig, got {type(self.features).__name__}"
            )
        # sizes first: every later check divides by them
        for name in ("depth", "width", "heads", "mlp_dim", "patch_f", "patch_t"):
            check_int(name, getattr(self, name))
        if self.backbone not in ("transformer", "mamba"):
            raise ValueError(f"backbone must be 'transformer' or 'mamba', got {self.backbone!r}")
        if self.backbone == "mamba":
            mamba = MambaConfig() if self.mamba is None else self.mamba
            if not isinstance(mamba, MambaConfig):
                raise ValueError(f"mamba must be a MambaConfig, got {type(mamba).__name__}")
            if mamba.d_model != self.width:  # the mixers run at the encoder's width
                object.__setattr__(self, "mamba", dataclasses.replace(mamba, d_model=self.width))
        elif self.mamba is not None:
            raise ValueError("mamba sizes apply to backbone='mamba' only; leave mamba None")
        if SpatialFormat.of_in_channels(self.in_channels) is None:
            raise ValueError(
                f"in_channels must be one of {sorted(FORMATS)} "
                f"({', '.join(FORMATS.values())}), got {self.in_channels!r}"
            )
        if self.features.n_mels % self.patch_f or self.features.chunk_frames % self.patch_t:
            raise ValueError(
                f"patch {self.patch_f}x{self.patch_t} must tile the "
                f"{self.features.n_mels}x{self.features.chunk_frames} chunk"
            )
        if self.num_patches > MAX_PATCHES:
            raise ValueError(
                f"patch {self.patch_f}x{self.patch_t} gives {self.num_patches} tokens per chunk; "
                f"at most {MAX_PATCHES}"
            )
        if (1 + self.num_patches) * self.width > MAX_POSITIONS:
            raise ValueError(
                f"{self.num_patches} tokens of width {self.width} need a positional table of "
                f"{(1 + self.num_patches) * self.width} entries; at most {MAX_POSITIONS}"
            )
        if self.backbone == "transformer" and self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")

    # --- derived sizes -----------------------------------------------------------------------
    @property
    def spatial_format(self) -> SpatialFormat:
        return SpatialFormat.of_in_channels(self.in_channels)

    @property
    def format(self) -> str:
        return self.spatial_format.value

    @property
    def is_ambisonic(self) -> bool:
        """Ambisonic input: W, Y, Z, X log-mels plus the three intensity channels."""
        return self.spatial_format is SpatialFormat.AMBISONIC

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (frequency, time) of one 2 s chunk: (8, 25) patch variant, (1, 100) time."""
        return self.features.n_mels // self.patch_f, self.features.chunk_frames // self.patch_t

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def variant(self) -> str:
        return "time" if self.grid[0] == 1 else "patch"

    @property
    def raw_dim(self) -> int:
        """Size of a `raw` timestamp embedding: all frequency tokens of one time step."""
        return self.grid[0] * self.width

    @property
    def step_ms(self) -> float:
        """Time between two `raw` timestamp embeddings (80 ms patch, 20 ms time variant)."""
        return 1000.0 * self.patch_t * self.features.hop_length / self.features.sample_rate

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["mamba"] is not None:
            del d["mamba"]["d_model"]  # the width: stored once
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GramConfig:
        """The config a dict describes (e.g. JSON from a weights file); every field is checked,
        and anything malformed is a ValueError naming it. Files written before the Mamba sizes
        were nested (flat ``mixer``, ``d_state``, ... beside ``backbone``) read the same."""
        if not isinstance(d, dict):
            raise ValueError(f"a GramConfig is a JSON object, got {type(d).__name__}")
        d = dict(d)
        flat = {k: d.pop(k) for k in MAMBA_FIELDS if k in d}
        _check_fields(cls, d)
        mamba = _sub_config(MambaConfig, d.pop("mamba", None), "mamba")
        if flat:
            if mamba is not None:
                raise ValueError(f"Mamba sizes {sorted(flat)} both flat and under 'mamba'")
            # the flat layout stored them for transformers too, where they meant nothing
            mamba = MambaConfig(**flat) if d.get("backbone") == "mamba" else None
        if mamba is not None and mamba.d_model not in (None, d.get("width", cls.width)):
            raise ValueError(f"mamba.d_model {mamba.d_model} differs from width")
        features = _sub_config(FeatureConfig, d.pop("features", None), "features")
        return cls(features=features or FeatureConfig(), mamba=mamba, **d)

    def replace(self, **changes: Any) -> GramConfig:
        """A copy with fields changed; `MambaConfig` fields by name go to ``mamba``."""
        inner = {k: changes.pop(k) for k in MAMBA_FIELDS if k in changes}
        if inner:
            if self.backbone != "mamba" and changes.get("backbone") != "mamba":
                raise ValueError(f"{sorted(inner)} apply to backbone='mamba' only")
            base = changes.get("mamba") or self.mamba or MambaConfig()
            changes["mamba"] = dataclasses.replace(base, **inner)
        return dataclasses.replace(self, **changes)


def _sub_config(cls: type, raw: Any, what: str) -> Any:
    """The nested config `raw` describes (None when absent); ValueError naming `what`."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(raw).__name__}")
    _check_fields(cls, raw)
    return cls(**raw)


def _check_fields(cls: type, d: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(d) - known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; valid: {sorted(known)}")


# --- named presets (the released models; labhamlet/GRAM-T and GRAM-M) --------------------------
PRESETS: dict[str, GramConfig] = {
    "gram-t": GramConfig(),
    "gram-t-time": GramConfig(patch_f=128, patch_t=2),
    "gram-t-ambisonic": GramConfig(in_channels=7),
    "gram-t-mono": GramConfig(in_channels=1),
    "gram-m": GramConfig(backbone="mamba", depth=24, mamba=MambaConfig(mixer="mamba2")),
    # The v1 paper's GRAM-M: Mamba-1 mixer with d_state 24, expand 3.
    "gram-m-v1": GramConfig(
        backbone="mamba", depth=24, mamba=MambaConfig(mixer="mamba1", d_state=24, expand=3)
    ),
}


def preset(name: str, **overrides: Any) -> GramConfig:
    """A named preset, optionally with fields replaced (e.g. ``depth=2`` for tests)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
