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

Every input check lives in :func:`validate`; its errors are
:class:`ProbeSetError` and name the file, the probe (index and name) and the
field. ``validate(..., sanitize=True)`` repairs what can be repaired and
returns a :class:`SanitizeReport`. Saving is atomic (temp file or directory
beside the target, then a rename) and validates while it writes, so a rejected
set leaves nothing at the target path.

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
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from probewarp.baker import config

from probewarp.format import constants
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid

#: Radiance dtypes a probe set may hold.
FACES_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))

_NPZ_KEYS_REQUIRED = ("positions", "faces")
_CHANNELS = "RGB"


# ---------------------------------------------------------------------------
# errors and reports
# ---------------------------------------------------------------------------

def _rebuild_error(cls, detail, kw):
    return cls(detail, **kw)


class ProbeSetError(InputError):
    """A probe set (or its import) failed a check.

    The message reads ``FILE[:LINE]: probe I ('NAME'): FIELD: detail``; the
    parts are also attributes (``file``, ``line``, ``probe``, ``name``,
    ``field``, ``detail``), ``None`` where not applicable.
    """

    def __init__(self, detail: str, *, file=None, probe=None, name=None,
                 field=None, line=None):
        self.detail = detail
        self.file = None if file is None else str(file)
        self.probe = None if probe is None else int(probe)
        self.name = name
        self.field = field
        self.line = line
        super().__init__(self._compose())

    def _compose(self) -> str:
        loc = self.file if self.file is not None else "<memory>"
        if self.line is not None:
            loc += f":{self.line}"
        parts = [loc]
        if self.probe is not None:
            parts.append(f"probe {self.probe}" + (f" ({self.name!r})" if self.name is not None else ""))
        elif self.name is not None:
            parts.append(f"probe {self.name!r}")
        if self.field is not None:
            parts.append(str(self.field))
        parts.append(self.detail)
        return ": ".join(parts)

    def __reduce__(self):
        kw = dict(file=self.file, probe=self.probe, name=self.name, field=self.field, line=self.line)
        return _rebuild_error, (type(self), self.detail, kw)


def _fmt_indices(idx, limit: int = 10) -> str:
    idx = [int(i) for i in idx]
    s = ", ".join(str(i) for i in idx[:limit])
    return s + (f", ... ({len(idx) - limit} more)" if len(idx) > limit else "")


