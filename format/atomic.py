"""Atomic writes: build a file or directory under a temporary name beside its
target, then move it onto the target in one step.

Every writer in the tree goes through here (archives, probe sets, images,
CSV and JSON reports, benchmark caches), so there is one temporary-name
scheme: ``.<stem>.tmp-<12 hex><suffix>`` in the target's directory (the
suffix is kept because some writers, e.g. OpenCV, pick the codec from it).

Notes
-----
* A file is fsynced before :func:`os.replace`; the directory entry is
  fsynced after it where the platform allows (best effort).
* :func:`atomic_dir` replaces an existing directory with two renames (old
  out of the way, new in): there is a moment when the target does not
  exist. A crash inside that moment leaves the old tree under
  ``.<name>.old-<hex>`` beside it.
* Nothing is written to the target on any exception (``KeyboardInterrupt``
  included); the temporary is removed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def temp_beside(target, tag: str = "tmp") -> Path:
    """A fresh, unused name beside ``target``: ``.<stem>.<tag>-<12 hex><suffix>``."""
    t = Path(target)
    return t.with_name(f".{t.stem}.{tag}-{uuid.uuid4().hex[:12]}{t.suffix}")


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(target) -> Iterator[Path]:
    """Context manager: yields a temporary file path beside ``target``; write it
    inside the block. On success it is fsynced and :func:`os.replace`\\ d onto
    ``target``; on any exception it is removed and ``target`` is untouched.

    Example::

        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    """
    target = Path(target)
    tmp = temp_beside(target)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_dir(target) -> Iterator[Path]:
    """Context manager: yields a temporary directory path beside ``target`` (not
    created: the writer creates it, e.g. a zarr store). On success it replaces
    ``target`` (an existing directory there is moved aside, then deleted); on
    any exception it is removed and ``target`` is untouched."""
    target = Path(target)
    tmp = temp_beside(target)
    try:
        yield tmp
        if not (target.exists() or target.is_symlink()):
            os.rename(tmp, target)
        else:
            old = temp_beside(target, "old")
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            _remove(old)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(target.parent)
