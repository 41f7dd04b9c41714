"""Probe sets: positions plus cubemaps (DESIGN-NOTES §2).

A :class:`ProbeSet` holds ``positions`` ``(P, 3)`` float32 and ``faces``
``(P, 6, R, R, 3)`` float16/float32 (DESIGN-NOTES §1 layout), optionally a
regular-grid description (``grid_shape``, ``lo``, ``hi``), probe ``names`` and
the ``source`` it was read from. Two forms on disk, same arrays in both:

* ``.npz`` — the interchange form of §2: ``positions``, ``faces``, optional
  ``grid_shape`` ``(3,)`` int64, ``lo``/``hi`` ``(3,)`` float64 and, written
  only when the set has names, ``names`` ``(P,)`` unicode (readers that do not
  know it ignore it).
* a chunked zarr store (a directory ending ``.zarr``): arrays ``positions``,
  ``faces`` (chunks of at most ``config.ZARR_CHUNK_PROBES`` probes), optional
  ``grid_shape``/``lo``/``hi``; names and the format tag live in the group
  attributes. Loading keeps ``faces`` lazy (:class:`LazyFaces`); walk it with
  :meth:`ProbeSet.iter_chunks` (bounded memory) or materialise it with
  :meth:`ProbeSet.faces_array`.

Every input check lives in :mod:`probewarp.baker.validation`
(:func:`~probewarp.baker.validation.validate`, :class:`ProbeSetError`,
:class:`SanitizeReport`); :meth:`ProbeSet.validate` calls it. Saving is atomic
(:mod:`probewarp.format.atomic`: temp file or directory beside the target,
then a rename) and validates while it writes, so a rejected set leaves nothing
at the target path.

Notes
-----
* Probe indices in errors and reports are indices into the set as given
  (before any duplicates were dropped).
* A lazy set's faces are repaired on read after sanitising; the store itself
  is never written to. Save the set to make the repair permanent.
* Replacing an existing ``.zarr`` directory is two renames (old out of the
  way, new in): there is a moment when the target path does not exist.
* No support for other stores (HDF5, zarr v2 writing, cloud URLs) on purpose.
"""
from __future__ import annotations

import errno
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from probewarp.baker import config
from probewarp.baker.lazyfaces import LazyFaces
from probewarp.baker.validation import (FACES_DTYPES, ProbeSetError, SanitizeReport, _check_block, _check_global,
                                        _grid_positions64, validate)
from probewarp.format import constants
from probewarp.format.atomic import atomic_dir, atomic_path
from probewarp.format.grid import Grid

_NPZ_KEYS_REQUIRED = ("positions", "faces")


def _as_grid_shape(g):
    if g is None:
        return None
    try:
        a = np.asarray(g)
        if a.dtype.kind in "iu" or (a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            return tuple(int(v) for v in a.ravel())
    except (TypeError, ValueError):
        pass
    return g  # left as given: validate() reports it


def _as_float_vec(v):
    if v is None:
        return None
    try:
        a = np.asarray(v)
        if a.dtype.kind in "iuf":
            return a.astype(np.float64)
    except (TypeError, ValueError):
        pass
    return v


def _format_of(path: Path) -> str:
    s = path.name.lower()
    if s.endswith(".npz"):
        return "npz"
    if s.endswith(".zarr"):
        return "zarr"
    raise ValueError(f"{path}: unknown probe-set format (expected a .npz file or a .zarr directory)")


#: Arrays of an ``.npz`` probe set (others in the archive are ignored, never read).
_NPZ_KEYS = ("positions", "faces", "grid_shape", "lo", "hi", "names")
#: deflate cannot expand data by more than 1032:1; a zip member that claims
#: more is corrupt or a decompression bomb.
DEFLATE_MAX_RATIO = 1032
#: What reading a zip member or its ``.npy`` header may raise on damaged bytes.
_ZIP_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError, struct.error,
               zlib.error, SyntaxError, TypeError, OverflowError, KeyError, IndexError, RecursionError)