@dataclass
class SanitizeReport:
    """What :func:`validate` found (and, with ``sanitize=True``, repaired).

    Counts of radiance problems are numbers of *values* (one per channel);
    the ``*_probes`` arrays hold the indices (as given, before duplicates
    were dropped) of the probes concerned.
    """
    source: str
    n_in: int
    n_out: int = 0
    sanitized: bool = False
    fp16: bool = False
    nan_values: int = 0
    nan_probes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    posinf_values: int = 0
    posinf_probes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    negative_values: int = 0
    negative_probes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fp16_overflow_values: int = 0
    fp16_overflow_probes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: ``(dropped, kept)`` index pairs: probe ``dropped`` sat on probe ``kept``.
    duplicates: list = field(default_factory=list)
    grid_dropped: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing needed repair."""
        return not (self.nan_values or self.posinf_values or self.negative_values
                    or self.fp16_overflow_values or self.duplicates)

    def summary(self) -> str:
        """A few human-readable lines: counts and what was done."""
        if self.ok:
            return f"{self.source}: {self.n_in} probes, nothing to repair"
        verb = "Sanitized" if self.sanitized else "Problems in"
        lines = [f"{verb} {self.source}: {self.n_in} -> {self.n_out} probes"]
        rows = [
            ("NaN radiance", self.nan_values, self.nan_probes, "set to 0"),
            ("+Inf radiance", self.posinf_values, self.posinf_probes,
             f"clamped to {constants.SANITIZE_POSINF_VALUE:g}"),
            ("negative radiance (incl. -Inf)", self.negative_values, self.negative_probes, "set to 0"),
            ("radiance above the fp16 maximum", self.fp16_overflow_values, self.fp16_overflow_probes,
             f"clamped to {constants.FP16_MAX:g}"),
        ]
        for label, n, probes, action in rows:
            if n:
                done = f" -> {action}" if self.sanitized else ""
                lines.append(f"  {label}: {n} values in {len(probes)} probes "
                             f"({_fmt_indices(probes)}){done}")
        if self.duplicates:
            pairs = ", ".join(f"{d} (same as {k})" for d, k in self.duplicates[:10])
            more = f", ... ({len(self.duplicates) - 10} more)" if len(self.duplicates) > 10 else ""
            done = ", first kept, others dropped" if self.sanitized else ""
            lines.append(f"  duplicate positions: {len(self.duplicates)} probes: {pairs}{more}{done}")
        if self.grid_dropped:
            lines.append("  grid description dropped (the probes no longer form the grid)")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """Plain-Python form (JSON-serialisable)."""
        return dict(source=self.source, n_in=self.n_in, n_out=self.n_out,
                    sanitized=self.sanitized, fp16=self.fp16,
                    nan_values=self.nan_values, nan_probes=self.nan_probes.tolist(),
                    posinf_values=self.posinf_values, posinf_probes=self.posinf_probes.tolist(),
                    negative_values=self.negative_values, negative_probes=self.negative_probes.tolist(),
                    fp16_overflow_values=self.fp16_overflow_values,
                    fp16_overflow_probes=self.fp16_overflow_probes.tolist(),
                    duplicates=[list(p) for p in self.duplicates], grid_dropped=self.grid_dropped)


# ---------------------------------------------------------------------------
# lazy faces of a chunked store
# ---------------------------------------------------------------------------

def _repair_inplace(block: np.ndarray, fp16: bool) -> None:
    """NaN -> 0, +Inf -> SANITIZE_POSINF_VALUE, negative -> 0, optionally clamp to FP16_MAX."""
    block[np.isnan(block)] = 0
    block[np.isposinf(block)] = constants.SANITIZE_POSINF_VALUE
    block[block < 0] = 0
    if fp16:
        np.minimum(block, constants.FP16_MAX, out=block)


class LazyFaces:
    """``(P, 6, R, R, 3)`` read-only view of a chunked store's ``faces``.

    Indexing along the first axis (int, slice, int array, bool mask, with
    further axes after it) reads just those probes and returns numpy arrays;
    ``np.asarray(lazy)`` reads everything. A view may select and reorder
    probes of the store (``index``) and repair values on read
    (``repair_fp16`` not None: see :func:`validate`).

    Notes
    -----
    Only what the probe-set code needs: no writes, no views of views beyond
    :meth:`subset`.
    """

    def __init__(self, array, index=None, repair_fp16: bool | None = None):
        self.array = array
        self.index = None if index is None else np.asarray(index, np.int64)
        self.repair_fp16 = repair_fp16

    # array-like surface -------------------------------------------------
    @property
    def shape(self) -> tuple:
        n = self.array.shape[0] if self.index is None else len(self.index)
        return (int(n),) + tuple(int(s) for s in self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.array.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def chunk_probes(self) -> int:
        """Probes per chunk of the underlying store."""
        return int(self.array.chunks[0])

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        root = getattr(self.array.store_path.store, "root", None)
        return f"LazyFaces(shape={self.shape}, dtype={self.dtype}, store={root!s})"

    def __array__(self, dtype=None, copy=None):
        out = self.take(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        n = len(self)
        if key is Ellipsis:
            return np.asarray(self)[(Ellipsis,) + rest]
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -n <= i < n:
                raise IndexError(f"probe index {i} out of range for {n} probes")
            out = self.take(np.array([i % n]))[0]
            return out[rest] if rest else out
        if isinstance(key, slice):
            out = self.take(np.arange(n)[key])
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise IndexError(f"boolean index of shape {idx.shape} for {n} probes")
                idx = np.flatnonzero(idx)
            out = self.take(idx)
        return out[(slice(None),) + rest] if rest else out

    # reading ------------------------------------------------------------
    def take(self, idx) -> np.ndarray:
        """Read probes ``idx`` (1-d ints, this view's numbering): ``(len(idx), 6, R, R, 3)``."""
        idx = np.asarray(idx, np.int64).ravel()
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"probe index out of range for {n} probes")
        idx = idx % max(n, 1)
        src = idx if self.index is None else self.index[idx]
        out = self._store_read(src)
        if self.repair_fp16 is not None:
            if not out.flags.writeable:
                out = out.copy()
            _repair_inplace(out, self.repair_fp16)
        return out

    def _store_read(self, src: np.ndarray) -> np.ndarray:
        if src.size == 0:
            return np.empty((0,) + self.shape[1:], self.dtype)
        lo, hi = int(src.min()), int(src.max())
        if src.size == hi - lo + 1 and np.all(np.diff(src) == 1):
            return np.asarray(self.array[lo:hi + 1])
        u, inv = np.unique(src, return_inverse=True)
        if u.size == hi - lo + 1 or (hi - lo + 1) <= 2 * u.size:  # dense: one slice read
            block = np.asarray(self.array[lo:hi + 1])
            return block[src - lo]
        return np.asarray(self.array.oindex[u])[inv]

    def subset(self, idx) -> "LazyFaces":
        """A view of probes ``idx`` (this view's numbering)."""
        idx = np.asarray(idx, np.int64).ravel() % max(len(self), 1)
        new = idx if self.index is None else self.index[idx]
        return LazyFaces(self.array, new, self.repair_fp16)

    def with_repair(self, fp16: bool) -> "LazyFaces":
        """The same view, repairing values on read (see :func:`validate`)."""
        return LazyFaces(self.array, self.index, bool(fp16))


