"""Private numba kernels of the prototype learner (stumpy style: arrays in,
arrays out; validation lives in the public wrappers of :mod:`.prototypes`).

The forward model (DESIGN-NOTES §3-§4, decoder twin ``decode_texels``): probe
``i``'s texel ``t`` is::

    Y[i, t] = sum_k w[i, k] * (1/S) sum_s J[m_ik]( warp(x_i - c_m, rho_m, d[t, s]) )

where ``d[t, s]`` are the ``S = k*k`` sub-texel directions of texel ``t`` (a
box filter over the texel's footprint when the prototypes have ``k`` times the
probes' resolution) and ``J(.)`` is seamless bilinear sampling
(:func:`.cubemap._cube_taps`). For fixed geometry and codes this is linear in
the prototype texels ``J``; :func:`_adjoint` is its exact transpose (tested
with the dot-product test).

Array conventions (all C-contiguous):

- ``x`` (P, 3) float64 probe positions; ``C`` (M, 3) float64 centres;
  ``rho`` (M,) float64 radii (``inf`` = no parallax)
- ``sub_dirs`` (T, S, 3) float64 unit sub-texel directions of the probe grid
- ``J`` (M, Tp, 3) float32 prototype texels, ``Tp = 6 Rp^2``, flat index
  ``(face * Rp + row) * Rp + column``
- ``idx`` (P, N) int32 prototype indices; ``w`` (P, N) float32 weights
- ``wt`` (Pw, T) float32 texel weights of the loss, ``Pw`` 1 or P
"""
from __future__ import annotations

import numba as nb
import numpy as np

from probewarp.baker import config
from probewarp.baker.cubemap import _cube_taps
from probewarp.baker.warp import _warp_dir

_JIT = dict(nogil=True, cache=config.NUMBA_CACHE, fastmath=config.NUMBA_FASTMATH)


@nb.njit(parallel=True, **_JIT)
def _render(x, sub_dirs, C, rho, J, Rp, idx, w, out):
    """Forward operator: ``out`` (P, T, 3) float32 <- reconstruction of every probe."""
    P = x.shape[0]
    T = sub_dirs.shape[0]
    S = sub_dirs.shape[1]
    N = idx.shape[1]
    inv = 1.0 / S
    for i in nb.prange(P):
        ti = np.empty(4, np.int64)
        tw = np.empty(4, np.float64)
        acc = np.zeros((T, 3), np.float64)
        for k in range(N):
            wk = w[i, k]
            if wk == 0.0:
                continue
            m = idx[i, k]
            ox = x[i, 0] - C[m, 0]
            oy = x[i, 1] - C[m, 1]
            oz = x[i, 2] - C[m, 2]
            r = rho[m]
            for t in range(T):
                for s in range(S):
                    sx, sy, sz = _warp_dir(ox, oy, oz, r, sub_dirs[t, s, 0], sub_dirs[t, s, 1], sub_dirs[t, s, 2])
                    _cube_taps(Rp, sx, sy, sz, ti, tw)
                    for q in range(4):
                        a = wk * inv * tw[q]
                        acc[t, 0] += a * J[m, ti[q], 0]
                        acc[t, 1] += a * J[m, ti[q], 1]
                        acc[t, 2] += a * J[m, ti[q], 2]
        for t in range(T):
            out[i, t, 0] = acc[t, 0]
            out[i, t, 1] = acc[t, 1]
            out[i, t, 2] = acc[t, 2]


