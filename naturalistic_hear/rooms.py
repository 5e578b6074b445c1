"""Scene sampling and spatial room impulse responses (binaural or first-order Ambisonics).

The paper (GRAM, arXiv 2506.00934) renders its scenes with SoundSpaces 2.0 in Matterport3D houses;
offline we use shoebox rooms simulated with pyroomacoustics and keep the paper's scene rules:
listener at 1.5 m height with a random head azimuth, source at 1.5-5 m in any direction, noise
either localized (1 position, 50 %) or diffuse (3, 4 or 5 positions, 50 %), RIRs cut or padded to
2 s, binaural through a measured HRTF or first-order Ambisonics.

Coordinates. Room coordinates: metres, origin in a floor corner, axes along the walls, z up.
Head coordinates: origin at the listener's head centre, x = facing direction, y = left, z = up;
azimuth counter-clockwise from the front (+90 deg = left), elevation up (+90 deg = above).
`Scene.head_azimuth_deg` is the facing direction's azimuth in room coordinates, so a point at room
azimuth `a` (seen from the listener) has head azimuth `a - head_azimuth_deg`.

Pools. Train and test rooms are disjoint by construction: the (length, width) plane is cut into
0.5 m x 0.5 m cells coloured like a checkerboard (`room_pool`); train rooms are drawn from one
colour and test rooms from the other, on a 1 cm grid that never touches a cell border. No room
size can occur in both pools, and each pool still spans every length, width, shape and T60.

Rooms. Uniform energy absorption (all six walls, all frequencies) set from a T60 drawn uniformly
in 0.2-1.5 s through Eyring's formula, scattering 0.5 (a furnished room: it makes the decay
close to Eyring's even in flat rooms, where purely specular decays run up to 50 % longer).

Rendering (`render_rirs`). pyroomacoustics gives the image sources up to `ISM_ORDER` (positions
and wall attenuations) and the energy histogram of its ray tracer for everything later (the
hybrid method; see `simulate_room` for two energy fixes). From these we build the RIRs ourselves
so that every arrival can carry a direction:
- early part: every image source is an arrival from its true direction in head coordinates, with
  gain attenuation / distance (pyroomacoustics' scale, which its ray-tracing energies follow:
  1 at 1 m in free field), at its exact (fractional, windowed-sinc) delay distance / c.
  Binaural: the HRIR of the nearest measured direction; Ambisonics: the first-order spherical
  harmonics of the direction.
- late part: noise shaped by the ray-traced energy envelope and made spatially diffuse, i.e. with
  the second-order statistics of a field arriving equally from all directions: for binaural, two
  noises filtered to the diffuse-field cross-spectrum of the HRTF (average of H H^H over all its
  directions, which fixes the interaural coherence and spectrum); for Ambisonics, independent
  channels with the diffuse-field variances (W 1, X/Y/Z 1/3 in SN3D).
- air absorption (pyroomacoustics' octave-band coefficients) as a time-varying low-pass applied
  to the whole response: an arrival at time t has travelled c t metres through air.
HRIRs are scaled to unit diffuse-field energy, so the mean of the two ears matches an omni
microphone on average, and shifted so that the frontal HRIR's onset marks the arrival at the head
centre: the direct sound of every format lands at the physical delay distance / c.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pyroomacoustics as pra
from scipy.fft import irfft, next_fast_len, rfft
from scipy.signal import fftconvolve, istft, stft

from naturalistic_hear.formats import SpatialFormat, scene_format
from naturalistic_hear.hrtf import HRTF, load_kemar, unit_vectors

Format = SpatialFormat  # "binaural" | "ambisonic" (a plain string of either name works too)
AmbisonicConvention = Literal["acn-sn3d", "fuma"]

# Bump whenever sampling or rendering changes: it is part of every cache key (bank.py).
GENERATOR_VERSION = "1"
POOLS = ("train", "test")

SPEED_OF_SOUND = 343.0  # m/s, pyroomacoustics' default
LISTENER_HEIGHT = 1.5  # m (paper)
ROOM_LENGTH = (3.0, 10.0)  # m
ROOM_WIDTH = (3.0, 8.0)  # m
ROOM_HEIGHT = (2.5, 4.0)  # m
POOL_CELL = 0.5  # m, side of the checkerboard cells that split the pools
T60_RANGE = (0.2, 1.5)  # s, drawn uniformly, then turned into a wall absorption
ABSORPTION_RANGE = (0.01, 0.95)  # energy absorption coefficient, uniform over walls and bands
SCATTERING = 0.5  # wall scattering coefficient (ray tracer)
WALL_MARGIN = 0.5  # m, listener and emitters stay this far from the walls
FLOOR_MARGIN = 0.3  # m, emitters stay this far from floor and ceiling
DISTANCE_RANGE = (1.5, 5.0)  # m, listener-emitter distance (paper)
DIFFUSE_NOISE_COUNTS = (3, 4, 5)  # noise positions of a "diffuse" scene (paper)
ISM_ORDER = 3  # image sources up to this order; ray tracing for the rest
RT_RECEIVER_RADIUS = 0.5  # m
RT_BIN_S = 0.004  # s, ray-tracing histogram bin
AIR_ABSORPTION = True  # pyroomacoustics' default octave-band air absorption coefficients
SINC_HALF = 16  # samples each side of the fractional-delay kernel


@dataclass(frozen=True)
class Scene:
    """One listener, one source and 1-5 noise emitters in a shoebox room (units: m, deg, s).

    absorption: energy absorption coefficient, the same for all six walls and all frequencies.
    t60_s: Eyring reverberation time of the room (air absorption left out; it shortens the T60
    of a rendered response only above ~2 kHz).
    """

    scene_id: str
    pool: str
    room_dim: tuple[float, float, float]
    absorption: float
    t60_s: float
    listener: tuple[float, float, float]
    head_azimuth_deg: float
    source: tuple[float, float, float]
    source_azimuth_deg: float
    source_elevation_deg: float
    source_distance_m: float
    noise_kind: str
    noises: tuple[tuple[float, float, float], ...]
    noise_directions: tuple[tuple[float, float, float], ...]

    def to_dict(self) -> dict:
        """JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        def tup(x):
            return tuple(tup(v) for v in x) if isinstance(x, list | tuple) else x

        return cls(**{k: tup(v) for k, v in d.items()})