@dataclass
class _NpyMember:
    """One checked ``.npy`` member of an ``.npz``: its zip entry and array header."""
    info: zipfile.ZipInfo
    shape: tuple
    fortran: bool
    dtype: np.dtype
    header_len: int          # bytes of the .npy magic and header inside the member

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _npz_members(path: Path, zf: zipfile.ZipFile, file_size: int) -> dict:
    """The probe-set members of an open ``.npz``, each checked before any of its
    data is read: known compression, sizes consistent with the file (no
    decompression bomb), a plain-data dtype (object arrays would need
    unpickling: refused), and a header whose shape accounts for exactly the
    member's bytes. Raises :class:`ProbeSetError` naming the file and the array."""
    out = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy") or info.filename[:-4] not in _NPZ_KEYS:
            continue
        key = info.filename[:-4]

        def bad(detail, key=key):
            return ProbeSetError(detail, file=path, field=key)
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise bad(f"stored member of {info.compress_size} bytes claims {info.file_size}")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 64:
                raise bad(f"{info.compress_size} deflated bytes cannot hold the {info.file_size} "
                          "bytes the member claims (a decompression bomb?)")
        else:
            raise bad(f"unsupported zip compression method {info.compress_type} (stored or deflated)")
        if info.compress_size > file_size or info.header_offset > file_size:
            raise bad(f"member of {info.compress_size} bytes at {info.header_offset} runs past the end "
                      f"of the file ({file_size} bytes)")
        try:
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                header_len = f.tell()
        except _ZIP_ERRORS as e:
            raise bad(f"unreadable .npy header ({type(e).__name__}: {e})") from None
        if dtype.hasobject:
            raise bad(f"dtype {dtype} holds Python objects: refused (reading it would unpickle)")
        m = _NpyMember(info, tuple(int(v) for v in shape), bool(fortran), dtype, header_len)
        if m.nbytes != info.file_size - header_len:
            raise bad(f"header says shape {m.shape} {dtype} ({m.nbytes} bytes) but the member holds "
                      f"{info.file_size - header_len} bytes of data")
        out[key] = m
    return out


def _npz_memmap(path: Path, m: _NpyMember, file_size: int):
    """A read-only memory map of a checked member, or None when it cannot be
    mapped (compressed member, Fortran order, empty, unreadable local header)."""
    info = m.info
    if info.compress_type != zipfile.ZIP_STORED or m.fortran or len(m.shape) == 0 or m.nbytes == 0:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
    except OSError:
        return None
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_len + extra_len + m.header_len
    if offset + m.nbytes > file_size:
        return None
    return np.memmap(path, dtype=m.dtype, mode="r", shape=m.shape, offset=offset)


#: Plain numeric zarr data types a probe set's arrays may have.
_ZARR_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64")
#: Codecs a probe-set store may use (what zarr writes by default, and common others).
_ZARR_CODECS = ("bytes", "zstd", "gzip", "blosc", "crc32c", "transpose")
#: Largest decoded chunk (four times what :meth:`ProbeSet.save` writes at most).
ZARR_MAX_CHUNK_BYTES = 4 * config.ZARR_CHUNK_MAX_BYTES
#: The arrays' declared (decoded) bytes may exceed the store's bytes on disk by
#: this factor, plus ZARR_DECLARED_FLOOR: absent chunks read as the fill value,
#: so a few bytes of metadata could otherwise declare terabytes.
ZARR_MAX_EXPANSION = 1024
ZARR_DECLARED_FLOOR = 64 * 2 ** 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_content_size(head: bytes):
    """Declared content size of a zstd frame header, or None when it declares none."""
    if len(head) < 5:
        return None
    fhd = head[4]
    fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    n = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if n == 0 or len(head) < pos + n:
        return None
    v = int.from_bytes(head[pos:pos + n], "little")
    return v + 256 if n == 2 else v