@nb.njit(parallel=True, **_JIT)
def _adjoint(x, sub_dirs, C, rho, Rp, idx, w, resid, G_chunks):
    """Transpose of :func:`_render`: scatter ``resid`` (P, T, 3) into
    ``G_chunks`` (n_chunks, M, Tp, 3) float64 (zeroed by the caller; one
    accumulator per chunk of probes so threads never race). Sum over axis 0."""
    P = x.shape[0]
    T = sub_dirs.shape[0]
    S = sub_dirs.shape[1]
    N = idx.shape[1]
    inv = 1.0 / S
    n_chunks = G_chunks.shape[0]
    for ch in nb.prange(n_chunks):
        ti = np.empty(4, np.int64)
        tw = np.empty(4, np.float64)
        G = G_chunks[ch]
        for i in range(ch * P // n_chunks, (ch + 1) * P // n_chunks):
            for k in range(N):
                wk = w[i, k]
                if wk == 0.0:
                    continue
                m = idx[i, k]
                ox = x[i, 0] - C[m, 0]
                oy = x[i, 1] - C[m, 1]
                oz = x[i, 2] - C[m, 2]
                r = rho[m]
                for t in range(T):
                    r0 = resid[i, t, 0] * wk * inv
                    r1 = resid[i, t, 1] * wk * inv
                    r2 = resid[i, t, 2] * wk * inv
                    for s in range(S):
                        sx, sy, sz = _warp_dir(ox, oy, oz, r, sub_dirs[t, s, 0], sub_dirs[t, s, 1], sub_dirs[t, s, 2])
                        _cube_taps(Rp, sx, sy, sz, ti, tw)
                        for q in range(4):
                            G[m, ti[q], 0] += tw[q] * r0
                            G[m, ti[q], 1] += tw[q] * r1
                            G[m, ti[q], 2] += tw[q] * r2


@nb.njit(**_JIT)
def _warp_one(xi0, xi1, xi2, sub_dirs, c, r, Jm, Rp, out):
    """Prototype ``Jm`` (Tp, 3) warped to one position: ``out`` (T, 3) float64."""
    T = sub_dirs.shape[0]
    S = sub_dirs.shape[1]
    inv = 1.0 / S
    ti = np.empty(4, np.int64)
    tw = np.empty(4, np.float64)
    ox = xi0 - c[0]
    oy = xi1 - c[1]
    oz = xi2 - c[2]
    for t in range(T):
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        for s in range(S):
            sx, sy, sz = _warp_dir(ox, oy, oz, r, sub_dirs[t, s, 0], sub_dirs[t, s, 1], sub_dirs[t, s, 2])
            _cube_taps(Rp, sx, sy, sz, ti, tw)
            for q in range(4):
                a0 += tw[q] * Jm[ti[q], 0]
                a1 += tw[q] * Jm[ti[q], 1]
                a2 += tw[q] * Jm[ti[q], 2]
        out[t, 0] = a0 * inv
        out[t, 1] = a1 * inv
        out[t, 2] = a2 * inv


@nb.njit(**_JIT)
def _solve_support(G, b, support, n):
    """Normal equations restricted to ``support[:n]`` (tiny ridge for
    duplicated atoms): the least-squares coefficients, (n,) float64."""
    A = np.empty((n, n))
    rhs = np.empty(n)
    for a in range(n):
        rhs[a] = b[support[a]]
        for c in range(n):
            A[a, c] = G[support[a], support[c]]
        A[a, a] += 1e-9 * (1.0 + A[a, a])
    return np.linalg.solve(A, rhs)


@nb.njit(**_JIT)
def _nn_ls(G, b, support, n):
    """Least squares on the support with non-negativity by pruning: solve the
    normal equations on ``support[:n]``, drop the most negative coefficient
    and re-solve until all are >= 0. Returns (weights, n_kept)."""
    while n > 0:
        sol = _solve_support(G, b, support, n)
        worst = -1
        wv = 0.0
        for a in range(n):
            if sol[a] < wv:
                wv = sol[a]
                worst = a
        if worst < 0:
            return sol, n
        for a in range(worst, n - 1):
            support[a] = support[a + 1]
        n -= 1
    return np.zeros(0), 0


@nb.njit(parallel=True, **_JIT)
def _code(x, sub_dirs, C, rho, J, Rp, Y, wt, cand, N, nonneg, idx_out, w_out, err_out):
    """Sparse coding of every probe over its candidate prototypes.

    Orthogonal matching pursuit (non-negative when ``nonneg``) with ``N``
    atoms among ``cand[i]`` (P, K) int32 (-1 = unused), each candidate warped
    to the probe position. Loss weights ``wt`` (solid angle, IRLS). Writes the
    code into ``idx_out``/``w_out`` and its weighted squared error into
    ``err_out`` only where it beats the error already in ``err_out`` (so a
    coding pass never makes any probe worse: pass the current errors in,
    ``inf`` to force).
    """
    P = x.shape[0]
    Pw = wt.shape[0]
    for i in nb.prange(P):
        _code_one(i, x, sub_dirs, C, rho, J, Rp, Y, wt[i * (Pw > 1)], cand, N, nonneg,
                  idx_out, w_out, err_out)


@nb.njit(**_JIT)
def _code_one(i, x, sub_dirs, C, rho, J, Rp, Y, wrow, cand, N, nonneg, idx_out, w_out, err_out):
    """One probe of :func:`_code`."""
    T = sub_dirs.shape[0]
    K = cand.shape[1]
    D = np.zeros((K, T, 3))
    valid = np.zeros(K, np.bool_)
    for a in range(K):
        m = cand[i, a]
        if m < 0:
            continue
        valid[a] = True
        _warp_one(x[i, 0], x[i, 1], x[i, 2], sub_dirs, C[m], rho[m], J[m], Rp, D[a])
    # weighted correlations b = D W y and ||y||_W^2
    yy = 0.0
    for t in range(T):
        for c in range(3):
            yy += wrow[t] * Y[i, t, c] * Y[i, t, c]
    b = np.zeros(K)
    for a in range(K):
        if valid[a]:
            s = 0.0
            for t in range(T):
                s += wrow[t] * (D[a, t, 0] * Y[i, t, 0] + D[a, t, 1] * Y[i, t, 1] + D[a, t, 2] * Y[i, t, 2])
            b[a] = s
    G = np.zeros((K, K))
    have_row = np.zeros(K, np.bool_)
    support = np.empty(N, np.int64)
    n = 0
    coef = np.zeros(0)
    chosen = np.zeros(K, np.bool_)
    for step in range(N):
        # residual correlations r_a = b_a - sum_s G[a, s] coef_s
        best = -1
        bestv = 0.0
        for a in range(K):
            if not valid[a] or chosen[a]:
                continue
            ra = b[a]
            for q in range(n):
                ra -= G[a, support[q]] * coef[q]
            score = ra if nonneg else abs(ra)
            if score > bestv:
                bestv = score
                best = a
        if best < 0:
            break
        chosen[best] = True
        # Gram row of the new atom (symmetric fill)
        if not have_row[best]:
            for a in range(K):
                if valid[a]:
                    s = 0.0
                    for t in range(T):
                        s += wrow[t] * (D[a, t, 0] * D[best, t, 0] + D[a, t, 1] * D[best, t, 1]
                                        + D[a, t, 2] * D[best, t, 2])
                    G[a, best] = s
                    G[best, a] = s
            have_row[best] = True
        support[n] = best
        n += 1
        if nonneg:
            coef, n = _nn_ls(G, b, support, n)
        else:
            coef = _solve_support(G, b, support, n)
    # error = y'Wy - 2 b'c + c'Gc
    e = yy
    for a in range(n):
        e -= 2.0 * b[support[a]] * coef[a]
        for c in range(n):
            e += coef[a] * G[support[a], support[c]] * coef[c]
    if e < err_out[i]:
        err_out[i] = e
        for k in range(idx_out.shape[1]):
            idx_out[i, k] = cand[i, support[0]] if n > 0 else 0
            w_out[i, k] = 0.0
        for a in range(n):
            idx_out[i, a] = cand[i, support[a]]
            w_out[i, a] = coef[a]


@nb.njit(parallel=True, **_JIT)
def _weighted_sqerr(Y, Yhat, wt, out):
    """Per-probe weighted squared error ``sum_t wt[t] sum_c (Y - Yhat)^2``: (P,) float64."""
    P = Y.shape[0]
    T = Y.shape[1]
    Pw = wt.shape[0]
    for i in nb.prange(P):
        wrow = wt[i * (Pw > 1)]
        s = 0.0
        for t in range(T):
            for c in range(3):
                d = Y[i, t, c] - Yhat[i, t, c]
                s += wrow[t] * d * d
        out[i] = s


@nb.njit(parallel=True, **_JIT)
def _radius_trials(x, sub_dirs, C, rho, J, Rp, idx, w, resid, wt, scales, delta):
    """Change of each probe's loss when one of its prototypes' radius is
    multiplied by ``scales[j]`` (inf-safe): ``delta`` (P, N, n_scales) float64.

    ``resid`` = Y - Yhat (P, T, 3) at the current geometry. For term k the new
    residual is ``resid + w_k (W_old - W_new) J_m``.
    """
    P = x.shape[0]
    T = sub_dirs.shape[0]
    N = idx.shape[1]
    nS = scales.shape[0]
    Pw = wt.shape[0]
    for i in nb.prange(P):
        wrow = wt[i * (Pw > 1)]
        old = np.empty((T, 3))
        new = np.empty((T, 3))
        base = 0.0
        for t in range(T):
            for c in range(3):
                base += wrow[t] * resid[i, t, c] * resid[i, t, c]
        for k in range(N):
            wk = w[i, k]
            m = idx[i, k]
            if wk == 0.0:
                for j in range(nS):
                    delta[i, k, j] = 0.0
                continue
            _warp_one(x[i, 0], x[i, 1], x[i, 2], sub_dirs, C[m], rho[m], J[m], Rp, old)
            for j in range(nS):
                r = rho[m] * scales[j]
                _warp_one(x[i, 0], x[i, 1], x[i, 2], sub_dirs, C[m], r, J[m], Rp, new)
                e = 0.0
                for t in range(T):
                    for c in range(3):
                        d = resid[i, t, c] + wk * (old[t, c] - new[t, c])
                        e += wrow[t] * d * d
                delta[i, k, j] = e - base
