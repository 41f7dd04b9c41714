"""k-means: one k-means++ seeding core and Lloyd loops (the bake's and VQ's).

Both users of :func:`kmeanspp` are pinned to their earlier results for the
same ``rng`` (:func:`kmeans_fixed` as the bake had it,
:class:`probewarp.baselines.vq.VectorQuantizer` unchanged), so the seeding
takes its variant as a parameter rather than merging the rounding
conventions:

* ``n_trials=None`` -- classic k-means++ (Arthur & Vassilvitskii): one D^2
  draw per centre (``rng.choice``), float64 distances clipped at 0; a set with
  fewer distinct rows than M draws uniformly. Used by :func:`kmeans_fixed`.
* ``n_trials=int`` -- greedy k-means++ (scikit-learn): ``n_trials`` draws per
  centre, the one lowering the potential most kept; distances
  ``|a|^2 - 2ab + |b|^2`` with a :data:`KMEANS_ZERO_REL` floor; a set with
  fewer distinct rows than M takes unused rows. Used by VQ (:func:`kmeans`).

The learner itself (``prototypes.ProbeCodec.fit``) seeds with
:func:`kmeans_exact`: classic k-means++ plus a fixed number of float64 Lloyd
iterations like :func:`kmeans_fixed`, but every distance is a numba loop
summed in one fixed order (``sum_d (x_d - c_d)^2``), never BLAS, so its labels
are the same whatever the thread count of BLAS or numba (parallel and serial
twins agree bit for bit) and several fits may run it in Python threads.
:func:`kmeans_fixed` stays as it was (its results are pinned by a test).

Notes
-----
The Lloyd loops differ on purpose: the bake runs a fixed number of dense
float64 iterations on a small feature matrix; VQ streams float32 BLAS in
chunks of :data:`CHUNK_ROWS` rows until converged.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
import scipy.sparse
from numba import prange

from probewarp.baker import config
from probewarp.baker.kernels import serial_copy

#: Lloyd iterations at most (VQ), and the relative decrease of the objective
#: below which they stop (they also stop when no label changes).
KMEANS_MAX_ITER = 100
KMEANS_TOL = 1.0e-6
#: Squared distances computed as ``|a|^2 - 2ab + |b|^2`` in float32 below this
#: fraction of ``|a|^2 + |b|^2`` are rounding noise and count as 0 (so a
#: greedy k-means++ draw never picks a copy of a chosen centre). 1e-5 of the
#: energy is far below what the metric resolves (~ 55 dB).
KMEANS_ZERO_REL = 1.0e-5
#: Rows per chunk of :func:`assign` (bounds the (chunk, M) distance block).
CHUNK_ROWS = 1024


def sq_norms(X: np.ndarray) -> np.ndarray:
    """Row squared norms of ``X`` (P, D): (P,) float64."""
    return np.einsum("ij,ij->i", X, X, dtype=np.float64)


def sq_dist(X, xn, C, cn) -> np.ndarray:
    """(p, m) squared distances ``|x|^2 - 2 x.c + |c|^2`` (float64), rounding noise -> 0."""
    d = (xn[:, None] + cn[None, :]) - 2.0 * (X @ C.T).astype(np.float64)
    floor = KMEANS_ZERO_REL * (xn[:, None] + cn[None, :])
    return np.where(d <= floor, 0.0, d)


def _dist_to(X, xn, cand, greedy: bool) -> np.ndarray:
    """(P, len(cand)) squared distances to rows ``cand`` in the variant's rounding."""
    if greedy:
        return sq_dist(X, xn, X[cand], xn[cand])
    j = int(cand[0])                                 # classic: one candidate, one gemv
    return np.maximum(xn - 2 * X @ X[j] + xn[j], 0.0)[:, None]


