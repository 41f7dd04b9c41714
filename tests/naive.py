"""Slow, obvious oracles in plain numpy (stumpy ``tests/naive.py`` style).

Each function here is written from DESIGN-NOTES directly, by a different
method than the library's fast path, so that agreement means something:

- texel -> direction from the literal table of DESIGN-NOTES §1;
- direction -> texel from OpenGL's Table 8.19 (major axis, sc, tc);
- seamless bilinear sampling on faces padded with a one-texel border, each
  border texel found by brute force (the nearest texel centre of another face
  to the shared edge point), corners the mean of their three neighbours;
- the sphere warp of §3 with the documented miss rule (discriminant clamped
  at 0: the ray's closest approach to the centre);
- decoding per DESIGN-NOTES §4.
"""
from __future__ import annotations

import numpy as np


def naive_texel_direction(face: int, s: float, t: float, R: int) -> np.ndarray:
    """Direction (unnormalised) through continuous texel position (s, t) of ``face``.

    ``s, t`` are in texel units: texel k's centre is at k (this function adds
    the 0.5 itself), so ``s = -0.5`` is the left edge.
    """
    sc = 2.0 * (s + 0.5) / R - 1.0
    tc = 2.0 * (t + 0.5) / R - 1.0
    table = {
        0: (1.0, -tc, -sc),   # +X
        1: (-1.0, -tc, sc),   # -X
        2: (sc, 1.0, tc),     # +Y
        3: (sc, -1.0, -tc),   # -Y
        4: (sc, -tc, 1.0),    # +Z
        5: (-sc, -tc, -1.0),  # -Z
    }
    return np.array(table[face], dtype=np.float64)


def naive_all_directions(R: int) -> np.ndarray:
    """(6, R, R, 3) unit directions, by looping over the §1 table."""
    out = np.empty((6, R, R, 3))
    for f in range(6):
        for t in range(R):
            for s in range(R):
                d = naive_texel_direction(f, s, t, R)
                out[f, t, s] = d / np.linalg.norm(d)
    return out


def naive_direction_to_texel(d, R: int):
    """OpenGL Table 8.19: face and continuous texel coords (s, t) (centre of k at k)."""
    rx, ry, rz = (float(v) for v in d)
    ax, ay, az = abs(rx), abs(ry), abs(rz)
    if ax >= ay and ax >= az:
        face, ma, sc, tc = (0, ax, -rz, -ry) if rx >= 0 else (1, ax, rz, -ry)
    elif ay >= az:
        face, ma, sc, tc = (2, ay, rx, rz) if ry >= 0 else (3, ay, rx, -rz)
    else:
        face, ma, sc, tc = (4, az, rx, -ry) if rz >= 0 else (5, az, -rx, -ry)
    s = (sc / ma + 1.0) / 2.0 * R - 0.5
    t = (tc / ma + 1.0) / 2.0 * R - 0.5
    return face, s, t


def naive_pad_cube(faces: np.ndarray) -> np.ndarray:
    """(6, R, R, C) -> (6, R+2, R+2, C): each face with a border from its neighbours."""
    faces = np.asarray(faces, dtype=np.float64)
    R, C = faces.shape[1], faces.shape[3]
    dirs = naive_all_directions(R).reshape(-1, 3)
    face_of = np.repeat(np.arange(6), R * R)
    flat = faces.reshape(-1, C)
    out = np.zeros((6, R + 2, R + 2, C))
    out[:, 1:-1, 1:-1] = faces
    for f in range(6):
        others = face_of != f
        for t in range(-1, R + 1):
            for s in range(-1, R + 1):
                off_s, off_t = not (0 <= s < R), not (0 <= t < R)
                if off_s == off_t:
                    continue  # inside (done) or a corner (below)
                # the point on the shared edge: clamp the off coordinate to the edge
                se = min(max(s, -0.5), R - 0.5)
                te = min(max(t, -0.5), R - 0.5)
                e = naive_texel_direction(f, se, te, R)
                e /= np.linalg.norm(e)
                score = np.where(others, dirs @ e, -np.inf)
                out[f, t + 1, s + 1] = flat[int(np.argmax(score))]
        for t, s in ((-1, -1), (-1, R), (R, -1), (R, R)):
            ts, ss = t + 1, s + 1
            dt = 1 if t < 0 else -1
            ds = 1 if s < 0 else -1
            out[f, ts, ss] = (out[f, ts + dt, ss] + out[f, ts, ss + ds] + out[f, ts + dt, ss + ds]) / 3.0
    return out


