"""WebDataset tar shards by index: the index (what counts, in which order, from which inputs), the
decoded audio, the errors, and reading from forked DataLoader workers."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from hear_gram.pretrain import shards as shards_module
from hear_gram.pretrain.shards import TarShards, expand_braces

SR = 16000
N_SHARDS, N_KEYS = 2, 3


def tone(freqs: list[float], seconds: float = 0.2, sr: int = SR) -> np.ndarray:
    """(N, C) sines at 0.5 amplitude, one frequency (Hz) per channel."""
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in freqs], axis=1).astype(np.float32)


def encode(audio: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, SR, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def shard_members(s: int) -> list[tuple[str, bytes, np.ndarray | None]]:
    """Members of shard s as (name, bytes, signal written or None): keys k0..k2 with a .json and
    one audio member each; one stereo clip, one wav, and a key with a second audio member."""
    out = []
    for k in range(N_KEYS):
        key = f"s{s}k{k}"
        freqs = [220.0 * (1 + s * N_KEYS + k)] + ([1000.0] if (s, k) == (0, 1) else [])
        signal, fmt = tone(freqs), "WAV" if (s, k) == (1, 2) else "FLAC"
        json = (f'{{"key": "{key}"}}', f"{key}.json")
        # Metadata before audio for one key: order must follow the tar, not the extension.
        if k == 0:
            out.append((json[1], json[0].encode(), None))
        out.append((f"{key}.{fmt.lower()}", encode(signal, fmt), signal))
        if k != 0:
            out.append((json[1], json[0].encode(), None))
    extra = tone([3000.0 + s])
    out.append((f"s{s}k0.left.wav", encode(extra, "WAV"), extra))
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[tuple[str, bytes, np.ndarray]]]:
    """Two shards in tmp_path/shards and the expected clips as (key, bytes, signal), in order."""
    root = tmp_path / "shards"
    root.mkdir()
    expected = []
    for s in range(N_SHARDS):
        members = shard_members(s)
        write_tar(root / f"shard-{s:06d}.tar", [(n, b) for n, b, _ in members])
        expected += [(f"shard-{s:06d}.tar/{n}", b, x) for n, b, x in members if x is not None]
    return root, expected


def test_expand_braces_keeps_zero_padding():
    assert expand_braces("d/shard-{000008..000010}.tar") == [
        "d/shard-000008.tar",
        "d/shard-000009.tar",
        "d/shard-000010.tar",
    ]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("{3..1}") == ["3", "2", "1"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_index_counts_audio_members_in_shard_then_member_order(corpus):
    root, expected = corpus
    ds = TarShards(root)
    assert len(ds) == N_SHARDS * (N_KEYS + 1)  # json members not counted, the extra wav counted
    assert [ds.key(i) for i in range(len(ds))] == [key for key, _, _ in expected]
    assert ds.key(0) == "shard-000000.tar/s0k0.flac"


def test_read_returns_the_audio_written(corpus):
    root, expected = corpus
    ds = TarShards(root)
    for i, (key, data, signal) in enumerate(expected):
        audio, sr = ds.read(i)
        reference, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        assert sr == SR
        assert audio.dtype == np.float32 and audio.shape == signal.shape, key
        np.testing.assert_array_equal(audio, reference)
        np.testing.assert_allclose(audio, signal, atol=1 / 2**15)  # 16-bit quantisation
    assert ds.read(1)[0].shape[1] == 2  # the stereo clip s0k1
    assert ds.read(-1)[0].shape == expected[-1][2].shape


def test_directory_list_and_brace_pattern_give_the_same_index(corpus):
    root, _ = corpus
    keys = lambda ds: [ds.key(i) for i in range(len(ds))]
    by_dir = TarShards(root)
    by_list = TarShards([root / "shard-000000.tar", str(root / "shard-000001.tar")])
    by_brace = TarShards([f"{root}/shard-{{000000..000001}}.tar"])
    by_brace_str = TarShards(f"{root}/shard-{{000000..000001}}.tar")
    assert keys(by_dir) == keys(by_list) == keys(by_brace) == keys(by_brace_str)
    for ds in (by_list, by_brace):
        np.testing.assert_array_equal(ds.read(5)[0], by_dir.read(5)[0])


@pytest.mark.parametrize("name", ["shard.tar.gz", "shard.tgz", "renamed-gzip.tar"])
def test_compressed_shard_raises(tmp_path, name):
    path = write_tar(tmp_path / name, [("a.wav", encode(tone([440.0]), "WAV"))], mode="w:gz")
    with pytest.raises(ValueError, match="uncompressed") as err:
        TarShards([path])
    assert name in str(err.value)


def test_missing_shards_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"shard-\{000\.\.003\}"):
        TarShards([f"{tmp_path}/shard-{{000..003}}.tar"])
    with pytest.raises(FileNotFoundError, match="no .tar shards"):
        TarShards(tmp_path)
    with pytest.raises(FileNotFoundError):
        TarShards([])
    write_tar(tmp_path / "shard-000.tar", [("a.wav", encode(tone([440.0]), "WAV"))])
    with pytest.raises(FileNotFoundError, match="3 of 4 shards"):
        TarShards([f"{tmp_path}/shard-{{000..003}}.tar"])


def test_shards_without_audio_raise(tmp_path):
    write_tar(tmp_path / "meta.tar", [("a.json", b"{}"), ("a.cls", b"3")])
    with pytest.raises(FileNotFoundError, match="flac.*wav"):
        TarShards(tmp_path)


def test_corrupt_member_raises_naming_it(tmp_path):
    good = encode(tone([440.0]), "FLAC")
    write_tar(tmp_path / "shard.tar", [("good.flac", good), ("bad.flac", b"not audio at all")])
    ds = TarShards(tmp_path)
    assert ds.read(0)[1] == SR
    with pytest.raises(RuntimeError, match="shard.tar/bad.flac") as err:
        ds.read(1)
    assert err.value.__cause__ is not None


def test_reopens_files_after_fork_and_pickle(corpus, monkeypatch):
    root, _ = corpus
    ds = TarShards(root)
    first = ds.read(0)[0]
    parent_file = ds._files[0]
    monkeypatch.setattr(shards_module.os, "getpid", lambda: -1)  # as seen from a forked child
    np.testing.assert_array_equal(ds.read(0)[0], first)
    assert parent_file.closed and ds._files[0] is not parent_file
    copy = pickle.loads(pickle.dumps(ds))
    assert not copy._files
    np.testing.assert_array_equal(copy.read(0)[0], first)


class Clips(Dataset):
    def __init__(self, shards: TarShards):
        self.shards = shards

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.shards.read(i)[0])


def test_dataloader_workers_read_the_same_clips(corpus):
    root, _ = corpus
    ds = TarShards(root)
    main = [ds.read(i)[0] for i in range(len(ds))]  # opens the files before the workers fork
    loader = DataLoader(Clips(ds), batch_size=None, num_workers=2)
    got = list(loader)
    assert len(got) == len(main)
    for a, b in zip(got, main, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)


def test_open_audio_reads_shards_and_folders_as_training_clips(tmp_path):
    """Pretraining takes either layout: the same clip from a shard or a folder gives the same
    mono, 32 kHz, -14 dBFS, 10 s training clip."""
    from hear_gram.dsp import SOURCE_DBFS, rms_dbfs
    from hear_gram.pretrain.data import AudioClips, AudioFiles, open_audio

    audio = tone([440.0, 660.0], seconds=1.0)  # stereo, 16 kHz
    (tmp_path / "shards").mkdir()
    write_tar(tmp_path / "shards" / "s-000000.tar", [("k0.wav", encode(audio, "WAV"))])
    (tmp_path / "folder").mkdir()
    sf.write(tmp_path / "folder" / "k0.wav", audio, SR, subtype="PCM_16")
    from_shards, from_folder = open_audio(tmp_path / "shards"), open_audio(tmp_path / "folder")
    assert isinstance(from_shards, TarShards) and isinstance(from_folder, AudioFiles)
    assert isinstance(open_audio(str(tmp_path / "shards" / "s-{000000..000000}.tar")), TarShards)
    a, b = AudioClips(from_shards)[0], AudioClips(from_folder)[0]
    assert a.shape == (320000,) and torch.equal(a, b)
    assert rms_dbfs(a) == pytest.approx(SOURCE_DBFS, abs=0.01)
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        open_audio(tmp_path / "missing")
