"""Baking a probe set into an archive, and the CPU reference decoder.

:func:`split_pages` cuts a probe set into spatial bricks of about K probes;
:func:`bake` fits one :class:`.prototypes.ProbeCodec` per page and returns
the pages (and a report) for :func:`.archive.write_archive`.

:class:`Decoder` is the CPU reference decoder (numba): it decodes at any
position (DESIGN-NOTES §4). The interpolation rule:

- **grid sets**: the codes of the 8 grid probes around the position are
  blended with trilinear weights; outside the grid the position is clamped to
  the grid box *for choosing the probes and weights only*, and every
  prototype is still warped to the true position;
- **scattered sets**: inverse-distance weights (power 2) over the 8 nearest
  probes, exact at a probe's own position.

The blend happens in the blend domain and the result is mapped back to
linear radiance once, as the GLSL decoder does.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.spatial import cKDTree

from probewarp.baker import kernels as K
from probewarp.format import spatialhash
from probewarp.format.archive import ArchiveReader, Page, build_hash
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid
from probewarp.baker.metrics import QualityAccumulator, inverse_tonemap
from probewarp.baker.prototypes import ProbeCodec, from_domain, sub_directions


def split_pages(positions: np.ndarray, page_probes: int, grid: Grid | None = None) -> list[np.ndarray]:
    """Spatial bricks of about ``page_probes`` probes: list of index arrays.

    Dense grid sets (``grid``, a dense :class:`~probewarp.format.grid.Grid`)
    are cut into bricks of whole grid cells (:meth:`Grid.bricks`); other sets by recursive median splits along the longest
    axis. One page when ``page_probes >= P``.
    """
    P = positions.shape[0]
    if page_probes >= P:
        return [np.arange(P)]
    if grid is not None and grid.dense:
        if grid.n_points != P:
            raise ValueError(f"a dense grid of {grid.n_points} points holds {P} probes")
        return grid.bricks(page_probes)
    out, stack = [], [np.arange(P)]
    while stack:
        ids = stack.pop()
        if ids.size <= page_probes:
            out.append(ids)
            continue
        pts = positions[ids]
        ax = int(np.argmax(np.ptp(pts, axis=0)))
        order = ids[np.argsort(pts[:, ax], kind="stable")]
        half = order.size // 2
        stack += [order[half:], order[:half]]
    return sorted(out, key=lambda a: int(a[0]))


def bake(positions, faces, *, n_prototypes=256, n_taps=4, prototype_res=None, page_probes=16384,
         grid: Grid | None = None, seed=0, progress=None, **codec_kw):
    """Fit every page.

    Parameters
    ----------
    positions : (P, 3) float
    faces : (P, 6, R, R, 3) float16/float32, or a lazy array indexable by probe lists
    progress : callable(page, n_pages, stage, info) or None

    Returns
    -------
    pages : list of :class:`.archive.Page`
    report : dict (per-page history, seconds, parameters)
    """
    positions = np.asarray(positions, np.float64)
    groups = split_pages(positions, page_probes, grid)
    pages, histories = [], []
    t0 = time.perf_counter()
    for p, ids in enumerate(groups):
        M = min(int(n_prototypes), ids.size)
        cb = None if progress is None else (lambda st, info, p=p: progress(p, len(groups), st, info))
        codec = ProbeCodec(n_prototypes=M, n_taps=n_taps, prototype_res=prototype_res, seed=seed + p,
                           progress=cb, **codec_kw)
        codec.fit(positions[ids], np.asarray(faces[ids]))
        brick = grid.brick_of(ids) if grid is not None and grid.dense else None
        pages.append(Page(centres=codec.centres_, radii=codec.radii_, prototypes=codec.prototypes_,
                          probe_ids=ids.astype(np.int64), positions=positions[ids],
                          indices=codec.indices_, weights=codec.weights_, brick=brick))
        histories.append(codec.history_)
        last = codec
    report = {"n_pages": len(groups), "seconds": time.perf_counter() - t0, "pages": histories,
              "probe_res": last.R_, "prototype_res": last.Rp_, "domain": last.domain,
              "texel_format": last.texel_format, "n_taps": n_taps}
    return pages, report


class Decoder:
    """CPU reference decoder over a whole archive (or a list of pages).

    Parameters
    ----------
    source : path of an archive, or (pages, meta)

    Notes
    -----
    Grid sets (dense or sparse) find the 8 lattice points around a position
    through the archive's spatial hash (:mod:`.spatialhash`), exactly as the
    GLSL decoder does. A corner that holds no probe (a sparse grid's empty
    cell, or, on the GPU, a page that is not resident) is dropped and the
    other corners' trilinear weights are renormalised; if those weights sum
    to 0 the present corners share equally; with no corner present the
    position has no data and decodes to 0 (the GLSL decoder returns alpha 0).
    """

    def __init__(self, source):
        if isinstance(source, tuple):
            pages, meta = source
            table = build_hash(meta, pages) if meta.get("grid") is not None else None
        else:
            with ArchiveReader(source) as ar:
                meta = ar.meta
                pages = [ar.page(i) for i in range(ar.n_pages)]
                table = ar.hash()
        self.meta = meta
        self.domain = meta["domain"]
        self.Rp = int(meta["prototype_res"])
        offs = np.cumsum([0] + [pg.centres.shape[0] for pg in pages])
        self.centres = np.ascontiguousarray(np.concatenate([pg.centres for pg in pages]))
        self.radii = np.ascontiguousarray(np.concatenate([pg.radii for pg in pages]))
        self.J = np.ascontiguousarray(np.concatenate([pg.prototypes for pg in pages]).reshape(
            offs[-1], -1, 3).astype(np.float32))
        P = int(meta["n_probes"])
        N = int(meta["n_taps"])
        self.codes_idx = np.zeros((P, N), np.int32)
        self.codes_w = np.zeros((P, N), np.float32)
        self.positions = np.zeros((P, 3))
        for pg, o in zip(pages, offs[:-1]):
            self.codes_idx[pg.probe_ids] = pg.indices + o
            self.codes_w[pg.probe_ids] = pg.weights
            self.positions[pg.probe_ids] = pg.positions
        #: probe id of (page, local): _page_ids[_page_first[page] + local]
        self._page_first = np.cumsum([0] + [pg.probe_ids.size for pg in pages])
        self._page_ids = np.concatenate([pg.probe_ids for pg in pages]).astype(np.int64)
        self.grid = Grid.from_meta(meta)
        self.hash = table
        self._tree = None

    def stencil(self, q: np.ndarray, resident=None):
        """Probes and weights blended at each query: (Q, 8) int64 ids, (Q, 8) float64 weights.

        ``resident`` (grid sets; optional ``(n_pages,)`` bool) emulates the GPU
        streamer: corners on pages not resident are dropped like empty cells.
        Rows with no probe at all have all-zero weights.
        """
        q = np.asarray(q, np.float64)
        if self.grid is not None:
            ijk, w = self.grid.corners(q)
            rec = spatialhash.lookup(*self.hash, self.grid.keys(ijk))
            present = rec != spatialhash.EMPTY
            page, local = spatialhash.split_record(np.where(present, rec, 0))
            if resident is not None:
                present &= np.asarray(resident, bool)[page]
            ids = np.where(present, self._page_ids[self._page_first[page] + local], 0)
            w = np.where(present, w, 0.0)
            total = w.sum(axis=1, keepdims=True)
            count = present.sum(axis=1, keepdims=True)
            w = np.where(total > 0, w / np.where(total > 0, total, 1.0),
                         present / np.maximum(count, 1))
            return ids, w
        if self._tree is None:
            self._tree = cKDTree(self.positions)
        k = min(8, self.positions.shape[0])
        dist, ids = self._tree.query(q, k=k)
        dist, ids = dist.reshape(q.shape[0], k), ids.reshape(q.shape[0], k)
        w = 1.0 / np.maximum(dist, 1e-12) ** 2
        exact = dist[:, 0] <= 1e-9
        w[exact] = 0.0
        w[exact, 0] = 1.0
        return ids, w / w.sum(axis=1, keepdims=True)

    def decode(self, positions: np.ndarray, R: int | None = None, resident=None) -> np.ndarray:
        """Radiance at arbitrary positions: (Q, 3) -> (Q, 6, R, R, 3) float32.

        ``R`` defaults to the baked probes' resolution; if the prototypes are
        finer (``Rp = k R``) each texel averages ``k x k`` warped sub-samples.
        ``resident``: see :meth:`stencil`.
        """
        q = np.ascontiguousarray(np.asarray(positions, np.float64).reshape(-1, 3))
        R = int(R or self.meta["probe_res"])
        if self.Rp > R and self.Rp % R:
            raise InputError(f"--res {R}: must divide the prototype resolution {self.Rp} (or be at least it)")
        k = max(1, self.Rp // R)
        ids, sw = self.stencil(q, resident)
        N = self.codes_idx.shape[1]
        idx = np.ascontiguousarray(self.codes_idx[ids].reshape(q.shape[0], -1))
        w = np.ascontiguousarray((self.codes_w[ids] * sw[..., None]).reshape(q.shape[0], -1).astype(np.float32))
        assert idx.shape[1] == ids.shape[1] * N
        sub = sub_directions(R, k)
        out = np.empty((q.shape[0], sub.shape[0], 3), np.float32)
        K._render(q, sub, self.centres, self.radii, self.J, self.Rp, idx, w, out)
        return from_domain(out, self.domain, R)

    def radiance(self, position, directions, resident=None) -> np.ndarray:
        """Radiance at one position in arbitrary directions (no sub-sampling):
        (3,), (T, 3) unit -> (T, 3) float32. The CPU twin of GLSL ``pw_decode``
        at level 0 (what a camera at ``position`` sees)."""
        q = np.ascontiguousarray(np.asarray(position, np.float64).reshape(1, 3))
        d = np.asarray(directions, np.float64).reshape(-1, 3)
        d = np.ascontiguousarray((d / np.linalg.norm(d, axis=1, keepdims=True))[:, None, :])
        ids, sw = self.stencil(q, resident)
        idx = np.ascontiguousarray(self.codes_idx[ids].reshape(1, -1))
        w = np.ascontiguousarray((self.codes_w[ids] * sw[..., None]).reshape(1, -1).astype(np.float32))
        out = np.empty((1, d.shape[0], 3), np.float32)
        K._render(q, d, self.centres, self.radii, self.J, self.Rp, idx, w, out)
        y = out[0]
        return (inverse_tonemap(y) if self.domain == "tonemap" else np.maximum(y, 0.0)).astype(np.float32)

    def score(self, positions: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> QualityAccumulator:
        """Decode at ``positions`` (Q, 3) chunk by chunk and score against
        ``reference`` (Q, 6, R, R, 3) with the §5 metrics (bounded memory)."""
        acc = QualityAccumulator()
        for a in range(0, len(positions), chunk):
            acc.update(reference[a:a + chunk], self.decode(positions[a:a + chunk]))
        return acc


def archive_meta(n_probes: int, report: dict, grid: Grid | None = None) -> dict:
    """The archive metadata of a bake (see :mod:`probewarp.format.archive`); ``grid``
    the set's lattice (dense or sparse), None for a scattered set."""
    meta = {"n_probes": int(n_probes), "probe_res": int(report["probe_res"]),
            "prototype_res": int(report["prototype_res"]), "n_taps": int(report["n_taps"]),
            "texel_format": report["texel_format"], "domain": report["domain"],
            "warp_miss_rule": "closest-approach", "weight_encoding": "u8/128",
            "interpolation": ("trilinear" if grid.dense else "trilinear-present-corners")
            if grid is not None else "inverse-distance-8"}
    if grid is not None:
        meta["grid"] = grid.to_meta()
    return meta
