"""Hostile and broken weight files: refused before they cost memory, run code or give wrong numbers.

Each case is a cell of the hostile-input matrix (tests/hostile.py). Files are tiny and built
here; command-line cases run ``python -m hear_gram.checkpoints`` in a subprocess, the bombs under
an address-space cap far below what building their model would take.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hear_gram import checkpoints as ck
from hear_gram.checkpoints import CheckpointError, load_encoder, random_encoder, save_checkpoint
from hear_gram.config import preset
from tests.hostile import assert_clean_failure, run_cli, run_limited, snapshot

CLI = ["hear_gram.checkpoints"]
PROG = "python -m hear_gram.checkpoints"
MEM_MB = 1200  # imports need ~0.5 GB of address space; each bomb below asks for 100+ GB


def main_fails(capsys, args: list[str], *needles: str) -> str:
    """The CLI's ``main`` in this process: exit 2 (argparse's or ours), and the last stderr line
    is one clear error naming every needle. Subprocesses are kept for what needs one (memory
    caps, code that must not run here)."""
    try:
        rc = ck.main(args)
    except SystemExit as stop:  # argparse's own errors
        rc = stop.code
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, lines
    assert "Traceback" not in "\n".join(lines)
    assert lines[-1].startswith(PROG) and ": error: " in lines[-1], lines
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    return lines[-1]


def own_file(path: Path, config: dict | str, tensors: dict | None = None) -> Path:
    """A hear-gram safetensors file with the given stored config and tensors."""
    text = config if isinstance(config, str) else json.dumps(config)
    save_file(tensors or {"cls_token": torch.zeros(1)}, str(path), {"format": "hear-gram/1",
              "config": text})  # fmt: skip
    return path


def tiny_encoder_state(model: str = "gram-t") -> dict:
    return {k: v.clone() for k, v in random_encoder(model, depth=1).state_dict().items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A valid depth-1 GRAM-T file in our format, and its state."""
    d = tmp_path_factory.mktemp("tiny")
    return save_checkpoint(d / "ok.safetensors", random_encoder("gram-t", depth=1), "hear-gram")


# --- bombs: refused before any model is built -----------------------------------------------
@pytest.mark.hostile("bomb")
def test_tiny_own_file_claiming_depth_4000_fails_fast(tmp_path):
    path = own_file(tmp_path / "w.safetensors", {"depth": 4000})
    assert path.stat().st_size < 200  # the report's 129-byte file
    res = run_limited([*CLI, "info", str(path)], mem_mb=MEM_MB, timeout=60)
    assert_clean_failure(res, "stored config is invalid", "depth must be in 1..256, got 4000")


@pytest.mark.hostile("bomb")
def test_stored_mlp_width_disagreeing_with_zero_size_tensors_is_refused_before_building(tmp_path):
    """256 layers of zero-size tensors (a few kB) and a config asking for MLPs of 65536: building
    it would take ~100 GB. The shapes are compared on the meta device first."""
    state = tiny_encoder_state()
    for i in range(1, 256):
        state[f"encoder.layers.encoder_layer_{i}.ln_1.weight"] = torch.zeros(0)
    cfg = preset("gram-t", depth=256, mlp_dim=65536).to_dict()
    path = own_file(tmp_path / "w.safetensors", cfg, state)
    assert path.stat().st_size < 40e6  # the depth-1 model's tensors
    res = run_limited([*CLI, "info", str(path)], mem_mb=MEM_MB, timeout=120)
    assert_clean_failure(
        res, "do not match the architecture", "mlp.0.weight: file (3072, 768) vs model (65536, 768)"
    )


@pytest.mark.hostile("bomb")
def test_inferred_architecture_from_a_lying_shape_is_checked_before_building(tmp_path):
    """No stored config: width 768 read from a real patch_embed, depth 200 from key names of
    empty tensors, MLP 65536 from a (65536, 0) tensor (0 bytes)."""
    state = {k: v for k, v in tiny_encoder_state().items() if "encoder_layer_" not in k}
    for i in range(200):
        state[f"encoder.layers.encoder_layer_{i}.mlp.0.weight"] = torch.zeros(65536, 0)
    save_file(state, str(tmp_path / "w.safetensors"))
    res = run_limited([*CLI, "info", str(tmp_path / "w.safetensors")], mem_mb=MEM_MB, timeout=120)
    assert_clean_failure(res, "do not match the architecture", "missing")