def head_to_unit_vector(az_deg: float, el_deg: float) -> np.ndarray:
    """Unit vector [x, y, z] in head coordinates: x front, y left, z up (azimuth +90 = left)."""
    return unit_vectors(np.float64(az_deg), np.float64(el_deg))


def room_to_head(point: np.ndarray, listener: np.ndarray, head_azimuth_deg: float) -> np.ndarray:
    """Room-coordinate points (..., 3) as head-coordinate vectors (..., 3), in m."""
    v = np.asarray(point, dtype=np.float64) - np.asarray(listener, dtype=np.float64)
    psi = math.radians(head_azimuth_deg)
    c, s = math.cos(psi), math.sin(psi)
    return np.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1], v[..., 2]], -1)


def head_direction(vec: np.ndarray) -> tuple[float, float, float]:
    """(azimuth 0..360 deg, elevation deg, distance m) of a head-coordinate vector."""
    x, y, z = (float(t) for t in vec)
    az = math.degrees(math.atan2(y, x)) % 360.0
    return az, math.degrees(math.atan2(z, math.hypot(x, y))), math.sqrt(x * x + y * y + z * z)


def eyring_t60(room_dim: tuple[float, float, float], absorption: float) -> float:
    """Eyring reverberation time (s) of a shoebox with uniform energy absorption."""
    lx, ly, lz = room_dim
    volume, surface = lx * ly * lz, 2 * (lx * ly + lx * lz + ly * lz)
    return float(24 * math.log(10) * volume / (SPEED_OF_SOUND * surface * -math.log1p(-absorption)))


