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

from probewarp.format import constants, layout
from probewarp.format.tetindex import MAX_CELLS_AXIS, TetIndex

#: Relative size (to the set's extent) under which an axis of the set counts as flat.
FLAT_REL_TOL = 1e-9


def _closest_on_triangles(q, a, b, c):
    """Closest points on triangles (a, b, c) (T, 3) to each query (Q, 3):
    (Q, T) squared distances and (Q, T, 3) barycentric weights of the closest points
    (Ericson, Real-Time Collision Detection, 5.1.5, vectorised)."""
    q = q[:, None, :]
    ab, ac = (b - a)[None], (c - a)[None]
    ap = q - a[None]
    d1, d2 = np.sum(ab * ap, -1), np.sum(ac * ap, -1)
    bp = q - b[None]
    d3, d4 = np.sum(ab * bp, -1), np.sum(ac * bp, -1)
    cp = q - c[None]
    d5, d6 = np.sum(ab * cp, -1), np.sum(ac * cp, -1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    Q, T = ap.shape[0], ab.shape[1]
    w = np.zeros((Q, T, 3))
    done = np.zeros((Q, T), bool)

    def put(mask, wa, wb, wc):
        m = mask & ~done
        w[m] = np.stack([wa, wb, wc], -1)[m]
        done[m] = True

    with np.errstate(divide="ignore", invalid="ignore"):
        one, zero = np.ones((Q, T)), np.zeros((Q, T))
        put((d1 <= 0) & (d2 <= 0), one, zero, zero)                         # vertex a
        put((d3 >= 0) & (d4 <= d3), zero, one, zero)                        # vertex b
        put((d6 >= 0) & (d5 <= d6), zero, zero, one)                        # vertex c
        t = d1 / (d1 - d3)
        put((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t, t, zero)              # edge ab
        t = d2 / (d2 - d6)
        put((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t, zero, t)              # edge ac
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        put((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), zero, 1 - t, t)  # edge bc
        den = va + vb + vc
        v, u = vb / den, vc / den
        put(np.ones((Q, T), bool), 1 - v - u, v, u)                         # inside the face
    w = np.nan_to_num(w)
    p = w[..., 0:1] * a[None] + w[..., 1:2] * b[None] + w[..., 2:3] * c[None]
    return np.sum((p - q) ** 2, -1), w


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
            dist, bw = _closest_on_triangles(xo, pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]])
            best = np.argmin(dist, axis=1)
            ids[out, :3] = tri[best]
            w[out, :3] = bw[np.arange(xo.shape[0]), best]
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


@numba.njit(**_JIT)
def _tet_bary(pos, s, x, flat_rel, lam):
    """Barycentric coordinates of x in tetrahedron s (4 probe ids) into lam;
    False for a flat tetrahedron (the builder drops those; the rule's own
    test is format.tetindex._tet_pairs, GLSL pw_tet_bary)."""
    a0, a1, a2 = pos[s[0], 0], pos[s[0], 1], pos[s[0], 2]
    e10, e11, e12 = pos[s[1], 0] - a0, pos[s[1], 1] - a1, pos[s[1], 2] - a2
    e20, e21, e22 = pos[s[2], 0] - a0, pos[s[2], 1] - a1, pos[s[2], 2] - a2
    e30, e31, e32 = pos[s[3], 0] - a0, pos[s[3], 1] - a1, pos[s[3], 2] - a2
    p0, p1, p2 = x[0] - a0, x[1] - a1, x[2] - a2
    # c23 = e2 x e3
    c0, c1, c2 = e21 * e32 - e22 * e31, e22 * e30 - e20 * e32, e20 * e31 - e21 * e30
    det = e10 * c0 + e11 * c1 + e12 * c2
    scale = (np.sqrt(e10 * e10 + e11 * e11 + e12 * e12) * np.sqrt(e20 * e20 + e21 * e21 + e22 * e22)
             * np.sqrt(e30 * e30 + e31 * e31 + e32 * e32))
    if not abs(det) > flat_rel * scale:
        return False
    l1 = (p0 * c0 + p1 * c1 + p2 * c2) / det
    # e1 . (p x e3)
    q0, q1, q2 = p1 * e32 - p2 * e31, p2 * e30 - p0 * e32, p0 * e31 - p1 * e30
    l2 = (e10 * q0 + e11 * q1 + e12 * q2) / det
    # e1 . (e2 x p)
    r0, r1, r2 = e21 * p2 - e22 * p1, e22 * p0 - e20 * p2, e20 * p1 - e21 * p0
    l3 = (e10 * r0 + e11 * r1 + e12 * r2) / det
    lam[0], lam[1], lam[2], lam[3] = 1.0 - l1 - l2 - l3, l1, l2, l3
    return True


@numba.njit(**_JIT)
def _closest(pos, s, k, x, w):
    """Squared distance from x to the simplex s of k <= 3 corners (point,
    segment, triangle) and the barycentric weights of its closest point, in w
    (Ericson, Real-Time Collision Detection 5.1.5): the builder's distance
    bounds (the rule's own: format.tetindex._closest_pairs, GLSL pw_closest)."""
    w[0] = 1.0
    w[1] = 0.0
    w[2] = 0.0
    w[3] = 0.0
    a = pos[s[0]]
    if k == 1:
        return (x[0] - a[0]) ** 2 + (x[1] - a[1]) ** 2 + (x[2] - a[2]) ** 2
    b = pos[s[1]]
    if k == 2:
        ab0, ab1, ab2 = b[0] - a[0], b[1] - a[1], b[2] - a[2]
        den = ab0 * ab0 + ab1 * ab1 + ab2 * ab2
        t = 0.0
        if den > 0.0:
            t = ((x[0] - a[0]) * ab0 + (x[1] - a[1]) * ab1 + (x[2] - a[2]) * ab2) / den
        t = min(max(t, 0.0), 1.0)
        w[0], w[1] = 1.0 - t, t
        return ((a[0] + t * ab0 - x[0]) ** 2 + (a[1] + t * ab1 - x[1]) ** 2 + (a[2] + t * ab2 - x[2]) ** 2)
    c = pos[s[2]]
    ab = (b[0] - a[0], b[1] - a[1], b[2] - a[2])
    ac = (c[0] - a[0], c[1] - a[1], c[2] - a[2])
    ap = (x[0] - a[0], x[1] - a[1], x[2] - a[2])
    d1 = ab[0] * ap[0] + ab[1] * ap[1] + ab[2] * ap[2]
    d2 = ac[0] * ap[0] + ac[1] * ap[1] + ac[2] * ap[2]
    bp = (x[0] - b[0], x[1] - b[1], x[2] - b[2])
    d3 = ab[0] * bp[0] + ab[1] * bp[1] + ab[2] * bp[2]
    d4 = ac[0] * bp[0] + ac[1] * bp[1] + ac[2] * bp[2]
    cp = (x[0] - c[0], x[1] - c[1], x[2] - c[2])
    d5 = ab[0] * cp[0] + ab[1] * cp[1] + ab[2] * cp[2]
    d6 = ac[0] * cp[0] + ac[1] * cp[1] + ac[2] * cp[2]
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    u = 0.0
    v = 0.0                       # closest point a + u ab + v ac
    if d1 <= 0.0 and d2 <= 0.0:
        u, v = 0.0, 0.0
    elif d3 >= 0.0 and d4 <= d3:
        u, v = 1.0, 0.0
    elif d6 >= 0.0 and d5 <= d6:
        u, v = 0.0, 1.0
    elif vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        u, v = d1 / (d1 - d3), 0.0
    elif vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        u, v = 0.0, d2 / (d2 - d6)
    elif va <= 0.0 and d4 - d3 >= 0.0 and d5 - d6 >= 0.0:
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        u, v = 1.0 - t, t
    else:
        den = va + vb + vc
        u, v = vb / den, vc / den
    w[0], w[1], w[2] = 1.0 - u - v, u, v
    return ((ap[0] - u * ab[0] - v * ac[0]) ** 2 + (ap[1] - u * ab[1] - v * ac[1]) ** 2
            + (ap[2] - u * ab[2] - v * ac[2]) ** 2)


@numba.njit(**_JIT)
def _corners(s):
    k = 0
    while k < 4 and s[k] != 0xFFFFFFFF:
        k += 1
    return k


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


def _element_dist2(pos, simp, e, x):
    w = np.zeros(4)
    s = simp[e]
    return _closest(pos, s, _corners(s), x, w)


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
        lam_ok = np.array([_tet_bary(pos, s, pos[s[0]], float(constants.TET_FLAT_REL), np.zeros(4))
                           for s in tets], bool) if tets.size else np.zeros(0, bool)
        tets = tets[lam_ok]
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
    simp = simplices["probes"].astype(np.int64)

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
        bound = np.empty(need_ids.size)
        for r in range(need_ids.size):              # T = min over near g of max over corners dist(corner, g)
            bound[r] = min(max(np.sqrt(_element_dist2(pos, simp, E_main + int(gi), corners[r, c]))
                               for c in range(8)) for gi in near[r])
        cand = tree.query_ball_point(centre, bound + half + rad)
        for r in range(need_ids.size):
            keep = [E_main + int(f) for f in sorted(cand[r])
                    if np.sqrt(_element_dist2(pos, simp, E_main + int(f), centre[r])) - half[r] <= bound[r]]
            dist_lists[int(need_ids[r])] = keep
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