def naive_sample_cube(faces: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Seamless bilinear sampling: (6, R, R, C), (..., 3) -> (..., C) float64."""
    faces = np.asarray(faces, dtype=np.float64)
    R, C = faces.shape[1], faces.shape[3]
    padded = naive_pad_cube(faces)
    d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    out = np.empty((d.shape[0], C))
    for n in range(d.shape[0]):
        f, s, t = naive_direction_to_texel(d[n], R)
        s, t = s + 1.0, t + 1.0  # padded coordinates
        s0, t0 = int(np.floor(s)), int(np.floor(t))
        a, b = s - s0, t - t0
        out[n] = ((1 - a) * (1 - b) * padded[f, t0, s0] + a * (1 - b) * padded[f, t0, s0 + 1]
                  + (1 - a) * b * padded[f, t0 + 1, s0] + a * b * padded[f, t0 + 1, s0 + 1])
    return out.reshape(np.shape(dirs)[:-1] + (C,))


def naive_warp_direction(x, c, rho, d) -> np.ndarray:
    """DESIGN-NOTES §3, one ray at a time: the direction from centre c to where
    the ray x + t d meets the sphere of radius rho (far root). Misses use the
    point of closest approach (discriminant clamped at 0). rho = inf -> d."""
    d = np.asarray(d, dtype=np.float64)
    d = d / np.linalg.norm(d)
    if not np.isfinite(rho):
        return d
    o = np.asarray(x, dtype=np.float64) - np.asarray(c, dtype=np.float64)
    b = float(o @ d)
    q2 = float(o @ o) - rho * rho
    disc = max(b * b - q2, 0.0)
    t = -b + np.sqrt(disc)
    s = o + t * d
    return s / np.linalg.norm(s)


def naive_tonemap(v):
    v = np.maximum(np.asarray(v, dtype=np.float64), 0.0)
    return (v / (1.0 + v)) ** (1.0 / 2.2)


def naive_inverse_tonemap(t):
    """Inverse of :func:`naive_tonemap` on [0, 1): ``v = u / (1 - u)`` with ``u = t^2.2``."""
    u = np.clip(np.asarray(t, dtype=np.float64), 0.0, None) ** 2.2
    return u / (1.0 - u)


def naive_solid_angle_weights(R: int) -> np.ndarray:
    """(6, R, R) texel solid angles from §1, normalised to sum 1."""
    w = np.empty((6, R, R))
    for f in range(6):
        for t in range(R):
            for s in range(R):
                sc = 2 * (s + 0.5) / R - 1
                tc = 2 * (t + 0.5) / R - 1
                w[f, t, s] = (2 / R) ** 2 / (1 + sc * sc + tc * tc) ** 1.5
    return w / w.sum()


def naive_psnr(ref: np.ndarray, test: np.ndarray) -> float:
    """DESIGN-NOTES §5 PSNR: (P, 6, R, R, 3) arrays, pooled MSE over probes."""
    R = ref.shape[2]
    w = naive_solid_angle_weights(R)
    mses = []
    for p in range(ref.shape[0]):
        e = ((naive_tonemap(ref[p]) - naive_tonemap(test[p])) ** 2).mean(axis=-1)
        mses.append(float((e * w).sum()))
    return 10.0 * np.log10(1.0 / np.mean(mses))


def naive_log_rmse(ref: np.ndarray, test: np.ndarray) -> float:
    R = ref.shape[2]
    w = naive_solid_angle_weights(R)
    lr = np.log1p(np.maximum(ref, 0.0))
    lt = np.log1p(np.maximum(test, 0.0))
    mses = [float((((lr[p] - lt[p]) ** 2).mean(axis=-1) * w).sum()) for p in range(ref.shape[0])]
    return float(np.sqrt(np.mean(mses)))


def naive_decode_probe(x, centres, radii, protos, idx, w, R):
    """DESIGN-NOTES §4 for one position, in the blend domain.

    protos : (M, 6, Rp, Rp, C); idx, w : (N,). Each output texel of an R x R
    cubemap is the mean of k x k sub-texel samples (k = Rp // R, at least 1),
    each the N-way blend of the prototypes warped to x. Returns (6, R, R, C).
    """
    M, _, Rp = protos.shape[:3]
    k = max(1, Rp // R)
    sub = naive_all_directions(R * k)  # (6, Rk, Rk, 3)
    out = np.zeros((6, R, R, protos.shape[-1]))
    for m, wk in zip(idx, w):
        if wk == 0:
            continue
        dirs = np.array([naive_warp_direction(x, centres[m], radii[m], d) for d in sub.reshape(-1, 3)])
        vals = naive_sample_cube(protos[m], dirs).reshape(6, R, k, R, k, -1).mean(axis=(2, 4))
        out += wk * vals
    return out


# --- baselines (baker/baselines.py) ------------------------------------------

def naive_real_sh(l: int, m: int, dirs) -> np.ndarray:
    """Real orthonormal SH ``Y_lm`` at unit directions (..., 3), from scipy's
    complex ``sph_harm_y`` (theta from +Z, phi = atan2(y, x)):
    ``sqrt(2) (-1)^m Re Y_l^m`` (m > 0), ``Y_l^0`` (m = 0),
    ``sqrt(2) (-1)^m Im Y_l^|m|`` (m < 0) -- no Condon-Shortley phase left."""
    from scipy.special import sph_harm_y
    d = np.asarray(dirs, dtype=np.float64)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    theta = np.arccos(np.clip(d[..., 2], -1.0, 1.0))
    phi = np.arctan2(d[..., 1], d[..., 0])
    y = sph_harm_y(l, abs(m), theta, phi)
    if m > 0:
        return np.sqrt(2.0) * (-1) ** m * y.real
    if m < 0:
        return np.sqrt(2.0) * (-1) ** m * y.imag
    return y.real


def naive_real_sh_band2(dirs) -> np.ndarray:
    """Closed forms of the 9 real SH of bands 0..2, order l*l + l + m: (..., 9)."""
    d = np.asarray(dirs, dtype=np.float64)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    c0 = 0.5 * np.sqrt(1 / np.pi)
    c1 = np.sqrt(3 / (4 * np.pi))
    c2 = 0.5 * np.sqrt(15 / np.pi)
    c20 = 0.25 * np.sqrt(5 / np.pi)
    c22 = 0.25 * np.sqrt(15 / np.pi)
    return np.stack([np.full_like(x, c0), c1 * y, c1 * z, c1 * x,
                     c2 * x * y, c2 * y * z, c20 * (3 * z * z - 1), c2 * x * z, c22 * (x * x - y * y)], -1)


def naive_weighted_lstsq(values, basis, w) -> np.ndarray:
    """argmin_c sum_t w_t (values_t - basis_t . c)^2, one np.linalg.lstsq per
    column: values (T, n), basis (T, K), w (T,) -> (K, n)."""
    sw = np.sqrt(np.asarray(w, dtype=np.float64))
    out = []
    for j in range(values.shape[1]):
        c, *_ = np.linalg.lstsq(sw[:, None] * basis, sw * values[:, j], rcond=None)
        out.append(c)
    return np.stack(out, axis=1)


def naive_weighted_pca_residual(X, wd, K: int) -> float:
    """Smallest mean weighted squared residual (per row) of a rank-K affine fit
    of rows X (P, D) under per-column weights wd (D,): full SVD of the
    weighted, centred data, energy beyond the top K singular values."""
    X = np.asarray(X, dtype=np.float64)
    Xc = (X - X.mean(axis=0)) * np.sqrt(wd)
    s = np.linalg.svd(Xc, compute_uv=False)
    return float((s[K:] ** 2).sum() / X.shape[0])


def naive_nearest_codeword(X, codebook, wd) -> np.ndarray:
    """Index of the nearest codeword of every row under weights wd, by loops."""
    out = np.empty(X.shape[0], np.int64)
    for p in range(X.shape[0]):
        best, arg = np.inf, -1
        for k in range(codebook.shape[0]):
            e = float((wd * (X[p] - codebook[k]) ** 2).sum())
            if e < best:
                best, arg = e, k
        out[p] = arg
    return out


def naive_neighbour_blend(train_positions, train_faces, grid_shape, lo, hi, queries,
                          tie_rel=1e-3) -> np.ndarray:
    """The documented held-out rule, one query at a time: trilinear weights on
    the cell's 8 corners, renormalised over the known ones; if none carries
    weight, 1/d weights over the known probes tied for nearest (within
    ``tie_rel``). Grid points found by brute force."""
    shape = [int(n) for n in grid_shape]
    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    step = [(hi[a] - lo[a]) / (shape[a] - 1) if shape[a] > 1 else 1.0 for a in range(3)]
    known = {}
    for j, p in enumerate(np.asarray(train_positions, float)):
        best = None
        for ix in range(shape[0]):
            for iy in range(shape[1]):
                for iz in range(shape[2]):
                    g = lo + np.array([ix, iy, iz]) * step
                    dd = np.linalg.norm(g - p)
                    if best is None or dd < best[0]:
                        best = (dd, (ix, iy, iz))
        known[best[1]] = j
    tf = np.asarray(train_faces, dtype=np.float64)
    out = []
    for q in np.asarray(queries, float):
        u = [min(max((q[a] - lo[a]) / step[a], 0.0), shape[a] - 1) for a in range(3)]
        u = [round(v) if abs(v - round(v)) <= 1e-6 else v for v in u]
        i0 = [min(int(np.floor(u[a])), max(shape[a] - 2, 0)) for a in range(3)]
        acc, wsum = 0.0, 0.0
        for cx in (0, 1):
            for cy in (0, 1):
                for cz in (0, 1):
                    c = (i0[0] + cx, i0[1] + cy, i0[2] + cz)
                    w = 1.0
                    for a, ca in enumerate((cx, cy, cz)):
                        f = u[a] - i0[a]
                        w *= f if ca else 1.0 - f
                    if w > 0 and c in known:
                        acc = acc + w * tf[known[c]]
                        wsum += w
        if wsum >= 1e-9:
            out.append(acc / wsum)
            continue
        d = np.linalg.norm(np.asarray(train_positions, float) - q, axis=1)
        near = np.flatnonzero(d <= d.min() * (1 + tie_rel))
        w = 1.0 / d[near]
        out.append(np.tensordot(w / w.sum(), tf[near], axes=1))
    return np.stack(out)


def naive_prefilter_cube(faces: np.ndarray, R_out: int, exponent: float) -> np.ndarray:
    """Lobe-weighted mean of a cubemap (..., 6, R, R, C) around every texel
    direction n of an R_out cube: sum L(l) max(n.l, 0)^p dw(l) / sum max(n.l, 0)^p dw(l)
    over all input texels l (shaders/prefilter_cubemap.cs)."""
    faces = np.asarray(faces, np.float64)
    R = faces.shape[-2]
    ld = naive_all_directions(R).reshape(-1, 3)
    dw = naive_solid_angle_weights(R).reshape(-1)
    n = naive_all_directions(int(R_out)).reshape(-1, 3)
    L = faces.reshape(faces.shape[:-4] + (6 * R * R, faces.shape[-1]))
    out = np.empty(faces.shape[:-4] + (n.shape[0], faces.shape[-1]))
    for o in range(n.shape[0]):
        c = ld @ n[o]
        w = np.where(c > 0, np.maximum(c, 0) ** exponent, 0.0) * dw
        out[..., o, :] = np.einsum("...lc,l->...c", L, w) / w.sum()
    return out.reshape(faces.shape[:-4] + (6, int(R_out), int(R_out), faces.shape[-1]))


def naive_closest_on_triangle(q, a, b, c):
    """Closest point of triangle abc to q, by cases: the plane's projection if it
    falls inside, else the best of the three edges (clamped segment projections).
    Returns (squared distance, barycentric weights (3,))."""
    n = np.cross(b - a, c - a)
    nn = float(n @ n)
    if nn > 0:
        p = q - (float((q - a) @ n) / nn) * n
        M = np.array([b - a, c - a]).T
        uv, *_ = np.linalg.lstsq(M, p - a, rcond=None)
        wts = np.array([1 - uv[0] - uv[1], uv[0], uv[1]])
        if (wts >= -1e-12).all():
            return float(np.sum((p - q) ** 2)), np.clip(wts, 0, None) / np.clip(wts, 0, None).sum()
    best = (np.inf, None)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        v = [a, b, c]
        e = v[j] - v[i]
        t = 0.0 if float(e @ e) == 0 else min(max(float((q - v[i]) @ e) / float(e @ e), 0.0), 1.0)
        p = v[i] + t * e
        d = float(np.sum((p - q) ** 2))
        if d < best[0]:
            wts = np.zeros(3)
            wts[i], wts[j] = 1 - t, t
            best = (d, wts)
    return best


def naive_tetra_weights(points, simplices, hull, q):
    """Tetrahedral interpolation by brute force: the tetrahedron (of
    ``simplices``) whose barycentric coordinates of q are all >= 0 (a 4 x 4
    solve per tetrahedron), else the closest hull triangle (``hull``) and the
    closest point's barycentric weights; q first clamped into the points'
    bounding box (the documented rule). Returns {probe id: weight}."""
    q = np.clip(np.asarray(q, np.float64), points.min(axis=0), points.max(axis=0))
    for s in simplices:
        P = points[s]
        A = np.vstack([P.T, np.ones(4)])
        if abs(np.linalg.det(A)) < 1e-9 * np.prod(np.linalg.norm(P[1:] - P[0], axis=1)):
            continue                         # a flat tetrahedron (cospherical points) holds nothing
        b = np.linalg.solve(A, np.append(q, 1.0))
        if (b >= -1e-10).all():
            b = np.clip(b, 0, None)
            return {int(i): float(v) for i, v in zip(s, b / b.sum())}
    best = (np.inf, None, None)
    for t in hull:
        d, wts = naive_closest_on_triangle(q, *points[t])
        if d < best[0]:
            best = (d, t, wts)
    return {int(i): float(v) for i, v in zip(best[1], best[2])}


def naive_axis_fill_weights(shape, step, present, u):
    """The sparse grids' fill rule by brute force, in lattice units: ``shape``
    (3,), ``step`` (3,) spacing, ``present`` a set of lattice points (i, j, k),
    ``u`` the query's continuous lattice coordinates (clamped into the box
    here). Trilinear weights on the 8 corners of the cell; a present corner
    keeps its weight; an absent one gives it to its present axis neighbours
    (inside the lattice) in proportion to 1/step^2 of their axis; then
    normalised over everything received. Returns {lattice point: weight}
    (empty when nothing is present around). Axes with one point: both
    corners are that point (weight 1 - 0)."""
    shape = np.asarray(shape)
    u = np.clip(np.asarray(u, np.float64), 0, shape - 1)
    i0 = np.minimum(np.floor(u).astype(int), np.maximum(shape - 2, 0))
    f = u - i0
    got = {}
    for c in range(8):
        o = np.array([(c >> 2) & 1, (c >> 1) & 1, c & 1])
        p = tuple(int(v) for v in np.minimum(i0 + o, shape - 1))
        wc = float(np.prod(np.where(o == 1, f, 1 - f)))
        if p in present:
            got[p] = got.get(p, 0.0) + wc
            continue
        if wc <= 0:
            continue
        nbs = []
        for a in range(3):
            if shape[a] < 2:
                continue
            for s in (-1, 1):
                q = list(p)
                q[a] += s
                if 0 <= q[a] < shape[a] and tuple(q) in present:
                    nbs.append((tuple(q), 1.0 / step[a] ** 2))
        tot = sum(v for _, v in nbs)
        for q, v in nbs:
            got[q] = got.get(q, 0.0) + wc * v / tot
    total = sum(got.values())
    return {k: v / total for k, v in got.items()} if total > 0 else {}