def _check_zarr_store(path: Path) -> None:
    """Check a ``.zarr`` store before zarr reads any array data: version 3
    metadata, plain numeric dtypes, known codecs, chunk sizes within
    :data:`ZARR_MAX_CHUNK_BYTES`, declared sizes within what the store's
    bytes on disk can hold, and every compressed chunk's declared decoded
    size within its chunk (no decompression bomb). :class:`ProbeSetError`
    names the store and the array."""
    import json
    if not path.is_dir():
        raise ProbeSetError("not a zarr store (a .zarr store is a directory)", file=path)
    disk = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                disk += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    declared = 0
    for key in _NPZ_KEYS:
        meta_path = path / key / "zarr.json"
        if not meta_path.is_file():
            continue

        def bad(detail, key=key):
            return ProbeSetError(detail, file=path, field=key)
        try:
            meta = json.loads(meta_path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise bad(f"zarr.json is not UTF-8 JSON ({type(e).__name__}: {e})") from None
        if not isinstance(meta, dict) or meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
            raise bad("zarr.json does not describe a zarr version 3 array")
        dt = meta.get("data_type")
        if not isinstance(dt, str) or dt not in _ZARR_DTYPES:
            raise bad(f"data_type {dt!r} is not a plain numeric type ({', '.join(_ZARR_DTYPES)})")
        shape = meta.get("shape")
        grid = meta.get("chunk_grid")
        chunks = grid.get("configuration", {}).get("chunk_shape") if isinstance(grid, dict) and \
            grid.get("name") == "regular" and isinstance(grid.get("configuration"), dict) else None

        def ints(v, lo):
            return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= lo
                                               for x in v)
        if not ints(shape, 0) or len(shape) > 8:
            raise bad(f"shape {shape!r} is not a list of at most 8 integers >= 0")
        if not ints(chunks, 1) or len(chunks) != len(shape):
            raise bad(f"chunk_grid: regular chunks of {len(shape)} positive integers are needed, got {chunks!r}")
        codecs = meta.get("codecs")
        names = [c.get("name") if isinstance(c, dict) else c for c in codecs] if isinstance(codecs, list) else None
        if not names or any(n not in _ZARR_CODECS for n in names):
            raise bad(f"codecs {names!r}: only {', '.join(_ZARR_CODECS)} are read")
        item = np.dtype(dt).itemsize
        chunk_bytes = math.prod(chunks) * item
        if chunk_bytes > ZARR_MAX_CHUNK_BYTES:
            raise bad(f"chunks {chunks} of {dt} are {chunk_bytes} bytes; at most {ZARR_MAX_CHUNK_BYTES}")
        declared += math.prod(shape) * item
        if declared > ZARR_DECLARED_FLOOR + ZARR_MAX_EXPANSION * disk:
            raise bad(f"shape {shape} of {dt} declares {math.prod(shape) * item} bytes; the store holds "
                      f"{disk} bytes on disk (chunks absent from a store read as its fill value)")
        for dirpath, _, files in os.walk(path / key):
            for f in files:
                fp = Path(dirpath, f)
                if fp == meta_path:
                    continue
                try:
                    with open(fp, "rb") as fh:
                        head = fh.read(32)
                except OSError as e:
                    raise bad(f"unreadable chunk {fp.relative_to(path)} ({e.strerror})") from None
                if head[:4] == _ZSTD_MAGIC:
                    n = _zstd_content_size(head)
                    if n is None or n > chunk_bytes:
                        raise bad(f"chunk {fp.relative_to(path)}: a zstd frame that declares "
                                  f"{'no' if n is None else n} decoded size (chunks are {chunk_bytes} bytes)")
                elif "blosc" in names and len(head) >= 16 and \
                        int.from_bytes(head[4:8], "little") > chunk_bytes:
                    raise bad(f"chunk {fp.relative_to(path)}: a blosc block that declares "
                              f"{int.from_bytes(head[4:8], 'little')} decoded bytes (chunks are {chunk_bytes})")


