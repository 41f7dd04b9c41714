"""Tetrahedral interpolation of scattered probes (the rule of Unity's light probes).

:class:`Tetrahedra` cuts the probe positions into a Delaunay
tetrahedralisation (scipy's qhull) and gives every query position the
probes and weights a decoder blends. The query is first clamped into the
probes' bounding box (for choosing probes and weights only, as grid sets
clamp into the grid box; every prototype is still warped to the true
position), then:

- **Inside the hull**: the 4 corners of the tetrahedron that holds the query,
  with its barycentric coordinates (sum 1, all >= 0, exact at the probes,
  continuous across shared faces).
- **Outside the hull**: the query is projected onto the hull (the closest
  point of its boundary triangles) and blended with the barycentric
  coordinates of that point in its triangle (3 probes). The projection onto
  a convex set is continuous, and on the hull it agrees with the inside
  rule, so the weights are continuous everywhere.
- **Degenerate sets** (a documented fallback, never a crash): probes that
  all lie in a plane are triangulated in that plane (2-D Delaunay) and the
  query is projected onto the plane first; probes on a line are blended
  piecewise linearly along the line (the query projected onto it, clamped
  to its ends); a single probe is used everywhere.

Weights come back fixed-width: ``(Q, 4)`` probe ids and weights (unused
slots id 0, weight 0). The plain-numpy oracle is ``tests/naive.py``
(``naive_tetra_weights``).

:func:`build_index` turns the same tetrahedralisation into the archive's
GPU-ready index (:mod:`probewarp.format.tetindex`: simplices and a cell
grid listing the simplices that can answer a query in each cell);
:func:`probewarp.format.tetindex.lookup` answers queries from that stored
index alone (the CPU twin of GLSL ``pw_find_probes`` with ``PW_SCATTERED``).
The decoders use the stored index; :class:`Tetrahedra` is what it is built
from and checked against.
"""
from __future__ import annotations

import numba
import numpy as np
from scipy.spatial import Delaunay, QhullError, cKDTree

from probewarp.format import layout
from probewarp.format.tetindex import MAX_CELLS_AXIS, TetIndex, closest_points, tet_barycentric

#: Relative size (to the set's extent) under which an axis of the set counts as flat.
FLAT_REL_TOL = 1e-9


