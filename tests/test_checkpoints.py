"""Weight files: layouts, architecture inference, strict loading, safe unpickling, registry, CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path, PurePosixPath

import pytest
import torch
from safetensors.torch import load_file, save_file

import hear_gram
from hear_gram import checkpoints as ck
from hear_gram.checkpoints import CheckpointError, load_encoder, random_encoder, save_checkpoint

SPEC = torch.randn(1, 2, 128, 200, generator=torch.Generator().manual_seed(0))


def same_outputs(a, b, spec=SPEC):
    with torch.no_grad():
        torch.testing.assert_close(a(spec), b(spec))


@pytest.mark.parametrize("layout, found", [("released", "runtime"), ("hear-gram", "hear-gram")])
def test_round_trip_keeps_outputs(tmp_path, layout, found):
    enc = random_encoder("gram-t", depth=2, seed=3)
    path = save_checkpoint(tmp_path / "w.safetensors", enc, layout)
    loaded, report = load_encoder(path)
    assert report.layout == found and report.config == enc.cfg
    same_outputs(enc, loaded)


def test_released_layout_is_upstream_runtime_layout(gram_t_file):
    """RuntimeGRAMT's state dict: GRAMT under model. (with its own melspec), the runtime's
    FeatureExtractor at the top level (labhamlet/GRAM-T hear_api/runtime.py)."""
    keys = set(load_file(str(gram_t_file)))
    assert {k for k in keys if not k.startswith("model.")} == {
        "mel_spec.melspec.spectrogram.window",
        "mel_spec.melspec.mel_scale.fb",
    }
    assert {"model.melspec.spectrogram.window", "model.melspec.mel_scale.fb"} <= keys
    assert not any(k.startswith("model.mel_spec.") for k in keys)
    assert "model.encoder.layers.encoder_layer_1.self_attention.in_proj_weight" in keys


def test_depth_and_shape_are_inferred_with_no_options(tmp_path):
    enc = random_encoder("gram-t-time", depth=3)
    _, report = load_encoder(save_checkpoint(tmp_path / "w.safetensors", enc, "released"))
    cfg = report.config
    assert (cfg.depth, cfg.width, cfg.heads, cfg.patch_f, cfg.patch_t, cfg.in_channels) == (
        3,
        768,
        12,
        128,
        2,
        2,
    )


def lightning_state(enc):
    """An upstream Lightning checkpoint: training-module keys, decoder, melspec, no prefix."""
    state = dict(enc.state_dict())
    state["decoder_embed.weight"] = torch.zeros(512, 768)
    state["decoder_blocks.0.attn.qkv.weight"] = torch.zeros(3 * 512, 512)
    state["mask_token"] = torch.zeros(1, 1, 512)
    state["spec_pred.0.weight"] = torch.zeros(256, 512)
    state["melspec.spectrogram.window"] = torch.hann_window(1024)
    return state


def test_lightning_checkpoint_loads_with_decoder_keys_set_aside(tmp_path):
    enc = random_encoder("gram-t", depth=1)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": lightning_state(enc), "epoch": 3, "global_step": 10}, path)
    loaded, report = load_encoder(path)
    assert report.layout == "lightning" and len(report.decoder_keys) == 4
    same_outputs(enc, loaded)


def test_unknown_key_is_an_error_naming_it(tmp_path):
    state = lightning_state(random_encoder("gram-t", depth=1))
    state["head.weight"] = torch.zeros(3)
    torch.save({"state_dict": state}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="head.weight"):
        load_encoder(tmp_path / "x.ckpt")


def test_missing_and_misshaped_keys_are_named(tmp_path):
    state = {k: v for k, v in random_encoder("gram-t", depth=1).state_dict().items()}
    del state["encoder.ln.bias"]
    state["encoder.pos_embedding"] = torch.zeros(1, 50, 768)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "x.safetensors"))
    with pytest.raises(
        CheckpointError,
        match=r"missing: encoder\.ln\.bias.*encoder\.pos_embedding: file \(1, 50, 768\)",
    ):
        load_encoder(tmp_path / "x.safetensors")


def test_pickled_objects_need_an_explicit_opt_in(tmp_path):
    enc = random_encoder("gram-t", depth=1)
    path = tmp_path / "legacy.ckpt"
    torch.save(
        {"state_dict": enc.state_dict(), "hyper_parameters": {"f": torch.nn.Identity()}}, path
    )
    with pytest.raises(CheckpointError, match="allow_pickle"):
        load_encoder(path)
    loaded, _ = load_encoder(path, allow_pickle=True)
    same_outputs(enc, loaded)


def test_foreign_mel_filterbank_is_refused(tmp_path, gram_t_file):
    state = load_file(str(gram_t_file))
    state["mel_spec.melspec.mel_scale.fb"] = state["mel_spec.melspec.mel_scale.fb"] * 1.1
    save_file(state, str(tmp_path / "x.safetensors"))
    with pytest.raises(CheckpointError, match="other features"):
        load_encoder(tmp_path / "x.safetensors")


def test_registry_lists_the_released_weights_and_the_demo_model():
    reg = ck.registry()
    assert {"gramt-binaural", "gramt-binaural-time", "gramt-ambisonics", "gramt-mono"} <= set(reg)
    assert reg["gram-demo-cpu"]["made_by"] == "make pretrain-demo"
    for name, e in reg.items():
        assert e["preset"] in ck.PRESETS and importlib.util.find_spec(e["module"])
        if e["source"] == "huggingface":
            assert e["repo_id"] == f"labhamlet/{name}" and e["file"] == "model.safetensors"
            assert e["license"]
        else:  # made by a command of this repository, under the never-committed work/
            path = PurePosixPath(e["path"])
            assert not path.is_absolute() and path.parts[0] == "work" and ".." not in path.parts
            assert e["made_by"] and e["description"]


LOCAL = {
    "source": "local",
    "path": "work/demo/model.safetensors",
    "made_by": "make pretrain-demo",
    "preset": "gram-t",
    "module": "hear_gram.gram_t",
    "sha256": None,
    "description": "a test entry",
}
HUB = {"source": "huggingface", "repo_id": "labhamlet/x", "file": "model.safetensors"}


def use_registry(monkeypatch, root: Path, **entries: dict) -> None:
    """Point the registry at a checkpoints.json in ``root`` holding ``entries``."""
    (root / "checkpoints.json").write_text(json.dumps({"schema": 1, "checkpoints": entries}))
    monkeypatch.setattr(ck, "REGISTRY_PATH", root / "checkpoints.json")


def test_local_entry_resolves_to_its_file_and_loads(tmp_path, monkeypatch):
    use_registry(monkeypatch, tmp_path, demo=LOCAL)
    enc = random_encoder("gram-t", depth=1)
    path = save_checkpoint(tmp_path / "work" / "demo" / "model.safetensors", enc, "hear-gram")
    assert ck.resolve("demo") == ck.local_path("demo") == path
    loaded, report = load_encoder(ck.resolve("demo"))
    assert report.layout == "hear-gram" and report.config == enc.cfg
    same_outputs(enc, loaded)
    model = hear_gram.load_model("demo")
    assert model.source == str(path) and model.cfg == enc.cfg


def test_local_entry_may_give_an_absolute_path(tmp_path, monkeypatch):
    use_registry(monkeypatch, tmp_path, demo={**LOCAL, "path": str(tmp_path / "elsewhere.st")})
    assert ck.local_path("demo") == tmp_path / "elsewhere.st"


def test_missing_local_file_says_which_command_makes_it(tmp_path, monkeypatch):
    use_registry(monkeypatch, tmp_path, demo=LOCAL)
    with pytest.raises(CheckpointError, match="not been made yet.*run make pretrain-demo"):
        ck.resolve("demo")
    with pytest.raises(CheckpointError, match="local entry, not huggingface.*make pretrain-demo"):
        ck.cached_path("demo")


def test_fetch_of_a_local_entry_is_an_error_and_downloads_nothing(tmp_path, monkeypatch):
    use_registry(monkeypatch, tmp_path, demo=LOCAL)

    def no_download(*a, **k):
        raise AssertionError("fetch of a local entry must not download")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    with pytest.raises(CheckpointError, match="made, not downloaded. Run make pretrain-demo"):
        ck.fetch("demo")


def test_unknown_source_kind_is_an_error_naming_the_entry(tmp_path, monkeypatch):
    use_registry(monkeypatch, tmp_path, odd={**LOCAL, "source": "s3"})
    with pytest.raises(
        CheckpointError,
        match=r"entry 'odd' has source 's3'; valid kinds: \['huggingface', 'local'\]",
    ):
        ck.resolve("odd")


@pytest.mark.parametrize(
    "entry, missing",
    [
        ({**HUB, "repo_id": None}, "repo_id"),
        ({k: v for k, v in LOCAL.items() if k != "path"}, "path"),
    ],
)
def test_entry_lacking_the_keys_of_its_source_is_an_error(tmp_path, monkeypatch, entry, missing):
    use_registry(monkeypatch, tmp_path, bad=entry)
    with pytest.raises(CheckpointError, match=f"entry 'bad' .* lacks {missing}"):
        ck.registry()


def test_cli_list_and_info_show_local_entries(tmp_path, monkeypatch, capsys):
    use_registry(monkeypatch, tmp_path, demo=LOCAL)
    assert ck.main(["list"]) == 0
    assert "local, not made yet: run make pretrain-demo" in capsys.readouterr().out
    path = save_checkpoint(tmp_path / LOCAL["path"], random_encoder("gram-t", depth=1), "hear-gram")
    assert ck.main(["list"]) == 0
    assert f"local, present ({path})" in capsys.readouterr().out
    assert ck.main(["info", "demo"]) == 0
    text = capsys.readouterr().out
    assert f"registry:    demo (local, present ({path}))" in text and "depth 1" in text


def test_unfetched_name_offline_says_how_to_fetch_or_what_to_pass():
    # the tests run with HF_HUB_OFFLINE=1 and an empty Hugging Face cache (conftest.py)
    with pytest.raises(
        CheckpointError,
        match="HF_HUB_OFFLINE is set: run `python -m "
        "hear_gram.checkpoints fetch gramt-binaural`.*pass the weights file's path",
    ):
        ck.resolve("gramt-binaural")
    assert ck.cached_path("gramt-binaural") is None


def test_cli_random_and_info(tmp_path, capsys):
    out = tmp_path / "r.safetensors"
    assert (
        ck.main(["random", "--model", "gram-t-ambisonic", "--depth", "1", "--out", str(out)]) == 0
    )
    assert ck.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ambisonic" in text and "depth 1" in text and "no missing, no unexpected" in text
    cfg = json.loads(text.split("config:")[1].split("\n")[0])
    assert cfg["in_channels"] == 7


def test_cli_error_exit_code(tmp_path, capsys):
    assert ck.main(["info", str(tmp_path / "nope.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["gram-m", "gram-m-v1", "gram-t-ambisonic", "gram-t-mono"])
def test_every_preset_round_trips_through_the_released_layout(tmp_path, model):
    """Architecture inference covers both Mamba mixers (GRAM-M's Mamba-2, the v1 paper's Mamba-1) and every channel count."""
    enc = random_encoder(model, depth=2, seed=1)
    loaded, report = load_encoder(save_checkpoint(tmp_path / "w.safetensors", enc, "released"))
    assert report.config == enc.cfg
    spec = torch.randn(1, enc.cfg.in_channels, 128, 200, generator=torch.Generator().manual_seed(1))
    same_outputs(enc, loaded, spec)


def test_gram_m_upstream_checkpoint_keys(tmp_path):
    """Upstream GRAM-M Lightning files also hold an unused `encoder_norm` LayerNorm."""
    enc = random_encoder("gram-m", depth=1)
    state = lightning_state(enc)
    state["encoder_norm.weight"] = torch.ones(768)
    state["encoder_norm.bias"] = torch.zeros(768)
    torch.save({"state_dict": state}, tmp_path / "m.ckpt")
    loaded, report = load_encoder(tmp_path / "m.ckpt")
    assert sorted(report.ignored_keys) == ["encoder_norm.bias", "encoder_norm.weight"]
    assert {k.split(".")[0] for k in enc.state_dict()} == {
        "patch_embed",
        "cls_token",
        "encoder_pos_embed",
        "encoder_v",
    }
    same_outputs(enc, loaded)


def test_parameter_count_of_gram_m():
    n = sum(p.numel() for p in random_encoder("gram-m").parameters())
    assert 89e6 < n < 92e6  # arXiv 2506.00934: ~90 M


def test_early_hear_gram_released_files_still_load_and_say_so(tmp_path, gram_t_file):
    """hear-gram once wrote the runtime's mel buffers under model.mel_spec.* (upstream never
    does); such files load, checked, under their own layout name."""
    state = load_file(str(gram_t_file))
    legacy = {k: v for k, v in state.items() if not k.startswith(("mel_spec.", "model.melspec."))}
    legacy |= {"model." + k: v for k, v in state.items() if k.startswith("mel_spec.")}
    save_file(legacy, str(tmp_path / "old.safetensors"))
    loaded, report = load_encoder(tmp_path / "old.safetensors")
    assert report.layout == "hear-gram-legacy" and len(report.frontend_keys) == 2
    same_outputs(load_encoder(gram_t_file)[0], loaded)
    legacy["model.mel_spec.melspec.mel_scale.fb"] = (
        legacy["model.mel_spec.melspec.mel_scale.fb"] * 2
    )
    save_file(legacy, str(tmp_path / "old.safetensors"))
    with pytest.raises(CheckpointError, match="other features"):
        load_encoder(tmp_path / "old.safetensors")


# Every public name of the single-module hear_gram.checkpoints before its split into loading,
# saving, sources and cli: callers (the runtime, pretraining, tools, users) import them from here.
# (`cache_dir`, hear-gram's own download folder, went when downloads moved to huggingface_hub and
# the user's Hugging Face cache: `cached_path` now looks there.)
PUBLIC_BEFORE_SPLIT = """CheckpointError DECODER_PREFIXES ENCODER_PREFIXES FLOAT_DTYPES FRONTEND_KEYS
FRONTEND_PREFIXES HUB_PREFIX LAYOUTS LIGHTNING_KEY LoadReport OWN_FORMAT PRESETS REGISTRY_PATH
RELEASED_PREFIX RUNTIME_FRONTEND SHAPE_FIELDS SOURCE_KEYS UNUSED_UPSTREAM_PREFIXES
cached_path check_config check_frontend check_tensors compare_keys expected_shapes fetch
infer_config load_encoder load_strict local_path main parse_config random_decoder random_encoder
read_state registry released_state resolve save_checkpoint sha256 sniff split_state stored_config
unwrap upstream_decoder_state""".split()


def test_every_public_name_is_still_importable_from_hear_gram_checkpoints():
    missing = [n for n in PUBLIC_BEFORE_SPLIT if not hasattr(ck, n)]
    assert missing == []
    assert set(PUBLIC_BEFORE_SPLIT) <= set(ck.__all__)
