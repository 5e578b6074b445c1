"""hear_gram.cache: the one embedding-cache key and its entries."""

import hashlib
import importlib
import json
import sys

import numpy as np
import pytest
import soundfile as sf

from hear_gram import cache


def _task(root, labels=("a", "b")):
    task = root / "task"
    (task / "48000" / "fold00").mkdir(parents=True)
    (task / "task_metadata.json").write_text(json.dumps({"task_name": "t", "sample_rate": 48000}))
    (task / "fold00.json").write_text(
        json.dumps({f"{i}.wav": [lab] for i, lab in enumerate(labels)})
    )
    for i in range(len(labels)):
        sf.write(task / "48000" / "fold00" / f"{i}.wav", np.full(480, 0.1 * (i + 1)), 48000,
                 subtype="PCM_16")  # fmt: skip
    return task


def _flip_byte(path, offset=-1):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def test_task_digest_changes_with_one_byte_of_labels_or_audio_only(tmp_path):
    task = _task(tmp_path)
    before = cache.task_digest(task)
    assert cache.task_digest(task) == before  # deterministic
    _flip_byte(task / "48000" / "fold00" / "1.wav")
    after_audio = cache.task_digest(task)
    assert after_audio != before
    labels = task / "fold00.json"
    labels.write_text(labels.read_text().replace('"b"', '"c"'))  # same size: one byte differs
    assert cache.task_digest(task) not in (before, after_audio)
    # the split form reads only that split's files
    assert cache.task_digest(task, "fold00", ["0.wav"]) != cache.task_digest(
        task, "fold00", ["1.wav"]
    )


def test_task_digest_sees_an_edit_that_keeps_size_and_mtime(tmp_path):
    # A digest of names, sizes and modification times (the old localization key) misses an
    # edit whose mtime is restored; content hashing must not.
    import os

    task = _task(tmp_path)
    wav = task / "48000" / "fold00" / "0.wav"
    before = cache.task_digest(task)
    st = wav.stat()
    _flip_byte(wav)
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.task_digest(task) != before


def test_key_parts_each_change_the_digest(tmp_path):
    base = dict(module="m", weights_sha256="a" * 64, options={"x": 1}, task="t", extra=None)
    key = cache.CacheKey(**base, code="c")
    variants = [
        cache.CacheKey(**{**base, "module": "m2"}, code="c"),
        cache.CacheKey(**{**base, "weights_sha256": "b" * 64}, code="c"),
        cache.CacheKey(**{**base, "weights_sha256": None}, code="c"),
        cache.CacheKey(**{**base, "options": {"x": 2}}, code="c"),
        cache.CacheKey(**{**base, "task": "t2"}, code="c"),
        cache.CacheKey(**{**base, "extra": ["f.wav"]}, code="c"),
        cache.CacheKey(**base, code="d"),
    ]
    digests = {v.digest() for v in variants}
    assert key.digest() not in digests and len(digests) == len(variants)
    # options are a mapping: key order does not matter
    a = cache.CacheKey(**{**base, "options": {"x": 1, "y": 2}}, code="c")
    b = cache.CacheKey(**{**base, "options": {"y": 2, "x": 1}}, code="c")
    assert a.digest() == b.digest()


def test_code_fingerprint_follows_one_byte_of_the_package_source(tmp_path, monkeypatch):
    pkg = tmp_path / "toy_hear_module"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("SCALE = 1.0\n")
    (pkg / "inner.py").write_text("def f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    before = cache.code_fingerprint("toy_hear_module.inner")
    assert cache.code_fingerprint("toy_hear_module") == before  # the whole top-level package
    (pkg / "inner.py").write_text("def f():\n    return 2\n")
    assert cache.code_fingerprint("toy_hear_module.inner") != before
    sys.modules.pop("toy_hear_module", None)


def test_weights_sha256_is_the_whole_file_hash(tmp_path):
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"x" * 5000)
    assert cache.weights_sha256(w) == hashlib.sha256(b"x" * 5000).hexdigest()
    assert cache.weights_sha256(None) is None
    with pytest.raises(FileNotFoundError):
        cache.weights_sha256(tmp_path / "missing")


def test_entries_round_trip_and_are_trusted_only_for_their_key(tmp_path):
    path = tmp_path / "e" / "fold00.npz"
    arrays = {
        "embeddings": np.arange(6, dtype=np.float32).reshape(2, 3),
        "files": np.array(["a", "b"]),
    }
    cache.store(path, "k1", arrays)
    got = cache.load(path, "k1", names=["embeddings", "files"])
    assert got is not None
    np.testing.assert_array_equal(got["embeddings"], arrays["embeddings"])
    assert list(got["files"]) == ["a", "b"]
    assert cache.load(path, "k2") is None  # stale
    assert cache.load(path, "k1", names=["other"]) is None  # not the entry the caller wants
    assert cache.load(tmp_path / "missing.npz", "k1") is None


def test_corrupt_truncated_or_linked_entries_are_recomputed_not_trusted(tmp_path):
    path = tmp_path / "fold00.npz"
    cache.store(path, "k", {"e": np.ones((4, 4), np.float32)})
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    assert cache.load(path, "k") is None
    path.write_bytes(b"not a zip")
    assert cache.load(path, "k") is None
    # a NaN written by someone else (store refuses to write one)
    buf = tmp_path / "nan.npz"
    np.savez(buf, __key__=np.array("k"), e=np.array([np.nan], np.float32))
    assert cache.load(buf, "k") is None
    # a link planted at the entry's name is never read through
    path.unlink()
    target = tmp_path / "elsewhere.npz"
    target.write_bytes(good)
    path.symlink_to(target)
    assert cache.load(path, "k") is None


def test_store_refuses_nonfinite_and_object_arrays_and_never_writes_through_a_link(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        cache.store(tmp_path / "a.npz", "k", {"e": np.array([1.0, np.inf])})
    with pytest.raises(ValueError, match="object"):
        cache.store(tmp_path / "a.npz", "k", {"e": np.array([{}, 1], dtype=object)})
    assert not (tmp_path / "a.npz").exists()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "b.npz"
    link.symlink_to(victim)
    cache.store(link, "k", {"e": np.zeros(2, np.float32)})
    assert victim.read_text() == "keep" and not link.is_symlink()
    # a pickle-bearing file is refused by load (allow_pickle=False), not executed
    np.save(tmp_path / "obj.npy", np.array([{}], dtype=object), allow_pickle=True)
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, __key__=np.array("k"), e=np.array([{}], dtype=object))
    assert cache.load(pickled, "k") is None