class Tetrahedra:
    """The tetrahedral interpolation rule over fixed probe positions.

    Parameters
    ----------
    positions : (P, 3) float, distinct
    """

    def __init__(self, positions):
        p = np.asarray(positions, np.float64).reshape(-1, 3)
        if p.shape[0] < 1 or not np.isfinite(p).all():
            raise ValueError("Tetrahedra needs at least one finite position")
        self.positions = p
        self.mode = "single"
        self.origin = p.mean(axis=0)
        #: the clamp box of the rule: the probes' bounding box
        self.lo, self.hi = p.min(axis=0), p.max(axis=0)
        if p.shape[0] == 1:
            return
        centred = p - self.origin
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        extent = max(float(sv[0]), 1e-300)
        rank = int(np.sum(sv > FLAT_REL_TOL * extent))
        self.basis = vt[:max(rank, 1)]                        # rows: the set's own axes
        if rank >= 3:
            try:
                self.tri = Delaunay(p)
                self.mode = "tetrahedra"
            except QhullError:
                rank = 2
                self.basis = vt[:2]
        if rank == 2:
            self.tri = Delaunay(centred @ self.basis.T)
            self.mode = "plane"
        elif rank <= 1:
            t = centred @ self.basis[0]
            self.order = np.argsort(t, kind="stable")
            self.t = t[self.order]
            self.mode = "line"
        if self.mode in ("tetrahedra", "plane"):
            hull = self.tri.convex_hull                         # (F, 3) triangles, or (F, 2) segments in 2-D
            self.hull = hull

    # -- the rule ----------------------------------------------------------------
    def weights(self, q) -> tuple[np.ndarray, np.ndarray]:
        """(Q, 3) queries -> (Q, 4) int64 probe ids and (Q, 4) float64 weights (sum 1).
        Queries are clamped into the probes' bounding box first."""
        q = np.clip(np.asarray(q, np.float64).reshape(-1, 3), self.lo, self.hi)
        Q = q.shape[0]
        ids = np.zeros((Q, 4), np.int64)
        w = np.zeros((Q, 4))
        if self.mode == "single":
            w[:, 0] = 1.0
            return ids, w
        if self.mode == "line":
            t = (q - self.origin) @ self.basis[0]
            t = np.clip(t, self.t[0], self.t[-1])
            k = np.clip(np.searchsorted(self.t, t, side="right") - 1, 0, len(self.t) - 2)
            span = self.t[k + 1] - self.t[k]
            f = np.where(span > 0, (t - self.t[k]) / np.where(span > 0, span, 1), 0.0)
            ids[:, 0], ids[:, 1] = self.order[k], self.order[k + 1]
            w[:, 0], w[:, 1] = 1 - f, f
            return ids, w
        x = q if self.mode == "tetrahedra" else (q - self.origin) @ self.basis.T
        d = x.shape[1]
        s = self.tri.find_simplex(x)
        inside = s >= 0
        if inside.any():
            si = s[inside]
            T = self.tri.transform[si]                          # (n, d+1, d)
            b = np.einsum("nij,nj->ni", T[:, :d], x[inside] - T[:, d])
            bw = np.concatenate([b, 1 - b.sum(axis=1, keepdims=True)], axis=1)
            bw = np.clip(bw, 0.0, None)
            bw /= bw.sum(axis=1, keepdims=True)
            ids[inside, :d + 1] = self.tri.simplices[si]
            w[inside, :d + 1] = bw
        for lo in range(0, Q, 256):                            # outside: bounded memory (256 x faces)
            rows = np.flatnonzero(~inside[lo:lo + 256]) + lo
            if rows.size:
                self._outside(x[rows], rows, ids, w, d)
        return ids, w

    def _outside(self, xo, out, ids, w, d):
        """Projection onto the hull for the rows ``out`` (queries ``xo``)."""
        pts = self.tri.points
        if d == 3:
            tri = self.hull
            n, F = xo.shape[0], tri.shape[0]
            f = np.tile(np.arange(F), n)                        # every (query, hull triangle) pair
            d2, bw = closest_points(np.repeat(xo, F, axis=0), pts[tri[f, 0]], pts[tri[f, 1]], pts[tri[f, 2]],
                                    np.full(n * F, 3))
            best = np.argmin(d2.reshape(n, F), axis=1)
            ids[out, :3] = tri[best]
            w[out, :3] = bw.reshape(n, F, 3)[np.arange(n), best]
            return
        seg = self.hull                                         # plane: project onto the hull's edges
        a, b = pts[seg[:, 0]], pts[seg[:, 1]]
        ab = b - a
        t = np.einsum("qsd,sd->qs", xo[:, None, :] - a[None], ab) / np.maximum(np.sum(ab * ab, -1), 1e-300)
        t = np.clip(t, 0.0, 1.0)
        p = a[None] + t[..., None] * ab[None]
        best = np.argmin(np.sum((p - xo[:, None, :]) ** 2, -1), axis=1)
        tb = t[np.arange(xo.shape[0]), best]
        ids[out, :2] = seg[best]
        w[out, 0], w[out, 1] = 1 - tb, tb


# ---------------------------------------------------------------------------
# the stored index (format/tetindex.py) and its lookup, twin of GLSL
# ---------------------------------------------------------------------------
#: Probes per cell of the index's cell grid (measured: benchmarks/bench_tetindex.py;
#: fewer cells make longer lists, more cells more offsets and repeated entries).
PROBES_PER_CELL = 4.0
#: Cells are tested grown by this fraction of their size (a float32 query on a
#: cell border may land in either neighbour: both must list its simplex).
CELL_MARGIN = 1e-3
_JIT = dict(nogil=True, cache=True)


