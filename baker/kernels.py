"""Private numba kernels of the prototype learner (stumpy style: arrays in,
arrays out; validation lives in the public wrappers of :mod:`.prototypes`).

The forward model (DESIGN-NOTES §3-§4, decoder twin ``decode_texels``): probe
``i``'s texel ``t`` is::

    Y[i, t] = sum_k w[i, k] * (1/S) sum_s J[m_ik]( warp(x_i - c_m, rho_m, d[t, s]) )

where ``d[t, s]`` are the ``S = k*k`` sub-texel directions of texel ``t`` (a
box filter over the texel's footprint when the prototypes have ``k`` times the
probes' resolution) and ``J(.)`` is seamless bilinear sampling
(:func:`.cubemap._cube_taps`). For fixed geometry and codes this is linear in
the prototype texels ``J``.

Two implementations of that model live here:

- the **exact** one, :func:`_render` (float64 bilinear weights on padded
  float64 prototypes, see below: GL's seamless rule, as
  :func:`.cubemap._cube_taps`): the CPU reference decoder's (:mod:`.decoder`)
  and the learner's final, published loss; :func:`_adjoint`, written on
  :func:`.cubemap._cube_taps` directly, is its transpose (the dot-product
  test checks both against each other);
- the **fitting** one, every other kernel: a prototype is first *padded*
  (:func:`pad_table`, :func:`_pad`) to ``(6, Rp + 2, Rp + 2)`` with a
  one-texel border copied from the adjacent faces and corners that average
  their three real neighbours (exactly GL's seamless rule, the construction
  of ``tests/naive.py``), so every sample is one plain bilinear footprint:
  a flat *base* index into the padded cubemap plus two fractions in 15-bit
  fixed point (:data:`QBITS`: weights within 2^-16 of the exact ones).
  :func:`_footprints` computes them for a whole row of directions, branch
  free so that LLVM vectorises it (hence numpy's error model: no division
  checks); :func:`_gather` and :func:`_scatter` apply them (float32
  arithmetic, in which the fractions are exact). While the geometry is
  fixed the learner stores them (:func:`_build_taps`, 6 bytes a sample);
  every kernel that takes ``stored`` recomputes them otherwise, with the
  same bits.

The fitting model never reads outside a padded prototype, whatever the input
(the footprint's texel coordinates are clamped to the padded face).

Every kernel exists twice, compiled from one Python function: a
``parallel=True`` one (``prange``) and a serial twin (suffix ``_serial``,
compiled from a renamed copy: :func:`serial_copy`), :class:`Kernels` picks
one flavour,
all ``nogil``, so several learners can run in Python threads with the
serial twins (numba's workqueue layer must never see concurrent parallel
launches). No kernel's result depends on the number of threads: every
parallel loop writes disjoint outputs, and every reduction runs in one fixed
order (the adjoint gathers per prototype over that prototype's users in
probe order instead of racing accumulators per thread).

Array conventions (all C-contiguous):

- ``x`` (P, 3) float64 probe positions; ``C`` (M, 3) float64 centres;
  ``rho`` (M,) float64 radii (``inf`` = no parallax)
- ``sub_dirs`` (T, S, 3) float64 unit sub-texel directions of the probe grid
- ``J`` (M, Tp, 3) float32 prototype texels, ``Tp = 6 Rp^2``, flat index
  ``(face * Rp + row) * Rp + column``; ``Jp`` (M, U, 3) float32 padded,
  ``U = 6 (Rp + 2)^2``, flat index ``(face * (Rp + 2) + row + 1) * (Rp + 2) + column + 1``
- ``idx`` (P, N) int32 prototype indices; ``w`` (P, N) float32 weights
- ``wt`` (Pw, T) float32 texel weights of the loss, ``Pw`` 1 or P
- ``dirs`` (3, T*S) float64: ``sub_dirs`` transposed (the fitting kernels'), ``S`` int
- footprints: ``tb`` (P, N, T*S) uint16 padded base index, ``tq`` (P, N, 2, T*S)
  uint16 fixed-point fractions (x, y); zero for zero-weight taps
- users of the prototypes (adjoint): ``order`` (P*N,) int64 flat ``i*N+k``
  sorted by prototype (stable), ``starts`` (M+1,) int64 ranges into it
"""
from __future__ import annotations

import functools
import types

import numba as nb
import numpy as np
from numba import prange

from probewarp.baker import config
from probewarp.baker.cubemap import _cube_taps, _resolve
from probewarp.baker.warp import _warp_dir

_JIT = dict(nogil=True, cache=config.NUMBA_CACHE, fastmath=config.NUMBA_FASTMATH)
#: The fitting kernels: numpy's error model (no ZeroDivisionError checks), so
#: that LLVM vectorises their loops. No divisor in them can be zero.
_JITV = dict(_JIT, error_model="numpy")

#: Bits of the fixed-point bilinear fractions of the fitting model.
QBITS = 15
QSCALE = float(1 << QBITS)
QINV = 1.0 / QSCALE
QINV32 = np.float32(QINV)
#: Probes per work item of the coding kernels (fixed: results never depend on it
#: anyway, it only bounds how often scratch buffers are allocated).
CODE_BLOCK = 8