# ---------------------------------------------------------------------------
# the probe set
# ---------------------------------------------------------------------------

def _grid_positions64(lo, hi, n) -> np.ndarray:
    """:meth:`Grid.positions` of broadcast ``lo``, ``hi``, ``n`` (ValueError for counts < 1)."""
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), (3,))
    if np.any(n < 1):
        raise ValueError(f"grid counts must be >= 1, got {n.tolist()}")
    return Grid(n, np.broadcast_to(np.asarray(lo, np.float64), (3,)),
                np.broadcast_to(np.asarray(hi, np.float64), (3,))).positions()


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
            Chunked stores only: keep ``faces`` on disk (default) or read it
            all (``False``). ``.npz`` is always read into memory.
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
            if lazy:
                raise ValueError(f"{path}: .npz probe sets cannot be read lazily; use a .zarr store")
            ps = cls._load_npz(path)
        else:
            ps = cls._load_zarr(path, lazy=lazy is not False)
        if validate:
            ps.validate()
        return ps

    @classmethod
    def _load_npz(cls, path: Path) -> "ProbeSet":
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise ProbeSetError(f"not a readable .npz archive ({e})", file=path) from e
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ProbeSetError("not an .npz archive (a single .npy array?)", file=path)
        with z:
            arrays = {}
            for key in z.files:
                if key not in ("positions", "faces", "grid_shape", "lo", "hi", "names"):
                    continue
                try:
                    arrays[key] = z[key]
                except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
                    raise ProbeSetError(f"unreadable array ({e})", file=path, field=key) from e
        for key in _NPZ_KEYS_REQUIRED:
            if key not in arrays:
                raise ProbeSetError(f"missing array (the archive holds {sorted(z.files)})",
                                    file=path, field=key)
        names = arrays["names"].tolist() if "names" in arrays else None
        return cls(arrays["positions"], arrays["faces"], arrays.get("grid_shape"),
                   arrays.get("lo"), arrays.get("hi"), names=names, source=str(path))

    @classmethod
    def _load_zarr(cls, path: Path, lazy: bool) -> "ProbeSet":
        import zarr
        try:
            g = zarr.open_group(str(path), mode="r")
            keys = set(g.array_keys())
        except Exception as e:  # zarr raises a zoo of types for broken stores
            raise ProbeSetError(f"not a readable zarr store ({type(e).__name__}: {e})", file=path) from e
        for key in _NPZ_KEYS_REQUIRED:
            if key not in keys:
                raise ProbeSetError(f"missing array (the store holds {sorted(keys)})", file=path, field=key)
        try:
            positions = np.asarray(g["positions"][...])
            extra = {k: np.asarray(g[k][...]) for k in ("grid_shape", "lo", "hi") if k in keys}
            faces = g["faces"]
            attrs = dict(g.attrs)
        except Exception as e:
            raise ProbeSetError(f"unreadable array ({type(e).__name__}: {e})", file=path) from e
        if len(faces.shape) != 5:
            raise ProbeSetError(f"expected shape (P, 6, R, R, 3), got {tuple(faces.shape)}",
                                file=path, field="faces")
        faces = LazyFaces(faces) if lazy else np.asarray(faces[...])
        names = attrs.get("names")
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
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
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
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _save_zarr(self, path, out_dtype, fp16, label, chunk_probes):
        import zarr
        P, R = self.n_probes, self.resolution
        per_probe = 6 * R * R * 3 * out_dtype.itemsize
        if chunk_probes is None:
            chunk_probes = max(1, min(config.ZARR_CHUNK_PROBES, config.ZARR_CHUNK_MAX_BYTES // per_probe))
        chunk_probes = int(min(max(1, chunk_probes), P))
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            attrs = dict(format=constants.PROBESET_FORMAT, version=constants.PROBESET_FORMAT_VERSION)
            if self.names is not None:
                attrs["names"] = list(self.names)
            g = zarr.open_group(str(tmp), mode="w", attributes=attrs)
            for key, a in self._arrays_small().items():
                g.create_array(key, data=a)
            fa = g.create_array("faces", shape=(P, 6, R, R, 3), chunks=(chunk_probes, 6, R, R, 3),
                                dtype=out_dtype)
            for start, _, block in self.iter_chunks(chunk_probes):
                _check_block(block, np.arange(start, start + len(block)), self, label, fp16)
                fa[start:start + len(block)] = block.astype(out_dtype, copy=False)
            _replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move directory ``tmp`` to ``target``, replacing an existing one."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

def _err(ps, src, detail, *, probe=None, field=None):
    name = ps.probe_name(probe) if probe is not None else None
    return ProbeSetError(detail, file=src, probe=probe, name=name, field=field)


def _check_structure(ps: ProbeSet, src: str) -> None:
    pos = ps.positions
    if not isinstance(pos, np.ndarray) or pos.ndim != 2 or pos.shape[1] != 3:
        raise _err(ps, src, f"expected shape (P, 3), got {getattr(pos, 'shape', type(pos))}", field="positions")
    if pos.dtype.kind != "f":
        raise _err(ps, src, f"expected float32, got {pos.dtype}", field="positions")
    P = pos.shape[0]
    if P == 0:
        raise _err(ps, src, "empty probe set (no probes)", field="positions")
    f = ps.faces
    shp = tuple(getattr(f, "shape", ()))
    if len(shp) != 5 or shp[1] != 6 or shp[2] != shp[3] or shp[2] < 1 or shp[4] != 3:
        raise _err(ps, src, f"expected shape (P, 6, R, R, 3), got {shp}", field="faces")
    if shp[0] != P:
        raise _err(ps, src, f"holds {shp[0]} probes but positions holds {P}", field="faces")
    if np.dtype(f.dtype) not in FACES_DTYPES:
        raise _err(ps, src, f"expected float16 or float32, got {np.dtype(f.dtype)}", field="faces")
    bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size - 1} more probes too)" if bad.size > 1 else ""
        raise _err(ps, src, f"non-finite coordinate {pos[i].tolist()}{more}", probe=i, field="positions")
    if ps.names is not None and len(ps.names) != P:
        raise _err(ps, src, f"{len(ps.names)} names for {P} probes", field="names")


