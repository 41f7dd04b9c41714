"""Lazy, chunk-wise access to a chunked (zarr) store's ``faces`` (:class:`LazyFaces`).

Used by :class:`probewarp.baker.probeset.ProbeSet` for ``.zarr`` sets; a
sanitised lazy set repairs on read (:func:`_repair_inplace`), the store itself
is never written to.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from probewarp.format import constants
from probewarp.baker import config


def _repair_inplace(block: np.ndarray, fp16: bool) -> None:
    """NaN -> 0, +Inf -> SANITIZE_POSINF_VALUE, negative -> 0, optionally clamp to FP16_MAX."""
    block[np.isnan(block)] = 0
    block[np.isposinf(block)] = constants.SANITIZE_POSINF_VALUE
    block[block < 0] = 0
    if fp16:
        np.minimum(block, constants.FP16_MAX, out=block)


class ChunkCache:
    """A thread-safe LRU cache of decompressed store chunks, bounded in bytes.

    Pages of a bake are bricks whose probes are spread over many chunks of
    the probe axis, and neighbouring pages (and their halos) share chunks:
    the cache reads each chunk about once while a bake sweeps the grid.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._d: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key, load):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                self.hits += 1
                return self._d[key]
        block = load()                      # outside the lock: reads run in parallel
        with self._lock:
            self.misses += 1
            if key not in self._d and block.nbytes <= self.max_bytes:
                self._d[key] = block
                self._bytes += block.nbytes
                while self._bytes > self.max_bytes:
                    _, old = self._d.popitem(last=False)
                    self._bytes -= old.nbytes
        return block


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

    def __init__(self, array, index=None, repair_fp16: bool | None = None, cache: ChunkCache | None = None,
                 source=None):
        self.array = array
        #: the store's path, named in errors (default: the store's root)
        self.source = source if source is not None else getattr(array.store_path.store, "root", None)
        self.index = None if index is None else np.asarray(index, np.int64)
        self.repair_fp16 = repair_fp16
        self.cache = cache if cache is not None else ChunkCache(config.LAZY_CACHE_BYTES)

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
        """Probes ``src`` of the store; a damaged chunk raises ``ProbeSetError``
        (an :class:`~probewarp.format.errors.InputError`) naming the store."""
        try:
            return self._store_read_raw(src)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as e:  # zarr and its codecs raise a zoo of types for damaged chunks
            from probewarp.baker.validation import ProbeSetError
            lo, hi = (int(src.min()), int(src.max())) if src.size else (0, 0)
            raise ProbeSetError(f"cannot read probes {lo}..{hi} ({type(e).__name__}: {e})",
                                file=self.source, field="faces") from e

    def _store_read_raw(self, src: np.ndarray) -> np.ndarray:
        if src.size == 0:
            return np.empty((0,) + self.shape[1:], self.dtype)
        lo, hi = int(src.min()), int(src.max())
        if src.size == hi - lo + 1 and np.all(np.diff(src) == 1):
            return np.asarray(self.array[lo:hi + 1])
        u, inv = np.unique(src, return_inverse=True)
        if u.size == hi - lo + 1 or (hi - lo + 1) <= 2 * u.size:  # dense: one slice read
            block = np.asarray(self.array[lo:hi + 1])
            return block[src - lo]
        # scattered (a brick of a grid, a halo): whole chunks through the cache
        cp = self.chunk_probes
        out = np.empty((u.size,) + self.shape[1:], self.dtype)
        chunk = u // cp
        starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
        ends = np.r_[starts[1:], u.size]
        n = self.array.shape[0]
        for a, b in zip(starts, ends):
            c = int(chunk[a])
            block = self.cache.get(c, lambda c=c: np.asarray(self.array[c * cp:min(n, (c + 1) * cp)]))
            out[a:b] = block[u[a:b] - c * cp]
        return out[inv]

    def subset(self, idx) -> "LazyFaces":
        """A view of probes ``idx`` (this view's numbering)."""
        idx = np.asarray(idx, np.int64).ravel() % max(len(self), 1)
        new = idx if self.index is None else self.index[idx]
        return LazyFaces(self.array, new, self.repair_fp16, self.cache, self.source)

    def with_repair(self, fp16: bool) -> "LazyFaces":
        """The same view, repairing values on read (see :func:`validate`)."""
        return LazyFaces(self.array, self.index, bool(fp16), self.cache, self.source)