def serial_copy(fn):
    """A copy of ``fn`` under its own qualified name (suffix ``_serial``).

    numba's on-disk cache keys a function by its qualified name, line and
    bytecode, not by ``parallel=``: twins compiled from one function object
    would share cache entries, and a serial twin could load the parallel
    machine code. The copy gets cache files of its own."""
    g = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    g.__qualname__ = fn.__qualname__ + "_serial"
    g.__doc__, g.__module__ = fn.__doc__, fn.__module__
    return g


def _twin(fn, jit=None):
    """(parallel, serial) numba compilations of one Python function (:func:`serial_copy`)."""
    jit = _JITV if jit is None else jit
    return nb.njit(parallel=True, **jit)(fn), nb.njit(**jit)(serial_copy(fn))


# ---------------------------------------------------------------------------
# the exact model (reference decoder, published loss)
# ---------------------------------------------------------------------------

def _render_exact_py(x, dirs, S, C, rho, Jp, Rp, idx, w, out):
    """The exact forward operator on padded float64 prototypes ``Jp`` (M, U, 3):
    ``out`` (P, T, 3) float32."""
    P = x.shape[0]
    T = out.shape[1]
    N = idx.shape[1]
    n = dirs.shape[1]
    P2 = Rp + 2
    inv = 1.0 / S
    for i in prange(P):
        acc = np.zeros((T, 3))
        bo = np.empty(n, np.int32)
        fx = np.empty(n)
        fy = np.empty(n)
        for k in range(N):
            wk = w[i, k] * inv
            if wk == 0.0:
                continue
            m = idx[i, k]
            ox, oy, oz, q2 = _pair(x[i], C[m], rho[m])
            _footprints_exact(ox, oy, oz, q2, dirs, Rp, bo, fx, fy)
            Jm = Jp[m]
            for t in range(T):
                for s in range(S):
                    j = t * S + s
                    b = np.intp(bo[j])
                    b2 = b + P2
                    w00 = (1.0 - fx[j]) * (1.0 - fy[j])
                    w10 = fx[j] * (1.0 - fy[j])
                    w01 = (1.0 - fx[j]) * fy[j]
                    w11 = fx[j] * fy[j]
                    for c in range(3):
                        acc[t, c] += wk * (w00 * Jm[b, c] + w10 * Jm[b + 1, c] + w01 * Jm[b2, c] + w11 * Jm[b2 + 1, c])
        for t in range(T):
            out[i, t, 0] = acc[t, 0]
            out[i, t, 1] = acc[t, 1]
            out[i, t, 2] = acc[t, 2]


_render_exact, _render_exact_serial = _twin(_render_exact_py)


def _render_with(kernel, pad, x, sub_dirs, C, rho, J, Rp, idx, w, out):
    src, nsrc = pad_table(int(Rp))
    Jp = np.empty((J.shape[0], src.shape[0], 3))
    pad(np.ascontiguousarray(J), src, nsrc, Jp)
    dirs = np.ascontiguousarray(np.asarray(sub_dirs, np.float64).reshape(-1, 3).T)
    kernel(np.ascontiguousarray(x, np.float64), dirs, sub_dirs.shape[1], np.ascontiguousarray(C, np.float64),
           np.ascontiguousarray(rho, np.float64), Jp, int(Rp), idx, w, out)


def _render(x, sub_dirs, C, rho, J, Rp, idx, w, out):
    """Forward operator (the exact model): ``out`` (P, T, 3) float32 <-
    reconstruction of every probe; ``sub_dirs`` (T, S, 3), ``J`` (M, Tp, 3).
    Seamless bilinear sampling by padding (GL's rule, as :func:`.cubemap._cube_taps`)."""
    _render_with(_render_exact, _pad, x, sub_dirs, C, rho, J, Rp, idx, w, out)


def _render_serial(x, sub_dirs, C, rho, J, Rp, idx, w, out):
    """:func:`_render` with serial kernels (same results)."""
    _render_with(_render_exact_serial, _pad_serial, x, sub_dirs, C, rho, J, Rp, idx, w, out)


def _adjoint_py(x, sub_dirs, C, rho, Rp, idx, w, resid, G_chunks):
    """Transpose of :func:`_render`: scatter ``resid`` (P, T, 3) into
    ``G_chunks`` (n_chunks, M, Tp, 3) float64 (zeroed by the caller; one
    accumulator per chunk of probes so threads never race). Sum over axis 0.
    A test oracle: the learner uses :func:`_adjoint_taps`."""
    P = x.shape[0]
    T = sub_dirs.shape[0]
    S = sub_dirs.shape[1]
    N = idx.shape[1]
    inv = 1.0 / S
    n_chunks = G_chunks.shape[0]
    for ch in prange(n_chunks):
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


_adjoint, _adjoint_serial = _twin(_adjoint_py, _JIT)


def _weighted_sqerr_py(Y, Yhat, wt, out):
    """Per-probe weighted squared error ``sum_t wt[t] sum_c (Y - Yhat)^2``: (P,) float64."""
    P = Y.shape[0]
    T = Y.shape[1]
    Pw = wt.shape[0]
    for i in prange(P):
        wrow = wt[i * (Pw > 1)]
        s = 0.0
        for t in range(T):
            for c in range(3):
                d = Y[i, t, c] - Yhat[i, t, c]
                s += wrow[t] * d * d
        out[i] = s


_weighted_sqerr, _weighted_sqerr_serial = _twin(_weighted_sqerr_py)


