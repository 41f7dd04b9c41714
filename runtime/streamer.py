"""Stream archive pages around a camera into a fixed GPU budget.

:class:`Streamer` owns everything ``shaders/common_probewarp.glsl`` reads:

- the archive's spatial hash (one SSBO, the whole field: a few bytes a probe),
  or for a scattered set its tetrahedral index (three SSBOs, the whole field:
  :mod:`probewarp.format.tetindex`; programs compiled with ``PW_SCATTERED``,
  which :attr:`Streamer.defines` sets),
- a page table (SSBO: page -> resident slot, or -1),
- ``page_slots`` slots, each holding one page: its prototypes in cube-map-array
  layers (one ``glTexSubImage3D`` per mip level, the levels the archive
  stores), their spheres and its probes' codes (SSBOs, records of
  :mod:`probewarp.format.layout`).

All GPU memory is allocated once, at construction: :attr:`budget_bytes` is
what the streamer will ever use, whatever the camera does. A background
thread reads, checks (CRC-32) and decompresses pages and packs their GPU
records (nothing is encoded at run time: mip levels come from the archive);
the render thread only copies finished pages to the GPU in
:meth:`update`, at most ``uploads_per_frame`` a call, and never waits on
disk (unless asked to with ``wait=True``, for offline decoding). When the
slots are full the least recently wanted page not needed now is evicted.

Pages the shader needs but that are not resident yet are handled by the
decoder's documented rule: their corners are dropped and the others
renormalised; with none left the decode has coverage 0 (alpha), for the
host's fallback. A page that fails its checks is reported in
:attr:`failed` and treated as absent; it never stops the renderer.

Threads: one loader thread, started at construction, joined by
:meth:`close` (also on ``with`` exit). GL calls happen only on the thread
that calls :meth:`update`/:meth:`bind` (the one whose context is current).
"""
from __future__ import annotations

import collections
import ctypes
import threading
import time
from pathlib import Path

import numpy as np

from probewarp.format import layout, spatialhash, tetindex, texformats
from probewarp.format.archive import ArchiveReader, blend_max
from probewarp.format.constants import GRID_FILL_RULE, GRID_FILL_STENCIL
from probewarp.format.errors import InputError
from probewarp.format.grid import axis_fill
from probewarp.runtime.context import GL_TEXTURE_CUBE_MAP_SEAMLESS, _gl, check_gl_error, ensure_alive
from probewarp.runtime.cubearray import CubemapArray

#: Most cube-map arrays the shader include can address (texture units).
MAX_ARRAYS = layout.MAX_ARRAYS


class _Loaded:
    __slots__ = ("page", "levels", "codes", "spheres", "error")

    def __init__(self, page, levels=None, codes=None, spheres=None, error=None):
        self.page, self.levels, self.codes, self.spheres, self.error = page, levels, codes, spheres, error