def kmeanspp(X: np.ndarray, M: int, rng: np.random.Generator, *, xn=None,
             n_trials: int | None = None) -> np.ndarray:
    """k-means++ seeding of ``X`` (P, D) float: (M,) int64 row indices.

    ``n_trials=None`` is the classic variant, an int the greedy one (module
    docstring). ``xn`` : (P,) float64 row squared norms, if already known.
    """
    P = X.shape[0]
    xn = sq_norms(X) if xn is None else xn
    greedy = n_trials is not None
    first = int(rng.integers(P))
    chosen = [first]
    closest = _dist_to(X, xn, [first], greedy)[:, 0]
    for _ in range(1, M):
        total = closest.sum()
        if greedy:
            if total <= 0.0:        # fewer distinct rows than M: take any unused rows
                rest = np.setdiff1d(np.arange(P), chosen)
                chosen.extend(rest[:M - len(chosen)].tolist())
                break
            cand = np.searchsorted(np.cumsum(closest), rng.random(n_trials) * total, side="right")
            cand = np.minimum(cand, P - 1)
        else:
            cand = [int(rng.choice(P, p=closest / total)) if total > 0 else int(rng.integers(P))]
        dc = np.minimum(closest[:, None], _dist_to(X, xn, cand, greedy))   # (P, trials)
        best = int(np.argmin(dc.sum(axis=0)))
        chosen.append(int(cand[best]))
        closest = dc[:, best]
    return np.asarray(chosen, np.int64)


def kmeans_fixed(X: np.ndarray, M: int, rng: np.random.Generator, n_lloyd: int = 8) -> np.ndarray:
    """Classic k-means++ plus ``n_lloyd`` dense float64 Lloyd iterations on ``X`` (P, D)
    float64: labels (P,) int64. An empty cluster takes the worst-fit point."""
    P = X.shape[0]
    sq = np.einsum("ij,ij->i", X, X)
    centres = X[kmeanspp(X, M, rng, xn=sq)].astype(np.float64)
    labels = np.zeros(P, np.int64)
    for _ in range(n_lloyd):
        dist = sq[:, None] - 2 * X @ centres.T + np.einsum("ij,ij->i", centres, centres)[None]
        labels = np.argmin(dist, axis=1)
        counts = np.bincount(labels, minlength=M)
        for m in np.flatnonzero(counts == 0):    # empty cluster: take the worst-fit point
            far = int(np.argmax(dist[np.arange(P), labels]))
            labels[far] = m
            counts = np.bincount(labels, minlength=M)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, X)
        centres = sums / counts[:, None]
    return labels


def assign(X, xn, C):
    """Nearest centre of every row (chunked BLAS): labels (P,) int64, sq. distances (P,) float64."""
    cn = sq_norms(C)
    P = X.shape[0]
    labels = np.empty(P, np.int64)
    dist = np.empty(P)
    for a in range(0, P, CHUNK_ROWS):
        d = sq_dist(X[a:a + CHUNK_ROWS], xn[a:a + CHUNK_ROWS], C, cn)
        labels[a:a + CHUNK_ROWS] = np.argmin(d, axis=1)
        dist[a:a + CHUNK_ROWS] = d[np.arange(d.shape[0]), labels[a:a + CHUNK_ROWS]]
    return labels, dist


def centroids(X, labels, M, old):
    """Cluster means (M, D) float64; empty clusters keep ``old``. Counts (M,) float64."""
    P = X.shape[0]
    S = scipy.sparse.csr_matrix((np.ones(P, X.dtype), (labels, np.arange(P))), shape=(M, P))
    counts = np.bincount(labels, minlength=M).astype(np.float64)
    sums = np.asarray(S @ X, dtype=np.float64)
    C = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], old)
    return C, counts


def kmeans(X: np.ndarray, M: int, rng: np.random.Generator, *, xn=None,
           max_iter: int = KMEANS_MAX_ITER, tol: float = KMEANS_TOL):
    """Greedy k-means++ plus float32 Lloyd iterations to convergence on ``X`` (P, D) float32.

    Returns ``(C, n_iter)``: centres (M, D) float64 and the iterations run.
    An empty cluster is re-seeded with the row worst served by its centre.
    """
    xn = sq_norms(X) if xn is None else xn
    C = X[kmeanspp(X, M, rng, xn=xn, n_trials=2 + int(math.log(M)))].astype(np.float64)
    labels, dist = assign(X, xn, C.astype(np.float32))
    obj = dist.sum()
    n_iter = 0
    for n_iter in range(1, int(max_iter) + 1):
        C, counts = centroids(X, labels, M, C)
        for j in np.flatnonzero(counts == 0):     # re-seed empty clusters
            far = int(np.argmax(dist))
            C[j] = X[far]
            dist[far] = 0.0
        new_labels, dist = assign(X, xn, C.astype(np.float32))
        new_obj = dist.sum()
        done = np.array_equal(new_labels, labels) or obj - new_obj <= tol * obj
        labels, obj = new_labels, new_obj
        if done:
            break
    return C, n_iter


# --- the learner's k-means: no BLAS, results independent of thread counts -------------