# ---------------------------------------------------------------------------
# the fitting model: padded prototypes, fixed-point bilinear taps
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def pad_table(Rp: int):
    """Where every texel of a padded prototype comes from.

    Returns ``src`` (U, 3) int32 flat texel indices of the unpadded cubemap
    and ``nsrc`` (U,) int32: 1 for a face texel or a border texel (the texel
    across the edge, :func:`.cubemap._resolve`), 3 for a corner (the mean of
    the three real texels around it: GL's seamless corner rule). Read-only.
    """
    P2 = Rp + 2
    src = np.zeros((6 * P2 * P2, 3), np.int32)
    nsrc = np.ones(6 * P2 * P2, np.int32)
    for f in range(6):
        for jj in range(P2):
            for ii in range(P2):
                u = (f * P2 + jj) * P2 + ii
                i, j = ii - 1, jj - 1
                if (i < 0 or i >= Rp) and (j < 0 or j >= Rp):
                    ci = 0 if i < 0 else Rp - 1
                    cj = 0 if j < 0 else Rp - 1
                    src[u] = ((f * Rp + cj) * Rp + ci, _resolve(f, i, cj, Rp), _resolve(f, ci, j, Rp))
                    nsrc[u] = 3
                else:
                    src[u, 0] = _resolve(f, i, j, Rp)
    src.flags.writeable = False
    nsrc.flags.writeable = False
    return src, nsrc


@nb.njit(**_JITV)
def _pair(xi, c, r):
    """(ox, oy, oz, q2) of the warp from ``xi`` to a prototype at ``c`` with radius
    ``r``; an infinite radius maps to o = 0, q2 = -1, which gives ``s = d`` exactly."""
    if not np.isfinite(r):
        return 0.0, 0.0, 0.0, -1.0
    ox = xi[0] - c[0]
    oy = xi[1] - c[1]
    oz = xi[2] - c[2]
    return ox, oy, oz, ox * ox + oy * oy + oz * oz - r * r


@nb.njit(inline="always", **_JITV)
def _texel_coords(ox, oy, oz, q2, dx, dy, dz, h, c0):
    """Warp of one direction (DESIGN-NOTES §3, miss rule of :mod:`.warp`) and
    its face and continuous padded texel coordinates (f, px, py); branch free,
    face selection on ties as :func:`.cubemap._face_of` (X, then Y, then Z)."""
    b = ox * dx + oy * dy + oz * dz
    disc = b * b - q2
    disc = disc if disc > 0.0 else 0.0
    t = np.sqrt(disc) - b
    sx = ox + t * dx
    sy = oy + t * dy
    sz = oz + t * dz
    ax = abs(sx)
    ay = abs(sy)
    az = abs(sz)
    isx = (ax >= ay) & (ax >= az)
    isy = ay >= az
    ma = ax if isx else (ay if isy else az)
    scn = (-sz if sx >= 0 else sz) if isx else (sx if isy else (sx if sz >= 0 else -sx))
    tcn = -sy if isx else ((sz if sy >= 0 else -sz) if isy else -sy)
    f = (0 if sx >= 0 else 1) if isx else ((2 if sy >= 0 else 3) if isy else (4 if sz >= 0 else 5))
    inv = 1.0 / ma
    return f, scn * inv * h + c0, tcn * inv * h + c0


@nb.njit(**_JITV)
def _footprints(ox, oy, oz, q2, dirs, Rp, bo, qxo, qyo):
    """Padded bilinear footprint of the warp of every direction ``dirs`` (3, n):
    base index ``bo``, fixed-point fractions ``qxo``, ``qyo`` (n,) int32.
    Vectorised by LLVM (:func:`_texel_coords` is branch free)."""
    h = 0.5 * Rp
    c0 = h + 0.5               # + 1 for the padding, - 0.5 for texel centres
    P2 = Rp + 2
    for j in range(dirs.shape[1]):
        f, px, py = _texel_coords(ox, oy, oz, q2, dirs[0, j], dirs[1, j], dirs[2, j], h, c0)
        i0 = np.int32(px)          # px in [0.5, Rp + 0.5]: truncation is floor
        j0 = np.int32(py)
        i0 = min(max(i0, 0), Rp)   # never an index outside the padded face, whatever the input
        j0 = min(max(j0, 0), Rp)
        bo[j] = (f * P2 + j0) * P2 + i0
        qxo[j] = np.int32((px - i0) * QSCALE + 0.5)
        qyo[j] = np.int32((py - j0) * QSCALE + 0.5)


@nb.njit(**_JITV)
def _footprints_shift(ox, oy, oz, q2, dirs, Rp, bo, qxo, qyo, hx, hy, hz):
    """:func:`_footprints` of the hit point shifted by ``h`` before the lookup:
    the sphere (o, q2) is hit from the probe, the prototype is read in the
    direction of the hit point seen from a point ``-h`` off the sphere's
    centre (the view-preserving centre move of the geometry update)."""
    h = 0.5 * Rp
    c0 = h + 0.5
    P2 = Rp + 2
    for j in range(dirs.shape[1]):
        dx = dirs[0, j]
        dy = dirs[1, j]
        dz = dirs[2, j]
        b = ox * dx + oy * dy + oz * dz
        disc = b * b - q2
        disc = disc if disc > 0.0 else 0.0
        t = np.sqrt(disc) - b
        f, px, py = _texel_coords(0.0, 0.0, 0.0, -1.0, ox + t * dx + hx, oy + t * dy + hy, oz + t * dz + hz, h, c0)
        i0 = np.int32(px)
        j0 = np.int32(py)
        i0 = min(max(i0, 0), Rp)
        j0 = min(max(j0, 0), Rp)
        bo[j] = (f * P2 + j0) * P2 + i0
        qxo[j] = np.int32((px - i0) * QSCALE + 0.5)
        qyo[j] = np.int32((py - j0) * QSCALE + 0.5)