def _check_grid(ps: ProbeSet, src: str) -> None:
    gs, lo, hi = ps.grid_shape, ps.lo, ps.hi
    if gs is None:
        if lo is not None or hi is not None:
            raise _err(ps, src, "lo/hi given without grid_shape", field="grid_shape")
        return
    if (not isinstance(gs, tuple) or len(gs) != 3 or any(not isinstance(v, int) for v in gs)
            or any(v < 1 for v in gs)):
        raise _err(ps, src, f"expected 3 positive integers, got {gs!r}", field="grid_shape")
    P = ps.n_probes
    if int(np.prod(gs)) < P or (int(np.prod(gs)) > P and (lo is None or hi is None)):
        raise _err(ps, src, f"{gs} has {int(np.prod(gs))} points but the set has {P} probes "
                   "(a sparse grid, with fewer probes than points, needs lo and hi)", field="grid_shape")
    if (lo is None) != (hi is None):
        raise _err(ps, src, "only one of lo/hi given", field="lo" if lo is None else "hi")
    if int(np.prod(gs)) > P:
        _check_sparse_grid(ps, src)
        return
    if lo is None:
        lo, hi = ps.positions[0].astype(np.float64), ps.positions[-1].astype(np.float64)
    for key, v in (("lo", lo), ("hi", hi)):
        a = np.asarray(v)
        if a.shape != (3,) or a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
            raise _err(ps, src, f"expected 3 finite numbers, got {v!r}", field=key)
    expect = _grid_positions64(lo, hi, gs)
    pos = ps.positions.astype(np.float64)
    scale = max(float(np.linalg.norm(expect.max(0) - expect.min(0))), float(np.abs(expect).max()),
                float(np.abs(pos).max()))
    tol = constants.GRID_POSITION_REL_TOL * scale
    off = np.abs(pos - expect).max(axis=1)
    bad = np.flatnonzero(off > tol)
    if bad.size:
        i = int(bad[0])
        raise _err(ps, src, f"position {pos[i].tolist()} is not grid point {expect[i].tolist()} "
                   f"of grid_shape {gs}, lo {np.asarray(lo).tolist()}, hi {np.asarray(hi).tolist()} "
                   f"(meshgrid 'ij' order, z fastest; {bad.size} probes off)", probe=i, field="positions")