# -- building ---------------------------------------------------------------------
@numba.njit(**_JIT)
def _tet_cells(pos, tets, lo, size, shape, margin, counts, out, offsets):
    """Cells overlapping each tetrahedron (bounding boxes, then no face plane
    with the whole grown cell outside it): pass 1 counts (out is None-like:
    offsets[0] < 0), pass 2 fills ``out`` at ``offsets``."""
    fill = offsets[0] >= 0
    cur = offsets.copy()
    nrm = np.zeros((4, 3))
    org = np.zeros((4, 3))
    for t in range(tets.shape[0]):
        v = tets[t]
        for f in range(4):                   # face opposite corner f, outward normal
            a, b, c = v[(f + 1) % 4], v[(f + 2) % 4], v[(f + 3) % 4]
            ab = pos[b] - pos[a]
            ac = pos[c] - pos[a]
            n0 = ab[1] * ac[2] - ab[2] * ac[1]
            n1 = ab[2] * ac[0] - ab[0] * ac[2]
            n2 = ab[0] * ac[1] - ab[1] * ac[0]
            d = pos[v[f]] - pos[a]
            if n0 * d[0] + n1 * d[1] + n2 * d[2] > 0:
                n0, n1, n2 = -n0, -n1, -n2
            nrm[f, 0], nrm[f, 1], nrm[f, 2] = n0, n1, n2
            org[f] = pos[a]
        i0 = np.zeros(3, np.int64)
        i1 = np.zeros(3, np.int64)
        for a in range(3):
            mn = min(min(pos[v[0], a], pos[v[1], a]), min(pos[v[2], a], pos[v[3], a]))
            mx = max(max(pos[v[0], a], pos[v[1], a]), max(pos[v[2], a], pos[v[3], a]))
            if size[a] > 0:
                i0[a] = min(max(int(np.floor((mn - lo[a]) / size[a] - margin)), 0), shape[a] - 1)
                i1[a] = min(max(int(np.floor((mx - lo[a]) / size[a] + margin)), 0), shape[a] - 1)
        for i in range(i0[0], i1[0] + 1):
            for j in range(i0[1], i1[1] + 1):
                for k in range(i0[2], i1[2] + 1):
                    blo = np.array([i, j, k], np.float64)
                    ok = True
                    for f in range(4):
                        m = 0.0                  # min over the grown box of n . (p - org)
                        for a in range(3):
                            g = margin * size[a] + 1e-12
                            lo_a = lo[a] + blo[a] * size[a] - g
                            hi_a = lo[a] + (blo[a] + 1.0) * size[a] + g
                            p = lo_a if nrm[f, a] > 0 else hi_a
                            m += nrm[f, a] * (p - org[f, a])
                        if m > 0.0:
                            ok = False
                            break
                    if ok:
                        cid = (i * shape[1] + j) * shape[2] + k
                        if fill:
                            out[cur[cid]] = t
                            cur[cid] += 1
                        else:
                            counts[cid] += 1


@numba.njit(**_JIT)
def _outside_cells(pos, hull, lo, size, shape, margin, need):
    """need[c] = some point of grown cell c is outside the convex hull (its
    outer triangles ``hull``, (F, 3), consistently outward: tested against the
    centroid ``pos``'s mean)."""
    F = hull.shape[0]
    cen = np.zeros(3)
    for a in range(3):
        cen[a] = pos[:, a].mean()
    nrm = np.zeros((F, 3))
    for f in range(F):
        a, b, c = hull[f, 0], hull[f, 1], hull[f, 2]
        ab = pos[b] - pos[a]
        ac = pos[c] - pos[a]
        n = np.array([ab[1] * ac[2] - ab[2] * ac[1], ab[2] * ac[0] - ab[0] * ac[2], ab[0] * ac[1] - ab[1] * ac[0]])
        if n[0] * (cen[0] - pos[a, 0]) + n[1] * (cen[1] - pos[a, 1]) + n[2] * (cen[2] - pos[a, 2]) > 0:
            n = -n
        nrm[f] = n / max(np.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2), 1e-300)
    for i in range(shape[0]):
        for j in range(shape[1]):
            for k in range(shape[2]):
                blo = (i, j, k)
                out = False
                for f in range(F):
                    m = -np.inf               # max over the grown box of n . (p - a)
                    s = 0.0
                    for a in range(3):
                        g = margin * size[a] + 1e-12
                        lo_a = lo[a] + blo[a] * size[a] - g
                        hi_a = lo[a] + (blo[a] + 1.0) * size[a] + g
                        p = hi_a if nrm[f, a] > 0 else lo_a
                        s += nrm[f, a] * (p - pos[hull[f, 0], a])
                    m = s
                    if m > -1e-12:
                        out = True
                        break
                need[(i * shape[1] + j) * shape[2] + k] = out