@nb.njit(**_JITV)
def _footprints_exact(ox, oy, oz, q2, dirs, Rp, bo, fxo, fyo):
    """:func:`_footprints` with float64 fractions (the exact model)."""
    h = 0.5 * Rp
    c0 = h + 0.5
    P2 = Rp + 2
    for j in range(dirs.shape[1]):
        f, px, py = _texel_coords(ox, oy, oz, q2, dirs[0, j], dirs[1, j], dirs[2, j], h, c0)
        i0 = min(max(np.int32(px), 0), Rp)
        j0 = min(max(np.int32(py), 0), Rp)
        bo[j] = (f * P2 + j0) * P2 + i0
        fxo[j] = px - i0
        fyo[j] = py - j0


@nb.njit(**_JITV)
def _gather(bo, qxo, qyo, Jm, Rp, S, out):
    """``out`` (T, 3) float32 <- per texel, the sum over its S consecutive
    footprints of the bilinear values of padded prototype ``Jm`` (U, 3)
    float32 (float32 arithmetic: the fixed-point fractions are exact in it)."""
    P2 = Rp + 2
    one = np.float32(1.0)
    for t in range(out.shape[0]):
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        for s in range(S):
            j = t * S + s
            b = np.intp(bo[j])
            fx = np.float32(qxo[j]) * QINV32
            fy = np.float32(qyo[j]) * QINV32
            w11 = fx * fy
            w10 = fx - w11
            w01 = fy - w11
            w00 = one - fx - w01
            b2 = b + P2
            a0 += w00 * Jm[b, 0] + w10 * Jm[b + 1, 0] + w01 * Jm[b2, 0] + w11 * Jm[b2 + 1, 0]
            a1 += w00 * Jm[b, 1] + w10 * Jm[b + 1, 1] + w01 * Jm[b2, 1] + w11 * Jm[b2 + 1, 1]
            a2 += w00 * Jm[b, 2] + w10 * Jm[b + 1, 2] + w01 * Jm[b2, 2] + w11 * Jm[b2 + 1, 2]
        out[t, 0] = a0
        out[t, 1] = a1
        out[t, 2] = a2


@nb.njit(**_JITV)
def _scatter(bo, qxo, qyo, g, Rp, S, r):
    """Transpose of :func:`_gather`: add ``r`` (T, 3) into padded ``g`` (U, 3) float64."""
    P2 = Rp + 2
    for t in range(r.shape[0]):
        r0 = r[t, 0]
        r1 = r[t, 1]
        r2 = r[t, 2]
        for s in range(S):
            j = t * S + s
            b = np.intp(bo[j])
            fx = np.float32(qxo[j]) * QINV32
            fy = np.float32(qyo[j]) * QINV32
            w11 = fx * fy
            w10 = fx - w11
            w01 = fy - w11
            w00 = np.float32(1.0) - fx - w01
            b2 = b + P2
            g[b, 0] += w00 * r0
            g[b, 1] += w00 * r1
            g[b, 2] += w00 * r2
            g[b + 1, 0] += w10 * r0
            g[b + 1, 1] += w10 * r1
            g[b + 1, 2] += w10 * r2
            g[b2, 0] += w01 * r0
            g[b2, 1] += w01 * r1
            g[b2, 2] += w01 * r2
            g[b2 + 1, 0] += w11 * r0
            g[b2 + 1, 1] += w11 * r1
            g[b2 + 1, 2] += w11 * r2


def _pad_py(J, src, nsrc, out):
    """``out`` (M, U, 3) float32 <- padded ``J`` (M, Tp, 3) (float32 or float64)."""
    M = J.shape[0]
    U = src.shape[0]
    third = 1.0 / 3.0
    for m in prange(M):
        for u in range(U):
            a = src[u, 0]
            if nsrc[u] == 1:
                out[m, u, 0] = J[m, a, 0]
                out[m, u, 1] = J[m, a, 1]
                out[m, u, 2] = J[m, a, 2]
            else:
                b = src[u, 1]
                c = src[u, 2]
                for ch in range(3):
                    out[m, u, ch] = (np.float64(J[m, a, ch]) + J[m, b, ch] + J[m, c, ch]) * third


_pad, _pad_serial = _twin(_pad_py)


def _build_taps_py(x, dirs, C, rho, Rp, idx, w, tb, tq):
    """Store every sample's footprint (:func:`_footprints`) of the current
    geometry and codes: ``tb`` (P, N, n) uint16, ``tq`` (P, N, 2, n) uint16."""
    P = x.shape[0]
    N = idx.shape[1]
    n = dirs.shape[1]
    for i in prange(P):
        bo = np.empty(n, np.int32)
        qx = np.empty(n, np.int32)
        qy = np.empty(n, np.int32)
        for k in range(N):
            if w[i, k] == 0.0:
                bo[:] = 0
                qx[:] = 0
                qy[:] = 0
            else:
                m = idx[i, k]
                ox, oy, oz, q2 = _pair(x[i], C[m], rho[m])
                _footprints(ox, oy, oz, q2, dirs, Rp, bo, qx, qy)
            for j in range(n):
                tb[i, k, j] = bo[j]
                tq[i, k, 0, j] = qx[j]
                tq[i, k, 1, j] = qy[j]