def eyring_absorption(room_dim: tuple[float, float, float], t60_s: float) -> float:
    """Uniform energy absorption coefficient giving Eyring T60 `t60_s` (s) in the room."""
    lx, ly, lz = room_dim
    volume, surface = lx * ly * lz, 2 * (lx * ly + lx * lz + ly * lz)
    return -math.expm1(-24 * math.log(10) * volume / (SPEED_OF_SOUND * surface * t60_s))


def room_pool(room_dim: tuple[float, float, float]) -> str:
    """The pool whose checkerboard cell holds this room's (length, width)."""
    i = math.floor((room_dim[0] - ROOM_LENGTH[0]) / POOL_CELL)
    j = math.floor((room_dim[1] - ROOM_WIDTH[0]) / POOL_CELL)
    return POOLS[(i + j) % 2]


def build_scene(
    pool: str,
    index: int,
    room_dim: tuple[float, float, float],
    absorption: float,
    listener: tuple[float, float, float],
    head_azimuth_deg: float,
    source: tuple[float, float, float],
    noises: tuple[tuple[float, float, float], ...],
    noise_kind: str | None = None,
) -> Scene:
    """A Scene from room-coordinate positions; head-coordinate fields and T60 are derived."""
    lis = np.asarray(listener, dtype=np.float64)

    def direction(p):
        return head_direction(room_to_head(np.asarray(p), lis, head_azimuth_deg))

    derived_kind = "localized" if len(noises) == 1 else "diffuse"
    if noise_kind not in (None, derived_kind):
        raise ValueError(f"{len(noises)} noise position(s) make a {derived_kind} scene")
    src_az, src_el, src_d = direction(source)
    return Scene(
        scene_id=f"{pool}-{index:05d}",
        pool=pool,
        room_dim=tuple(float(v) for v in room_dim),
        absorption=float(absorption),
        t60_s=eyring_t60(room_dim, absorption),
        listener=tuple(float(v) for v in listener),
        head_azimuth_deg=float(head_azimuth_deg),
        source=tuple(float(v) for v in source),
        source_azimuth_deg=src_az,
        source_elevation_deg=src_el,
        source_distance_m=src_d,
        noise_kind=derived_kind,
        noises=tuple(tuple(float(v) for v in p) for p in noises),
        noise_directions=tuple(direction(p) for p in noises),
    )


def _in_room(p: np.ndarray, room_dim: tuple[float, float, float]) -> bool:
    lo = np.array([WALL_MARGIN, WALL_MARGIN, FLOOR_MARGIN])
    hi = np.asarray(room_dim) - lo
    return bool(np.all(p >= lo) and np.all(p <= hi))


def _sample_room(rng: np.random.Generator, pool: str) -> tuple[float, float, float]:
    """Room size on a 1 cm grid inside a checkerboard cell of `pool`, never on a cell border."""
    n_i = round((ROOM_LENGTH[1] - ROOM_LENGTH[0]) / POOL_CELL)
    n_j = round((ROOM_WIDTH[1] - ROOM_WIDTH[0]) / POOL_CELL)
    cells = [(i, j) for i in range(n_i) for j in range(n_j) if POOLS[(i + j) % 2] == pool]
    i, j = cells[rng.integers(len(cells))]
    steps = round(POOL_CELL * 100)
    length = ROOM_LENGTH[0] + i * POOL_CELL + rng.integers(1, steps) / 100
    width = ROOM_WIDTH[0] + j * POOL_CELL + rng.integers(1, steps) / 100
    height = rng.integers(round(ROOM_HEIGHT[0] * 100), round(ROOM_HEIGHT[1] * 100) + 1) / 100
    return round(length, 2), round(width, 2), round(height, 2)


