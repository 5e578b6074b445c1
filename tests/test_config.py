"""Validation and serialisation of GramConfig / FeatureConfig: a config may come from a weights
file made by anyone, so every malformed field is refused with a message naming it, the presets
describe the released models, and a config survives its JSON round trip unchanged."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from hear_gram.config import DECODERS, PRESETS, FeatureConfig, GramConfig, MambaConfig, preset
from hear_gram.formats import SCENE_FORMATS, SpatialFormat

# (field, bad value, word the message must contain): each refused on its own, all else default.
BAD_GRAM = [
    ("depth", 0, "depth"), ("depth", 257, "depth"), ("depth", True, "depth"),
    ("depth", 2.0, "depth"), ("depth", "12", "depth"), ("width", 0, "width"),
    ("width", 8193, "width"), ("heads", 0, "heads"), ("mlp_dim", -1, "mlp_dim"),
    ("patch_f", 0, "patch_f"), ("patch_t", 10001, "patch_t"), ("d_state", 0, "d_state"),
    ("d_conv", 65, "d_conv"), ("expand", 17, "expand"), ("headdim", 0, "headdim"),
    ("ngroups", 0, "ngroups"), ("dt_rank", 0, "dt_rank"), ("dt_rank", 1.5, "dt_rank"),
    ("backbone", "lstm", "backbone"), ("mixer", "s4", "mixer"),
    ("in_channels", 3, "in_channels"), ("in_channels", 4, "in_channels"),
    # equal to a valid channel count, but not an int: would build a model from a bool/float
    ("in_channels", True, "in_channels"), ("in_channels", 2.0, "in_channels"),
    ("features", {"n_mels": 128}, "features"),
]  # fmt: skip

BAD_FEATURES = [
    ("sample_rate", 999, "sample_rate"), ("sample_rate", 32000.0, "sample_rate"),
    ("n_mels", 0, "n_mels"), ("n_fft", 1, "n_fft"), ("win_length", 0, "win_length"),
    ("hop_length", 0, "hop_length"), ("chunk_frames", 0, "chunk_frames"),
    ("f_min", math.nan, "f_min"), ("f_max", math.inf, "f_max"), ("f_min", "50", "f_min"),
    ("f_max", True, "f_max"), ("log_eps", 0.0, "log_eps"), ("log_eps", math.nan, "log_eps"),
    ("ambisonic_eps", -1e-6, "ambisonic_eps"),
    # relations between fields
    ("win_length", 2048, "win_length"), ("f_max", 16001.0, "f_max"),
    ("f_min", 16000.0, "f_min"), ("f_min", -1.0, "f_min"),
]  # fmt: skip


@pytest.mark.parametrize("name,value,word", BAD_GRAM)
def test_each_invalid_gram_field_is_refused_naming_it(name, value, word):
    # on a GRAM-M config, so that the Mamba fields (nested under `mamba`) are checked too
    with pytest.raises(ValueError, match=word):
        GramConfig(backbone="mamba").replace(**{name: value})


@pytest.mark.parametrize("name,value,word", BAD_FEATURES)
def test_each_invalid_feature_field_is_refused_naming_it(name, value, word):
    with pytest.raises(ValueError, match=word):
        FeatureConfig(**{name: value})


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"width": 100, "heads": 12}, ("width 100", "heads 12")),
        ({"patch_f": 5}, ("patch 5x8", "128x200")),  # 5 mel bins do not tile 128
        ({"patch_t": 7}, ("patch 16x7",)),
        ({"patch_f": 1, "patch_t": 1}, ("25600 tokens",)),  # over MAX_PATCHES
        ({"patch_t": 2, "width": 8192, "heads": 128}, ("positional table",)),  # 801 x 8192
    ],
)
def test_sizes_that_do_not_fit_together_are_refused(changes, words):
    with pytest.raises(ValueError) as err:
        GramConfig(**changes)
    for w in words:
        assert w in str(err.value)


def test_head_divisibility_applies_to_the_transformer_only():
    # Mamba has no attention heads: an indivisible width is fine there
    assert GramConfig(backbone="mamba", width=96, heads=5).width == 96


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_survive_a_round_trip(name):
    cfg = PRESETS[name]
    assert GramConfig.from_dict(cfg.to_dict()) == cfg
    assert GramConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert preset(name) == cfg


def test_presets_describe_the_released_models():
    # arXiv 2506.00934 and labhamlet/GRAM-T, GRAM-M: ViT-B on 2 s chunks of 128 mel x 200 frames
    t, tt, ta, m = (PRESETS[n] for n in ("gram-t", "gram-t-time", "gram-t-ambisonic", "gram-m"))
    assert (t.depth, t.width, t.heads, t.mlp_dim, t.in_channels) == (12, 768, 12, 3072, 2)
    assert (t.grid, t.num_patches, t.variant) == ((8, 25), 200, "patch")
    assert (tt.grid, tt.num_patches, tt.variant) == ((1, 100), 100, "time")
    assert (t.raw_dim, tt.raw_dim) == (8 * 768, 768)
    assert (t.step_ms, tt.step_ms) == (80.0, 20.0)
    assert (ta.in_channels, ta.format) == (7, "ambisonic")
    assert (m.backbone, m.mamba.mixer, m.depth) == ("mamba", "mamba2", 24)
    assert m.mamba.d_model == m.width and t.mamba is None
    assert t.features.chunk_seconds == 2.0


def test_a_changed_config_round_trips_through_json_with_every_field():
    cfg = GramConfig(
        backbone="mamba", depth=3, width=96, in_channels=1,
        mamba=MambaConfig(mixer="mamba1", d_state=24, expand=3, dt_rank=7),
        features=FeatureConfig(sample_rate=16000, f_max=8000.0, log_eps=1e-5),
    )  # fmt: skip
    text = cfg.to_json()
    back = GramConfig.from_dict(json.loads(text))
    assert back == cfg and back.to_json() == text
    fields = {f.name for f in dataclasses.fields(GramConfig)}
    assert set(json.loads(text)) == fields  # nothing dropped, nothing added
    assert json.loads(text)["features"]["sample_rate"] == 16000


def test_from_dict_fills_defaults_and_names_unknown_or_malformed_entries():
    assert GramConfig.from_dict({}) == GramConfig()
    assert GramConfig.from_dict({"depth": 2}).depth == 2
    with pytest.raises(ValueError, match="unknown GramConfig fields \\['dpeth'\\]"):
        GramConfig.from_dict({"dpeth": 2})
    with pytest.raises(ValueError, match="unknown FeatureConfig fields \\['nmels'\\]"):
        GramConfig.from_dict({"features": {"nmels": 64}})
    with pytest.raises(ValueError, match="features must be a JSON object"):
        GramConfig.from_dict({"features": [1, 2]})
    with pytest.raises(ValueError, match="JSON object, got list"):
        GramConfig.from_dict([("depth", 2)])
    with pytest.raises(ValueError, match="depth"):
        GramConfig.from_dict({"depth": 10**9})  # bounds apply to stored configs too


def test_preset_overrides_are_validated_and_unknown_presets_named():
    assert preset("gram-t", depth=2).depth == 2
    with pytest.raises(ValueError, match="depth"):
        preset("gram-t", depth=0)
    with pytest.raises(ValueError, match="unknown preset 'gram-x'"):
        preset("gram-x")


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["gram-t"].depth = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["gram-t"].features.n_mels = 64  # type: ignore[misc]


# --- Mamba sizes nested in GramConfig --------------------------------------------------------
def test_mamba_sizes_follow_the_encoder_width_and_are_stored_once():
    m = preset("gram-m", width=64, depth=2, d_state=16, headdim=16)
    # the mixers run at the encoder's width, whatever MambaConfig was given
    assert (m.mamba.d_model, m.mamba.d_state, m.mamba.headdim) == (64, 16, 16)
    assert (m.mamba.d_inner, m.mamba.nheads) == (128, 8)
    d = json.loads(m.to_json())
    assert "d_model" not in d["mamba"] and d["width"] == 64  # the width is stored once
    assert GramConfig.from_dict(d) == m
    with pytest.raises(ValueError, match="mamba.d_model 32 differs from width"):
        GramConfig.from_dict({**d, "mamba": {**d["mamba"], "d_model": 32}})
    # sizes that only fail at the real width fail when the width is known
    with pytest.raises(ValueError, match="divisible by headdim"):
        preset("gram-m", width=40, headdim=64)


def test_transformers_carry_no_mamba_sizes():
    with pytest.raises(ValueError, match="backbone='mamba' only"):
        preset("gram-t", d_state=16)
    with pytest.raises(ValueError, match="leave mamba None"):
        GramConfig(mamba=MambaConfig())
    assert json.loads(preset("gram-t").to_json())["mamba"] is None


def test_weights_files_with_flat_mamba_fields_still_read():
    # the layout before the nesting: Mamba fields beside backbone, for transformers too
    flat = {"backbone": "mamba", "depth": 3, "width": 96, "mixer": "mamba1", "d_state": 24,
            "d_conv": 4, "expand": 3, "headdim": 64, "ngroups": 1, "dt_rank": 7}  # fmt: skip
    cfg = GramConfig.from_dict(flat)
    assert cfg.mamba == MambaConfig(96, "mamba1", 24, 4, 3, 64, 1, 7)
    t = GramConfig.from_dict({"depth": 2, "mixer": "mamba2", "d_state": 128, "dt_rank": None})
    assert t == preset("gram-t", depth=2)
    with pytest.raises(ValueError, match="both flat and under 'mamba'"):
        GramConfig.from_dict({"backbone": "mamba", "d_state": 8, "mamba": {"d_state": 8}})


def test_decoder_presets_are_the_paper_decoder_and_the_demo_one():
    # labhamlet/GRAM-T: 8 decoder blocks of width 512 with 8 windowed heads
    g, demo = DECODERS["gram"], DECODERS["demo"]
    assert (g.width, g.depth, g.heads) == (512, 8, 8)
    assert (demo.width, demo.depth) == (128, 2)
    from hear_gram.pretrain.train import CONFIGS

    assert CONFIGS["paper-binaural"].decoder == g and CONFIGS["demo-cpu"].decoder == demo


# --- spatial formats: one table --------------------------------------------------------------
def test_one_table_of_formats_for_models_and_scenes():
    fmts = {f.value: (f.channels, f.in_channels) for f in SpatialFormat}
    # arXiv 2506.00934: mono, binaural (L, R), Ambisonic W, Y, Z, X log-mels + 3 intensity
    assert fmts == {"mono": (1, 1), "binaural": (2, 2), "ambisonic": (4, 7)}
    assert [f.value for f in SCENE_FORMATS] == ["binaural", "ambisonic"]
    assert [preset(n).is_ambisonic for n in ("gram-t", "gram-t-mono", "gram-t-ambisonic")] == [
        False,
        False,
        True,
    ]
    assert preset("gram-t-ambisonic").spatial_format is SpatialFormat.AMBISONIC
    assert SpatialFormat.of_in_channels(True) is None and SpatialFormat.of_in_channels(7.0) is None
    from naturalistic_hear.formats import CHANNELS, scene_format

    assert CHANNELS == {"binaural": 2, "ambisonic": 4}
    with pytest.raises(ValueError, match="format must be one of \\('binaural', 'ambisonic'\\)"):
        scene_format("mono", "format")