_build_taps, _build_taps_serial = _twin(_build_taps_py)


def _render_fit_py(x, dirs, S, C, rho, Jp, Rp, idx, w, tb, tq, stored, out):
    """Fitting-model forward operator: ``out`` (P, T, 3) float32. Footprints
    from ``tb``/``tq`` when ``stored``, else computed (identical values)."""
    P = out.shape[0]
    T = out.shape[1]
    N = idx.shape[1]
    n = dirs.shape[1]
    inv = 1.0 / S
    for i in prange(P):
        acc = np.zeros((T, 3))
        tmp = np.empty((T, 3), np.float32)
        bo = np.empty(n, np.int32)
        qx = np.empty(n, np.int32)
        qy = np.empty(n, np.int32)
        for k in range(N):
            wk = w[i, k] * inv
            if wk == 0.0:
                continue
            m = idx[i, k]
            if stored:
                _gather(tb[i, k], tq[i, k, 0], tq[i, k, 1], Jp[m], Rp, S, tmp)
            else:
                ox, oy, oz, q2 = _pair(x[i], C[m], rho[m])
                _footprints(ox, oy, oz, q2, dirs, Rp, bo, qx, qy)
                _gather(bo, qx, qy, Jp[m], Rp, S, tmp)
            for t in range(T):
                acc[t, 0] += wk * tmp[t, 0]
                acc[t, 1] += wk * tmp[t, 1]
                acc[t, 2] += wk * tmp[t, 2]
        for t in range(T):
            out[i, t, 0] = acc[t, 0]
            out[i, t, 1] = acc[t, 1]
            out[i, t, 2] = acc[t, 2]


_render_fit, _render_fit_serial = _twin(_render_fit_py)


@nb.njit(**_JITV)
def _fold(g, src, nsrc, out):
    """Transpose of the padding: ``out`` (Tp, 3) float64 <- padded ``g`` (U, 3) folded back."""
    third = 1.0 / 3.0
    for q in range(out.shape[0]):
        out[q, 0] = 0.0
        out[q, 1] = 0.0
        out[q, 2] = 0.0
    for u in range(src.shape[0]):
        if nsrc[u] == 1:
            a = src[u, 0]
            out[a, 0] += g[u, 0]
            out[a, 1] += g[u, 1]
            out[a, 2] += g[u, 2]
        else:
            for q in range(3):
                a = src[u, q]
                out[a, 0] += g[u, 0] * third
                out[a, 1] += g[u, 1] * third
                out[a, 2] += g[u, 2] * third


def _adjoint_fit_py(resid, wt, x, dirs, S, C, rho, Rp, idx, w, tb, tq, stored, order, starts, src, nsrc, Gp, G):
    """Transpose of :func:`_render_fit` applied to ``wt * resid`` (P, T, 3):
    ``G`` (M, Tp, 3) float64 (overwritten). Each prototype gathers over its
    users in probe order (``order``, ``starts``): no races, one summation
    order whatever the threads. ``Gp`` (M, U, 3) float64 scratch."""
    M = G.shape[0]
    T = resid.shape[1]
    N = idx.shape[1]
    U = src.shape[0]
    Pw = wt.shape[0]
    n = dirs.shape[1]
    inv = 1.0 / S
    for m in prange(M):
        g = Gp[m]
        for u in range(U):
            g[u, 0] = 0.0
            g[u, 1] = 0.0
            g[u, 2] = 0.0
        r = np.empty((T, 3))
        bo = np.empty(n, np.int32)
        qx = np.empty(n, np.int32)
        qy = np.empty(n, np.int32)
        for e in range(starts[m], starts[m + 1]):
            f = order[e]
            i = f // N
            k = f - i * N
            wk = w[i, k] * inv
            if wk == 0.0:
                continue
            wrow = wt[i * (Pw > 1)]
            for t in range(T):
                c = wk * wrow[t]
                r[t, 0] = resid[i, t, 0] * c
                r[t, 1] = resid[i, t, 1] * c
                r[t, 2] = resid[i, t, 2] * c
            if stored:
                _scatter(tb[i, k], tq[i, k, 0], tq[i, k, 1], g, Rp, S, r)
            else:
                ox, oy, oz, q2 = _pair(x[i], C[m], rho[m])
                _footprints(ox, oy, oz, q2, dirs, Rp, bo, qx, qy)
                _scatter(bo, qx, qy, g, Rp, S, r)
        _fold(g, src, nsrc, G[m])


_adjoint_fit, _adjoint_fit_serial = _twin(_adjoint_fit_py)


# ---------------------------------------------------------------------------
# sparse coding (non-negative OMP over warped candidates)
# ---------------------------------------------------------------------------