def _sample_emitter(
    rng: np.random.Generator, room_dim, listener: np.ndarray, head_az: float, tries: int = 100
) -> np.ndarray | None:
    """A position 1.5-5 m from the listener, uniform direction on the sphere, inside the room."""
    for _ in range(tries):
        az = rng.uniform(0.0, 360.0)
        el = math.degrees(math.asin(rng.uniform(-1.0, 1.0)))
        dist = rng.uniform(*DISTANCE_RANGE)
        p = listener + dist * head_to_unit_vector(az + head_az, el)  # room axes: rotate by head
        p = np.round(p, 3)  # mm grid, readable scene files
        if _in_room(p, room_dim) and DISTANCE_RANGE[0] <= np.linalg.norm(p - listener):
            return p
    return None


def sample_scene(pool: str, index: int, seed: int = 0) -> Scene:
    """Scene `index` of `pool`: a pure function of (seed, pool, index)."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    rng = np.random.default_rng([seed, POOLS.index(pool), index])
    room_dim = _sample_room(rng, pool)
    absorption = eyring_absorption(room_dim, rng.uniform(*T60_RANGE))
    absorption = float(np.clip(absorption, *ABSORPTION_RANGE))
    diffuse = rng.random() < 0.5
    n_noises = int(rng.choice(DIFFUSE_NOISE_COUNTS)) if diffuse else 1
    while True:  # small rooms may leave no room for a source from some listener positions
        listener = np.round(
            [
                rng.uniform(WALL_MARGIN, room_dim[0] - WALL_MARGIN),
                rng.uniform(WALL_MARGIN, room_dim[1] - WALL_MARGIN),
                LISTENER_HEIGHT,
            ],
            3,
        )
        head_az = round(float(rng.uniform(0.0, 360.0)), 2)
        emitters = [_sample_emitter(rng, room_dim, listener, head_az) for _ in range(1 + n_noises)]
        if all(p is not None for p in emitters):
            break
    return build_scene(
        pool,
        index,
        room_dim,
        absorption,
        tuple(listener),
        head_az,
        tuple(emitters[0]),
        tuple(tuple(p) for p in emitters[1:]),
        "diffuse" if diffuse else "localized",
    )


# ---------------------------------------------------------------------------------------------
# Spatial encoders: turn arrivals (direction, gain, delay) and diffuse noise into C channels.


def _fractional_kernels(delays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed sinc kernels (M, 2 SINC_HALF + 2) and their first sample index (M,)."""
    start = np.floor(delays).astype(np.int64) - SINC_HALF
    x = np.arange(2 * SINC_HALF + 2)[None, :] - (delays - start)[:, None]  # time from the arrival
    window = 0.5 * (1 + np.cos(np.pi * np.clip(x / (SINC_HALF + 1), -1, 1)))
    return np.sinc(x) * window, start


