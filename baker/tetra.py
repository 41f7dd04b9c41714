"""Tetrahedral interpolation of scattered probes (the rule of Unity's light probes).

:class:`Tetrahedra` cuts the probe positions into a Delaunay
tetrahedralisation (scipy's qhull) and gives every query position the
probes and weights a decoder blends:

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
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay, QhullError

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
        """(Q, 3) queries -> (Q, 4) int64 probe ids and (Q, 4) float64 weights (sum 1)."""
        q = np.asarray(q, np.float64).reshape(-1, 3)
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