@pytest.mark.hostile("bomb")
def test_safetensors_header_length_beyond_the_file_is_not_a_weights_file(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes((1 << 40).to_bytes(8, "little") + b'{"a": 1}')
    res = run_limited([*CLI, "info", str(path)], mem_mb=MEM_MB, timeout=60)
    assert_clean_failure(res, "not a weights file")


@pytest.mark.hostile("bomb")
def test_random_depth_beyond_bounds_is_refused_by_the_cli(tmp_path, capsys):
    args = ["random", "--model", "gram-t", "--depth", "4000", "--out", str(tmp_path / "x")]
    main_fails(capsys, args, "--depth", "depth must be in 1..256, got 4000")


# --- non-finite and non-float weights ---------------------------------------------------------
@pytest.mark.hostile("nonfinite")
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weight_is_refused_naming_the_tensor(tmp_path, value):
    state = tiny_encoder_state()
    state["encoder.layers.encoder_layer_0.mlp.3.weight"][5, 7] = value
    path = own_file(tmp_path / "w.safetensors", preset("gram-t", depth=1).to_dict(), state)
    with pytest.raises(CheckpointError, match=r"encoder_layer_0.mlp.3.weight holds 1 non-finite"):
        load_encoder(path)


@pytest.mark.hostile("nonfinite")
def test_non_finite_mel_buffer_is_refused(tmp_path, gram_t_file):
    from safetensors.torch import load_file

    state = load_file(str(gram_t_file))
    state["mel_spec.melspec.spectrogram.window"][3] = float("nan")
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=r"mel_spec.melspec.spectrogram.window holds 1 non"):
        load_encoder(tmp_path / "w.safetensors")


@pytest.mark.hostile("crash")
@pytest.mark.parametrize("dtype", [torch.int8, torch.int32, torch.bool, torch.complex64], ids=str)
def test_non_float_weights_are_refused_not_cast(tmp_path, dtype):
    state = tiny_encoder_state()
    k = "encoder.layers.encoder_layer_0.self_attention.in_proj_weight"
    state[k] = state[k].to(dtype) if dtype != torch.complex64 else torch.complex(state[k], state[k])
    if dtype == torch.complex64:  # safetensors cannot hold complex: a torch.save file can
        path = tmp_path / "w.pt"
        torch.save(state, path)
    else:
        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
    with pytest.raises(CheckpointError, match=f"{k} has dtype {dtype}: .*floating-point"):
        load_encoder(path)


# --- files that are not what they seem ------------------------------------------------------
@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "is empty (0 bytes)"),
        (os.urandom(4096), "not a weights file"),
        (b"<html>404 Not Found</html>", "not a weights file"),
    ],
    ids=["empty", "random-bytes", "html"],
)
@pytest.mark.parametrize("name", ["model.safetensors", "last.ckpt", "weights"])
def test_broken_files_get_one_clear_error_and_no_pickle_advice(
    tmp_path, capsys, content, needle, name
):
    path = tmp_path / name
    path.write_bytes(content)
    line = main_fails(capsys, ["info", str(path)], needle)
    assert "allow_pickle" not in line and "allow-pickle" not in line


@pytest.mark.hostile("crash")
def test_truncated_lightning_checkpoint_is_corrupt_not_a_pickle_question(tmp_path):
    buf = io.BytesIO()
    torch.save({"state_dict": tiny_encoder_state()}, buf)
    path = tmp_path / "last"  # no extension: the bytes say what it is
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated torch-zip") as info:
        load_encoder(path)
    assert "allow_pickle" not in str(info.value)


@pytest.mark.hostile("crash")
def test_a_zip_that_is_not_a_torch_file_is_corrupt(tmp_path):
    with zipfile.ZipFile(tmp_path / "w.ckpt", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="corrupt") as info:
        load_encoder(tmp_path / "w.ckpt")
    assert "allow_pickle" not in str(info.value)


