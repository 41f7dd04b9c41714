"""Streaming writer of a chunked (zarr) probe set: :class:`ZarrProbeWriter`.

Writes exactly the store :meth:`probewarp.baker.probeset.ProbeSet.save`
writes for a ``.zarr`` path (and :meth:`ProbeSet.load` reads): group
attributes ``format``/``version`` (:data:`probewarp.format.constants.PROBESET_FORMAT`,
``PROBESET_FORMAT_VERSION``) and ``names`` when given; arrays ``positions``
``(P, 3)`` float32, ``faces`` ``(P, 6, R, R, 3)`` (chunks of at most
``config.ZARR_CHUNK_PROBES`` probes and ``config.ZARR_CHUNK_MAX_BYTES``),
optional ``grid_shape`` int64, ``lo``/``hi`` float64. The faces arrive block by
block, in probe order, so a set far larger than memory can be produced::

    with ZarrProbeWriter(path, positions, R, grid_shape=n, lo=lo, hi=hi) as w:
        for start in range(0, P, w.chunk_probes):
            w.write(start, render(positions[start:start + w.chunk_probes]))

Checks are those of a save: the positions, grid and duplicates when the
writer opens (:func:`~probewarp.baker.validation._check_global`), every block
before it is written (finite, non-negative, float16 overflow:
:func:`~probewarp.baker.validation._check_block`); errors name the file, the
probe index and its position.

Atomic (:func:`probewarp.format.atomic.atomic_dir`): the store is built under
a temporary name beside ``path`` and renamed onto it by :meth:`close` once
every probe has been written. A failed check, an exception inside the
``with`` block, or closing early removes the temporary and leaves ``path``
as it was (an existing store there untouched); a killed process leaves at
most the temporary ``.<stem>.tmp-<hex>.zarr`` beside it, never a
half-written store at ``path``. Its ``positions`` array is written last, by
:meth:`close`, so such a temporary is not a readable probe set either
(:meth:`ProbeSet.load` rejects it: "positions: missing array").

Memory is bounded by one block plus one chunk (the buffer that gathers
blocks that do not fill whole chunks), never by the number of probes
(beyond the ``(P, 3)`` positions themselves).
"""
from __future__ import annotations

import errno
from pathlib import Path

import numpy as np

from probewarp.baker import config
from probewarp.baker.validation import FACES_DTYPES, ProbeSetError, _check_block, _check_global
from probewarp.format import constants
from probewarp.format.atomic import atomic_dir