@dataclass(eq=False, repr=False)
class ProbeSet:
    """A set of probes.

    Attributes
    ----------
    positions : (P, 3) float32
        Probe centres, world units (numeric input is converted to float32).
    faces : (P, 6, R, R, 3) float16 or float32, or :class:`LazyFaces`
        Linear radiance, DESIGN-NOTES §1 layout. Lazy when loaded from a
        chunked store: index it, or use :meth:`iter_chunks` /
        :meth:`faces_array`.
    grid_shape : (3,) int or None
        When the probes form a regular grid (x, y, z order, z fastest:
        ``np.meshgrid(..., indexing='ij')`` flattened; see :meth:`grid`).
        A *sparse* grid (probes only where people can go) has fewer probes
        than ``prod(grid_shape)``, each on a distinct lattice point of
        ``lo``..``hi`` (given explicitly), in any order: see :attr:`grid_dense`.
    lo, hi : (3,) float64 or None
        Grid bounds (first and last probe centre along each axis).
    names : list of str or None
        Probe names (from an import); used in error messages.
    source : str or None
        Where the set was read from; used in error messages.

    Notes
    -----
    Equality is identity (comparing arrays elementwise is left to callers).
    Construction does not validate: call :meth:`validate`.
    """
    positions: np.ndarray
    faces: np.ndarray
    grid_shape: tuple | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    names: list | None = None
    source: str | None = None

    def __post_init__(self):
        p = np.asarray(self.positions)
        if p.dtype.kind in "iuf":
            p = p.astype(np.float32, copy=False)
        self.positions = p
        if not isinstance(self.faces, LazyFaces) and not hasattr(self.faces, "shape"):
            self.faces = np.asarray(self.faces)
        self.grid_shape = _as_grid_shape(self.grid_shape)
        self.lo = _as_float_vec(self.lo)
        self.hi = _as_float_vec(self.hi)
        if self.names is not None:
            self.names = [str(n) for n in self.names]
        if self.source is not None:
            self.source = str(self.source)

    # basic properties ---------------------------------------------------
    @property
    def grid_dense(self) -> bool | None:
        """True for a full grid, False for a sparse one, None without a grid."""
        if self.grid_shape is None:
            return None
        return int(np.prod(self.grid_shape)) == self.n_probes

    @property
    def lattice(self) -> Grid | None:
        """The set's :class:`~probewarp.format.grid.Grid` (dense or sparse), or None
        for a scattered set. A dense grid stored without ``lo``/``hi`` takes them
        from its first and last probe (validate first: this trusts the fields)."""
        if self.grid_shape is None:
            return None
        lo, hi = self.lo, self.hi
        if lo is None or hi is None:
            lo, hi = self.positions[0], self.positions[-1]
        return Grid.checked(self.grid_shape, lo, hi, dense=bool(self.grid_dense),
                            where=f"{self.source or 'probe set'}: field grid_shape")

    @property
    def n_probes(self) -> int:
        return int(self.positions.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.faces.shape[2])

    @property
    def is_lazy(self) -> bool:
        """True when ``faces`` is read from a store on demand."""
        return isinstance(self.faces, LazyFaces)

    def __len__(self) -> int:
        return self.n_probes

    def __repr__(self) -> str:
        shp = tuple(getattr(self.faces, "shape", ()))
        dt = getattr(self.faces, "dtype", None)
        grid = f", grid_shape={self.grid_shape}" if self.grid_shape is not None else ""
        src = f", source={self.source!r}" if self.source else ""
        lazy = ", lazy" if self.is_lazy else ""
        return f"ProbeSet(P={len(self.positions)}, faces={shp} {dt}{grid}{src}{lazy})"

    def probe_name(self, i: int):
        """Name of probe ``i`` or None."""
        if self.names is not None and 0 <= i < len(self.names):
            return self.names[i]
        return None

    # grids --------------------------------------------------------------
    @staticmethod
    def grid(lo, hi, n) -> np.ndarray:
        """Positions of a regular grid in the DESIGN-NOTES §2 order.

        Parameters
        ----------
        lo, hi : (3,) float
            First and last probe centre along each axis.
        n : int or (3,) int
            Probes per axis (>= 1; an axis with 1 probe sits at ``lo``).

        Returns
        -------
        positions : (nx * ny * nz, 3) float32
            ``np.meshgrid(linspace(lo_x, hi_x, nx), ..., indexing='ij')``
            flattened: x slowest, z fastest.
        """
        return _grid_positions64(lo, hi, n).astype(np.float32)

    # chunk-wise access ----------------------------------------------------
    def _default_batch(self) -> int:
        if self.is_lazy:
            return self.faces.chunk_probes
        return config.ITER_BATCH_PROBES

    def iter_chunks(self, batch: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Walk the set in batches with bounded memory.

        Parameters
        ----------
        batch : int, optional
            Probes per batch; default the store's chunk length (lazy sets) or
            ``config.ITER_BATCH_PROBES``.

        Yields
        ------
        start : int
            Index of the batch's first probe.
        positions : (n, 3) float32
        faces : (n, 6, R, R, 3) numpy array, the set's dtype
            A view for in-memory sets (do not write to it), a fresh array
            read from the store for lazy ones.
        """
        batch = int(batch or self._default_batch())
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        for start in range(0, self.n_probes, batch):
            stop = min(start + batch, self.n_probes)
            yield start, self.positions[start:stop], np.asarray(self.faces[start:stop])

    def faces_array(self, dtype=None) -> np.ndarray:
        """All faces in memory: ``(P, 6, R, R, 3)`` numpy, the set's dtype unless ``dtype``."""
        if not self.is_lazy:
            a = np.asarray(self.faces)
            return a if dtype is None else a.astype(dtype, copy=False)
        out = np.empty(self.faces.shape, np.dtype(dtype) if dtype is not None else self.faces.dtype)
        for start, _, block in self.iter_chunks():
            out[start:start + len(block)] = block
        return out

    def subset(self, indices) -> "ProbeSet":
        """The probes ``indices`` (1-d int array or ``(P,)`` bool mask), in that order.

        Returns a new set; in-memory faces are copied, lazy faces stay lazy.
        The grid description is dropped (a subset is in general no grid).
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (self.n_probes,):
                raise IndexError(f"boolean mask of shape {idx.shape} for {self.n_probes} probes")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).ravel()
        if idx.size and (idx.min() < -self.n_probes or idx.max() >= self.n_probes):
            raise IndexError(f"probe index out of range for {self.n_probes} probes")
        idx = idx % max(self.n_probes, 1)
        faces = self.faces.subset(idx) if self.is_lazy else np.asarray(self.faces)[idx]
        names = None if self.names is None else [self.names[i] for i in idx]
        return ProbeSet(self.positions[idx], faces, names=names, source=self.source)

    def with_detected_lattice(self, holes: str = "auto") -> tuple["ProbeSet", dict | None]:
        """A set without a grid description whose positions lie on a regular
        lattice (:meth:`probewarp.format.grid.Grid.detect`) as that grid:
        ``(set, info)``; ``info`` is None (and the set unchanged) when it has a
        grid already or lies on none. A complete lattice in another order is
        put in grid order (``info['reordered']``; faces stay lazy).

        A lattice **with holes** (``holes="auto"``, the default) becomes a
        sparse grid when at least ``config.HOLES_GRID_MIN_FILL`` (half) of its
        points hold probes, else it stays a scattered set (``info['as_grid']``
        False), decoded by the tetrahedral rule: measured with
        ``benchmarks/bench_scattered.py`` (a quarter, half and three quarters
        of the built-in grid kept, two scenes), the sparse grid's axis fill is
        as good or better per byte from half kept on and collapses at a
        quarter. ``holes="grid"`` or ``"scattered"`` forces either."""
        if holes not in ("auto", "scattered", "grid"):
            raise ValueError(f"holes must be 'auto', 'scattered' or 'grid', got {holes!r}")
        if self.grid_shape is not None or self.n_probes < 2:
            return self, None
        g = Grid.detect(self.positions)
        if g is None:
            return self, None
        n_holes = int(g.n_points - self.n_probes)
        if holes == "auto":
            from probewarp.baker.config import HOLES_GRID_MIN_FILL
            holes = "grid" if self.n_probes >= HOLES_GRID_MIN_FILL * g.n_points else "scattered"
        if n_holes and holes == "scattered":
            return self, {"shape": list(g.shape), "lo": g.lo.tolist(), "hi": g.hi.tolist(), "dense": False,
                          "holes": n_holes, "reordered": False, "as_grid": False}
        ps, reordered = self, False
        if not g.dense and self.n_probes == g.n_points:
            order = np.argsort(g.ids_of(g.cells(self.positions)), kind="stable")
            ps, reordered = self.subset(order), True
        out = ProbeSet(ps.positions, ps.faces, names=ps.names, grid_shape=g.shape, lo=g.lo, hi=g.hi,
                       source=self.source)
        info = {"shape": list(g.shape), "lo": g.lo.tolist(), "hi": g.hi.tolist(),
                "dense": bool(out.grid_dense), "holes": n_holes, "reordered": reordered, "as_grid": True}
        return out, info

    def summary(self) -> dict:
        """Count, resolution, dtype, bounding box, grid and radiance statistics.

        Radiance statistics run chunk-wise over finite values only
        (``nonfinite`` counts the rest); ``mean`` is the plain mean over all
        finite values and channels (not solid-angle weighted).
        """
        P = self.n_probes
        lo_b = self.positions.min(axis=0).tolist() if P else None
        hi_b = self.positions.max(axis=0).tolist() if P else None
        vmin, vmax, total, count, nonfinite = np.inf, -np.inf, 0.0, 0, 0
        for _, _, block in self.iter_chunks():
            b = block.astype(np.float64)
            fin = np.isfinite(b)
            nonfinite += int(b.size - fin.sum())
            v = b[fin]
            if v.size:
                vmin, vmax = min(vmin, float(v.min())), max(vmax, float(v.max()))
                total += float(v.sum())
                count += v.size
        grid = None
        if self.grid_shape is not None:
            grid = dict(shape=list(self.grid_shape),
                        lo=None if self.lo is None else np.asarray(self.lo).tolist(),
                        hi=None if self.hi is None else np.asarray(self.hi).tolist())
        else:
            detected = Grid.detect(self.positions) if P >= 2 else None
            if detected is not None:
                grid = dict(shape=list(detected.shape), lo=detected.lo.tolist(), hi=detected.hi.tolist(),
                            detected=True, holes=int(detected.n_points - P))
        return dict(
            count=P, resolution=self.resolution, dtype=str(self.faces.dtype),
            lazy=self.is_lazy, source=self.source,
            bbox=dict(lo=lo_b, hi=hi_b), grid=grid,
            radiance=dict(min=vmin if count else None, max=vmax if count else None,
                          mean=total / count if count else None, nonfinite=nonfinite),
        )

    # checks -------------------------------------------------------------
    def validate(self, name=None, *, sanitize: bool = False, fp16: bool = False) -> "SanitizeReport":
        """Check (or, with ``sanitize=True``, repair) this set; see :func:`validate`."""
        return validate(self, name, sanitize=sanitize, fp16=fp16)

    # disk ---------------------------------------------------------------
    @classmethod
    def load(cls, path, *, lazy: bool | None = None, validate: bool = True) -> "ProbeSet":
        """Read a probe set from ``.npz`` or a ``.zarr`` directory.

        Parameters
        ----------
        path : str or Path
        lazy : bool, optional
            Keep ``faces`` on disk. Chunked stores: lazy by default
            (``False`` reads it all). ``.npz``: read into memory by default;
            ``lazy=True`` memory-maps ``faces`` (read-only) when the archive
            stores it uncompressed (``np.savez``, ``save(compressed=False)``);
            a compressed archive is read into memory.
        validate : bool
            Run :func:`validate` (chunk-wise for lazy sets). Pass ``False``
            to load a broken set and repair it with
            ``ps.validate(sanitize=True)``.

        Raises
        ------
        FileNotFoundError
            Nothing at ``path``.
        ProbeSetError
            Unreadable file, missing array, or a failed check.
        """
        path = Path(path)
        kind = _format_of(path)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "probe set not found", str(path))
        if kind == "npz":
            ps = cls._load_npz(path, mmap=bool(lazy))
        else:
            ps = cls._load_zarr(path, lazy=lazy is not False)
        if validate:
            ps.validate()
        return ps

    @classmethod
    def _load_npz(cls, path: Path, mmap: bool = False) -> "ProbeSet":
        # Read with zipfile and numpy's .npy header parser, never np.load: a
        # .npy or pickle file renamed .npz must not be read as one, and every
        # member's declared size is checked before anything is allocated.
        try:
            file_size = path.stat().st_size
            zf = zipfile.ZipFile(path)
        except _ZIP_ERRORS as e:
            raise ProbeSetError(f"not a readable .npz archive ({type(e).__name__}: {e})", file=path) from None
        with zf:
            members = _npz_members(path, zf, file_size)
            for key in _NPZ_KEYS_REQUIRED:
                if key not in members:
                    names = sorted(i.filename for i in zf.infolist())
                    raise ProbeSetError(f"missing array (the archive holds {names})", file=path, field=key)
            arrays = {}
            for key, m in members.items():
                if key == "faces" and mmap:
                    mapped = _npz_memmap(path, m, file_size)
                    if mapped is not None:
                        arrays[key] = mapped
                        continue
                try:
                    with zf.open(m.info) as f:
                        arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
                except _ZIP_ERRORS as e:
                    raise ProbeSetError(f"unreadable array ({type(e).__name__}: {e})", file=path,
                                        field=key) from None
                a = arrays[key]
                if a.dtype.kind == "U" and a.dtype.itemsize:
                    code = np.ascontiguousarray(a).view(np.uint32)
                    if a.dtype.byteorder == ">":
                        code = code.byteswap()
                    if ((code > 0x10FFFF) | ((code >= 0xD800) & (code <= 0xDFFF))).any():
                        raise ProbeSetError("not valid unicode (a code point beyond U+10FFFF or a surrogate)",
                                            file=path, field=key)
        names = None
        if "names" in arrays:
            a = arrays["names"]
            if a.dtype.kind != "U" or a.ndim != 1:
                raise ProbeSetError(f"expected a (P,) unicode array of names, got {a.dtype} of shape {a.shape}",
                                    file=path, field="names")
            names = a.tolist()
        return cls(arrays["positions"], arrays["faces"], arrays.get("grid_shape"),
                   arrays.get("lo"), arrays.get("hi"), names=names, source=str(path))

    @classmethod
    def _load_zarr(cls, path: Path, lazy: bool) -> "ProbeSet":
        import zarr
        _check_zarr_store(path)   # every array's metadata and chunk headers, before zarr reads data
        try:
            g = zarr.open_group(str(path), mode="r", zarr_format=3, use_consolidated=False)
            keys = set(g.array_keys())
        except Exception as e:  # zarr raises a zoo of types for broken stores
            raise ProbeSetError(f"not a readable zarr store ({type(e).__name__}: {e})", file=path) from e
        for key in _NPZ_KEYS_REQUIRED:
            if key not in keys:
                raise ProbeSetError(f"missing array (the store holds {sorted(keys)})", file=path, field=key)
        field = "positions"
        try:
            positions = np.asarray(g["positions"][...])
            extra = {}
            for field in ("grid_shape", "lo", "hi"):
                if field in keys:
                    extra[field] = np.asarray(g[field][...])
            field = "faces"
            faces = g["faces"]
            attrs = dict(g.attrs)
        except MemoryError:
            raise
        except Exception as e:
            raise ProbeSetError(f"unreadable array ({type(e).__name__}: {e})", file=path, field=field) from e
        if len(faces.shape) != 5:
            raise ProbeSetError(f"expected shape (P, 6, R, R, 3), got {tuple(faces.shape)}",
                                file=path, field="faces")
        faces = LazyFaces(faces, source=path)
        if not lazy:
            faces = np.asarray(faces)
        names = attrs.get("names")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ProbeSetError(f"group attribute names: a list of strings is needed, got {names!r:.80}",
                                file=path, field="names")
        return cls(positions, faces, extra.get("grid_shape"), extra.get("lo"), extra.get("hi"),
                   names=names, source=str(path))

    def save(self, path, *, dtype=None, overwrite: bool = True, compressed: bool = False,
             chunk_probes: int | None = None) -> Path:
        """Write the set to ``.npz`` or a ``.zarr`` directory, atomically.

        Parameters
        ----------
        path : str or Path
            Ends in ``.npz`` or ``.zarr``.
        dtype : float16 or float32, optional
            Storage dtype of ``faces`` (default: the set's). Saving float32
            radiance as float16 checks for values above ``constants.FP16_MAX``.
        overwrite : bool
            Replace an existing file or store (a directory is replaced only
            if it is a zarr store).
        compressed : bool
            ``.npz`` only: deflate the archive.
        chunk_probes : int, optional
            ``.zarr`` only: probes per chunk (default: at most
            ``config.ZARR_CHUNK_PROBES`` and ``config.ZARR_CHUNK_MAX_BYTES``).

        Returns
        -------
        Path of the written set.

        Raises
        ------
        ProbeSetError
            The set fails :func:`validate` (or overflows float16); nothing
            is left at ``path`` (an existing file there is untouched).
        """
        path = Path(path)
        kind = _format_of(path)
        if dtype is not None and np.dtype(dtype) not in FACES_DTYPES:
            raise ValueError(f"dtype must be float16 or float32, got {np.dtype(dtype)}")
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise FileExistsError(errno.EEXIST, "probe set exists (overwrite=False)", str(path))
            if kind == "zarr" and not (path.is_dir() and (path / "zarr.json").exists()):
                raise FileExistsError(errno.EEXIST, "refusing to replace something that is not a zarr store",
                                      str(path))
        if self.is_lazy and kind == "zarr" and path.exists():
            root = getattr(self.faces.array.store_path.store, "root", None)
            if root is not None and Path(root).resolve() == path.resolve():
                raise ValueError(f"{path}: cannot save a lazy set over the store it reads from")
        label = str(path)
        if self.source and Path(self.source) != path:
            label += f" (data from {self.source})"
        _check_global(self, label, sanitize=False)
        out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(self.faces.dtype)
        fp16 = out_dtype == np.float16 and self.faces.dtype != np.float16
        if kind == "npz":
            self._save_npz(path, out_dtype, fp16, label, compressed)
        else:
            self._save_zarr(path, out_dtype, fp16, label, chunk_probes)
        return path

    def _arrays_small(self) -> dict:
        out = dict(positions=np.ascontiguousarray(self.positions, np.float32))
        if self.grid_shape is not None:
            out["grid_shape"] = np.asarray(self.grid_shape, np.int64)
            lo, hi = self.lo, self.hi
            if lo is None or hi is None:  # implied by the first and last probe
                lo, hi = self.positions[0], self.positions[-1]
            out["lo"] = np.asarray(lo, np.float64)
            out["hi"] = np.asarray(hi, np.float64)
        return out

    def _save_npz(self, path, out_dtype, fp16, label, compressed):
        with atomic_path(path) as tmp:
            if not self.is_lazy and self.faces.dtype == out_dtype:
                faces = np.ascontiguousarray(self.faces)
                for start, _, block in self.iter_chunks():
                    _check_block(block, np.arange(start, start + len(block)), self, label, fp16)
            else:
                faces = np.empty(self.faces.shape, out_dtype)
                for start, _, block in self.iter_chunks():
                    _check_block(block, np.arange(start, start + len(block)), self, label, fp16)
                    faces[start:start + len(block)] = block
            arrays = self._arrays_small()
            arrays["faces"] = faces
            if self.names is not None:
                arrays["names"] = np.asarray(self.names, dtype=np.str_)
            with open(tmp, "wb") as fh:
                (np.savez_compressed if compressed else np.savez)(fh, **arrays)

    def _save_zarr(self, path, out_dtype, fp16, label, chunk_probes):
        import zarr
        P, R = self.n_probes, self.resolution
        per_probe = 6 * R * R * 3 * out_dtype.itemsize
        if chunk_probes is None:
            chunk_probes = max(1, min(config.ZARR_CHUNK_PROBES, config.ZARR_CHUNK_MAX_BYTES // per_probe))
        chunk_probes = int(min(max(1, chunk_probes), P))
        with atomic_dir(path) as tmp:
            attrs = dict(format=constants.PROBESET_FORMAT, version=constants.PROBESET_FORMAT_VERSION)
            if self.names is not None:
                attrs["names"] = list(self.names)
            g = zarr.open_group(str(tmp), mode="w", attributes=attrs)
            small = self._arrays_small()
            positions = small.pop("positions")
            for key, a in small.items():
                g.create_array(key, data=a)
            fa = g.create_array("faces", shape=(P, 6, R, R, 3), chunks=(chunk_probes, 6, R, R, 3),
                                dtype=out_dtype)
            for start, _, block in self.iter_chunks(chunk_probes):
                _check_block(block, np.arange(start, start + len(block)), self, label, fp16)
                fa[start:start + len(block)] = block.astype(out_dtype, copy=False)
            # positions last: a store killed before this point (its temporary,
            # never renamed in) does not load as a probe set (ZarrProbeWriter too)
            g.create_array("positions", data=positions)