def _check_sparse_grid(ps: ProbeSet, src: str) -> None:
    """Every probe of a sparse grid sits on its own lattice point of lo..hi."""
    gs = np.asarray(ps.grid_shape, np.int64)
    for key, v in (("lo", ps.lo), ("hi", ps.hi)):
        a = np.asarray(v)
        if a.shape != (3,) or a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
            raise _err(ps, src, f"expected 3 finite numbers, got {v!r}", field=key)
    lo, hi = np.asarray(ps.lo, np.float64), np.asarray(ps.hi, np.float64)
    step = np.where(gs > 1, (hi - lo) / np.maximum(gs - 1, 1), 0.0)
    pos = ps.positions.astype(np.float64)
    u = np.where(step != 0, (pos - lo) / np.where(step != 0, step, 1.0), 0.0)
    ijk = np.rint(u).astype(np.int64)
    snapped = lo + ijk * step
    scale = max(float(np.linalg.norm(hi - lo)), float(np.abs(lo).max()), float(np.abs(hi).max()),
                float(np.abs(pos).max(initial=0.0)))
    tol = constants.GRID_POSITION_REL_TOL * scale
    off = np.where(((ijk < 0) | (ijk >= gs)).any(axis=1), np.inf, np.abs(pos - snapped).max(axis=1))
    bad = np.flatnonzero(off > tol)
    if bad.size:
        i = int(bad[0])
        raise _err(ps, src, f"{tuple(gs.tolist())} has {int(np.prod(gs))} points but the set has "
                   f"{ps.n_probes} probes; read as a sparse grid (lo {lo.tolist()}, hi {hi.tolist()}), "
                   f"position {pos[i].tolist()} is not one of its lattice points ({bad.size} probes off)",
                   probe=i, field="grid_shape")
    lin = Grid(gs, lo, hi, dense=False).ids_of(ijk)
    uniq, first, counts = np.unique(lin, return_index=True, return_counts=True)
    if (counts > 1).any():
        c = int(np.flatnonzero(counts > 1)[0])
        j = int(first[c])
        i = int(np.flatnonzero(lin == uniq[c])[1])
        raise _err(ps, src, f"probes {j} and {i} share the lattice point {ijk[i].tolist()} of the "
                   "sparse grid", probe=i, field="positions")


def _duplicate_pairs(positions: np.ndarray) -> np.ndarray:
    """``(n, 2)`` int64 pairs ``(i, j)``, ``i < j``, closer than the duplicate tolerance."""
    from scipy.spatial import cKDTree
    pos = positions.astype(np.float64)
    if len(pos) < 2:
        return np.zeros((0, 2), np.int64)
    diag = float(np.linalg.norm(pos.max(0) - pos.min(0)))
    tol = constants.DUPLICATE_POSITION_REL_TOL * diag
    pairs = cKDTree(pos).query_pairs(tol, output_type="ndarray").astype(np.int64)
    if pairs.size:
        pairs = np.sort(pairs, axis=1)
        pairs = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
    return pairs.reshape(-1, 2)


