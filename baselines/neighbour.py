"""Held-out baseline: blend the known neighbours of a regular grid (checkerboard split).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
from scipy.spatial import cKDTree

from probewarp.baselines.base import BLEND_FALLBACK_K, BLEND_MIN_WEIGHT, BLEND_TIE_REL, CHUNK_PROBES, GRID_SNAP_CELLS
from probewarp.format import constants
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid

def split_heldout(grid_shape) -> tuple[np.ndarray, np.ndarray]:
    """Checkerboard split of a regular grid into baked and held-out halves.

    Parameters
    ----------
    grid_shape : (3,) int
        ``(nx, ny, nz)``; probe ``(ix, iy, iz)`` has flat index
        ``(ix * ny + iy) * nz + iz`` (DESIGN-NOTES §2, z fastest).

    Returns
    -------
    train_idx, test_idx : (P_train,) int64, (P_test,) int64
        Sorted flat indices with ``ix + iy + iz`` even (train) and odd (test):
        disjoint, together every probe. Every held-out probe's axis
        neighbours (one grid step away) are in the train half.
    """
    shape = np.asarray(grid_shape, dtype=np.int64).reshape(-1)
    if shape.shape != (3,) or (shape < 1).any():
        raise InputError(f"grid_shape must be 3 positive ints, got {shape.tolist()}")
    return Grid(shape, np.zeros(3), np.maximum(shape - 1, 0).astype(np.float64)).checkerboard()


def neighbour_blend(train_positions, train_faces, grid_shape, lo, hi, query_positions) -> np.ndarray:
    """The held-out baseline: blend the uncompressed known probes around a query.

    Parameters
    ----------
    train_positions : (Pt, 3) float
        Positions of the known probes; each must sit on a point of the grid.
    train_faces : (Pt, 6, R, R, 3) float
        Their cubemaps (linear radiance, uncompressed).
    grid_shape : (3,) int;  lo, hi : (3,) float
        The regular grid (DESIGN-NOTES §2): axis ``a`` has ``grid_shape[a]``
        points from ``lo[a]`` to ``hi[a]``.
    query_positions : (Q, 3) float

    Returns
    -------
    faces : (Q, 6, R, R, 3) float32
        Linear radiance, blended in the linear domain (no warping).

    Notes
    -----
    The rule, per query:

    1. Continuous grid coordinates ``u = (q - lo) / step``, clamped to the
       grid (queries outside take the border cell) and snapped to an integer
       within :data:`GRID_SNAP_CELLS`.
    2. Trilinear weights on the 8 corners of the cell holding ``u``; corners
       that are not known probes are dropped and the rest renormalised. A
       query at a known probe therefore returns it exactly.
    3. If the known corners' weights sum below :data:`BLEND_MIN_WEIGHT` (e.g.
       the query sits exactly on a held-out grid point), inverse-distance
       weights ``1/d`` over the nearest known probes: all those within
       ``(1 + BLEND_TIE_REL)`` times the nearest distance (grid ties are
       exact, so this is the plain mean of the equidistant ones). On the
       checkerboard of :func:`split_heldout` that is the mean of the up to 6
       axis neighbours; on an every-other-probe split it is exactly linear /
       bilinear / trilinear interpolation of the coarse grid.
    """
    tf = np.asarray(train_faces)
    if tf.ndim != 5 or tf.shape[1] != 6 or tf.shape[2] != tf.shape[3]:
        raise InputError(f"train_faces must be (Pt, 6, R, R, C), got {tf.shape}")
    tp = np.asarray(train_positions, dtype=np.float64)
    qp = np.asarray(query_positions, dtype=np.float64)
    if tp.shape != (tf.shape[0], 3) or tp.shape[0] == 0:
        raise InputError(f"train_positions must be ({tf.shape[0]}, 3) with Pt >= 1, got {tp.shape}")
    if qp.ndim != 2 or qp.shape[1] != 3:
        raise InputError(f"query_positions must be (Q, 3), got {qp.shape}")
    g = Grid.checked(grid_shape, lo, hi, where="neighbour_blend")
    shape, lo, step = g.shape_array, g.lo, g.step

    # known probes -> flat grid index
    g = (tp - lo) / step
    gi = np.rint(g)
    tol = constants.GRID_POSITION_REL_TOL * max(1.0, float(np.max(shape)))
    off = np.abs(g - gi).max(axis=1) > tol
    if off.any() or (gi < 0).any() or (gi > shape - 1).any():
        bad = np.flatnonzero(off | (gi < 0).any(axis=1) | (gi > shape - 1).any(axis=1))
        raise InputError(f"train_positions {bad[:5].tolist()} ... are not on the grid")
    gi = gi.astype(np.int64)
    flat = (gi[:, 0] * shape[1] + gi[:, 1]) * shape[2] + gi[:, 2]
    slot = np.full(int(np.prod(shape)), -1, np.int64)
    if np.unique(flat).size != flat.size:
        raise InputError("train_positions hold two probes on one grid point")
    slot[flat] = np.arange(flat.size)

    # 1-2: trilinear over the cell's known corners
    Q = qp.shape[0]
    u = np.clip((qp - lo) / step, 0.0, shape - 1)
    ur = np.rint(u)
    u = np.where(np.abs(u - ur) <= GRID_SNAP_CELLS, ur, u)
    i0 = np.minimum(np.floor(u), np.maximum(shape - 2, 0)).astype(np.int64)
    fr = u - i0
    rows, cols, vals = [], [], []
    wsum = np.zeros(Q)
    corner_w, corner_s = [], []
    for cx in (0, 1):
        for cy in (0, 1):
            for cz in (0, 1):
                c = i0 + np.array([cx, cy, cz])
                w = (np.where(cx, fr[:, 0], 1 - fr[:, 0]) * np.where(cy, fr[:, 1], 1 - fr[:, 1])
                     * np.where(cz, fr[:, 2], 1 - fr[:, 2]))
                inside = (c <= shape - 1).all(axis=1)      # 1-point axes: corner 1 absent
                cf = (np.minimum(c[:, 0], shape[0] - 1) * shape[1]
                      + np.minimum(c[:, 1], shape[1] - 1)) * shape[2] + np.minimum(c[:, 2], shape[2] - 1)
                s = np.where(inside, slot[cf], -1)
                w = np.where((s >= 0) & (w > 0), w, 0.0)
                wsum += w
                corner_w.append(w)
                corner_s.append(s)
    good = wsum >= BLEND_MIN_WEIGHT
    for w, s in zip(corner_w, corner_s):
        m = good & (w > 0)
        rows.append(np.flatnonzero(m))
        cols.append(s[m])
        vals.append(w[m] / wsum[m])

    # 3: inverse-distance fallback over the nearest known probes
    lost = np.flatnonzero(~good)
    if lost.size:
        k = min(BLEND_FALLBACK_K, tp.shape[0])
        dist, nb = cKDTree(tp).query(qp[lost], k=k)
        dist, nb = dist.reshape(lost.size, k), nb.reshape(lost.size, k)
        near = dist <= dist[:, :1] * (1.0 + BLEND_TIE_REL)
        w = np.where(near, 1.0 / np.maximum(dist, np.finfo(float).tiny), 0.0)
        w /= w.sum(axis=1, keepdims=True)
        r, j = np.nonzero(near)
        rows.append(lost[r])
        cols.append(nb[r, j])
        vals.append(w[r, j])

    Wm = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                 shape=(Q, tf.shape[0]))
    out = np.empty((Q,) + tf.shape[1:], np.float32)
    flat_faces = tf.reshape(tf.shape[0], -1).astype(np.float64)
    for a in range(0, Q, CHUNK_PROBES):
        out[a:a + CHUNK_PROBES] = (Wm[a:a + CHUNK_PROBES] @ flat_faces).reshape((-1,) + tf.shape[1:])
    return out