@nb.njit(**_JIT)
def _solve_support(G, b, support, n):
    """Normal equations restricted to ``support[:n]`` (tiny ridge for
    duplicated atoms), by Cholesky: the least-squares coefficients, (n,) float64."""
    A = np.empty((n, n))
    y = np.empty(n)
    for a in range(n):
        y[a] = b[support[a]]
        for c in range(n):
            A[a, c] = G[support[a], support[c]]
        A[a, a] += 1e-9 * (1.0 + A[a, a])
    for j in range(n):
        s = A[j, j]
        for q in range(j):
            s -= A[j, q] * A[j, q]
        d = np.sqrt(s) if s > 1e-300 else 1e-150
        A[j, j] = d
        for r in range(j + 1, n):
            s2 = A[r, j]
            for q in range(j):
                s2 -= A[r, q] * A[j, q]
            A[r, j] = s2 / d
    for r in range(n):
        s = y[r]
        for q in range(r):
            s -= A[r, q] * y[q]
        y[r] = s / A[r, r]
    for r in range(n - 1, -1, -1):
        s = y[r]
        for q in range(r + 1, n):
            s -= A[q, r] * y[q]
        y[r] = s / A[r, r]
    return y


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


@nb.njit(**_JITV)
def _dot8(a, v):
    """``sum_j a[j] v[j]`` over 1-d arrays in one fixed order (eight interleaved
    partial sums, then pairwise): independent of threads, fast without fastmath."""
    n = a.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    s4 = 0.0
    s5 = 0.0
    s6 = 0.0
    s7 = 0.0
    j = 0
    while j + 8 <= n:
        s0 += a[j] * v[j]
        s1 += a[j + 1] * v[j + 1]
        s2 += a[j + 2] * v[j + 2]
        s3 += a[j + 3] * v[j + 3]
        s4 += a[j + 4] * v[j + 4]
        s5 += a[j + 5] * v[j + 5]
        s6 += a[j + 6] * v[j + 6]
        s7 += a[j + 7] * v[j + 7]
        j += 8
    while j < n:
        s0 += a[j] * v[j]
        j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@nb.njit(**_JITV)
def _omp(D, valid, b, yy, wrow3, n_atoms, nonneg, G, have_row, chosen, support, v):
    """(Non-negative) OMP with ``n_atoms`` atoms, the rows of ``D`` (K, 3T)
    float32, correlations ``b`` (K,), ``yy = ||y||_W^2``, ``wrow3`` (3T,) the
    loss weight of every entry. Scratch: ``G`` (K, K), ``have_row``,
    ``chosen`` (K,) bool, ``support`` (>= n_atoms,) int64 (the result's
    atoms), ``v`` (3T,) float64. Returns (n, coefficients (n,), weighted
    squared error)."""
    K = D.shape[0]
    L = D.shape[1]
    for a in range(K):
        have_row[a] = False
        chosen[a] = False
    n = 0
    coef = np.zeros(0)
    for step in range(n_atoms):
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
        if not have_row[best]:            # Gram row of the new atom (symmetric fill)
            for j in range(L):
                v[j] = wrow3[j] * D[best, j]
            for a in range(K):
                if valid[a]:
                    g = _dot8(D[a], v)
                    G[a, best] = g
                    G[best, a] = g
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
    return n, coef, e


@nb.njit(**_JITV)
def _dictionary(i, x, dirs, S, C, rho, Jp, Rp, Y, wrow, cand, D, valid, b, tmp, bo, qx, qy, wrow3, wy):
    """Warp probe ``i``'s candidates (row ``cand[i]``, -1 unused) into the rows
    of ``D`` (K, 3T) float32 and their weighted correlations with ``Y[i]`` into
    ``b`` (K,); fills ``wrow3`` (3T,) with the loss weights per entry and
    returns ``||Y[i]||_W^2``. Scratch ``tmp`` (T, 3) float32, ``bo``, ``qx``,
    ``qy``, ``wy`` (3T,) float64."""
    T = Y.shape[1]
    K = cand.shape[1]
    inv = np.float32(1.0 / S)
    yy = 0.0
    for t in range(T):
        for c in range(3):
            wrow3[3 * t + c] = wrow[t]
            wy[3 * t + c] = wrow[t] * Y[i, t, c]
            yy += wy[3 * t + c] * Y[i, t, c]
    for a in range(K):
        m = cand[i, a]
        valid[a] = m >= 0
        b[a] = 0.0
        if m < 0:
            continue
        ox, oy, oz, q2 = _pair(x[i], C[m], rho[m])
        _footprints(ox, oy, oz, q2, dirs, Rp, bo, qx, qy)
        _gather(bo, qx, qy, Jp[m], Rp, S, tmp)
        Da = D[a]
        for t in range(T):
            Da[3 * t] = tmp[t, 0] * inv
            Da[3 * t + 1] = tmp[t, 1] * inv
            Da[3 * t + 2] = tmp[t, 2] * inv
        b[a] = _dot8(Da, wy)
    return yy