def _greedy_keep(P: int, pairs: np.ndarray) -> tuple[np.ndarray, list]:
    """Keep the first of every group of duplicates: (keep mask, [(dropped, kept)])."""
    keep = np.ones(P, bool)
    dropped = []
    for i, j in pairs:  # sorted by j: i's fate is known when j is decided
        if keep[j] and keep[i]:
            keep[j] = False
            dropped.append((int(j), int(i)))
    return keep, dropped


def _check_global(ps: ProbeSet, src: str, sanitize: bool) -> np.ndarray:
    """Structure, grid and duplicates; returns the duplicate pairs (raises on them unless sanitizing)."""
    _check_structure(ps, src)
    _check_grid(ps, src)
    pairs = _duplicate_pairs(ps.positions)
    if pairs.size and not sanitize:
        i, j = (int(v) for v in pairs[0])
        d = float(np.linalg.norm(ps.positions[j].astype(np.float64) - ps.positions[i]))
        other = ps.probe_name(i)
        raise _err(ps, src, f"duplicate of probe {i}" + (f" ({other!r})" if other is not None else "")
                   + f" at {ps.positions[j].tolist()} (distance {d:.3g}; "
                   f"{len(pairs)} duplicate pairs in all)", probe=j, field="positions")
    return pairs


def _scan_block(block: np.ndarray, fp16: bool) -> np.ndarray:
    """Per-probe counts ``(n, 4)``: NaN, +Inf, negative (incl. -Inf), finite above FP16_MAX."""
    b = block.reshape(len(block), -1)
    out = np.zeros((len(block), 4), np.int64)
    out[:, 0] = np.isnan(b).sum(1)
    out[:, 1] = np.isposinf(b).sum(1)
    out[:, 2] = (b < 0).sum(1)
    if fp16:
        out[:, 3] = (np.isfinite(b) & (b > constants.FP16_MAX)).sum(1)
    return out


_KINDS = (("NaN", "NaN radiance"), ("+Inf", "+Inf radiance"), ("negative", "negative radiance"),
          ("fp16", f"radiance above the float16 maximum {constants.FP16_MAX:g}"))


def _first_location(values: np.ndarray, kind: int) -> str:
    if kind == 0:
        m = np.isnan(values)
    elif kind == 1:
        m = np.isposinf(values)
    elif kind == 2:
        m = values < 0
    else:
        m = np.isfinite(values) & (values > constants.FP16_MAX)
    f, t, s, c = (int(v) for v in np.argwhere(m)[0])
    return (f"face {constants.FACE_NAMES[f]}, row {t}, column {s}, channel {_CHANNELS[c]} "
            f"= {float(values[f, t, s, c]):g}")


def _raise_first(block, counts, orig_idx, ps, src):
    probe_row = int(np.flatnonzero(counts.any(1))[0])
    kind = int(np.flatnonzero(counts[probe_row])[0])
    i = int(orig_idx[probe_row])
    n = int(counts[probe_row, kind])
    label = _KINDS[kind][1]
    raise _err(ps, src, f"{label} in {n} value(s), first at {_first_location(block[probe_row], kind)}",
               probe=i, field="faces")


def _check_block(block, orig_idx, ps, src, fp16: bool) -> None:
    counts = _scan_block(block, fp16)
    if counts.any():
        _raise_first(block, counts, orig_idx, ps, src)


def _iter_view(ps: ProbeSet, keep_idx, batch: int):
    """Yield ``(orig_indices, faces_block)`` over probes ``keep_idx`` (None: all)."""
    if keep_idx is None:
        for start, _, block in ps.iter_chunks(batch):
            yield np.arange(start, start + len(block)), block
        return
    for a in range(0, len(keep_idx), batch):
        idx = keep_idx[a:a + batch]
        block = ps.faces.take(idx) if ps.is_lazy else np.asarray(ps.faces)[idx]
        yield idx, block


