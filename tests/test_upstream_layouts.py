"""Upstream's weight layouts, transcribed from its module structure, load strictly.

The expected keys and shapes below are written from reading the upstream modules, not from
hear-gram's code:
- labhamlet/GRAM-T ``src/model/GRAMT.py``: ``encoder`` (``src/model/utils.py``
  ``create_pretrained_model("base")`` = torchvision ``Encoder(num_layers=12, hidden_dim=768,
  mlp_dim=3072)``, its ``pos_embedding`` replaced by a (1, 1 + N, 768) table), ``patch_embed.proj``,
  ``cls_token``, ``decoder_embed``, ``mask_token`` (buffer), ``decoder_blocks`` (``MWMHABlock`` of
  ``src/model/layers/mwmae.py``), ``decoder_pos_embed`` (buffer, no CLS row), ``spec_pred`` (a
  Sequential), ``melspec`` (torchaudio ``MelSpectrogram``, or for 7 channels the ``FeatureExtractor``
  of ``src/model/ambisonic_feature_extractor.py``: both hold ``spectrogram.window`` and
  ``mel_scale.fb``), ``decoder_norm``; ``spectrogram_normalize`` has no parameters.
- labhamlet/GRAM-M ``src/model/GRAMM.py``: ``patch_embed``, ``encoder_pos_embed``, ``cls_token``,
  ``encoder_norm`` (never applied), ``encoder_v`` (``MixerModel``: mamba_ssm ``Block``s with a
  ``Mamba2`` mixer at its defaults and an RMSNorm, no MLP; ``norm_f``), ``decoder_embed``,
  ``mask_token``, ``decoder_norm``, ``decoder_v`` (``MWMHABlock``), ``decoder_pos_embed``,
  ``melspec``, ``spec_pred``.
- ``hear_api/runtime.py`` (both repositories): ``RuntimeGRAMT``/``RuntimeGRAMM`` = ``model`` (the
  module above) + ``mel_spec`` (``FeatureExtractor`` with a ``melspec`` child); GRAM-T's
  ``huggingface/gramt_binaural.py`` ``MyModel`` holds that runtime as ``encoder``.
Window sizes per head: ``hear_configs/GRAMT.py`` [2, 5, 10, 25, 50, 100, 0, 0],
``hear_configs/GRAMTTime.py`` [2, 5, 10, 25, 50, 0, 0, 0], GRAM-M's runtime default as GRAMT's.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hear_gram import checkpoints as ck
from hear_gram.checkpoints import random_encoder, save_checkpoint
from tests.torchaudio_compat import import_torchaudio

D, DEC, MLP = 768, 512, 3072  # "base" encoder width and MLP, decoder width
PATCH_WINDOWS = [2, 5, 10, 25, 50, 100, 0, 0]
TIME_WINDOWS = [2, 5, 10, 25, 50, 0, 0, 0]
# torchaudio MelSpectrogram(n_fft=1024, n_mels=128) and the Ambisonic FeatureExtractor alike
MEL = {"spectrogram.window": (1024,), "mel_scale.fb": (513, 128)}


def prefixed(prefix: str, keys: dict) -> dict:
    return {prefix + k: v for k, v in keys.items()}


def linear(name: str, n_out: int, n_in: int) -> dict:
    return {f"{name}.weight": (n_out, n_in), f"{name}.bias": (n_out,)}


def layernorm(name: str, n: int) -> dict:
    return {f"{name}.weight": (n,), f"{name}.bias": (n,)}


def torchvision_encoder(depth: int, n_tokens: int) -> dict:
    """torchvision Encoder: EncoderBlock = ln_1, self_attention (nn.MultiheadAttention, packed
    in_proj), ln_2, mlp (MLPBlock: Linear at 0 and 3); then ln."""
    out = {"pos_embedding": (1, n_tokens, D)}
    for i in range(depth):
        p = f"layers.encoder_layer_{i}."
        out |= layernorm(p + "ln_1", D)
        out |= {p + "self_attention.in_proj_weight": (3 * D, D)}
        out |= {p + "self_attention.in_proj_bias": (3 * D,)}
        out |= linear(p + "self_attention.out_proj", D, D)
        out |= layernorm(p + "ln_2", D)
        out |= linear(p + "mlp.0", MLP, D) | linear(p + "mlp.3", D, MLP)
    return out | layernorm("ln", D)


def mwmha_block(windows: list[int]) -> dict:
    """MWMHABlock(dim=512, num_heads=8, qkv_bias=True, mlp_ratio=4): AttentionHead (window 0)
    has no parameters; WindowedAttentionHead has a (2w - 1, 1) bias table and a (w, w) index."""
    out = layernorm("norm1", DEC) | linear("wmha.qkv", 3 * DEC, DEC)
    for h, w in enumerate(windows):
        if w:
            out[f"wmha.attn_heads.{h}.relative_position_bias_table"] = (2 * w - 1, 1)
            out[f"wmha.attn_heads.{h}.relative_position_index"] = (w, w)
    out |= linear("wmha.proj", DEC, DEC) | layernorm("norm2", DEC)
    return out | linear("mlp.fc1", 4 * DEC, DEC) | linear("mlp.fc2", DEC, 4 * DEC)


def decoder(blocks: str, windows: list[int], n_patches: int, patch_values: int, depth=8) -> dict:
    out = linear("decoder_embed", DEC, D) | {"mask_token": (1, 1, DEC)}
    for i in range(depth):
        out |= prefixed(f"{blocks}.{i}.", mwmha_block(windows))
    out |= {"decoder_pos_embed": (1, n_patches, DEC)} | layernorm("decoder_norm", DEC)
    return out | linear("spec_pred.0", patch_values, DEC)


def gramt(depth: int, in_ch: int, pf: int, pt: int, windows: list[int], dec_depth=8) -> dict:
    n = (128 // pf) * (200 // pt)
    out = prefixed("encoder.", torchvision_encoder(depth, 1 + n))
    out |= {"patch_embed.proj.weight": (D, in_ch, pf, pt), "patch_embed.proj.bias": (D,)}
    out |= {"cls_token": (1, 1, D)}
    out |= decoder("decoder_blocks", windows, n, pf * pt * in_ch, dec_depth)
    return out | prefixed("melspec.", MEL)


def mamba2_block() -> dict:
    """mamba_ssm Block(norm=RMSNorm, mixer=Mamba2 at its defaults: d_state 128, d_conv 4,
    expand 2, headdim 64, ngroups 1, no in/out bias, conv bias, gated RMSNorm), no MLP."""
    d_inner, d_state = 2 * D, 128
    nheads, conv_dim = d_inner // 64, d_inner + 2 * d_state
    return {
        "norm.weight": (D,),
        "mixer.in_proj.weight": (2 * d_inner + 2 * d_state + nheads, D),
        "mixer.conv1d.weight": (conv_dim, 1, 4),
        "mixer.conv1d.bias": (conv_dim,),
        "mixer.dt_bias": (nheads,),
        "mixer.A_log": (nheads,),
        "mixer.D": (nheads,),
        "mixer.norm.weight": (d_inner,),
        "mixer.out_proj.weight": (D, d_inner),
    }


def gramm(depth: int, dec_depth: int = 8) -> dict:
    n = 8 * 25  # 16 x 8 patches
    out = {"patch_embed.proj.weight": (D, 2, 16, 8), "patch_embed.proj.bias": (D,)}
    out |= {"encoder_pos_embed": (1, 1 + n, D), "cls_token": (1, 1, D)}
    out |= layernorm("encoder_norm", D)
    for i in range(depth):
        out |= prefixed(f"encoder_v.layers.{i}.", mamba2_block())
    out |= {"encoder_v.norm_f.weight": (D,)}
    out |= decoder("decoder_v", PATCH_WINDOWS, n, 16 * 8 * 2, dec_depth)
    return out | prefixed("melspec.", MEL)


def upstream(model: str, depth: int, dec_depth: int = 8) -> dict:
    """Key -> shape of upstream's GRAMT/GRAMM module for a preset (encoder depth reduced)."""
    if model == "gram-t":
        return gramt(depth, 2, 16, 8, PATCH_WINDOWS, dec_depth)
    if model == "gram-t-time":
        return gramt(depth, 2, 128, 2, TIME_WINDOWS, dec_depth)
    if model == "gram-t-ambisonic":
        return gramt(depth, 7, 16, 8, PATCH_WINDOWS, dec_depth)
    return gramm(depth, dec_depth)


