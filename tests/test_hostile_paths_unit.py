"""Hostile-input matrix: the path rules of hear_gram.safeio themselves."""

from __future__ import annotations

import os

import pytest

from hear_gram.safeio import UnsafePathError, child, open_append, write_bytes_atomic


@pytest.mark.hostile("path")
@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../x.wav", "a/../../x.wav", "", ".", "a\\..\\x", "C:x", "a\0b", 3]
)
def test_child_refuses_names_that_are_not_plain(tmp_path, name):
    with pytest.raises(UnsafePathError):
        child(tmp_path, name, "file name")


@pytest.mark.hostile("path")
def test_child_refuses_subfolders_unless_allowed_and_links_out(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(UnsafePathError, match="sub-folder"):
        child(tmp_path, "sub/a.wav", "file name")
    assert child(tmp_path, "sub/a.wav", "file name", subdirs=True) == tmp_path / "sub" / "a.wav"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "esc").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="leads outside"):
        child(tmp_path, "esc/a.wav", "file name", subdirs=True)
    (tmp_path / "f.wav").symlink_to(outside / "f.wav")
    with pytest.raises(UnsafePathError, match="leads outside"):
        child(tmp_path, "f.wav", "file name")


@pytest.mark.hostile("path")
def test_writes_replace_planted_links_instead_of_following_them(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").symlink_to(victim)
    write_bytes_atomic(out / "a.txt", b"new")
    assert victim.read_text() == "keep" and not (out / "a.txt").is_symlink()
    assert (out / "a.txt").read_bytes() == b"new"
    (out / f".b.txt.{os.getpid()}.tmp").symlink_to(victim)  # a link at the temporary name
    write_bytes_atomic(out / "b.txt", b"x")
    assert victim.read_text() == "keep"
    (out / "rows.jsonl").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        open_append(out / "rows.jsonl")
    assert victim.read_text() == "keep"