def validate(probeset: ProbeSet, name=None, *, sanitize: bool = False, fp16: bool = False) -> SanitizeReport:
    """Check every input rule of a probe set, or repair what can be repaired.

    Parameters
    ----------
    probeset : ProbeSet
    name : str, optional
        The file named in messages (default ``probeset.source``, else
        ``'<memory>'``).
    sanitize : bool
        Repair instead of raising where a repair exists, *in place*: new
        arrays are assigned to ``probeset`` (the caller's arrays are never
        written to; a lazy set repairs on read). NaN -> 0; +Inf ->
        ``constants.SANITIZE_POSINF_VALUE``; negative (and -Inf) -> 0; with
        ``fp16`` finite values above ``constants.FP16_MAX`` -> ``FP16_MAX``;
        duplicate positions -> the first (lowest index) is kept and the others
        dropped, with their names, and a grid description is then dropped.
    fp16 : bool
        Also reject (or clamp) radiance that float16 cannot hold.

    Returns
    -------
    SanitizeReport
        Counts and, with ``sanitize``, what was done (``report.ok`` when the
        set was clean).

    Raises
    ------
    ProbeSetError
        Message ``FILE: probe I ('NAME'): FIELD: detail`` for: positions not
        ``(P, 3)`` float or not finite; faces not ``(P, 6, R, R, 3)``
        float16/float32; empty set; names of the wrong count; grid_shape not 3
        positive ints or its product != P, lo/hi without grid_shape or only
        one of them, positions not the ``lo``..``hi`` 'ij' meshgrid (lo/hi
        default to the first/last probe); and, unless sanitizing, duplicate
        positions (``constants.DUPLICATE_POSITION_REL_TOL`` of the bounding-box
        diagonal), NaN/Inf or negative radiance, fp16 overflow. Structural
        problems raise even when sanitizing. The first problem found raises;
        the scan runs chunk-wise (bounded memory for lazy sets).
    """
    ps = probeset
    src = str(name) if name is not None else (ps.source or "<memory>")
    pairs = _check_global(ps, src, sanitize)
    P = ps.n_probes
    report = SanitizeReport(source=src, n_in=P, n_out=P, sanitized=bool(sanitize), fp16=bool(fp16))
    keep_idx = None
    if pairs.size:
        keep, dropped = _greedy_keep(P, pairs)
        keep_idx = np.flatnonzero(keep)
        report.duplicates = dropped
    fp16_eff = bool(fp16) and np.dtype(ps.faces.dtype) != np.float16
    batch = ps._default_batch()
    tot = np.zeros(4, np.int64)
    probes = [[] for _ in range(4)]
    for orig, block in _iter_view(ps, keep_idx, batch):
        counts = _scan_block(block, fp16_eff)
        if not counts.any():
            continue
        if not sanitize:
            _raise_first(block, counts, orig, ps, src)
        tot += counts.sum(0)
        for k in range(4):
            probes[k].append(orig[counts[:, k] > 0])
    cat = [np.concatenate(p).astype(np.int64) if p else np.zeros(0, np.int64) for p in probes]
    report.nan_values, report.posinf_values, report.negative_values, report.fp16_overflow_values = (
        int(v) for v in tot)
    report.nan_probes, report.posinf_probes, report.negative_probes, report.fp16_overflow_probes = cat
    if not sanitize or report.ok:
        return report
    # --- repair, in place on the ProbeSet object --------------------------------
    radiance = bool(tot.any())
    if ps.is_lazy:
        faces = ps.faces.subset(keep_idx) if keep_idx is not None else ps.faces
        if radiance:
            faces = faces.with_repair(fp16_eff)
    else:
        src_faces = np.asarray(ps.faces)
        if keep_idx is not None:
            faces = src_faces[keep_idx]
        elif radiance:
            faces = src_faces.copy()
        else:
            faces = src_faces
        if radiance:
            for a in range(0, len(faces), batch):
                _repair_inplace(faces[a:a + batch], fp16_eff)
    if keep_idx is not None:
        ps.positions = ps.positions[keep_idx]
        if ps.names is not None:
            ps.names = [ps.names[i] for i in keep_idx]
        if ps.grid_shape is not None or ps.lo is not None or ps.hi is not None:
            ps.grid_shape, ps.lo, ps.hi = None, None, None
            report.grid_dropped = True
    ps.faces = faces
    report.n_out = ps.n_probes
    return report