def _cell_shape(lo, hi, n_probes, probes_per_cell):
    ext = hi - lo
    big = max(float(ext.max()), 0.0)
    active = ext > FLAT_REL_TOL * big if big > 0 else np.zeros(3, bool)
    shape = np.ones(3, np.int64)
    if active.any():
        target = max(1.0, n_probes / float(probes_per_cell))
        s = (float(np.prod(ext[active])) / target) ** (1.0 / int(active.sum()))
        shape[active] = np.clip(np.ceil(ext[active] / s), 1, MAX_CELLS_AXIS).astype(np.int64)
    return shape, np.where(active, ext / shape, 0.0)


def _morton(x, ref):
    """30-bit Morton codes of points x (n, 3) in the bounding box of ``ref``:
    a spatial order, so the simplices one cell lists have nearby ids (the
    lists compress several times better under lz4)."""
    lo, hi = ref.min(axis=0), ref.max(axis=0)
    u = np.clip((x - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1)
    v = np.minimum((u * 1024).astype(np.uint64), 1023)
    code = np.zeros(x.shape[0], np.uint64)
    for b in range(10):
        for a in range(3):
            code |= ((v[:, a] >> np.uint64(b)) & np.uint64(1)) << np.uint64(3 * b + a)
    return code


def build_index(positions, records, probes_per_cell: float = PROBES_PER_CELL) -> TetIndex:
    """The archive's tetrahedral index of ``positions`` (P, 3) (rounded to
    float32, as pages store them) with each probe's page record (P,)."""
    p32 = np.asarray(positions, np.float32).reshape(-1, 3)
    pos = p32.astype(np.float64)
    P = pos.shape[0]
    t = Tetrahedra(pos)
    mode = t.mode
    if mode == "tetrahedra":
        tets = t.tri.simplices.astype(np.int64)
        v = pos[tets]
        tets = tets[tet_barycentric(v[:, 0], v[:, 0], v[:, 1], v[:, 2], v[:, 3])[1]]   # flat slivers hold nothing
        tets = tets[np.argsort(_morton(pos[tets].mean(axis=1), pos), kind="stable")]   # nearby ids per cell
        dist_elems = t.hull.astype(np.int64)                 # the hull's outer triangles
        main = tets
    elif mode == "plane":
        main = np.zeros((0, 4), np.int64)
        dist_elems = t.tri.simplices.astype(np.int64)
    elif mode == "line":
        main = np.zeros((0, 4), np.int64)
        dist_elems = np.stack([t.order[:-1], t.order[1:]], 1).astype(np.int64)
    else:
        main = np.zeros((0, 4), np.int64)
        dist_elems = np.zeros((1, 1), np.int64)
    E_main = main.shape[0]
    simp_ids = np.full((E_main + dist_elems.shape[0], 4), -1, np.int64)
    simp_ids[:E_main] = main
    simp_ids[E_main:, :dist_elems.shape[1]] = dist_elems
    simplices = layout.pack_simplices(simp_ids)

    lo32, hi32 = p32.min(axis=0), p32.max(axis=0)
    lo, hi = lo32.astype(np.float64), hi32.astype(np.float64)
    shape, size = _cell_shape(lo, hi, P, probes_per_cell)
    C = int(np.prod(shape))
    # 1. tetrahedra overlapping each cell
    if E_main:
        counts = np.zeros(C, np.int64)
        _tet_cells(pos, main, lo, size, shape, CELL_MARGIN, counts, np.zeros(1, np.int64),
                   np.full(1, -1, np.int64))
        offs = np.concatenate([[0], np.cumsum(counts)])
        flat = np.zeros(int(offs[-1]), np.int64)
        _tet_cells(pos, main, lo, size, shape, CELL_MARGIN, counts, flat, offs[:-1].copy())
    # 2. the distance elements that can be closest somewhere in each cell
    if mode == "tetrahedra":
        need = np.zeros(C, bool)
        _outside_cells(pos, dist_elems, lo, size, shape, CELL_MARGIN, need)
    else:
        need = np.ones(C, bool)
    need_ids = np.flatnonzero(need)
    dist_lists = {}
    if need_ids.size:
        ijk = np.stack(np.unravel_index(need_ids, shape), 1).astype(np.float64)
        g = CELL_MARGIN * size + 1e-12
        blo = lo + ijk * size - g
        bhi = lo + (ijk + 1) * size + g
        centre = (blo + bhi) / 2
        half = np.linalg.norm(bhi - blo, axis=1) / 2
        corners = np.stack([np.where(np.array([(c >> 2) & 1, (c >> 1) & 1, c & 1], bool), bhi, blo)
                            for c in range(8)], 1)                   # (n, 8, 3)
        epos = pos[np.where(simp_ids[E_main:] >= 0, simp_ids[E_main:], simp_ids[E_main:, :1])]  # (F, 4, 3)
        cen = epos.mean(axis=1)
        rad = float(np.linalg.norm(epos - cen[:, None], axis=2).max())
        tree = cKDTree(cen)
        k = min(8, cen.shape[0])
        _, near = tree.query(centre, k=k)
        near = np.asarray(near).reshape(need_ids.size, k)
        def dist(x, e):            # distances from points x (m, 3) to distance elements e (m,)
            ids = simp_ids[E_main + e]
            v = pos[np.maximum(ids, 0)]
            return np.sqrt(closest_points(x, v[:, 0], v[:, 1], v[:, 2], (ids >= 0).sum(axis=1))[0])

        # T = min over the near elements g of max over the 8 corners of dist(corner, g)
        bound = np.empty(need_ids.size)
        for a in range(0, need_ids.size, 4096):                 # bounded memory: 4096 cells x k x 8 pairs
            r = slice(a, a + 4096)
            n = corners[r].shape[0]
            x = np.broadcast_to(corners[r, None], (n, k, 8, 3)).reshape(-1, 3)
            e = np.broadcast_to(near[r, :, None], (n, k, 8)).reshape(-1)
            bound[r] = dist(x, e).reshape(n, k, 8).max(axis=2).min(axis=1)
        cand = tree.query_ball_point(centre, bound + half + rad)
        lens = np.array([len(c) for c in cand], np.int64)
        rows = np.repeat(np.arange(need_ids.size), lens)
        elem = np.concatenate([np.asarray(c, np.int64) for c in cand]) if rows.size else rows
        keep = np.zeros(rows.size, bool)
        for a in range(0, rows.size, 1 << 18):
            r = slice(a, a + (1 << 18))
            keep[r] = dist(centre[rows[r]], elem[r]) - half[rows[r]] <= bound[rows[r]]
        rows, elem = rows[keep], elem[keep]
        order = np.lexsort((elem, rows))                          # per cell, ascending
        rows, elem = rows[order], E_main + elem[order]
        starts = np.searchsorted(rows, np.arange(need_ids.size + 1))
        for r in range(need_ids.size):
            dist_lists[int(need_ids[r])] = elem[starts[r]:starts[r + 1]]
    # 3. CSR: per cell its tetrahedra (ascending), then its distance elements (ascending)
    if E_main:
        per_cell = [flat[offs[c]:offs[c + 1]] for c in range(C)]     # grouped by cell, ascending
    else:
        per_cell = [np.zeros(0, np.int64)] * C
    lists = [np.concatenate([per_cell[c], np.asarray(dist_lists.get(c, []), np.int64)])
             for c in range(C)]
    lens = np.array([len(v) for v in lists], np.int64)
    offsets = (C + 1) + np.concatenate([[0], np.cumsum(lens)])
    cells = np.concatenate([offsets, np.concatenate(lists) if C else np.zeros(0)]).astype(np.uint32)
    probes = layout.pack_probes(p32, records)
    return TetIndex(mode, probes, simplices, E_main, cells, lo32, hi32, tuple(int(v) for v in shape))


def index_for_pages(pages, n_probes: int) -> TetIndex:
    """The index of a scattered archive's pages (:class:`probewarp.format.archive.Page`
    list, in archive order): what :func:`probewarp.format.archive.write_archive` needs."""
    from probewarp.format.archive import page_records
    pos = np.zeros((int(n_probes), 3))
    for pg in pages:
        pos[np.asarray(pg.probe_ids, np.int64)] = pg.positions
    return build_index(pos, page_records([pg.probe_ids for pg in pages], n_probes))