class Streamer:
    """Pages of an archive resident around a position, in a fixed GPU budget.

    Parameters
    ----------
    ctx : moderngl.Context
        Current on the calling thread (the render thread).
    archive : path
        A ``.pwa`` of a grid set (dense or sparse) or of a scattered set with
        the tetrahedral rule.
    page_slots : int
        Pages resident at once (at least ``min(8, n_pages)``: the 8 corners
        around a position may lie on 8 pages). The GPU budget follows from it
        (:attr:`budget_bytes`).
    radius : float, optional
        Prefetch radius: pages whose bounding box is within it of the position
        are wanted (nearest first), after the pages the position needs now.
        Default: one page diagonal (the mean over pages).
    uploads_per_frame : int or None
        Pages copied to the GPU per :meth:`update` at most (None: all ready).
    levels : int, optional
        Prototype mip levels to upload, at most the archive's
        (``ArchiveReader.prototype_levels``: down to the probes' resolution,
        ``1 + log2(Rp / R)``, whole 4x4 blocks for block formats). Default: all.

    Attributes
    ----------
    failed : dict
        page -> error message of pages that failed their checks (never retried).
    """

    def __init__(self, ctx, archive, *, page_slots: int = 16, radius: float | None = None,
                 uploads_per_frame: int | None = 2, levels: int | None = None):
        self.ctx = ctx
        self.reader = ArchiveReader(archive)
        self.path = Path(archive)
        self._thread = None
        self._gl_objects = []
        try:
            self._setup(page_slots, radius, uploads_per_frame, levels)
        except Exception:
            self.close()
            raise

    # -- set-up -------------------------------------------------------------
    def _setup(self, page_slots, radius, uploads_per_frame, levels):
        GL = _gl()
        meta, table = self.reader.meta, self.reader.table
        self.scattered = meta.get("grid") is None
        #: sparse grids of the fill rule (format.constants.GRID_FILL_RULE)
        self.grid_fill = not self.scattered and meta.get("interpolation") == GRID_FILL_RULE
        #: most probes one position's stencil names (GLSL PW_CODE_CORNERS; code records hold
        #: code_corners * N entries: layout.code_record_dtype)
        self.code_corners = 4 if self.scattered else GRID_FILL_STENCIL if self.grid_fill else layout.CODE_CORNERS
        if self.scattered and meta.get("interpolation") != "tetrahedral":
            raise InputError(f"{self.path}: field interpolation: {meta.get('interpolation')!r}: the GL runtime "
                             "decodes scattered sets by the tetrahedral rule only; bake the set again "
                             "(archives before it blend the 8 nearest probes, which has no GLSL twin)")
        self.meta = meta
        self.n_pages = int(table.size)
        self.fmt = meta["texel_format"]
        self.Rp = int(meta["prototype_res"])
        self.R = int(meta["probe_res"])
        self.N = int(meta["n_taps"])
        self.slot_prototypes = max(1, int(table["n_prototypes"].max(initial=1)))
        self.page_probes = max(1, int(table["n_probes"].max(initial=1)))
        if self.page_probes > spatialhash.MAX_PAGE_PROBES:
            raise InputError(f"{self.path}: field n_probes: a page table entry claims {self.page_probes} "
                             f"probes, more than a page can hold ({spatialhash.MAX_PAGE_PROBES})")
        need = min(4 if self.scattered else 8, self.n_pages)
        self.page_slots = min(int(page_slots), self.n_pages)
        if self.page_slots < need:
            raise ValueError(f"page_slots must be at least {need} (the {need} probes around a position "
                             f"may lie on {need} pages), got {page_slots}")
        max_cubes = int(GL.glGetIntegerv(GL.GL_MAX_ARRAY_TEXTURE_LAYERS)) // 6
        self.pages_per_array = min(self.page_slots, max_cubes // self.slot_prototypes)
        if self.pages_per_array < 1:
            raise InputError(f"{self.path}: pages of {self.slot_prototypes} prototypes exceed this GL's "
                             f"{max_cubes} cubemaps per array; bake with fewer prototypes per page")
        self.n_arrays = -(-self.page_slots // self.pages_per_array)
        if self.n_arrays > MAX_ARRAYS:
            raise ValueError(f"{self.page_slots} page slots need {self.n_arrays} cube-map arrays of "
                             f"{self.pages_per_array} pages; at most {MAX_ARRAYS}: lower page_slots")
        # the mip chain comes from the archive (format version 3 stores it;
        # older files: see ArchiveReader.prototype_levels); ``levels`` may ask for fewer
        available = self.reader.prototype_levels
        self.levels = max(1, min(int(levels or available), available))
        self.grid = self.reader.grid
        diag = np.linalg.norm(table["hi"].astype(np.float64) - table["lo"].astype(np.float64), axis=1)
        if self.scattered:
            self.tet_index = self._scattered_index()
            self._probe_page = spatialhash.split_record(self.tet_index.probes["record"])[0].astype(np.int64)
            self.radius = float(radius if radius is not None else float(diag.mean()))
        else:
            self.hash_table, self.hash_max_probe = self.reader.hash()
            self._check_hash(table)
            self.radius = float(radius if radius is not None else max(float(diag.mean()), float(self.grid.step.max())))
        self.uploads_per_frame = uploads_per_frame

        check_gl_error("GL state before Streamer creation (not probewarp's)", self.ctx)
        GL.glEnable(GL_TEXTURE_CUBE_MAP_SEAMLESS)
        self.arrays = []
        for a in range(self.n_arrays):
            pages_here = min(self.pages_per_array, self.page_slots - a * self.pages_per_array)
            arr = CubemapArray(self.ctx, self.Rp, pages_here * self.slot_prototypes, self.fmt, self.levels)
            self.arrays.append(arr)
            self._gl_objects.append(arr)
        if self.scattered:
            t = self.tet_index
            self._index_buffers = {"probes": self.ctx.buffer(t.probes.tobytes()),
                                   "simplices": self.ctx.buffer(t.simplices.tobytes()),
                                   "cells": self.ctx.buffer(t.cells.tobytes())}
        else:
            self._index_buffers = {"hash": self.ctx.buffer(layout.pack_hash(self.hash_table).tobytes())}
        self.page_slot = np.full(self.n_pages, layout.PAGE_ABSENT, layout.PAGE_SLOT_DTYPE)
        self.pages_buffer = self.ctx.buffer(self.page_slot.tobytes())
        # bytes of one slot's codes and spheres in their buffers
        self._codes_stride = self.page_probes * self.N * layout.CODE_DTYPE.itemsize
        self._spheres_stride = self.slot_prototypes * layout.SPHERE_DTYPE.itemsize
        max_ssbo = int(GL.glGetIntegerv(GL.GL_MAX_SHADER_STORAGE_BLOCK_SIZE))
        for what, size in (("codes", self.page_slots * self._codes_stride),
                           ("spheres", self.page_slots * self._spheres_stride)):
            if size > max_ssbo:
                raise ValueError(f"{self.path}: {self.page_slots} slots need a {what} buffer of {size} bytes, "
                                 f"more than this GL's {max_ssbo}: lower page_slots")
        self.codes_buffer = self.ctx.buffer(reserve=self.page_slots * self._codes_stride)
        self.spheres_buffer = self.ctx.buffer(reserve=self.page_slots * self._spheres_stride)
        self._gl_objects += [*self._index_buffers.values(), self.pages_buffer, self.codes_buffer,
                             self.spheres_buffer]
        check_gl_error("Streamer allocation", self.ctx)

        self.slot_page = np.full(self.page_slots, -1, np.int64)
        self.last_wanted = np.zeros(self.n_pages, np.int64)
        self.frame = 0
        self.failed: dict[int, str] = {}
        self.stats = collections.Counter()
        self._lock = threading.Condition()
        self._pending: list[int] = []
        self._inflight: set[int] = set()
        self._ready: collections.deque = collections.deque()
        self._rank: dict[int, int] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._loader, name=f"probewarp-streamer:{self.path.name}",
                                        daemon=True)
        self._thread.start()

    @property
    def hash_buffer(self):
        """The spatial hash's SSBO (grid archives; None for scattered ones)."""
        return self._index_buffers.get("hash")

    def _scattered_index(self):
        """The archive's tetrahedral index (version 4 stores it; the reader
        checks every id the shader follows)."""
        tet = self.reader.tet_index()
        if tet is None:
            raise InputError(f"{self.path}: field tetra_index: a scattered archive written before format "
                             "version 4 stores no tetrahedral index, which the GL runtime needs; bake the set "
                             "again (the CPU decoder builds the index itself)")
        return tet

    def _check_hash(self, table):
        """Every index the shader will follow must land inside a buffer: hash
        records name an existing page and a probe inside it, the probe limit
        fits the table. Checked before anything reaches the GPU."""
        h = np.asarray(self.hash_table)
        if h.ndim != 2 or h.shape[1] != 2 or h.shape[0] < 1 or h.shape[0] & (h.shape[0] - 1):
            raise InputError(f"{self.path}: field hash: table of shape {h.shape} is not (power of two, 2)")
        if not 1 <= int(self.hash_max_probe) <= h.shape[0]:
            raise InputError(f"{self.path}: field hash: max_probe {self.hash_max_probe} outside "
                             f"[1, {h.shape[0]}]")
        rec = h[:, 1][h[:, 0] != spatialhash.EMPTY]
        k = spatialhash.first_bad_record(rec, table["n_probes"])
        if k >= 0:
            page, local = spatialhash.split_record(rec)
            raise InputError(f"{self.path}: field hash: a record names page {int(page[k])}, probe "
                             f"{int(local[k])}, which the page table does not hold")

    # -- budget ---------------------------------------------------------------
    @property
    def texture_bytes(self) -> int:
        """Bytes of the prototype cube-map arrays (all mip levels)."""
        face = texformats.stored_layout
        per_cube = 0
        for lvl in range(self.levels):
            r = max(1, self.Rp >> lvl)
            shp, dt = face(self.fmt, r)
            per_cube += 6 * int(np.prod(shp)) * dt.itemsize
        return per_cube * sum(a.layers for a in self.arrays)

    def queried_gpu_bytes(self) -> int:
        """GPU memory of everything the streamer holds, asked of GL (texture
        levels' sizes and formats, buffer sizes), not computed from the
        parameters: what :attr:`budget_bytes` promises, measured."""
        GL = _gl()
        total = sum(a.queried_bytes() for a in self.arrays)
        for b in (*self._index_buffers.values(), self.pages_buffer, self.codes_buffer, self.spheres_buffer):
            v = ctypes.c_int64(0)
            GL.glGetNamedBufferParameteri64v(b.glo, GL.GL_BUFFER_SIZE, ctypes.byref(v))
            total += int(v.value)
        return total

    @property
    def budget_bytes(self) -> int:
        """All GPU memory the streamer holds: textures plus buffers. Fixed at construction."""
        return self.texture_bytes + sum(b.size for b in (*self._index_buffers.values(), self.pages_buffer,
                                                         self.codes_buffer, self.spheres_buffer))

    @property
    def resident(self) -> np.ndarray:
        """(n_pages,) bool: pages on the GPU now."""
        return self.page_slot >= 0

    @property
    def defines(self) -> dict:
        """``#define`` values a program including common_probewarp.glsl needs."""
        return dict(layout.glsl_defines(), PW_N_TAPS=self.N, PW_DOMAIN_TONEMAP=self.meta["domain"] == "tonemap",
                    PW_N_ARRAYS=self.n_arrays, PW_TONEMAP_Y_MAX=blend_max(self.meta),
                    PW_SCATTERED=int(self.scattered), PW_GRID_FILL=int(self.grid_fill),
                    PW_CODE_CORNERS=self.code_corners)

    # -- which pages ------------------------------------------------------------
    def corner_pages(self, positions) -> np.ndarray:
        """Pages holding the probes a decode at each position blends (the existing
        8 lattice corners of a grid; the corners of the simplex the tetrahedral
        rule picks for a scattered set): the pages it reads (sorted, unique)."""
        if self.scattered:
            ids, _, k = tetindex.lookup(self.tet_index, np.asarray(positions, np.float64).reshape(-1, 3),
                                        with_corners=True)
            return np.unique(self._probe_page[ids[np.arange(4) < k[:, None]]])
        ijk, w = self.grid.corners(positions)
        rec = spatialhash.lookup(self.hash_table, self.hash_max_probe, self.grid.keys(ijk))
        if self.grid_fill:
            rec, _ = axis_fill(self.grid, (self.hash_table, self.hash_max_probe), ijk, rec, w)
        rec = rec[rec != spatialhash.EMPTY]
        return np.unique(spatialhash.split_record(rec)[0])

    def spatial_order(self, positions) -> np.ndarray:
        """An order of ``positions`` (Q, 3) that visits them cell by cell (lattice
        cells of a grid, index cells of a scattered set), so that consecutive
        positions read the same pages."""
        q = np.asarray(positions, np.float64).reshape(-1, 3)
        if self.scattered:
            t = self.tet_index
            cell = np.floor((q - t.lo.astype(np.float64)) * t.scale.astype(np.float64))
        else:
            cell = np.floor((q - self.grid.lo) / self.grid.step)
        return np.lexsort(cell.T[::-1])

    def wanted_pages(self, position) -> list[int]:
        """Pages wanted at ``position``, most urgent first, at most ``page_slots``:
        those the decode reads now, then those within :attr:`radius`, nearest first."""
        x = np.asarray(position, np.float64).reshape(3)
        now = [int(p) for p in self.corner_pages(x)]
        t = self.reader.table
        lo, hi = t["lo"].astype(np.float64), t["hi"].astype(np.float64)
        dist = np.linalg.norm(np.maximum(0.0, np.maximum(lo - x, x - hi)), axis=1)
        near = np.flatnonzero(dist <= self.radius)
        near = near[np.argsort(dist[near], kind="stable")]
        seen = set(now)
        out = now + [int(p) for p in near if int(p) not in seen]
        return out[:self.page_slots]

    # -- render thread ----------------------------------------------------------
    def update(self, position, *, wait: bool = False, timeout: float = 60.0) -> dict:
        """Ask for the pages around ``position`` and upload those that are ready.

        Never blocks on disk unless ``wait`` (then it returns once every page the
        decode at ``position`` reads is resident or failed; raises TimeoutError
        after ``timeout`` seconds). Returns this call's counts: uploaded,
        evicted, missing (wanted now, not resident), resident, inflight.
        """
        return self._update(self.wanted_pages(position), self.corner_pages(position), wait, timeout)

    def require(self, positions, *, timeout: float = 60.0) -> dict:
        """Make every page a decode at any of ``positions`` reads resident (blocking).
        Raises ValueError when they do not fit in ``page_slots``."""
        need = [int(p) for p in self.corner_pages(positions)]
        if len(need) > self.page_slots:
            raise ValueError(f"{len(need)} pages needed at once, but only {self.page_slots} slots")
        return self._update(need, np.asarray(need, np.int64), True, timeout)

    def _update(self, wanted, needed_now, wait, timeout):
        ensure_alive(self.ctx, f"{self.path}: Streamer.update")
        self.frame += 1
        wanted = list(wanted)
        self._rank = {p: i for i, p in enumerate(wanted)}
        if wanted:
            self.last_wanted[wanted] = self.frame
        counts = collections.Counter()
        self._request(wanted)
        t_end = time.monotonic() + timeout
        while True:
            budget = None if wait else self.uploads_per_frame
            counts += self._drain(budget)
            if not wait:
                break
            needed = [p for p in needed_now if self.page_slot[p] < 0 and p not in self.failed]
            if not needed:
                break
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError(f"{self.path}: the streamer's loader thread is not running")
            with self._lock:
                if not self._ready:
                    left = t_end - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"{self.path}: pages {needed} not loaded in {timeout} s")
                    self._lock.wait(min(left, 0.1))
            self._request(wanted)
        if counts["uploaded"] or counts["evicted"]:
            self.pages_buffer.write(self.page_slot.tobytes())
        for k in ("uploaded", "evicted", "dropped", "failed"):
            counts[k] = int(counts[k])
        counts["missing"] = int(sum(1 for p in needed_now if self.page_slot[p] < 0))
        counts["resident"] = int((self.page_slot >= 0).sum())
        with self._lock:
            counts["inflight"] = len(self._inflight)
        self.stats.update({k: v for k, v in counts.items() if k in ("uploaded", "evicted", "dropped")})
        return dict(counts)

    def _request(self, wanted):
        with self._lock:
            ready = {r.page for r in self._ready}
            self._pending = [p for p in wanted if self.page_slot[p] < 0 and p not in self.failed
                             and p not in self._inflight and p not in ready]
            self._lock.notify_all()

    def _drain(self, budget) -> collections.Counter:
        counts = collections.Counter()
        while budget is None or counts["uploaded"] < budget:
            with self._lock:
                if not self._ready:
                    break
                # most urgent first: a page needed now must not queue behind prefetches
                best = min(range(len(self._ready)),
                           key=lambda i: self._rank.get(self._ready[i].page, len(self._rank)))
                item = self._ready[best]
                del self._ready[best]
                self._lock.notify_all()
            if item.error is not None:
                self.failed[item.page] = item.error
                counts["failed"] += 1
                continue
            if self.page_slot[item.page] >= 0:
                continue
            slot = self._free_slot(counts)
            if slot is None:      # every slot holds a page wanted now: drop it, re-read later
                counts["dropped"] += 1
                continue
            self._upload(slot, item)
            counts["uploaded"] += 1
        return counts

    def _free_slot(self, counts):
        free = np.flatnonzero(self.slot_page < 0)
        if free.size:
            return int(free[0])
        age = self.last_wanted[self.slot_page]
        victim = int(np.argmin(age))
        if age[victim] >= self.frame:
            return None
        self.page_slot[self.slot_page[victim]] = -1
        self.slot_page[victim] = -1
        counts["evicted"] += 1
        return victim

    def _upload(self, slot, item):
        a, first = divmod(slot, self.pages_per_array)
        arr = self.arrays[a]
        for lvl, data in enumerate(item.levels):
            arr.upload_stored(first * self.slot_prototypes, data, lvl)
        self.codes_buffer.write(item.codes.tobytes(), offset=slot * self._codes_stride)
        self.spheres_buffer.write(item.spheres.tobytes(), offset=slot * self._spheres_stride)
        self.slot_page[slot] = item.page
        self.page_slot[item.page] = slot

    # -- loader thread -------------------------------------------------------------
    def _loader(self):
        while True:
            with self._lock:
                while not self._stop and (not self._pending or len(self._ready) >= self.page_slots):
                    self._lock.wait()
                if self._stop:
                    return
                page = self._pending.pop(0)
                self._inflight.add(page)
            item = self._load(page)
            with self._lock:
                self._inflight.discard(page)
                self._ready.append(item)
                self._lock.notify_all()

    def _load(self, page) -> _Loaded:
        try:
            f = self.reader.page_stored(page)
            rec = self.reader.table[page]
            n, m = int(rec["n_probes"]), int(rec["n_prototypes"])
            idx = np.asarray(f["indices"])
            # what the shader indexes must fit the slot (the reader checks this too)
            if idx.shape != (n, self.N) or (idx.size and (int(idx.min()) < 0 or int(idx.max()) >= m)) \
                    or np.asarray(f["centres"]).shape[0] != m or m > self.slot_prototypes \
                    or n > self.page_probes:
                raise InputError(f"page {page}: field indices: codes or prototypes do not fit the page's "
                                 f"{n} probes and {m} prototypes")
            levels = [np.ascontiguousarray(v) for v in f["prototype_levels"][:self.levels]]
            return _Loaded(page, levels, layout.pack_codes(f["indices"], f["weights"]),
                           layout.pack_spheres(f["centres"], f["radii"]))
        except Exception as e:        # a bad page must not stop the renderer
            return _Loaded(page, error=f"{type(e).__name__}: {e}")

    # -- shaders ---------------------------------------------------------------------
    def bind(self, program=None, *, unit: int | None = None, bindings=None) -> None:
        """Bind buffers and textures where common_probewarp.glsl expects them and
        set the ``pw_*`` uniforms of ``program``.

        ``unit``: first texture unit of the cube-map arrays (default
        ``layout.UNIT_PROTOTYPES``); ``bindings``: SSBO binding points, a dict
        with keys hash, pages, codes, spheres (default ``layout.BINDINGS``).
        Programs compiled with other values need the matching defines."""
        ensure_alive(self.ctx, f"{self.path}: Streamer.bind")
        unit = layout.UNIT_PROTOTYPES if unit is None else int(unit)
        bindings = dict(layout.BINDINGS, **(bindings or {}))
        for name, buf in (*self._index_buffers.items(), ("pages", self.pages_buffer),
                          ("codes", self.codes_buffer), ("spheres", self.spheres_buffer)):
            buf.bind_to_storage_buffer(bindings[name])
        for i, arr in enumerate(self.arrays):
            arr.bind(unit + i)
        if program is not None:
            for name, value in self.uniforms().items():
                if name in program:
                    program[name].value = value

    def uniforms(self) -> dict:
        """Values of the ``pw_*`` uniforms, exactly the names of ``layout.UNIFORMS``
        (``layout.SCATTERED_UNIFORMS`` for scattered archives)."""
        common = {"pw_page_probes": self.page_probes, "pw_slot_prototypes": self.slot_prototypes,
                  "pw_pages_per_array": self.pages_per_array, "pw_prototype_res": self.Rp,
                  "pw_max_lod": float(self.levels - 1)}
        if self.scattered:
            t = self.tet_index
            out = {"pw_cell_lo": tuple(float(v) for v in t.lo), "pw_cell_hi": tuple(float(v) for v in t.hi),
                   "pw_cell_scale": tuple(float(v) for v in t.scale),
                   "pw_cell_shape": tuple(int(v) for v in t.shape), "pw_cell_max_items": t.max_items, **common}
            assert tuple(out) == layout.SCATTERED_UNIFORMS, "Streamer.uniforms() and layout disagree"
            return out
        out = {"pw_grid_lo": tuple(float(v) for v in self.grid.lo),
               "pw_grid_step": tuple(float(v) for v in self.grid.step),
               "pw_grid_shape": tuple(int(v) for v in self.grid.shape),
               "pw_hash_mask": int(self.hash_table.shape[0] - 1),
               "pw_hash_max_probe": int(self.hash_max_probe),
               "pw_page_probes": self.page_probes, "pw_slot_prototypes": self.slot_prototypes,
               "pw_pages_per_array": self.pages_per_array, "pw_prototype_res": self.Rp,
               "pw_max_lod": float(self.levels - 1)}
        assert tuple(out) == layout.UNIFORMS, "Streamer.uniforms() and layout.UNIFORMS disagree"
        return out

    # -- shutdown -----------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Stop and join the loader thread, release GPU memory, close the archive
        (idempotent)."""
        if self._thread is not None:
            with self._lock:
                self._stop = True
                self._lock.notify_all()
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"{self.path}: the streamer's loader thread did not stop in {timeout} s")
            self._thread = None
        for obj in self._gl_objects:
            obj.release()
        self._gl_objects = []
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    @property
    def alive(self) -> bool:
        """True while the loader thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