def _place(filters: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
    """Sum filters (M, C, T) into (C, length), filter m starting at sample start[m]."""
    m, c, t = filters.shape
    idx = start[:, None] + np.arange(t)[None, :]  # (M, T)
    keep = (idx >= 0) & (idx < length)
    out = np.empty((c, length))
    for ch in range(c):
        out[ch] = np.bincount(idx[keep], weights=filters[:, ch][keep], minlength=length)[:length]
    return out


class AmbisonicEncoder:
    """First-order Ambisonics, ACN/SN3D (W, Y, Z, X) or FuMa (W/sqrt 2, X, Y, Z)."""

    n_channels = 4

    def __init__(self, convention: AmbisonicConvention = "acn-sn3d"):
        if convention not in ("acn-sn3d", "fuma"):
            raise ValueError(f"unknown ambisonic convention {convention!r}")
        self.convention = convention

    def gains(self, vectors: np.ndarray) -> np.ndarray:
        """Spherical-harmonic gains (M, 4) of unit head vectors (M, 3), in output channel order."""
        x, y, z = vectors[:, 0], vectors[:, 1], vectors[:, 2]
        w = np.ones_like(x)
        if self.convention == "fuma":
            return np.stack([w / math.sqrt(2), x, y, z], axis=1)
        return np.stack([w, y, z, x], axis=1)

    def arrivals(self, vectors, gains, delays, length) -> np.ndarray:
        kernels, start = _fractional_kernels(delays)
        filters = (self.gains(vectors) * gains[:, None])[:, :, None] * kernels[:, None, :]
        return _place(filters, start, length)

    def diffuse(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """Unit-energy (in W, SN3D) diffuse-field noise (4, length)."""
        z = rng.standard_normal((4, length))
        z[1:] /= math.sqrt(3.0)  # E[Y^2] = E[Z^2] = E[X^2] = 1/3 over the sphere (SN3D)
        if self.convention == "fuma":  # reorder (W, Y, Z, X) -> (W/sqrt 2, X, Y, Z)
            z = np.stack([z[0] / math.sqrt(2), z[3], z[1], z[2]])
        return z


class BinauralEncoder:
    """Binaural through a measured HRTF (nearest direction), ears (left, right)."""

    n_channels = 2

    def __init__(self, hrtf: HRTF, sample_rate: int):
        self.hrtf = hrtf.resampled(sample_rate)
        h = self.hrtf.hrirs.astype(np.float64)
        # Unit diffuse-field energy: averaged over directions and ears, sum h^2 = 1.
        self.hrirs = h / math.sqrt(np.mean(np.sum(h**2, axis=-1)))
        self.latency = _frontal_onset(self.hrtf)
        self.diffuse_filters = _diffuse_field_filters(self.hrirs)

    def arrivals(self, vectors, gains, delays, length) -> np.ndarray:
        kernels, start = _fractional_kernels(delays)
        hrirs = self.hrirs[self.hrtf.nearest_index(vectors)] * gains[:, None, None]  # (M, 2, T)
        n = next_fast_len(hrirs.shape[-1] + kernels.shape[-1] - 1)
        filters = irfft(rfft(hrirs, n) * rfft(kernels, n)[:, None, :], n)
        return _place(filters, start - self.latency, length)

    def diffuse(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """Diffuse-field binaural noise (2, length), unit energy per ear on average."""
        taps = self.diffuse_filters.shape[-1]
        z = rng.standard_normal((2, length + taps - 1))
        return np.stack(
            [
                sum(fftconvolve(z[j], self.diffuse_filters[e, j], "valid") for j in range(2))
                for e in range(2)
            ]
        )


def _frontal_onset(hrtf: HRTF) -> int:
    """Samples from HRIR time zero to the frontal sound's arrival (first |h| >= 10 % of peak)."""
    h = np.abs(hrtf.nearest(0.0, 0.0))
    return int(round(np.mean([np.argmax(e >= 0.1 * e.max()) for e in h])))


def _diffuse_field_filters(hrirs: np.ndarray) -> np.ndarray:
    """FIR A (2, 2, n) with A A^H = mean over directions of H H^H (diffuse-field cross-spectrum).

    Filtering two independent white noises with A gives ear signals with the spectra and the
    interaural coherence of a field arriving equally from every measured direction.
    """
    n = 2 * next_fast_len(hrirs.shape[-1])
    spec = rfft(hrirs, n)  # (D, 2, F)
    cov = np.einsum("dif,djf->ijf", spec, spec.conj()) / len(spec)  # (2, 2, F)
    a = np.zeros_like(cov)  # lower Cholesky factor per frequency
    a[0, 0] = np.sqrt(cov[0, 0].real)
    a[1, 0] = cov[1, 0] / np.maximum(a[0, 0], 1e-12)
    a[1, 1] = np.sqrt(np.maximum(cov[1, 1].real - np.abs(a[1, 0]) ** 2, 0.0))
    # Zero-phase factors give non-causal filters: centre them (a delay is irrelevant for noise).
    return np.roll(irfft(a, n), n // 2, axis=-1)


@functools.cache
def _kemar_encoder(sample_rate: int) -> BinauralEncoder:
    return BinauralEncoder(load_kemar(), sample_rate)


def make_encoder(
    fmt: Format,
    sample_rate: int,
    hrtf: HRTF | None = None,
    ambisonic_convention: AmbisonicConvention = "acn-sn3d",
) -> AmbisonicEncoder | BinauralEncoder:
    if scene_format(fmt, "format") is SpatialFormat.AMBISONIC:
        return AmbisonicEncoder(ambisonic_convention)
    return _kemar_encoder(sample_rate) if hrtf is None else BinauralEncoder(hrtf, sample_rate)


# ---------------------------------------------------------------------------------------------
# Room simulation and RIR assembly.


def _render_seed(scene: Scene) -> int:
    """64-bit seed derived from the scene's content (render noise is a function of the scene)."""
    digest = hashlib.sha256(json.dumps(scene.to_dict(), sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _shoebox(scene: Scene, sample_rate: int, length_s: float, scattering: float, order: int):
    room = pra.ShoeBox(
        list(scene.room_dim),
        fs=sample_rate,
        materials=pra.Material(float(scene.absorption), scattering or None),
        max_order=order,
        ray_tracing=True,
        air_absorption=True,
    )
    room.set_sound_speed(SPEED_OF_SOUND)
    room.set_ray_tracing(
        receiver_radius=RT_RECEIVER_RADIUS, time_thres=length_s, hist_bin_size=RT_BIN_S
    )
    for p in (scene.source, *scene.noises):
        room.add_source(list(p))
    room.add_microphone(list(scene.listener))
    return room


@dataclass
class RoomSimulation:
    """Per emitter: image sources up to ISM_ORDER and the ray-traced energy of everything later.

    images (3, M) m in room coordinates, attenuations (M,) wall amplitude factors, orders (M,)
    reflection orders, histograms (bins,) energy per `bin_samples` samples from emission, on
    pyroomacoustics' scale (free-field energy 1/r^2).
    """

    images: list[np.ndarray]
    attenuations: list[np.ndarray]
    orders: list[np.ndarray]
    histograms: list[np.ndarray]
    bin_samples: int
    air_absorption: np.ndarray  # amplitude exp(-0.5 m d): m per octave band, 1/m
    band_centres: np.ndarray  # Hz


def simulate_room(scene: Scene, sample_rate: int, length_s: float) -> RoomSimulation:
    """Image sources, ray tracing and energy budget for the source and noises of a scene.

    Two fixes to pyroomacoustics 0.10's hybrid method. (1) Its ray tracer logs rays from the
    ISM order on, so that order is counted twice (+14 % energy in a test room); the rays are
    traced in a room whose `max_order` is one higher. (2) A scattering wall adds the scattered
    energy ("diffuse rain") but lets the specular ray keep all of its energy, so the histograms
    grow with the scattering coefficient (x1.5-1.9 at 0.5). We keep the scattering run for the
    shape of the decay (closer to a diffuse room, hence to Eyring) and scale it to the energy of
    a run without scattering, which conserves energy (within ~10 % of a high-order
    image-source model): images without the scattering loss + their specular tail.
    """
    ism_room = _shoebox(scene, sample_rate, length_s, SCATTERING, ISM_ORDER)
    ism_room.image_source_model()
    rt_room = _shoebox(scene, sample_rate, length_s, SCATTERING, ISM_ORDER + 1)
    seed = _render_seed(scene)
    pra.random.seed(numpy=seed, libroom=seed)  # ray scattering is random: keep it reproducible
    rt_room.ray_tracing()
    ref_room = _shoebox(scene, sample_rate, length_s, 0.0, ISM_ORDER + 1)
    ref_room.set_ray_tracing(  # deterministic (fixed ray directions); a total needs fewer rays
        n_rays=max(ref_room.rt_args["n_rays"] // 4, 500),
        receiver_radius=RT_RECEIVER_RADIUS,
        time_thres=length_s,
        hist_bin_size=RT_BIN_S,
    )
    ref_room.ray_tracing()
    listener = np.asarray(scene.listener)[:, None]
    images, attenuations, orders, histograms = [], [], [], []
    for s, src in enumerate(ism_room.sources):
        energy = (src.damping[0] / np.linalg.norm(src.images - listener, axis=0)) ** 2
        specular = np.sum(energy / (1 - SCATTERING) ** src.orders) - np.sum(energy)
        hist = np.sum(rt_room.rt_histograms[0][s][0], axis=0)  # single band: (bins,)
        budget = specular + np.sum(ref_room.rt_histograms[0][s][0])
        images.append(src.images)
        attenuations.append(src.damping[0])
        orders.append(src.orders)
        histograms.append(hist * max(budget, 0.0) / max(np.sum(hist), 1e-30))
    return RoomSimulation(
        images,
        attenuations,
        orders,
        histograms,
        rt_room.rt_args["hist_bin_size_samples"],
        np.asarray(ism_room.air_absorption),
        np.asarray(ism_room.octave_bands.centers),
    )


def _tail_envelope(histogram: np.ndarray, bin_samples: int, start: float, length: int):
    """Energy per sample (length,) from a ray-tracing histogram (energy per bin), 0 before start."""
    centres = (np.arange(histogram.size) + 0.5) * bin_samples
    env = np.interp(np.arange(length), centres, histogram, right=0.0) / bin_samples
    env[: int(math.ceil(start))] = 0.0
    return np.maximum(env, 0.0)


def _air_absorption(rir: np.ndarray, sample_rate: int, coeffs, centres) -> np.ndarray:
    """Time-varying low-pass: the arrival at t s has crossed c t metres of air (STFT, 10 ms)."""
    if not AIR_ABSORPTION:
        return rir
    nperseg = 1 << math.ceil(math.log2(0.01 * sample_rate))
    freqs, times, spec = stft(rir, sample_rate, nperseg=nperseg, noverlap=3 * nperseg // 4)
    # Coefficients per octave band, interpolated on log frequency, held beyond the outer bands.
    m = np.interp(np.log2(np.maximum(freqs, 1.0)), np.log2(centres[: len(coeffs)]), coeffs)
    spec *= np.exp(-0.5 * m[:, None] * SPEED_OF_SOUND * np.maximum(times, 0.0)[None, :])
    _, out = istft(spec, sample_rate, nperseg=nperseg, noverlap=3 * nperseg // 4)
    return out[..., : rir.shape[-1]]


def render_rirs(
    scene: Scene,
    fmt: Format,
    sample_rate: int,
    hrtf: HRTF | None = None,
    ambisonic_convention: AmbisonicConvention = "acn-sn3d",
    length_s: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Source RIR (C, L) and noise RIRs (K, C, L), float32, L = length_s * sample_rate.

    C = 2 (left, right) for binaural, 4 for Ambisonics (W, Y, Z, X for ACN/SN3D; W, X, Y, Z for
    FuMa). Sample 0 is the emission time: the direct sound arrives at distance / c seconds.
    `hrtf` defaults to MIT KEMAR.
    """
    encoder = make_encoder(fmt, sample_rate, hrtf, ambisonic_convention)
    length = int(round(length_s * sample_rate))
    sim = simulate_room(scene, sample_rate, length_s)
    rng = np.random.default_rng(_render_seed(scene))
    rirs = []
    for images, att, orders, hist in zip(
        sim.images, sim.attenuations, sim.orders, sim.histograms, strict=True
    ):
        vec = room_to_head(images.T, np.asarray(scene.listener), scene.head_azimuth_deg)  # (M, 3)
        dist = np.linalg.norm(vec, axis=1)
        gains = att / dist  # pyroomacoustics' scale: free field 1/r (1 at 1 m)
        delays = dist / SPEED_OF_SOUND * sample_rate
        early = encoder.arrivals(vec / dist[:, None], gains, delays, length)
        # Scattered energy cannot arrive before the first reflection.
        env = _tail_envelope(hist, sim.bin_samples, delays[orders > 0].min(), length)
        late = encoder.diffuse(length, rng) * np.sqrt(env)
        rir = _air_absorption(early + late, sample_rate, sim.air_absorption, sim.band_centres)
        rirs.append(rir.astype(np.float32))
    return rirs[0], np.stack(rirs[1:])
