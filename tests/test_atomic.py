"""format.atomic: one temporary-name scheme; a failure leaves the old target and no temporary."""
import os

import pytest

from probewarp.format.atomic import atomic_dir, atomic_path


class Injected(Exception):
    pass


@pytest.mark.parametrize("existing", [True, False])
@pytest.mark.parametrize("fail_at", ["body", "fsync", "replace"])
def test_failure_after_bytes_keeps_old_target_and_no_temp(tmp_path, monkeypatch, existing, fail_at):
    target = tmp_path / "x.bin"
    if existing:
        target.write_bytes(b"old")
    seen = []

    def boom(*a, **k):
        seen.extend(p.stat().st_size for p in tmp_path.iterdir() if p != target)
        raise Injected(fail_at)

    if fail_at != "body":
        monkeypatch.setattr(os, fail_at, boom)
    with pytest.raises(Injected):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.name.startswith(".x.tmp-") and tmp.suffix == ".bin"
            tmp.write_bytes(b"n" * 5000)
            if fail_at == "body":
                boom()
    monkeypatch.undo()
    assert seen and max(seen) == 5000               # the bytes were on disk when it failed
    assert sorted(p.name for p in tmp_path.iterdir()) == (["x.bin"] if existing else [])
    if existing:
        assert target.read_bytes() == b"old"


def test_success_replaces_and_names_are_unique(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b
        a.write_bytes(b"first")
        b.write_bytes(b"second")
    assert target.read_bytes() == b"first"          # the outer block commits last
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


@pytest.mark.parametrize("existing", [True, False])
def test_directory_replace_and_failure(tmp_path, existing):
    target = tmp_path / "s.zarr"
    if existing:
        target.mkdir()
        (target / "old").write_text("old")
    with pytest.raises(Injected):
        with atomic_dir(target) as tmp:
            tmp.mkdir()
            (tmp / "new").write_text("new")
            raise Injected
    assert sorted(p.name for p in tmp_path.iterdir()) == (["s.zarr"] if existing else [])
    if existing:
        assert (target / "old").read_text() == "old"
    with atomic_dir(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]