def runtime(model_keys: dict) -> dict:
    return prefixed("model.", model_keys) | prefixed("mel_spec.melspec.", MEL)


def hub_wrapper(model_keys: dict) -> dict:
    return prefixed("encoder.", runtime(model_keys))


MODULES = {
    "gram-t": "hear_gram.gram_t",
    "gram-t-time": "hear_gram.gram_t_time",
    "gram-t-ambisonic": "hear_gram.gram_t_ambisonic",
    "gram-m": "hear_gram.gram_m",
}
DECODER_NAMES = ("decoder_", "mask_token", "spec_pred.")


def torchaudio_mel() -> dict:
    """The buffers of upstream's MelSpectrogram, from torchaudio itself."""
    ta = import_torchaudio()
    mel = ta.transforms.MelSpectrogram(
        sample_rate=32000, n_fft=1024, win_length=1024, hop_length=320, f_min=50,
        f_max=16000, n_mels=128, power=2.0,
    )  # fmt: skip
    return {k: v.clone() for k, v in mel.state_dict().items()}


def file_shapes(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


@pytest.mark.parametrize("model", sorted(MODULES))
def test_random_with_decoder_writes_exactly_upstreams_runtime_keys(tmp_path, model):
    out = tmp_path / "r.safetensors"
    argv = ["random", "--model", model, "--depth", "1", "--with-decoder", "--out", str(out)]
    assert ck.main(argv) == 0
    got = file_shapes(out)
    want = runtime(upstream(model, depth=1))
    assert sorted(set(got) - set(want)) == [] and sorted(set(want) - set(got)) == []
    assert {k: v for k, v in got.items() if want[k] != v} == {}
    with safe_open(str(out), framework="pt") as f:
        mel = torchaudio_mel()
        for k in ("mel_spec.melspec.", "model.melspec."):  # both copies are torchaudio's buffers
            for name, ref in mel.items():
                torch.testing.assert_close(f.get_tensor(k + name), ref, atol=1e-6, rtol=0)
        # MWMHA's index: relative_coords[i, j] = i - j, shifted by w - 1 (int64, as arange)
        idx = f.get_tensor("model." + ("decoder_v" if model == "gram-m" else "decoder_blocks")
                           + ".3.wmha.attn_heads.2.relative_position_index")  # fmt: skip
        assert idx.dtype == torch.int64 and idx[0].tolist() == [9 - j for j in range(10)]


@pytest.mark.parametrize("model", ["gram-t", "gram-m"])
def test_random_without_decoder_is_upstream_minus_the_decoder(tmp_path, model):
    out = tmp_path / "r.safetensors"
    assert ck.main(["random", "--model", model, "--depth", "2", "--out", str(out)]) == 0
    want = {
        k: v
        for k, v in runtime(upstream(model, depth=2)).items()
        if not k.removeprefix("model.").startswith(DECODER_NAMES)
    }
    assert file_shapes(out) == want


def synthetic(model: str, seed: int = 0):
    """(our encoder, upstream GRAMT/GRAMM state): encoder tensors shared by name, decoder random,
    mel buffers torchaudio's. Two decoder blocks keep the files small (they are set aside)."""
    enc = random_encoder(model, depth=1, seed=seed)
    ours = enc.state_dict()
    g = torch.Generator().manual_seed(seed)
    mel = torchaudio_mel()
    state = {}
    for k, shape in upstream(model, depth=1, dec_depth=2).items():
        if k in ours:
            state[k] = ours[k].clone()
        elif k.startswith("melspec."):
            state[k] = mel[k.removeprefix("melspec.")]
        elif k.endswith("relative_position_index"):
            state[k] = torch.randint(0, shape[0], shape, generator=g)
        else:
            state[k] = torch.randn(shape, generator=g)
    return enc, state


def write(layout: str, state: dict, path):
    if layout == "runtime":
        save_file(
            {k: v.contiguous() for k, v in runtime_state(state).items()},
            str(path),
            {"format": "pt"},
        )
    elif layout == "hub-wrapper":
        hub = {"encoder." + k: v.contiguous() for k, v in runtime_state(state).items()}
        save_file(hub, str(path), {"format": "pt"})
    elif layout == "bare":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:  # upstream Lightning: the training module's state dict, plus trainer bookkeeping
        torch.save({"state_dict": state, "epoch": 3, "global_step": 1000}, path)
    return path


def runtime_state(state: dict) -> dict:
    mel = {"mel_spec.melspec." + k: v for k, v in torchaudio_mel().items()}
    return {"model." + k: v for k, v in state.items()} | mel


LAYOUTS = ["runtime", "hub-wrapper", "bare", "lightning"]


@pytest.fixture(scope="module")
def audio():
    g = torch.Generator().manual_seed(5)
    return {c: torch.rand(1, c, 16000, generator=g) * 2 - 1 for c in (2, 4)}


@pytest.mark.parametrize("model", sorted(MODULES))
def test_every_layout_loads_strictly_with_our_embeddings(tmp_path, model, audio, capsys):
    module = importlib.import_module(MODULES[model])
    enc, state = synthetic(model)
    assert set(runtime_state(state)) == set(runtime(upstream(model, 1, dec_depth=2)))
    clip = audio[4 if model == "gram-t-ambisonic" else 2]
    own = module.load_model(str(save_checkpoint(tmp_path / "own.safetensors", enc, "hear-gram")))
    ref = module.get_timestamp_embeddings(clip, own)[0]  # scene = its mean over time
    for layout in LAYOUTS:
        path = write(layout, state, tmp_path / f"{layout}.bin")  # no telling extension
        rt = module.load_model(str(path))
        assert rt.cfg == own.cfg, layout
        assert torch.equal(module.get_timestamp_embeddings(clip, rt)[0], ref), layout
        _, report = ck.load_encoder(path)
        n_dec = sum(k.startswith(DECODER_NAMES) for k in state)
        assert report.layout == layout and len(report.decoder_keys) == n_dec
        n_mel = 4 if layout in ("runtime", "hub-wrapper") else 2
        assert len(report.frontend_keys) == n_mel
        unused = ["encoder_norm.bias", "encoder_norm.weight"] if model == "gram-m" else []
        assert sorted(report.ignored_keys) == unused
    assert ck.main(["info", str(tmp_path / "hub-wrapper.bin")]) == 0
    assert "layout:      hub-wrapper: upstream hub wrapper" in capsys.readouterr().out


def test_info_names_the_runtime_layout(tmp_path, capsys):
    _, state = synthetic("gram-t")
    path = write("runtime", state, tmp_path / "model.safetensors")
    assert ck.main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "layout:      runtime: upstream HEAR runtime state dict" in text
    assert "set aside:   " in text and "4 front-end" in text


def test_a_module_refuses_another_models_upstream_file(tmp_path):
    _, state = synthetic("gram-m")
    path = write("runtime", state, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="Use hear_gram.gram_m instead"):
        importlib.import_module("hear_gram.gram_t").load_model(str(path))


def test_a_runtime_file_missing_an_encoder_tensor_is_refused_naming_it(tmp_path):
    _, state = synthetic("gram-t")
    del state["encoder.layers.encoder_layer_0.ln_2.bias"]
    with pytest.raises(ck.CheckpointError, match="missing: encoder.layers.encoder_layer_0.ln_2"):
        ck.load_encoder(write("runtime", state, tmp_path / "x.safetensors"))


def test_fp16_mel_buffers_of_the_right_features_pass_and_wrong_ones_are_measured(tmp_path):
    enc, state = synthetic("gram-t")
    half = {k: v.half() if "melspec" in k else v for k, v in runtime_state(state).items()}
    path = tmp_path / "h.safetensors"
    save_file({k: v.contiguous() for k, v in half.items()}, str(path))
    loaded, _ = ck.load_encoder(path)
    assert torch.equal(loaded.cls_token, enc.cls_token)
    half["mel_spec.melspec.mel_scale.fb"] = half["mel_spec.melspec.mel_scale.fb"] * 1.01
    save_file({k: v.contiguous() for k, v in half.items()}, str(path))
    with pytest.raises(
        ck.CheckpointError, match=r"mel_scale.fb \(torch.float16\) differs .* by up"
    ):
        ck.load_encoder(path)
