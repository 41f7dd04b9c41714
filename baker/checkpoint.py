"""Checkpoints of a bake: finished pages persisted beside the output.

A bake into ``probes.pwa`` keeps ``probes.pwa.partial/`` while it runs::

    bake.json           what is being baked: parameters, input fingerprint, plan
    page-000012.pwp     one finished page: a JSON head (its page-table fields,
                        the learner's history, statistics), its lattice keys
                        and its compressed archive blob, CRC-checked
    lock                held (flock) by the running bake

Every file is written to a temporary name and renamed, so a killed bake
leaves only whole pages. Run again with the same input and parameters, the
bake loads the finished pages and fits the others; run with different ones,
it refuses (:class:`~probewarp.format.errors.InputError`) unless told to
start afresh. The directory is removed once the archive is written.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

from probewarp.format.archive import EncodedPage
from probewarp.format.atomic import atomic_path
from probewarp.format.errors import InputError

SUFFIX = ".partial"
PAGE_MAGIC = b"PWPAGE\x00\x01"
_HEAD = struct.Struct("<8sQQQ")      # magic, json length, keys bytes, blob bytes


def checkpoint_dir(out) -> Path:
    """``probes.pwa`` -> ``probes.pwa.partial``."""
    out = Path(out)
    return out.with_name(out.name + SUFFIX)


class Checkpoint:
    """The checkpoint directory of one bake (see the module notes).

    Parameters
    ----------
    out : the archive path
    fingerprint : dict (JSON-serialisable) identifying the bake; a directory
        holding another fingerprint is refused unless ``fresh``
    fresh : discard an existing checkpoint instead of resuming it
    """

    def __init__(self, out, fingerprint: dict, *, fresh: bool = False):
        self.dir = checkpoint_dir(out)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        self._lock_fd = None
        if self.dir.exists() and fresh:
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        head = self.dir / "bake.json"
        if head.exists():
            try:
                old = json.loads(head.read_text())
            except (OSError, ValueError):
                old = None
            if old != self.fingerprint:
                self.release()
                diff = _diff(old, self.fingerprint) if isinstance(old, dict) else ["bake.json unreadable"]
                raise InputError(f"{self.dir}: holds finished pages of a different bake "
                                 f"({'; '.join(diff[:4])}); run with --fresh (fresh=True) to discard them, "
                                 f"or delete the directory")
        else:
            with atomic_path(head) as tmp:
                tmp.write_text(json.dumps(self.fingerprint, sort_keys=True, indent=1))

    def _lock(self):
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise InputError(f"{self.dir}: another bake into the same archive is running") from e
            raise
        self._lock_fd = fd

    def release(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def page_path(self, index: int) -> Path:
        return self.dir / f"page-{index:06d}.pwp"

    # -- pages ----------------------------------------------------------------
    def save(self, index: int, encoded: EncodedPage, blob: bytes, info: dict) -> None:
        """Persist one finished page (atomically)."""
        head = json.dumps({"index": int(index), "encoded": encoded.to_json(), "info": info},
                          sort_keys=True, default=_jsonable).encode()
        keys = b"" if encoded.keys is None else np.ascontiguousarray(encoded.keys, "<u4").tobytes()
        body = _HEAD.pack(PAGE_MAGIC, len(head), len(keys), len(blob)) + head + keys + blob
        with atomic_path(self.page_path(index)) as tmp:
            with open(tmp, "wb") as f:
                f.write(body)
                f.write(struct.pack("<I", zlib.crc32(body)))

    def _read(self, index: int, with_blob: bool):
        raw = self.page_path(index).read_bytes()
        if len(raw) < _HEAD.size + 4 or raw[:8] != PAGE_MAGIC:
            raise ValueError("not a page checkpoint")
        body, crc = raw[:-4], struct.unpack("<I", raw[-4:])[0]
        if zlib.crc32(body) != crc:
            raise ValueError("checksum mismatch")
        _, n_head, n_keys, n_blob = _HEAD.unpack_from(body)
        a = _HEAD.size
        head = json.loads(body[a:a + n_head])
        keys = np.frombuffer(body[a + n_head:a + n_head + n_keys], "<u4").copy() if n_keys else None
        enc = EncodedPage.from_json(head["encoded"], keys)
        blob = body[a + n_head + n_keys:a + n_head + n_keys + n_blob] if with_blob else None
        return enc, blob, head["info"]

    def finished(self, n_pages: int) -> dict:
        """``{index: (EncodedPage, info)}`` of the pages already persisted and
        intact (a damaged page file is deleted and its page redone)."""
        done = {}
        for i in range(n_pages):
            p = self.page_path(i)
            if not p.exists():
                continue
            try:
                enc, _, info = self._read(i, with_blob=False)
            except (OSError, ValueError, KeyError):
                p.unlink(missing_ok=True)
                continue
            done[i] = (enc, info)
        return done

    def blob(self, index: int) -> bytes:
        return self._read(index, with_blob=True)[1]

    def remove(self) -> None:
        """Delete the directory (after the archive is written)."""
        self.release()
        shutil.rmtree(self.dir, ignore_errors=True)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, prefix + k + ".")
        elif a != b:
            ra, rb = repr(a), repr(b)
            out.append(f"{prefix}{k}: {ra} there, {rb} now" if len(ra) + len(rb) < 80 else f"{prefix}{k} differs")
    return out