def default_chunk_probes(resolution: int, dtype=np.float16) -> int:
    """Probes per chunk of ``faces`` that :meth:`ProbeSet.save` would choose
    (before capping at the set's size): at most ``config.ZARR_CHUNK_PROBES``
    and ``config.ZARR_CHUNK_MAX_BYTES`` uncompressed."""
    R = int(resolution)
    per_probe = 6 * R * R * 3 * np.dtype(dtype).itemsize
    return max(1, min(config.ZARR_CHUNK_PROBES, config.ZARR_CHUNK_MAX_BYTES // per_probe))


def _shape_only_set(positions, shape, dtype, grid_shape, lo, hi, names, source):
    """A :class:`ProbeSet` whose ``faces`` is a zero-stride stand-in of ``shape``
    (no memory): what the global checks and the error messages need."""
    # imported here: probeset may one day write through this module
    from probewarp.baker.probeset import ProbeSet
    return ProbeSet(positions, np.broadcast_to(np.zeros((), dtype), shape), grid_shape, lo, hi,
                    names=names, source=source)


class ZarrProbeWriter:
    """Write a ``.zarr`` probe set block by block (see the module docstring).

    Parameters
    ----------
    path : str or Path
        The store to write (a directory ending ``.zarr``).
    positions : (P, 3) float
        Probe centres (stored as float32), all of them, up front.
    resolution : int
        Face resolution R.
    dtype : float16 or float32
        Storage dtype of ``faces``. Writing float32 (or float64) blocks as
        float16 rejects radiance above ``constants.FP16_MAX``.
    grid_shape, lo, hi : optional
        Regular-grid description, as in :class:`ProbeSet` (``lo``/``hi``
        default to the first and last probe when ``grid_shape`` is given).
    names : list of str, optional
        Probe names (stored in the group attributes; used in messages).
    chunk_probes : int, optional
        Probes per chunk (default :func:`default_chunk_probes`, capped at P).
        Blocks that cover whole chunks are written straight through; others
        are gathered in a one-chunk buffer.
    overwrite : bool
        Replace an existing store at ``path`` when the writer closes (only a
        zarr store is replaced; anything else raises ``FileExistsError``).

    Raises
    ------
    ProbeSetError
        Positions or grid fail the checks of :func:`validate` (nothing written).
    FileExistsError
        Something is at ``path`` and ``overwrite`` is False, or it is not a
        zarr store.

    Notes
    -----
    ``write(start, block)`` takes blocks in order: ``start`` must be the
    number of probes written so far (:attr:`n_written`). Use it as a context
    manager, or call :meth:`close` (commit) or :meth:`abort` yourself; a
    writer that is garbage-collected open leaves its temporary behind (as a
    kill does), never a store at ``path``.
    """

    def __init__(self, path, positions, resolution: int, dtype=np.float16, grid_shape=None, lo=None,
                 hi=None, *, names=None, chunk_probes: int | None = None, overwrite: bool = True):
        import zarr

        path = Path(path)
        if not path.name.lower().endswith(".zarr"):
            raise ValueError(f"{path}: a streamed probe set is a .zarr directory")
        out_dtype = np.dtype(dtype)
        if out_dtype not in FACES_DTYPES:
            raise ValueError(f"dtype must be float16 or float32, got {out_dtype}")
        R = int(resolution)
        if R < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise FileExistsError(errno.EEXIST, "probe set exists (overwrite=False)", str(path))
            if not (path.is_dir() and (path / "zarr.json").exists()):
                raise FileExistsError(errno.EEXIST, "refusing to replace something that is not a zarr store",
                                      str(path))
        self.path = path
        self.label = str(path)
        pos = np.asarray(positions)
        P = int(pos.shape[0]) if pos.ndim >= 1 else 0
        ps = _shape_only_set(pos, (P, 6, R, R, 3), out_dtype, grid_shape, lo, hi, names, str(path))
        _check_global(ps, self.label, sanitize=False)
        self._ps = ps
        self.n_probes, self.resolution, self.dtype = P, R, out_dtype
        if chunk_probes is None:
            chunk_probes = default_chunk_probes(R, out_dtype)
        self.chunk_probes = int(min(max(1, int(chunk_probes)), P))
        self.n_written = 0
        self._buf = None          # (chunk_probes, 6, R, R, 3) out_dtype, allocated on first need
        self._buf_start = 0       # probe index of the buffer's first row
        self._buf_n = 0           # rows filled
        self._closed = False
        self._cm = atomic_dir(path)
        self.tmp = self._cm.__enter__()
        try:
            attrs = dict(format=constants.PROBESET_FORMAT, version=constants.PROBESET_FORMAT_VERSION)
            if ps.names is not None:
                attrs["names"] = list(ps.names)
            g = zarr.open_group(str(self.tmp), mode="w", attributes=attrs)
            for key, a in self._arrays_small().items():
                if key != "positions":           # written by close(): see the class notes
                    g.create_array(key, data=a)
            self._group = g
            self._faces = g.create_array("faces", shape=(P, 6, R, R, 3),
                                         chunks=(self.chunk_probes, 6, R, R, 3), dtype=out_dtype)
        except BaseException as e:
            self._abort(e)
            raise

    # ----------------------------------------------------------------- setup
    def _arrays_small(self) -> dict:
        """``positions`` and the grid arrays exactly as ``ProbeSet._arrays_small``."""
        ps = self._ps
        out = dict(positions=np.ascontiguousarray(ps.positions, np.float32))
        if ps.grid_shape is not None:
            out["grid_shape"] = np.asarray(ps.grid_shape, np.int64)
            lo, hi = ps.lo, ps.hi
            if lo is None or hi is None:
                lo, hi = ps.positions[0], ps.positions[-1]
            out["lo"] = np.asarray(lo, np.float64)
            out["hi"] = np.asarray(hi, np.float64)
        return out

    # --------------------------------------------------------------- writing
    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, start: int, faces) -> None:
        """Write probes ``start .. start + len(faces) - 1``.

        Parameters
        ----------
        start : int
            Must equal :attr:`n_written` (blocks arrive in order, no gaps).
        faces : (n, 6, R, R, 3) float array
            Linear radiance, DESIGN-NOTES §1 layout; any float dtype (cast
            to the store's dtype after the check).

        Raises
        ------
        ProbeSetError
            NaN, +-Inf, negative radiance, or (float16 store, wider block)
            radiance above ``FP16_MAX``: the message names the file, the
            probe index, its position and the first bad texel. The writer is
            aborted: nothing is left at ``path``.
        ValueError
            Wrong shape, out-of-order ``start``, too many probes, or a closed
            writer (also aborts an open writer).
        """
        if self._closed:
            raise ValueError(f"{self.label}: writer is closed")
        try:
            block = np.asarray(faces)
            R, P = self.resolution, self.n_probes
            if block.ndim != 5 or block.shape[1:] != (6, R, R, 3):
                raise ValueError(f"{self.label}: block of shape {block.shape}, expected (n, 6, {R}, {R}, 3)")
            if block.dtype.kind != "f":
                raise ValueError(f"{self.label}: block dtype {block.dtype}, expected a float dtype")
            start = int(start)
            if start != self.n_written:
                raise ValueError(f"{self.label}: block starts at probe {start}, expected {self.n_written} "
                                 "(blocks are written in order, without gaps)")
            n = len(block)
            if start + n > P:
                raise ValueError(f"{self.label}: block of {n} probes at {start} runs past the {P} probes")
            if n == 0:
                return
            self._check(start, block)
            self._put(start, block)
            self.n_written = start + n
        except BaseException as e:
            self._abort(e)
            raise

    def _check(self, start: int, block: np.ndarray) -> None:
        fp16 = self.dtype == np.float16 and block.dtype != np.float16
        try:
            _check_block(block, np.arange(start, start + len(block)), self._ps, self.label, fp16)
        except ProbeSetError as e:
            i = e.probe
            if i is None or e.detail is None:
                raise
            where = self._ps.positions[i].tolist()
            raise ProbeSetError(f"{e.detail} (probe at position {where})", file=e.file, probe=i,
                                name=e.name, field=e.field) from None

    def _put(self, start: int, block: np.ndarray) -> None:
        """Whole chunks straight into the array, the rest through the chunk buffer."""
        C, P = self.chunk_probes, self.n_probes
        stop = start + len(block)
        pos = start
        # 1. top up a partly filled buffer
        if self._buf_n:
            take = min(stop, self._buf_start + C) - pos
            self._buf[self._buf_n:self._buf_n + take] = block[:take]
            self._buf_n += take
            pos += take
            self._flush_if_full()
        # 2. whole chunks (and the final, short chunk) straight through
        whole_stop = pos + ((stop - pos) // C) * C
        if stop == P:
            whole_stop = stop            # the last chunk may be short: it is complete
        if whole_stop > pos:
            self._faces[pos:whole_stop] = block[pos - start:whole_stop - start].astype(self.dtype, copy=False)
            pos = whole_stop
        # 3. the rest starts a new chunk: buffer it
        if pos < stop:
            if self._buf is None:
                self._buf = np.empty((C, 6, self.resolution, self.resolution, 3), self.dtype)
            self._buf_start, self._buf_n = pos, stop - pos
            self._buf[:self._buf_n] = block[pos - start:]
            self._flush_if_full()

    def _flush_if_full(self) -> None:
        end = min(self._buf_start + self.chunk_probes, self.n_probes)
        if self._buf_n and self._buf_start + self._buf_n == end:
            self._faces[self._buf_start:end] = self._buf[:self._buf_n]
            self._buf_n = 0

    # -------------------------------------------------------------- lifetime
    def _abort(self, exc: BaseException | None = None) -> None:
        """Remove the temporary store; ``path`` stays as it was."""
        if self._closed:
            return
        self._closed = True
        self._buf = None
        cm, self._cm = getattr(self, "_cm", None), None
        if cm is not None:
            if exc is None:
                exc = RuntimeError("probe writer aborted")
            cm.__exit__(type(exc), exc, exc.__traceback__)

    def abort(self) -> None:
        """Give up: remove the temporary store, leave ``path`` as it was."""
        self._abort()

    def close(self) -> Path:
        """Commit: move the finished store onto ``path`` (replacing an existing store).

        Returns
        -------
        Path of the written store.

        Raises
        ------
        ValueError
            Not every probe was written; the writer is aborted and nothing
            is left at ``path``.
        """
        if self._closed:
            raise ValueError(f"{self.label}: writer is closed")
        if self.n_written != self.n_probes or self._buf_n:
            err = ValueError(f"{self.label}: only {self.n_written} of {self.n_probes} probes were written; "
                             "nothing was saved")
            self._abort(err)
            raise err
        try:
            # positions last: until every probe is written the temporary store has no
            # ``positions``, so ProbeSet.load (and ``probewarp validate``) rejects a store a
            # killed writer left behind instead of reading its unwritten chunks as zeros.
            self._group.create_array("positions", data=self._arrays_small()["positions"])
        except BaseException as e:
            self._abort(e)
            raise
        self._closed = True
        self._buf = None
        self._group = None
        cm, self._cm = self._cm, None
        cm.__exit__(None, None, None)
        return self.path

    def __enter__(self) -> "ZarrProbeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self._abort(exc)
            return
        if not self._closed:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.n_written}/{self.n_probes} written"
        return (f"ZarrProbeWriter({str(self.path)!r}, P={self.n_probes}, R={self.resolution}, "
                f"dtype={self.dtype}, chunk_probes={self.chunk_probes}, {state})")