class _Marker:
    """Unpickling this creates a folder: proof that code from the file ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.hostile("code")
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pickle_that_runs_code_is_refused_and_only_it_is_told_about_allow_pickle(tmp_path, legacy):
    marker = tmp_path / "PWNED"
    path = tmp_path / "weights"  # extension-less: recognised by its bytes
    obj = {"state_dict": tiny_encoder_state(), "hyper_parameters": _Marker(str(marker))}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    res = run_cli([*CLI, "info", str(path)])
    assert_clean_failure(res, "pickled Python objects", "allow_pickle=True", "posix.mkdir")
    assert not marker.exists()


@pytest.mark.hostile("crash")
def test_plain_pickle_is_not_a_torch_checkpoint(tmp_path):
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="not a weights file"):
        load_encoder(path)


@pytest.mark.hostile("crash")
def test_directory_is_reported_as_a_directory(tmp_path, capsys):
    main_fails(capsys, ["info", str(tmp_path)], "is a directory")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_encoder(tmp_path)


# --- malformed configs and registries -----------------------------------------------------------
@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "config, needle",
    [
        ("{not json", "stored config is invalid: Expecting property name"),
        ("[1, 2]", "a GramConfig is a JSON object, got list"),
        ({"depth": "12"}, "depth must be an integer, got '12'"),
        ({"depth": 1.5}, "depth must be an integer, got 1.5"),
        ({"features": {"n_fft": -1}}, "n_fft must be in 2..65536, got -1"),
        ({"features": {"log_eps": float("nan")}}, "log_eps must be a finite positive number"),
        ({"features": 3}, "features must be a JSON object, got int"),
        ({"patch_f": 0}, "patch_f must be in 1..1024, got 0"),
        ({"heads": 5}, "width 768 is not divisible by heads 5"),
        ({"unknown": 1}, "unknown GramConfig fields ['unknown']"),
    ],
    ids=lambda v: str(v)[:24],
)
def test_malformed_stored_config_is_one_clear_error(tmp_path, capsys, config, needle):
    path = own_file(tmp_path / "w.safetensors", config)
    main_fails(capsys, ["info", str(path)], needle)


@pytest.mark.hostile("crash")
def test_stored_config_disagreeing_with_the_tensors_is_named(tmp_path, tiny):
    from safetensors.torch import load_file

    cfg = preset("gram-t", depth=3).to_dict()
    path = own_file(tmp_path / "w.safetensors", cfg, load_file(str(tiny)))
    with pytest.raises(
        CheckpointError, match=r"does not match the tensors: depth 3 \(file's .*: 1\)"
    ):
        load_encoder(path)


@pytest.mark.hostile("crash")
def test_own_file_without_its_config_is_an_error(tmp_path):
    save_file({"cls_token": torch.zeros(1)}, str(tmp_path / "w.st"), {"format": "hear-gram/1"})
    with pytest.raises(CheckpointError, match="without its config"):
        load_encoder(tmp_path / "w.st")


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "entry_key, value, needle",
    [
        ("hear_gram", {"format": "hear-gram/1"}, "needs string 'encoder_prefix' and 'config'"),
        ("hear_gram", {"format": "hear-gram/1", "encoder_prefix": "", "config": "{"}, "invalid"),
    ],
)
def test_malformed_own_lightning_entry_is_one_clear_error(tmp_path, entry_key, value, needle):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": tiny_encoder_state(), entry_key: value}, path)
    with pytest.raises(CheckpointError, match=needle):
        load_encoder(path)


@pytest.mark.hostile("crash")
@pytest.mark.parametrize(
    "text, needle",
    [
        ("{", "unreadable or malformed"),
        ('{"schema": 1}', "no 'checkpoints' entry"),
        ('{"checkpoints": []}', "must be an object of named entries"),
        ('{"checkpoints": {"x": 3}}', "entry 'x' is not a JSON object"),
        ('{"checkpoints": {"x": {"source": "local", "path": 3, "made_by": "m"}}}', "lacks path"),
    ],
)
def test_malformed_registry_is_one_clear_error(tmp_path, monkeypatch, capsys, text, needle):
    (tmp_path / "checkpoints.json").write_text(text)
    monkeypatch.setattr(ck, "REGISTRY_PATH", tmp_path / "checkpoints.json")
    main_fails(capsys, ["list"], needle)


@pytest.mark.hostile("path")
@pytest.mark.parametrize("file", ["../../outside.bin", "/etc/passwd", "a/../../b"])
def test_registry_file_names_cannot_lead_a_download_outside_the_cache(tmp_path, monkeypatch, file):
    entry = {"source": "huggingface", "repo_id": "labhamlet/x", "file": file}
    (tmp_path / "checkpoints.json").write_text(json.dumps({"checkpoints": {"x": entry}}))
    monkeypatch.setattr(ck, "REGISTRY_PATH", tmp_path / "checkpoints.json")
    with pytest.raises(CheckpointError, match="not a plain relative name"):
        ck.cached_path("x")


# --- writing ----------------------------------------------------------------------------------
@pytest.mark.hostile("crash")
def test_random_depth_zero_is_refused_not_replaced_by_the_preset(tmp_path, capsys):
    args = ["random", "--model", "gram-t", "--depth", "0", "--out", str(tmp_path / "w")]
    main_fails(capsys, args, "--depth", "depth must be in 1..256, got 0")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="depth must be in 1..256, got 0"):
        random_encoder("gram-t", depth=0)


@pytest.mark.hostile("crash")
def test_random_out_directory_fails_cleanly_and_leaves_nothing(tmp_path):
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    res = run_cli([*CLI, "random", "--model", "gram-t", "--out", str(tmp_path / "out")])
    assert_clean_failure(res, "is a directory")
    assert snapshot(tmp_path) == before and not list(tmp_path.rglob("*.partial"))
    with pytest.raises(CheckpointError, match="is a directory"):
        save_checkpoint(tmp_path / "out", random_encoder("gram-t", depth=1))


@pytest.mark.hostile("path")
def test_saving_over_a_planted_link_replaces_the_link_not_its_target(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (tmp_path / "w.safetensors").symlink_to(target)
    out = save_checkpoint(tmp_path / "w.safetensors", random_encoder("gram-t", depth=1))
    assert target.read_text() == "keep me" and not out.is_symlink()
    assert ck.stored_config(out).depth == 1
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.hostile("crash")
def test_with_decoder_needs_the_released_layout(tmp_path, capsys):
    args = ["random", "--model", "gram-t", "--depth", "1", "--layout", "hear-gram",
            "--with-decoder", "--out", str(tmp_path / "w")]  # fmt: skip
    main_fails(capsys, args, "--with-decoder", "--layout released")
