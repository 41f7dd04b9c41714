"""The CPU reference decoder (numba): decode an archive at any position.

:class:`Decoder` is the Python twin of ``shaders/common_probewarp.glsl``;
its steps carry the GLSL functions' names (DESIGN-NOTES §3, §4):

===========================  =================================================
Python                       GLSL twin (shaders/common_probewarp.glsl)
===========================  =================================================
:meth:`Decoder.pw_find_probes`  ``PwStencil pw_find_probes(vec3 x)``
:meth:`Decoder.pw_code_at`      ``PwCode pw_code_at(vec3 x)``
:func:`pw_warp_direction`       ``vec3 pw_warp_direction(vec3 x, vec3 d, PwSphere sphere)``
:func:`pw_from_domain`          ``vec3 pw_from_domain(vec3 y)``
:meth:`Decoder.pw_radiance`     ``vec4 pw_radiance(PwCode code, vec3 x, vec3 d, float lod)``
:meth:`Decoder.pw_decode`       ``vec4 pw_decode(vec3 x, vec3 d, float lod)``
===========================  =================================================

The interpolation rule:

- **grid sets**: the codes of the 8 grid probes around the position are
  blended with trilinear weights; outside the grid the position is clamped to
  the grid box *for choosing the probes and weights only*, and every
  prototype is still warped to the true position;
- **scattered sets**: tetrahedral interpolation (:mod:`probewarp.baker.tetra`:
  barycentric weights of the Delaunay tetrahedron around the position, the
  projection onto the hull outside it, documented fallbacks for flat sets),
  meta ``interpolation: tetrahedral``, answered from the archive's stored
  index (:mod:`probewarp.format.tetindex`, version 4; built from the
  positions for earlier files) by :func:`probewarp.format.tetindex.lookup`,
  the twin of the GLSL ``PW_SCATTERED`` path; archives written before the
  tetrahedral rule (``inverse-distance-8``) keep inverse-distance weights
  (power 2) over the 8 nearest probes (no GLSL twin: the runtime refuses them).

The blend happens in the blend domain and the result is mapped back to
linear radiance once, as the GLSL decoder does.

Notes
-----
The CPU twins work on batches (``Q`` positions, ``T`` directions) where the
GLSL functions take one position and one direction, and they sample the
prototypes at level 0 (no ``lod``: the CPU keeps no mip chain; sub-texel
averaging in :meth:`Decoder.decode` plays its part).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from probewarp.baker.tetra import build_index

from probewarp.baker import kernels as K
from probewarp.baker.metrics import QualityAccumulator
from probewarp.baker.domain import from_domain, sub_directions
from probewarp.baker.warp import warp_directions
from probewarp.format import spatialhash, tetindex
from probewarp.format.archive import ArchiveReader, blend_max, build_hash, needs_tet_index, page_records
from probewarp.format.constants import GRID_FILL_RULE
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid, axis_fill


def pw_warp_direction(x, d, centre, radius) -> np.ndarray:
    """DESIGN-NOTES §3: where the ray ``x + t d`` leaves a prototype's sphere,
    seen from its centre. Twin of GLSL ``pw_warp_direction`` in
    shaders/common_probewarp.glsl.

    Parameters
    ----------
    x : (..., 3) float positions
    d : (..., 3) float unit directions
    centre : (..., 3) float sphere centres
    radius : (...) float radii; ``inf`` (or ``<= 0``, the GPU buffer's
        convention) means infinitely far: no parallax, ``s = d``
    (all broadcast together)

    Returns
    -------
    s : (..., 3) float64 unit directions. GLSL returns the same direction
        unnormalised (its samplers do not need the length).

    Notes
    -----
    Misses (only from outside a sphere) use the point of closest approach
    (``warp_miss_rule`` "closest-approach"): :func:`probewarp.baker.warp.warp_directions`.
    """
    r = np.asarray(radius, np.float64)
    r = np.where(r > 0, r, np.inf)
    return warp_directions(x, centre, r, d)


def pw_from_domain(y: np.ndarray, domain: str, y_max: float | None = None) -> np.ndarray:
    """Blend-domain values -> linear radiance, same shape, float32. Twin of GLSL
    ``pw_from_domain`` in shaders/common_probewarp.glsl; :func:`.domain.from_domain`.
    ``y_max`` (tonemap domain): clip the blend there first
    (:func:`probewarp.format.archive.blend_max` of the archive; GLSL: ``PW_TONEMAP_Y_MAX``)."""
    if y_max is not None and domain == "tonemap":
        y = np.minimum(y, np.float32(y_max))
    return from_domain(y, domain)


def _renormalise(w, present):
    """The shared fallback of the stencil rules (GLSL ``pw_stencil_finish``):
    weights of the probes not ``present`` zeroed, the rest renormalised, equal
    shares when they sum to 0, all zero when none is present. (Q, K) each."""
    w = np.where(present, w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    count = present.sum(axis=1, keepdims=True)
    return np.where(total > 0, w / np.where(total > 0, total, 1.0), present / np.maximum(count, 1))


class Decoder:
    """CPU reference decoder over a whole archive (or a list of pages).

    Parameters
    ----------
    source : path of an archive, or (pages, meta)

    Attributes
    ----------
    centres : (M, 3) float64, radii : (M,) float64 (``inf`` = no parallax),
    J : (M, 6 Rp^2, 3) float32 prototype texels of all pages (global index)
    codes_idx : (P, N) int32 global prototype index, codes_w : (P, N) float32
    positions : (P, 3) float64; grid : Grid or None; hash : the spatial hash

    Notes
    -----
    Grid sets (dense or sparse) find the 8 lattice points around a position
    through the archive's spatial hash (:mod:`probewarp.format.spatialhash`),
    exactly as the GLSL decoder does. A corner that holds no probe (a sparse
    grid's empty cell, or, on the GPU, a page that is not resident) is dropped
    and the other corners' trilinear weights are renormalised; if those
    weights sum to 0 the present corners share equally; with no corner
    present the position has no data and decodes to 0 (the GLSL decoder
    returns alpha 0).
    """

    def __init__(self, source):
        if isinstance(source, tuple):
            pages, meta = source
            table = build_hash(meta, pages) if meta.get("grid") is not None else None
            tet = None
        else:
            with ArchiveReader(source) as ar:
                meta = ar.meta
                pages = [ar.page(i) for i in range(ar.n_pages)]
                table = ar.hash()
                tet = ar.tet_index()
        self.meta = meta
        self.domain = meta["domain"]
        #: blend values above this decode as it (format.archive.blend_max)
        self.y_max = blend_max(meta)
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
        #: scattered sets: the tetrahedral index (stored, or built for older files)
        self.tet_index = tet
        if tet is None and needs_tet_index(meta):
            self.tet_index = build_index(self.positions, page_records([pg.probe_ids for pg in pages], P))
        if self.tet_index is not None:
            self._probe_page = spatialhash.split_record(self.tet_index.probes["record"])[0].astype(np.int64)

    # -- the GLSL twins ------------------------------------------------------
    def pw_find_probes(self, q: np.ndarray, resident=None):
        """Probes and weights blended at each query: (Q, 3) -> (Q, K) int64 ids,
        (Q, K) float64 weights, K = 8 (grids; 32 for sparse grids of the fill
        rule, :func:`probewarp.format.grid.axis_fill`, in the GLSL's fixed
        slots). Twin of GLSL ``pw_find_probes`` in
        shaders/common_probewarp.glsl (the same fallback rule: probes not
        there dropped, weights renormalised, equal shares when they sum to 0,
        all-zero weights when none is left).

        ``resident`` (optional ``(n_pages,)`` bool) emulates the GPU
        streamer: corners on pages not resident are dropped like empty cells.
        Scattered sets of the tetrahedral rule: the up to 4 probes of
        :func:`probewarp.format.tetindex.lookup` (twin of the GLSL
        ``PW_SCATTERED`` path) in the first 4 columns; older scattered
        archives: inverse-distance weights over the 8 nearest probes (no
        GLSL twin).
        """
        q = np.asarray(q, np.float64)
        if self.grid is not None:
            ijk, w = self.grid.corners(q)
            rec = spatialhash.lookup(*self.hash, self.grid.keys(ijk))
            if self.meta.get("interpolation") == GRID_FILL_RULE:
                rec, w = axis_fill(self.grid, self.hash, ijk, rec, w)
            present = rec != spatialhash.EMPTY
            page, local = spatialhash.split_record(np.where(present, rec, 0))
            if resident is not None:
                present &= np.asarray(resident, bool)[page]
            ids = np.where(present, self._page_ids[self._page_first[page] + local], 0)
            return ids, _renormalise(w, present)
        if self.tet_index is not None:
            ids4, w4, k = tetindex.lookup(self.tet_index, q, with_corners=True)
            if resident is not None:          # the grid rule for corners on absent pages (GLSL too)
                present = (np.arange(4) < k[:, None]) & np.asarray(resident, bool)[self._probe_page[ids4]]
                w4 = _renormalise(w4, present)
            ids = np.zeros((q.shape[0], 8), np.int64)
            w = np.zeros((q.shape[0], 8))
            ids[:, :4], w[:, :4] = ids4, w4
            return ids, w
        if self._tree is None:                  # archives before the tetrahedral rule
            self._tree = cKDTree(self.positions)
        k = min(8, self.positions.shape[0])
        dist, ids = self._tree.query(q, k=k)
        dist, ids = dist.reshape(q.shape[0], k), ids.reshape(q.shape[0], k)
        w = 1.0 / np.maximum(dist, 1e-12) ** 2
        exact = dist[:, 0] <= 1e-9
        w[exact] = 0.0
        w[exact, 0] = 1.0
        return ids, w / w.sum(axis=1, keepdims=True)

    def pw_code_at(self, q: np.ndarray, resident=None):
        """The probes' codes around each query blended into one list of
        (prototype, weight): (Q, 3) -> (Q, 8 N) int32 global prototype
        indices, (Q, 8 N) float32 weights (probe code weight x stencil
        weight). Twin of GLSL ``pw_code_at`` in shaders/common_probewarp.glsl.

        Notes
        -----
        Fixed width: entries of weight 0 stay in the list (GLSL drops them);
        repeated prototypes are not folded (``pw_code_merge``), which changes
        the blend only by rounding.
        """
        ids, sw = self.pw_find_probes(q, resident)
        Q = ids.shape[0]
        idx = np.ascontiguousarray(self.codes_idx[ids].reshape(Q, -1))
        w = np.ascontiguousarray((self.codes_w[ids] * sw[..., None]).reshape(Q, -1).astype(np.float32))
        return idx, w

    def pw_radiance(self, code, q: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Linear radiance of blended codes: ``code`` = (idx, w) of
        :meth:`pw_code_at` for positions ``q`` (Q, 3); ``directions`` (T, 3)
        unit, or (T, S, 3) sub-directions averaged per row -> (Q, T, 3)
        float32. Twin of GLSL ``pw_radiance`` in shaders/common_probewarp.glsl
        (every prototype warped to ``q`` by :func:`pw_warp_direction`, the sum
        mapped once by :func:`pw_from_domain`).

        Notes
        -----
        Returns rgb only; GLSL's coverage (alpha) is ``(w > 0).any(axis=1)``.
        """
        idx, w = code
        q = np.ascontiguousarray(np.asarray(q, np.float64).reshape(-1, 3))
        d = np.asarray(directions, np.float64)
        if d.ndim == 2:
            d = d[:, None, :]
        d = np.ascontiguousarray(d)
        out = np.empty((q.shape[0], d.shape[0], 3), np.float32)
        K._render(q, d, self.centres, self.radii, self.J, self.Rp,
                  np.ascontiguousarray(idx, np.int32), np.ascontiguousarray(w, np.float32), out)
        return pw_from_domain(out, self.domain, self.y_max)

    def pw_decode(self, q: np.ndarray, directions: np.ndarray, resident=None) -> np.ndarray:
        """Linear radiance arriving at positions ``q`` (Q, 3) from unit
        ``directions`` (T, 3) -> (Q, T, 3) float32: :meth:`pw_code_at` then
        :meth:`pw_radiance`. Twin of GLSL ``pw_decode`` at level 0 in
        shaders/common_probewarp.glsl."""
        q = np.asarray(q, np.float64).reshape(-1, 3)
        d = np.asarray(directions, np.float64).reshape(-1, 3)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        return self.pw_radiance(self.pw_code_at(q, resident), q, d)

    # -- whole cubemaps, scores ------------------------------------------------
    def decode(self, positions: np.ndarray, R: int | None = None, resident=None) -> np.ndarray:
        """Radiance cubemaps at arbitrary positions: (Q, 3) -> (Q, 6, R, R, 3) float32.

        ``R`` defaults to the baked probes' resolution; if the prototypes are
        finer (``Rp = k R``) each texel averages ``k x k`` warped sub-samples.
        ``resident``: see :meth:`pw_find_probes`. What ``decode_cubemap.cs``
        computes on the GPU.
        """
        q = np.ascontiguousarray(np.asarray(positions, np.float64).reshape(-1, 3))
        R = int(R or self.meta["probe_res"])
        if self.Rp > R and self.Rp % R:
            raise InputError(f"--res {R}: must divide the prototype resolution {self.Rp} (or be at least it)")
        k = max(1, self.Rp // R)
        code = self.pw_code_at(q, resident)
        return self.pw_radiance(code, q, sub_directions(R, k)).reshape(q.shape[0], 6, R, R, 3)

    def radiance(self, position, directions, resident=None) -> np.ndarray:
        """Radiance at one position in arbitrary directions (no sub-sampling):
        (3,), (T, 3) unit -> (T, 3) float32. :meth:`pw_decode` for one
        position (what a camera at ``position`` sees)."""
        return self.pw_decode(np.asarray(position, np.float64).reshape(1, 3), directions, resident)[0]

    def score(self, positions: np.ndarray, reference, chunk: int = 4096) -> QualityAccumulator:
        """Decode at ``positions`` (Q, 3) chunk by chunk and score against
        ``reference`` (Q, 6, R, R, 3): a numpy array or a lazy array sliced
        along the first axis (:class:`~probewarp.baker.probeset.LazyFaces`),
        with the §5 metrics (bounded memory)."""
        acc = QualityAccumulator()
        for a in range(0, len(positions), chunk):
            acc.update(np.asarray(reference[a:a + chunk]), self.decode(positions[a:a + chunk]))
        return acc