def _code_py(x, dirs, S, C, rho, Jp, Rp, Y, wt, cand, N, nonneg, idx_out, w_out, err_out):
    """Sparse coding of every probe over its candidate prototypes.

    Orthogonal matching pursuit (non-negative when ``nonneg``) with ``N``
    atoms among ``cand[i]`` (P, K) int32 (-1 = unused), each candidate warped
    to the probe position (padded prototypes ``Jp``). Loss weights ``wt``
    (solid angle, IRLS). Writes the code into ``idx_out``/``w_out`` and its
    weighted squared error into ``err_out`` only where it beats the error
    already in ``err_out`` (so a coding pass never makes any probe worse:
    pass the current errors in, ``inf`` to force).
    """
    P = x.shape[0]
    Pw = wt.shape[0]
    T = Y.shape[1]
    K = cand.shape[1]
    n = dirs.shape[1]
    n_blocks = (P + CODE_BLOCK - 1) // CODE_BLOCK
    for blk in prange(n_blocks):
        D = np.empty((K, 3 * T), np.float32)
        valid = np.zeros(K, np.bool_)
        b = np.zeros(K)
        G = np.zeros((K, K))
        have_row = np.zeros(K, np.bool_)
        chosen = np.zeros(K, np.bool_)
        support = np.empty(N, np.int64)
        v = np.empty(3 * T)
        wy = np.empty(3 * T)
        wrow3 = np.empty(3 * T)
        tmp = np.empty((T, 3), np.float32)
        bo = np.empty(n, np.int32)
        qx = np.empty(n, np.int32)
        qy = np.empty(n, np.int32)
        for i in range(blk * CODE_BLOCK, min(P, (blk + 1) * CODE_BLOCK)):
            wrow = wt[i * (Pw > 1)]
            yy = _dictionary(i, x, dirs, S, C, rho, Jp, Rp, Y, wrow, cand, D, valid, b, tmp, bo, qx, qy, wrow3, wy)
            na, coef, e = _omp(D, valid, b, yy, wrow3, N, nonneg, G, have_row, chosen, support, v)
            if e < err_out[i]:
                err_out[i] = e
                for k in range(idx_out.shape[1]):
                    idx_out[i, k] = cand[i, support[0]] if na > 0 else 0
                    w_out[i, k] = 0.0
                for a in range(na):
                    idx_out[i, a] = cand[i, support[a]]
                    w_out[i, a] = coef[a]


_code, _code_serial = _twin(_code_py)


# ---------------------------------------------------------------------------
# geometry line search (radii and centres)
# ---------------------------------------------------------------------------

def _geometry_trials_py(x, dirs, S, C, rho, Jp, Rp, idx, w, use, tb, tq, stored, resid, wt, trial_c, trial_r,
                        view_preserving, delta):
    """Change of each probe's loss when one of its prototypes' geometry is
    replaced by trial ``j``: centre ``trial_c[m, j]`` (3,), radius
    ``trial_r[m, j]`` (inf-safe), everything else fixed: ``delta`` (P, N,
    n_trials) float64. With ``view_preserving`` the content moves with the
    centre so that the prototype seen from its old centre is unchanged: the
    new sphere is hit from the probe and the old content read in the
    direction of the hit point from the old centre (finite radii only).

    ``resid`` = Y - Yhat (P, T, 3) at the current geometry, whose footprints
    are ``tb``/``tq`` when ``stored``. Only taps with ``use`` (P, N) bool are
    tried (0 elsewhere). For term k the new residual is
    ``resid + w_k (W_old - W_new) J_m``: exact for one prototype changed at a
    time (a probe using a prototype twice is not special-cased: the
    caller's full-loss check keeps the update honest).
    """
    P = x.shape[0]
    T = resid.shape[1]
    N = idx.shape[1]
    nS = trial_r.shape[1]
    Pw = wt.shape[0]
    n = dirs.shape[1]
    inv = 1.0 / S
    for i in prange(P):
        wrow = wt[i * (Pw > 1)]
        old = np.empty((T, 3), np.float32)
        new = np.empty((T, 3), np.float32)
        bo = np.empty(n, np.int32)
        qx = np.empty(n, np.int32)
        qy = np.empty(n, np.int32)
        base = 0.0
        for t in range(T):
            for c in range(3):
                base += wrow[t] * resid[i, t, c] * resid[i, t, c]
        for k in range(N):
            wk = w[i, k] * inv
            m = idx[i, k]
            if wk == 0.0 or not use[i, k]:
                for j in range(nS):
                    delta[i, k, j] = 0.0
                continue
            if stored:
                _gather(tb[i, k], tq[i, k, 0], tq[i, k, 1], Jp[m], Rp, S, old)
            else:
                ox, oy, oz, q2 = _pair(x[i], C[m], rho[m])
                _footprints(ox, oy, oz, q2, dirs, Rp, bo, qx, qy)
                _gather(bo, qx, qy, Jp[m], Rp, S, old)
            for j in range(nS):
                ox, oy, oz, q2 = _pair(x[i], trial_c[m, j], trial_r[m, j])
                if view_preserving:
                    _footprints_shift(ox, oy, oz, q2, dirs, Rp, bo, qx, qy, trial_c[m, j, 0] - C[m, 0],
                                      trial_c[m, j, 1] - C[m, 1], trial_c[m, j, 2] - C[m, 2])
                else:
                    _footprints(ox, oy, oz, q2, dirs, Rp, bo, qx, qy)
                _gather(bo, qx, qy, Jp[m], Rp, S, new)
                e = 0.0
                for t in range(T):
                    for c in range(3):
                        d = resid[i, t, c] + wk * (old[t, c] - new[t, c])
                        e += wrow[t] * d * d
                delta[i, k, j] = e - base


_geometry_trials, _geometry_trials_serial = _twin(_geometry_trials_py)