_JIT = dict(nogil=True, cache=config.NUMBA_CACHE, fastmath=config.NUMBA_FASTMATH)
#: Rows per work item of the exact distance kernels (fixed; results do not depend on it).
EXACT_BLOCK = 256


def _dist_to_row_py(XT, j, out):
    """``out`` (P,) <- ``sum_d (X[p, d] - X[j, d])^2`` for ``XT`` = X transposed (D, P)."""
    Dd, P = XT.shape
    n_blocks = (P + EXACT_BLOCK - 1) // EXACT_BLOCK
    for blk in prange(n_blocks):
        a = blk * EXACT_BLOCK
        e = min(P, a + EXACT_BLOCK)
        acc = np.zeros(e - a)
        for d in range(Dd):
            v = XT[d, j]
            row = XT[d, a:e]
            for p in range(e - a):
                q = row[p] - v
                acc[p] += q * q
        for p in range(e - a):
            out[a + p] = acc[p]


def _assign_py(X, CT, labels, dist):
    """Nearest centre of every row of ``X`` (P, D) among ``CT`` (D, M) (first on ties)."""
    P, Dd = X.shape
    M = CT.shape[1]
    n_blocks = (P + EXACT_BLOCK - 1) // EXACT_BLOCK
    for blk in prange(n_blocks):
        acc = np.empty(M)
        for p in range(blk * EXACT_BLOCK, min(P, (blk + 1) * EXACT_BLOCK)):
            for c in range(M):
                acc[c] = 0.0
            for d in range(Dd):
                v = X[p, d]
                for c in range(M):
                    q = v - CT[d, c]
                    acc[c] += q * q
            best = 0
            for c in range(1, M):
                if acc[c] < acc[best]:
                    best = c
            labels[p] = best
            dist[p] = acc[best]


def _twin(fn):
    """(parallel, serial) compilations with separate cache entries (:func:`.kernels.serial_copy`)."""
    return nb.njit(parallel=True, **_JIT)(fn), nb.njit(**_JIT)(serial_copy(fn))


_dist_to_row, _dist_to_row_serial = _twin(_dist_to_row_py)
_assign_exact, _assign_exact_serial = _twin(_assign_py)


@nb.njit(**_JIT)
def _centroids_exact(X, labels, M):
    """Cluster sums in row order, divided by the counts: (M, D) float64, counts (M,) int64."""
    P, Dd = X.shape
    sums = np.zeros((M, Dd))
    counts = np.zeros(M, np.int64)
    for p in range(P):
        m = labels[p]
        counts[m] += 1
        for d in range(Dd):
            sums[m, d] += X[p, d]
    for m in range(M):
        if counts[m] > 0:
            for d in range(Dd):
                sums[m, d] /= counts[m]
    return sums, counts


def kmeans_exact(X: np.ndarray, M: int, rng: np.random.Generator, n_lloyd: int = 8,
                 parallel: bool = True) -> np.ndarray:
    """Classic k-means++ plus ``n_lloyd`` float64 Lloyd iterations on ``X`` (P, D):
    labels (P,) int64, bit-identical for any thread count and for ``parallel``
    True or False (module docstring). An empty cluster takes the worst-fit
    point not taken yet."""
    X = np.ascontiguousarray(X, np.float64)
    P = X.shape[0]
    XT = np.ascontiguousarray(X.T)
    dist_to = _dist_to_row if parallel else _dist_to_row_serial
    assign_ = _assign_exact if parallel else _assign_exact_serial
    first = int(rng.integers(P))
    chosen = [first]
    closest = np.empty(P)
    dist_to(XT, first, closest)
    new = np.empty(P)
    for _ in range(1, M):
        total = float(closest.sum())
        j = int(rng.choice(P, p=closest / total)) if total > 0 else int(rng.integers(P))
        chosen.append(j)
        dist_to(XT, j, new)
        np.minimum(closest, new, out=closest)
    centres = X[np.asarray(chosen, np.int64)]
    labels = np.zeros(P, np.int64)
    dist = np.empty(P)
    for _ in range(n_lloyd):
        assign_(X, np.ascontiguousarray(centres.T), labels, dist)
        counts = np.bincount(labels, minlength=M)
        for m in np.flatnonzero(counts == 0):    # empty cluster: take the worst-fit point
            far = int(np.argmax(np.where(counts[labels] > 1, dist, -1.0)))
            counts[labels[far]] -= 1
            counts[m] += 1
            labels[far] = m
            dist[far] = -1.0
        centres, _ = _centroids_exact(X, labels, M)
    return labels