# ---------------------------------------------------------------------------
# coherent codes: choose among precomputed options, penalising distinct
# prototypes per decode stencil (cell)
# ---------------------------------------------------------------------------

@nb.njit(**_JIT)
def _cell_distinct(cells, c, idx, w, skip, s_idx, s_w, seen_stamp, stamp):
    """Distinct prototypes (weight > 0) of cell ``c``'s corners (-1: absent
    corner), probe ``skip`` taking code (``s_idx``, ``s_w``) instead of its own. ``seen_stamp`` (M,)
    int64 scratch, ``stamp`` a value not yet used in it."""
    n = 0
    for a in range(cells.shape[1]):
        p = cells[c, a]
        if p < 0:
            continue
        if p == skip:
            for k in range(s_idx.shape[0]):
                if s_w[k] > 0 and seen_stamp[s_idx[k]] != stamp:
                    seen_stamp[s_idx[k]] = stamp
                    n += 1
        else:
            for k in range(idx.shape[1]):
                if w[p, k] > 0 and seen_stamp[idx[p, k]] != stamp:
                    seen_stamp[idx[p, k]] = stamp
                    n += 1
    return n


@nb.njit(**_JIT)
def coherent_select(cells, cell_start, cell_list, opt_idx, opt_w, opt_err, lam, idx, w, err, n_sweeps, M):
    """Gauss-Seidel choice of every probe's code among its options,
    minimising ``sum_i err_i + lam * sum_c distinct(c)`` (distinct
    prototypes of cell ``c``'s corners, :func:`_cell_distinct`).

    ``cells`` (C, k) int64 probe ids of every decode stencil; probe ``i``'s
    cells are ``cell_list[cell_start[i]:cell_start[i + 1]]``. Options
    ``opt_idx``/``opt_w`` (P, n_opt, N), their errors ``opt_err`` (P, n_opt)
    (inf: no option). ``idx``, ``w``, ``err`` hold the current codes and are
    updated in place; a probe moves only when the objective strictly drops,
    so it never rises. Probes are visited in order, ``n_sweeps`` times.
    Returns the number of moves."""
    P = idx.shape[0]
    n_opt = opt_idx.shape[1]
    seen = np.full(M, -1, np.int64)
    stamp = 0
    moves = 0
    cur_i = np.empty(idx.shape[1], idx.dtype)
    cur_w = np.empty(idx.shape[1], w.dtype)
    for sweep in range(n_sweeps):
        for i in range(P):
            a0, a1 = cell_start[i], cell_start[i + 1]
            for k in range(idx.shape[1]):
                cur_i[k] = idx[i, k]
                cur_w[k] = w[i, k]
            base = 0.0
            for q in range(a0, a1):
                stamp += 1
                base += _cell_distinct(cells, cell_list[q], idx, w, i, cur_i, cur_w, seen, stamp)
            best = err[i] + lam * base
            pick = -1
            for o in range(n_opt):
                e = opt_err[i, o]
                if not e < np.inf:
                    continue
                tot = 0.0
                for q in range(a0, a1):
                    stamp += 1
                    tot += _cell_distinct(cells, cell_list[q], idx, w, i, opt_idx[i, o], opt_w[i, o], seen, stamp)
                f = e + lam * tot
                if f < best:
                    best = f
                    pick = o
            if pick >= 0:
                for k in range(idx.shape[1]):
                    idx[i, k] = opt_idx[i, pick, k]
                    w[i, k] = opt_w[i, pick, k]
                err[i] = opt_err[i, pick]
                moves += 1
    return moves


# ---------------------------------------------------------------------------
# deterministic dense helpers (no BLAS: its rounding may depend on its threads)
# ---------------------------------------------------------------------------

@nb.njit(**_JIT)
def _dot(a, b):
    """Sum of ``a * b`` over two same-shape float arrays, in one fixed order (float64)."""
    fa = a.ravel()
    fb = b.ravel()
    n = fa.size
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = 0
    while j + 4 <= n:
        s0 += fa[j] * fb[j]
        s1 += fa[j + 1] * fb[j + 1]
        s2 += fa[j + 2] * fb[j + 2]
        s3 += fa[j + 3] * fb[j + 3]
        j += 4
    while j < n:
        s0 += fa[j] * fb[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


def _similarity_py(A, BT, out):
    """``out`` (P, M) float64 <- ``A`` (P, D) times ``BT`` (D, M), each entry summed over D in order."""
    P = A.shape[0]
    Dd = A.shape[1]
    M = BT.shape[1]
    for i in prange(P):
        for c in range(M):
            out[i, c] = 0.0
        for d in range(Dd):
            a = A[i, d]
            for c in range(M):
                out[i, c] += a * BT[d, c]


_similarity, _similarity_serial = _twin(_similarity_py)


class Kernels:
    """The fitting kernels of one flavour: ``Kernels(True)`` the parallel ones,
    ``Kernels(False)`` their serial twins (same names, same results)."""

    NAMES = ("render", "weighted_sqerr", "pad", "build_taps", "render_fit", "adjoint_fit", "code",
             "geometry_trials", "similarity")

    def __init__(self, parallel: bool):
        g = globals()
        for n in self.NAMES:
            setattr(self, n, g["_" + n] if parallel else g["_" + n + "_serial"])
        self.parallel = bool(parallel)
