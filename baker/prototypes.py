"""The learner: warped prototypes and N-sparse codes (DESIGN-NOTES §3-§6).

:class:`ProbeCodec` is an estimator with the baselines' interface
(:mod:`probewarp.baselines`, scikit-learn style): ``__init__`` only
stores keyword parameters (:meth:`~ProbeCodec.get_params`,
:meth:`~ProbeCodec.set_params`, ``repr``); :meth:`~ProbeCodec.fit` learns
prototypes and the training set's codes, learned state ending in ``_``;
:meth:`~ProbeCodec.encode` codes new probes against the fixed prototypes;
:meth:`~ProbeCodec.decode` reconstructs from codes at any positions;
:meth:`~ProbeCodec.reconstruct` is ``decode(encode(...))`` (the fitted set
with its fitted codes when called without arguments) and
:meth:`~ProbeCodec.fit_reconstruct` fits and reconstructs. Unlike the
baselines, whose codes carry no geometry, encode and decode take the probe
positions as well (every prototype is warped to the position it is seen from).

Initialisation: k-means++ and 8 Lloyd iterations on probe positions and
low-resolution content (:func:`.kmeans.kmeans_exact`) give the centres, the
medoid of each cluster its prototype; one radius for all, the best of six
log-spaced ones at coding a subset of 384 probes; then every probe is coded.

The method, per outer iteration (each step never increases the loss):

1. **Prototype update**: for fixed codes and geometry every warp is a linear
   bilinear-sampling operator, so all prototype texels solve one weighted
   least-squares problem ``min ||Y - A J||_W^2 + lam ||J - J_prev||^2``,
   solved jointly by ``n_cg`` steps of preconditioned conjugate gradients
   (Jacobi-style: the row sums of ``A'WA``), warm-started at the current
   prototypes. ``lam`` is small and keeps texels no probe sees where they
   were. The geometry being fixed, every sample's bilinear footprint is
   computed once (:func:`.kernels._build_taps`, 6 bytes per probe, tap,
   texel and sub-sample: 9 KiB a probe at R = 8, N = 4; above
   :data:`TAPS_MAX_BYTES` they are recomputed, with the same results), so
   ``A`` and ``A'`` are sparse gathers and a per-prototype gather over its
   users, without recomputing warps.
2. **Geometry update**: every prototype's radius and centre are refit by a
   line search (radius scale factors; centre moves along the axes with a
   per-prototype adaptive step) on the probes that use it; the set of
   changes is kept only if the total loss did not rise (else its better half,
   else none).
3. **Coding**: for each probe, non-negative orthogonal matching pursuit picks
   N prototypes among candidates: the spatially nearest ones, the ones whose
   content correlates best, and the prototypes of its current code. A probe
   keeps its old code when the new one is not better.
4. **Swap moves and coherent codes** (``swaps``): every probe re-selects its
   code jointly among options taken from its *cell-mates* (the probes it is
   blended with between probes: ``cells``, a grid's 8 corners; nearest
   neighbours without cells): OMP over the 2N prototypes its cell-mates
   weigh most, and each of its 6 nearest cell-mates' supports, each with
   its own least-squares weights. Gauss-Seidel over the probes keeps the
   option of the lowest ``error + lam * (distinct prototypes of its cells)``
   with ``lam = coherence * mean error``: the objective never rises. With
   ``coherence = 0`` it is a pure swap move (the loss never rises); above 0
   neighbours share prototypes, so a decode between probes warps fewer
   distinct ones (GLSL ``pw_code_merge`` folds repeats) and the blend
   between probes changes less.

Stopping: ``validation`` (1/16) of the probes are held out of steps 1-2 and
only coded; the outer iterations stop when their loss improves by less than
``tol`` (relative) in one iteration, or after ``n_iter``.

Every step but the last evaluates the fitting model of :mod:`.kernels`
(padded prototypes, bilinear fractions in 15-bit fixed point: the exact model
to within 2^-16 of a texel value); the last loss, after the finish, is the
exact model's, the decoder's (the published metric).

Finish (quantisation-aware): weights are rounded to their stored 8-bit form,
one more joint prototype solve over every probe absorbs the rounding, then texels are
quantised to the stored format.

Determinism and threads: a fit's result depends only on its inputs and
parameters: not on the number of numba or BLAS threads, and not on
``parallel`` (the fit path calls no BLAS, and every kernel reduces in a fixed
order). ``parallel=False`` runs serial twins of every kernel, all releasing
the GIL, so several fits can run at once in Python threads (numba's default
threading layer must not see parallel kernels launched from several threads).

The loss is the published metric's (DESIGN-NOTES §5): prototypes live in the
tonemapped domain ``T(v) = (v / (1 + v))^(1/2.2)`` and are blended there; the
decoder inverts ``T`` (``domain='tonemap'``, the default). ``domain='linear'``
blends linear radiance and approximates the tonemapped error by iteratively
reweighted least squares (weights ``T'(v)^2`` refreshed every iteration).
``benchmarks/bench_bake.py`` measures both.

Notes
-----
Prototypes at ``Rp = k R`` model each
probe texel as the mean of ``k x k`` warped sub-samples (a box filter over its
footprint), so higher-resolution prototypes are constrained by many slightly
shifted low-resolution views.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.spatial import cKDTree

from probewarp.format import constants
from probewarp.baker import config
from probewarp.baker import kernels as K
from probewarp.baker.kmeans import kmeans_exact
from probewarp.baker.metrics import stencil_distinct
from probewarp.baker.domain import from_domain, sub_directions, to_domain
from probewarp.baker.cubemap import downsample_box, resample_cube, sample_cube, texel_directions, texel_weights
from probewarp.format.errors import InputError
from probewarp.format import texformats


def _content_features(Y: np.ndarray, R: int) -> np.ndarray:
    """Low-resolution content descriptor: (P, 6*r*r*3) with r = min(R, 4), solid-angle weighted."""
    r = 4 if R % 4 == 0 else (2 if R % 2 == 0 else 1)
    P = Y.shape[0]
    low = downsample_box(Y.reshape(P, 6, R, R, 3), R // r)
    w = np.sqrt(texel_weights(r))[None, :, :, :, None]
    return (low * w).reshape(P, -1).astype(np.float64)


#: Constructor parameters, in order (get_params / set_params / __repr__).
_PARAMS = ("n_prototypes", "n_taps", "prototype_res", "domain", "warp", "fit_radius", "fit_centres", "radius",
           "n_iter", "tol", "validation", "n_cg", "n_near", "n_content", "swaps", "coherence", "texel_format", "seed",
           "reg", "progress", "parallel")

#: Probes coded per chunk by :meth:`ProbeCodec.encode` (bounds its working memory).
ENCODE_CHUNK = 4096
#: :meth:`ProbeCodec.encode` also tries the supports of this many nearest fitted probes' codes.
ENCODE_NEIGHBOUR_CODES = 4
#: Largest stored footprint table (6 bytes a probe texel sub-sample and tap) of
#: one prototype update; above it the kernels recompute footprints on the fly
#: (bit-identical results, slower).
TAPS_MAX_BYTES = 512 * 2 ** 20
#: The radius line search of a prototype is scored on at most this many of its
#: users, those of the largest weights (0: all).
RADIUS_TRIAL_USERS = 64
#: Radius trials of the geometry update: factors on the current radius.
RADIUS_SCALES = (0.55, 0.75, 1.35, 1.8)
#: Centre trials move a centre by ``centre_step_ * radius`` along each axis;
#: the step starts at :data:`CENTRE_STEP_START` and adapts within this range.
CENTRE_STEP_RANGE = (1.0 / 64, 0.5)
CENTRE_STEP_START = 0.125
#: Centre trials that move the content with the centre (so that the prototype
#: seen from its old centre is unchanged; :meth:`ProbeCodec._moved_content`)
#: instead of keeping it. Off: the bilinear resampling of every accepted move
#: blurs the prototype, and the fits ended 0.14 dB (town) and 0.03 dB
#: (interior) below the fixed-content moves (``benchmarks/bench_levers.py``
#: setup, R = 8, M = 128).
VIEW_PRESERVING_CENTRES = False
#: Coherent coding: options from this many nearest cell-mates' supports
#: (and the mates whose codes form the pool), and Gauss-Seidel sweeps.
COHERENT_NEIGHBOURS = 6
COHERENT_SWEEPS = 4
#: Fewest held-out probes worth stopping on (else ``n_iter`` iterations run).
VALIDATION_MIN_PROBES = 16


#: Placeholder footprint arrays for the kernels' on-the-fly mode (never written;
#: writeable so that both modes share one compiled specialisation).
_NO_TAPS = (np.zeros((1, 1, 1), np.uint16), np.zeros((1, 1, 2, 1), np.uint16))


def _dirs(sub: np.ndarray) -> np.ndarray:
    """Sub-texel directions (T, S, 3) as the fitting kernels take them: (3, T*S) float64."""
    return np.ascontiguousarray(sub.reshape(-1, 3).T)


def _heaviest_users(idx: np.ndarray, w: np.ndarray, cap: int) -> np.ndarray:
    """(P, N) bool: for every prototype, its ``cap`` users (probe, tap) of the
    largest weights (ties: the lower flat index), all if ``cap <= 0``."""
    flat_m, flat_w = idx.reshape(-1), w.reshape(-1)
    if cap <= 0:
        return np.ones(idx.shape, bool)
    order = np.lexsort((-flat_w, flat_m))            # by prototype, then by decreasing weight (stable)
    sm = flat_m[order]
    rank = np.arange(sm.size) - np.searchsorted(sm, sm, side="left")
    use = np.zeros(sm.size, bool)
    use[order[rank < cap]] = True
    return use.reshape(idx.shape)


def _unique_rows(cand: np.ndarray) -> np.ndarray:
    """Candidate rows (P, K) int with duplicates within a row replaced by -1 (unused): (P, K) int32."""
    cand = np.sort(cand, axis=1)
    dup = np.zeros_like(cand, dtype=bool)
    dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
    cand[dup] = -1
    return np.ascontiguousarray(cand.astype(np.int32))


class ProbeCodec:
    """Warped prototypes with N-sparse codes.

    Parameters
    ----------
    n_prototypes : int
        M, prototypes per page (<= number of probes).
    n_taps : int
        N, prototypes blended per probe (2-5 typical).
    prototype_res : int or None
        Rp; ``None`` -> ``R``. If larger than R it must be a multiple of it.
        Rp = 2R recovers detail from the many shifted views (+0.6 dB on the
        built-in scene) but costs 4x the prototype bytes and 3.5x the bake
        time: the README's benchmark table has the figures.
    domain : 'tonemap' | 'linear'
        Where prototypes are blended (see module notes).
    warp : bool
        False fixes every radius at infinity: the no-warp dictionary.
    fit_radius : bool
        Refit radii each outer iteration (ignored without warp).
    fit_centres : bool
        Refit centres each outer iteration too (ignored without warp): line
        search along the axes with an adaptive step (``centre_step_``).
    radius : float or None
        Initial radius; ``None`` -> a quarter of the probe bounding-box diagonal
        (at least four probe spacings).
    n_iter : int
        Outer iterations at most (:data:`probewarp.baker.config.DEFAULT_MAX_ITERATIONS`).
    tol : float
        Stop when the held-out probes' loss improved by less than this
        fraction in one iteration.
    validation : float
        Fraction of probes held out of the prototype and geometry updates to
        decide when to stop (0, or fewer than :data:`VALIDATION_MIN_PROBES`:
        always ``n_iter`` iterations).
    n_cg : int
        Conjugate-gradient steps per prototype update (the finish takes half).
        4 is within 0.01 dB of 8 on the built-in scene at a third less time
        (``benchmarks/bench_fit.py``).
    n_near, n_content : int
        Candidates per probe: spatially nearest prototypes, plus best-correlated.
    swaps : bool
        Joint re-selection of codes among cell-mates' prototypes after each
        coding pass (module notes, step 4).
    coherence : float
        Price of one more distinct prototype in a decode stencil, relative to
        the mean probe loss (0: plain swap moves). The default 0.3 brings a
        decode between probes under 2N = 8 distinct prototypes per grid cell
        on both benchmark scenes (from about 12) for about 0.5 dB
        (``benchmarks/results/levers16.json``).
    texel_format : str or None
        Stored prototype texel format (:mod:`.texformats`), used by the
        quantisation-aware finish; None: the measured default
        (:func:`probewarp.baker.config.default_texel_format`: BC6H where Rp is
        a multiple of 4, else RGBA16F), resolved in ``texel_format_``.
    seed : int
    reg : float
        Proximal regulariser of the prototype update, relative to the mean
        data term per texel.
    progress : callable or None
        ``progress(stage: str, info: dict)`` after every phase.
    parallel : bool
        Run numba's parallel kernels (threads inside one fit); False runs
        their serial twins, for several fits at once in Python threads. The
        fitted result is bit-identical either way.

    Attributes
    ----------
    centres_ : (M, 3) float64
    radii_ : (M,) float64 (``inf`` without warp)
    prototypes_ : (M, 6, Rp, Rp, 3) float32, in the blend domain, quantised
    prototypes_stored_ : level 0 of ``prototypes_`` encoded in ``texel_format_``
        (what the archive stores; ``prototypes_`` is its decoding)
    texel_format_ : str, the stored texel format (``texel_format`` resolved)
    indices_ : (P, N) int32
    weights_ : (P, N) float32, quantised
    positions_ : (P, 3) float64
    history_ : list of dict, one per phase: stage, iteration, loss (over the
        probes not held out), psnr_db, seconds; ``swap`` stages add the
        objective before and after and ``distinct_per_cell``, ``validation``
        stages the held-out loss
    n_iter_ : int, outer iterations run
    centre_step_ : (M,) float64, each centre's line-search step (relative to its radius)
    R_, Rp_, k_ : int
        Probe resolution, prototype resolution, sub-samples per texel side.

    Methods
    -------
    fit(positions, faces) -> self
    encode(positions, faces) -> (indices (P, N) int32, weights (P, N) float32)
    decode(positions, indices, weights) -> (P, 6, R, R, 3) float32 radiance
    reconstruct(positions=None, faces=None), fit_reconstruct(positions, faces)
    get_params(), set_params(**params)

    Notes
    -----
    :meth:`encode` runs one coding pass with the loss weights of the input
    itself; in the ``'linear'`` domain :meth:`fit` refreshes those weights
    from its reconstruction every iteration (IRLS), which encode does not.
    There is no ``partial_fit``: prototypes are learned from one page of
    probes held in memory.
    """

    def __init__(self, n_prototypes=256, n_taps=4, prototype_res=None, domain="tonemap", warp=True,
                 fit_radius=True, fit_centres=True, radius=None, n_iter=config.DEFAULT_MAX_ITERATIONS, tol=2e-3,
                 validation=1 / 16, n_cg=4, n_near=24, n_content=8, swaps=True, coherence=0.3, texel_format=None, seed=0, reg=1e-2,
                 progress=None, parallel=True):
        self.n_prototypes = n_prototypes
        self.n_taps = n_taps
        self.prototype_res = prototype_res
        self.domain = domain
        self.warp = warp
        self.fit_radius = fit_radius
        self.fit_centres = fit_centres
        self.radius = radius
        self.n_iter = n_iter
        self.tol = tol
        self.validation = validation
        self.n_cg = n_cg
        self.n_near = n_near
        self.n_content = n_content
        self.swaps = swaps
        self.coherence = coherence
        self.texel_format = texel_format
        self.seed = seed
        self.reg = reg
        self.progress = progress
        self.parallel = parallel

    # -- parameters (scikit-learn style) -------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        """The constructor's keyword parameters: ``ProbeCodec(**c.get_params())`` is an unfitted twin."""
        return {k: getattr(self, k) for k in _PARAMS}

    def set_params(self, **params) -> "ProbeCodec":
        """Set constructor parameters by name (learned state is not touched); returns ``self``."""
        for k, v in params.items():
            if k not in _PARAMS:
                raise InputError(f"{k}: not a ProbeCodec parameter (valid: {', '.join(_PARAMS)})")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- validation ---------------------------------------------------------
    @staticmethod
    def _check_positions(positions):
        positions = np.asarray(positions)
        if positions.ndim != 2 or positions.shape[1] != 3:
            raise InputError(f"positions: expected (P, 3), got {positions.shape}")
        if positions.dtype.kind not in "fiu":
            raise InputError(f"positions: expected a real dtype, got {positions.dtype}")
        positions = positions.astype(np.float64)
        if not np.isfinite(positions).all():
            bad = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
            raise InputError(f"positions: probe {bad} is not finite")
        return positions

    def _check(self, positions, faces):
        positions = self._check_positions(positions)
        faces = np.asarray(faces)
        if faces.ndim != 5 or faces.shape[1] != 6 or faces.shape[2] != faces.shape[3] or faces.shape[4] != 3:
            raise InputError(f"faces: expected (P, 6, R, R, 3), got {faces.shape}")
        if faces.dtype.kind != "f":
            raise InputError(f"faces: expected float16/float32/float64, got {faces.dtype}")
        if faces.shape[0] != positions.shape[0]:
            raise InputError(f"faces has {faces.shape[0]} probes but positions has {positions.shape[0]}")
        if self.domain not in ("tonemap", "linear"):
            raise InputError(f"domain must be 'tonemap' or 'linear', not {self.domain!r}")
        if not 1 <= self.n_taps <= 16:
            raise InputError(f"n_taps must be in 1..16, not {self.n_taps}")
        if self.radius is not None and not float(self.radius) > 0:
            raise InputError(f"radius must be positive (or None), not {self.radius}")
        return positions, faces

    def _resolutions(self, R):
        Rp = int(self.prototype_res or R)
        if Rp > R and Rp % R:
            raise InputError(f"prototype_res {Rp} must be a multiple of the probe resolution {R} (or at most {R})")
        return Rp, max(1, Rp // R)

    def _report(self, stage, it, loss, t0, **extra):
        mse = float(loss) / 3.0
        rec = {"stage": stage, "iteration": it, "loss": mse,
               "psnr_db": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
               "seconds": time.perf_counter() - t0, **extra}
        self.history_.append(rec)
        if self.progress is not None:
            self.progress(stage, rec)

    # -- the pieces -----------------------------------------------------------
    def _loss_weights(self, Y):
        """(Pw, T) float32 texel weights of the loss: solid angle, times T'(v)^2 in the linear domain."""
        base = texel_weights(self.R_).reshape(1, -1).astype(np.float32)
        if self.domain == "tonemap":
            return base
        v = Y.mean(axis=2)  # per-texel luminance-ish
        # T(v) = (v/(1+v))^(1/g):  T'(v) = (1/g) (v/(1+v))^(1/g - 1) / (1+v)^2
        g = constants.TONEMAP_GAMMA
        vv = np.maximum(v, 1e-4)
        dT = (1.0 / g) * (vv / (1 + vv)) ** (1.0 / g - 1.0) / (1 + vv) ** 2
        return (base * dT ** 2).astype(np.float32)

    def _kern(self) -> K.Kernels:
        return K.Kernels(bool(self.parallel))

    def _render(self, x, J, idx, w, sub):
        """The exact forward model (the decoder's): (P, T, 3) float32."""
        out = np.empty((x.shape[0], sub.shape[0], 3), np.float32)
        self._kern().render(x, sub, self.centres_, self.radii_, J, self.Rp_, idx, w, out)
        return out

    def _errors(self, Y, Yhat, wt):
        e = np.empty(Y.shape[0])
        self._kern().weighted_sqerr(Y, Yhat, wt, e)
        return e

    # fitting model (padded prototypes, fixed-point footprints: :mod:`.kernels`)
    def _pad(self, J, Rp=None):
        """(M, U, 3) float32 padded prototypes of ``J`` (M, 6 Rp^2, 3)."""
        Rp = self.Rp_ if Rp is None else Rp
        src, nsrc = K.pad_table(Rp)
        Jp = np.empty((J.shape[0], src.shape[0], 3), np.float32)
        self._kern().pad(J, src, nsrc, Jp)
        return Jp

    def _taps(self, x, idx, w, sub):
        """Stored footprints of the current geometry and codes (6 bytes a sample),
        or None above :data:`TAPS_MAX_BYTES` (the kernels then recompute them:
        same results, slower)."""
        P, N = idx.shape
        n = sub.shape[0] * sub.shape[1]
        if 6 * P * N * n > TAPS_MAX_BYTES:
            return None
        tb = np.empty((P, N, n), np.uint16)
        tq = np.empty((P, N, 2, n), np.uint16)
        self._kern().build_taps(x, _dirs(sub), self.centres_, self.radii_, self.Rp_, idx, w, tb, tq)
        return tb, tq

    def _render_fit(self, x, Jp, idx, w, sub, taps):
        """The fitting model's forward operator: (P, T, 3) float32."""
        out = np.empty((x.shape[0], sub.shape[0], 3), np.float32)
        tb, tq = _NO_TAPS if taps is None else taps
        self._kern().render_fit(x, _dirs(sub), sub.shape[1], self.centres_, self.radii_, Jp, self.Rp_, idx, w,
                                tb, tq, taps is not None, out)
        return out

    @staticmethod
    def _users(idx, M):
        """Every prototype's (probe, tap) users in probe order: (order, starts)."""
        flat = idx.reshape(-1)
        order = np.argsort(flat, kind="stable").astype(np.int64)
        starts = np.searchsorted(flat[order], np.arange(M + 1)).astype(np.int64)
        return order, starts

    def _adjoint_fit(self, resid, wt, x, idx, w, sub, taps, users, scratch):
        """Transpose of :meth:`_render_fit` applied to ``wt * resid``: (M, Tp, 3) float64."""
        src, nsrc = K.pad_table(self.Rp_)
        Gp, G = scratch
        tb, tq = _NO_TAPS if taps is None else taps
        self._kern().adjoint_fit(resid, wt, x, _dirs(sub), sub.shape[1], self.centres_, self.radii_, self.Rp_,
                                 idx, w, tb, tq, taps is not None, users[0], users[1], src, nsrc, Gp, G)
        return G.copy()

    def _candidates(self, x, Yfeat):
        M = self.centres_.shape[0]
        n_near = min(self.n_near, M)
        _, near = cKDTree(self.centres_).query(x, k=n_near)
        near = np.asarray(near).reshape(x.shape[0], n_near)
        n_c = min(self.n_content, M)
        if n_c > 0:
            Jfeat = _content_features(self.J_, self.Rp_)
            a = Yfeat / np.maximum(np.sqrt(np.sum(Yfeat * Yfeat, axis=1, keepdims=True)), 1e-12)
            b = Jfeat / np.maximum(np.sqrt(np.sum(Jfeat * Jfeat, axis=1, keepdims=True)), 1e-12)
            sim = np.empty((x.shape[0], M))
            self._kern().similarity(np.ascontiguousarray(a), np.ascontiguousarray(b.T), sim)
            content = np.argpartition(-sim, n_c - 1, axis=1)[:, :n_c]
            cand = np.concatenate([near, content], axis=1)
        else:
            cand = near
        return _unique_rows(cand)

    def _code(self, x, Y, wt, cand, sub, idx, w, err, Jp=None):
        """One coding pass (keeps a probe's code unless the new one is better)."""
        Jp = self._pad(self.J_) if Jp is None else Jp
        self._kern().code(x, _dirs(sub), sub.shape[1], self.centres_, self.radii_, Jp, self.Rp_, Y, wt, cand,
                          self.n_taps, True, idx, w, err)

    def _validation_split(self, P, rng):
        """(P,) bool mask of the held-out probes that decide when the outer
        iterations stop (``validation`` of them, drawn with the fit's seed), or
        None (fixed ``n_iter``) when ``validation`` is 0 or there would be
        fewer than :data:`VALIDATION_MIN_PROBES`."""
        n = int(round(float(self.validation) * P))
        if n < VALIDATION_MIN_PROBES or n >= P:
            return None
        mask = np.zeros(P, bool)
        mask[rng.choice(P, size=n, replace=False)] = True
        return mask

    def _stencils(self, x, cells):
        """Decode stencils and cell-mates of the fitted probes.

        ``cells`` (C, k) int probe indices blended together by the decoder
        (a grid cell's 8 corners; None: unknown). Returns (cells (C, k)
        int64 or an empty (0, 1) array, cell_start (P + 1,), cell_list,
        mates (P, n) int64 nearest cell-mates first, -1 padded): mates are
        probes sharing a cell, or the :data:`COHERENT_NEIGHBOURS` nearest
        probes when there are no cells."""
        P = x.shape[0]
        n_nb = min(COHERENT_NEIGHBOURS, P - 1)
        if cells is None or len(cells) == 0:
            cells = np.zeros((0, 1), np.int64)
            if n_nb < 1:
                return cells, np.zeros(P + 1, np.int64), np.zeros(0, np.int64), np.full((P, 1), -1, np.int64)
            _, nb = cKDTree(x).query(x, k=n_nb + 1)
            return cells, np.zeros(P + 1, np.int64), np.zeros(0, np.int64), np.asarray(nb)[:, 1:].astype(np.int64)
        cells = np.ascontiguousarray(np.asarray(cells, np.int64))
        if cells.ndim != 2 or cells.size and (cells.min() < -1 or cells.max() >= P):
            raise InputError(f"cells: expected (C, k) probe indices in 0..{P - 1} (-1: absent), "
                             f"got shape {cells.shape}")
        kk = cells.shape[1]
        owner = np.repeat(cells, kk, axis=1).reshape(-1)          # (C k k,) pairs (owner, mate)
        mate = np.tile(cells, (1, kk)).reshape(-1)
        keep = (owner != mate) & (owner >= 0) & (mate >= 0)
        pairs = np.unique(np.stack([owner[keep], mate[keep]], 1), axis=0)
        d = np.sum((x[pairs[:, 0]] - x[pairs[:, 1]]) ** 2, axis=1)
        order = np.lexsort((pairs[:, 1], d, pairs[:, 0]))
        pairs = pairs[order]
        start = np.searchsorted(pairs[:, 0], np.arange(P + 1))
        width = max(1, int(np.diff(start).max(initial=0)))
        mates = np.full((P, width), -1, np.int64)
        rank = np.arange(pairs.shape[0]) - start[pairs[:, 0]]
        mates[pairs[:, 0], rank] = pairs[:, 1]
        inc = np.repeat(np.arange(cells.shape[0]), kk)
        flat = cells.reshape(-1)
        inc, flat = inc[flat >= 0], flat[flat >= 0]
        o = np.argsort(flat, kind="stable")
        cell_list = np.ascontiguousarray(inc[o])
        cell_start = np.searchsorted(flat[o], np.arange(P + 1)).astype(np.int64)
        # a probe listed twice in one cell would count that cell twice: harmless for the choice
        return cells, cell_start, cell_list, mates

    def _coherent_code(self, x, Y, wt, sub, idx, w, err, Jp, stencils):
        """Joint re-selection of codes among cell-mates' prototypes (see module notes, step 4).

        Options per probe: non-negative OMP over the :attr:`pool` prototypes its
        cell-mates use most (by summed weight), and the supports of its
        :data:`COHERENT_NEIGHBOURS` nearest cell-mates, each with its own
        least-squares weights. :func:`.kernels.coherent_select` keeps, probe by
        probe, the option of the lowest ``error + lam * distinct prototypes of
        its cells`` with ``lam = coherence * mean error``; without cells (or
        with ``coherence = 0``) it is a pure swap move on the error. The
        objective never rises. Returns (moves, lam)."""
        cells, cell_start, cell_list, mates = stencils
        P, N = idx.shape
        M = self.centres_.shape[0]
        n_nb = min(COHERENT_NEIGHBOURS, mates.shape[1])
        opts_i, opts_w, opts_e = [], [], []

        def option(cand):
            oi = np.zeros((P, N), np.int32)
            ow = np.zeros((P, N), np.float32)
            oe = np.full(P, np.inf)
            self._code(x, Y, wt, _unique_rows(cand), sub, oi, ow, oe, Jp=Jp)
            oe[(cand < 0).all(axis=1)] = np.inf
            opts_i.append(oi), opts_w.append(ow), opts_e.append(oe)

        # the pool: prototypes the cell-mates (and the probe) weigh most
        n_pool = min(max(N + 1, 2 * N), M)
        valid = mates >= 0
        src = np.where(valid, mates, 0)
        pid = np.repeat(np.arange(P), mates.shape[1] * N).reshape(P, -1)
        pi = np.concatenate([idx[src].reshape(P, -1), idx], axis=1).astype(np.int64)
        pw = np.concatenate([np.where(valid[..., None], w[src], 0).reshape(P, -1), w], axis=1)
        pid = np.concatenate([pid, np.repeat(np.arange(P)[:, None], N, axis=1)], axis=1)
        score = np.zeros((P, M), np.float64)
        np.add.at(score, (pid.reshape(-1), pi.reshape(-1)), pw.reshape(-1))
        top = np.argsort(-score, axis=1, kind="stable")[:, :n_pool]
        top = np.where(np.take_along_axis(score, top, axis=1) > 0, top, -1)
        option(top)
        option(top[:, :N])              # the N most shared: the most coherent choice
        for j in range(n_nb):
            m = mates[:, j]
            option(np.where((m >= 0)[:, None] & (w[np.maximum(m, 0)] > 0), idx[np.maximum(m, 0)], -1))
        opt_i = np.ascontiguousarray(np.stack(opts_i, 1))
        opt_w = np.ascontiguousarray(np.stack(opts_w, 1))
        opt_e = np.ascontiguousarray(np.stack(opts_e, 1))
        lam = float(self.coherence) * float(err.mean()) if cells.shape[0] else 0.0
        moves = K.coherent_select(cells, cell_start, cell_list, opt_i, opt_w, opt_e, lam, idx, w, err,
                                  COHERENT_SWEEPS, M)
        return int(moves), lam

    def _update_prototypes(self, x, Y, wt, idx, w, sub, taps, n_cg=None):
        """Joint preconditioned CG on the normal equations, warm-started (never raises the loss)."""
        n_cg = self.n_cg if n_cg is None else n_cg
        M, Tp = self.J_.shape[0], self.J_.shape[1]
        users = self._users(idx, M)
        src = K.pad_table(self.Rp_)[0]
        scratch = (np.empty((M, src.shape[0], 3)), np.empty((M, Tp, 3)))
        J0 = self.J_.astype(np.float64)
        # A 1 is each probe's weight sum (bilinear taps sum to 1): no forward pass needed
        A1 = np.ascontiguousarray(np.broadcast_to(w.sum(axis=1, dtype=np.float32)[:, None, None],
                                                  (x.shape[0], sub.shape[0], 3)))
        diag_proxy = self._adjoint_fit(A1, wt, x, idx, w, sub, taps, users, scratch)
        seen = diag_proxy[..., 0] > 0
        lam = self.reg * float(diag_proxy[seen].mean()) if seen.any() else 1.0

        def H(v):
            Av = self._render_fit(x, self._pad(v), idx, w, sub, taps)
            return self._adjoint_fit(Av, wt, x, idx, w, sub, taps, users, scratch) + lam * v

        # Jacobi-style preconditioner: the row sums of A'WA (>= its diagonal,
        # all entries being non-negative), plus the regulariser
        Minv = 1.0 / (diag_proxy + lam)
        resid = Y - self._render_fit(x, self._pad(self.J_), idx, w, sub, taps)
        r = self._adjoint_fit(resid, wt, x, idx, w, sub, taps, users, scratch)
        z = Minv * r
        p = z.copy()
        rz = K._dot(r, z)
        J = J0
        for _ in range(n_cg):
            if rz <= 1e-30:
                break
            Hp = H(p)
            alpha = rz / K._dot(p, Hp)
            J = J + alpha * p
            r = r - alpha * Hp
            z = Minv * r
            rz_new = K._dot(r, z)
            p = z + (rz_new / rz) * p
            rz = rz_new
        self.J_ = np.ascontiguousarray(J.astype(np.float32))

    def _geometry_trials(self):
        """Every prototype's trial geometries: (trial_c (M, n, 3), trial_r (M, n)).

        Radius trials scale the radius by :data:`RADIUS_SCALES` at the same
        centre; centre trials (``fit_centres``) move the centre by its own
        step ``centre_step_[m]`` (relative to its radius) along +-x, +-y,
        +-z at the same radius, content moving with them (view preserving:
        :meth:`_moved_content`)."""
        M = self.radii_.shape[0]
        tc, tr = [], []
        if self.fit_radius:
            for s in RADIUS_SCALES:
                tc.append(self.centres_)
                tr.append(self.radii_ * s)
        if self.fit_centres:
            step = (self.centre_step_ * self.radii_)[:, None]
            for axis in range(3):
                for sign in (-1.0, 1.0):
                    e = np.zeros(3)
                    e[axis] = sign
                    tc.append(self.centres_ + step * e)
                    tr.append(self.radii_)
        trial_c = np.ascontiguousarray(np.stack(tc, axis=1)) if tc else np.zeros((M, 0, 3))
        trial_r = np.ascontiguousarray(np.stack(tr, axis=1)) if tr else np.zeros((M, 0))
        return trial_c, trial_r

    def _update_geometry(self, x, Y, wt, idx, w, sub, Yhat, taps, Jp, err):
        """Line search of every prototype's geometry (:meth:`_geometry_trials`).

        Each prototype takes its best trial if it lowers the loss of its
        heaviest users (:data:`RADIUS_TRIAL_USERS`). The changes interact, so
        the whole update is then checked on the full loss: if it rose, only
        the better half of the changes (by predicted gain) is tried, then
        none. The loss never rises. Centre steps adapt: a prototype whose
        centre moved doubles its step, one that found no better centre
        halves it (within :data:`CENTRE_STEP_RANGE` of the radius).

        Returns (err, Yhat, info) after the update."""
        trial_c, trial_r = self._geometry_trials()
        nT = trial_r.shape[1]
        M = self.radii_.shape[0]
        resid = np.ascontiguousarray(Y - Yhat)
        delta = np.empty((x.shape[0], idx.shape[1], nT))
        tb, tq = _NO_TAPS if taps is None else taps
        use = _heaviest_users(idx, w, RADIUS_TRIAL_USERS)
        self._kern().geometry_trials(x, _dirs(sub), sub.shape[1], self.centres_, self.radii_, Jp, self.Rp_, idx, w,
                                     use, tb, tq, taps is not None, resid, wt, trial_c, trial_r,
                                     VIEW_PRESERVING_CENTRES, delta)
        tot = np.zeros((M, nT))
        np.add.at(tot, idx.reshape(-1), delta.reshape(-1, nT))
        best = np.argmin(tot, axis=1)
        gain = tot[np.arange(M), best]
        change = gain < 0
        old_c, old_r, old_J = self.centres_.copy(), self.radii_.copy(), self.J_
        before = float(err.sum())
        n_radius = len(RADIUS_SCALES) if self.fit_radius else 0
        accepted = np.zeros(M, bool)
        for attempt in range(2):
            if not change.any():
                break
            self.centres_ = np.where(change[:, None], trial_c[np.arange(M), best], old_c)
            self.radii_ = np.where(change, trial_r[np.arange(M), best], old_r)
            moves = np.flatnonzero(change & (best >= n_radius))
            self.J_ = self._moved_content(old_J, old_c, moves) if moves.size else old_J
            Jp2 = self._pad(self.J_) if moves.size else Jp
            Yhat2 = self._render_fit(x, Jp2, idx, w, sub, None)
            err2 = self._errors(Y, Yhat2, wt)
            if err2.sum() <= before:
                err, Yhat, accepted, Jp = err2, Yhat2, change, Jp2
                break
            self.centres_, self.radii_, self.J_ = old_c.copy(), old_r.copy(), old_J
            if attempt == 0:          # keep the better half of the predicted gains
                cut = np.median(gain[change])
                change = change & (gain < cut)
        moved = accepted & (best >= n_radius)
        if self.fit_centres:
            tried = gain >= 0       # no better geometry found: a finer centre step next time
            lo, hi = CENTRE_STEP_RANGE
            self.centre_step_ = np.clip(np.where(moved, self.centre_step_ * 2.0,
                                                 np.where(tried, self.centre_step_ * 0.5, self.centre_step_)), lo, hi)
        info = {"changed": int(accepted.sum()), "centres_moved": int(moved.sum()),
                "radius_median": float(np.median(self.radii_))}
        return err, Yhat, info, Jp

    def _moved_content(self, J, old_c, moves):
        """Prototype texels after view-preserving centre moves of prototypes
        ``moves``: the new texel in direction ``u`` is the old content
        sampled (seamless bilinear) in the direction of ``c' + rho' u``
        seen from the old centre, so the prototype looks the same from
        there. (M, 6 Rp^2, 3) float32, a new array."""
        Rp = self.Rp_
        u = texel_directions(Rp).reshape(-1, 3)
        out = J.copy()
        for m in moves:
            d = (self.centres_[m] - old_c[m])[None, :] + self.radii_[m] * u
            out[m] = sample_cube(J[m].reshape(6, Rp, Rp, 3), d).astype(np.float32)
        return out

    def _initial_radius(self, x, Y, wt, Yfeat, sub, diag, rng):
        """One radius for every prototype to start from, chosen by coding a
        subset of probes with each of a log-spaced set of radii (from two
        probe spacings to the whole set's extent) and keeping the best: the
        scene's depth scale, measured rather than assumed."""
        P = x.shape[0]
        nn = cKDTree(x).query(x[: min(P, 4096)], k=2)[0][:, 1] if P > 1 else np.array([1.0])
        lo = max(2.0 * float(np.median(nn)), 1e-3)
        hi = max(2.0 * diag, 2.0 * lo)
        trial = np.geomspace(lo, hi, 6)
        sel = np.sort(rng.choice(P, size=min(P, 384), replace=False))
        xs = np.ascontiguousarray(x[sel])
        cand = self._candidates(xs, Yfeat[sel])
        Jp = self._pad(self.J_)
        wts = wt if wt.shape[0] == 1 else np.ascontiguousarray(wt[sel])
        best, best_err = trial[0], np.inf
        for r in trial:
            self.radii_ = np.full(self.centres_.shape[0], r)
            idx = np.zeros((sel.size, self.n_taps), np.int32)
            w = np.zeros((sel.size, self.n_taps), np.float32)
            err = np.full(sel.size, np.inf)
            self._code(xs, np.ascontiguousarray(Y[sel]), wts, cand, sub, idx, w, err, Jp=Jp)
            if err.sum() < best_err:
                best, best_err = r, err.sum()
        return float(best)

    # -- public API -----------------------------------------------------------
    def fit(self, positions: np.ndarray, faces: np.ndarray, cells=None) -> "ProbeCodec":
        """Learn prototypes and codes.

        Parameters
        ----------
        positions : (P, 3) float
        faces : (P, 6, R, R, 3) float16/float32 linear radiance (validated upstream:
            finite, non-negative)
        cells : (C, k) int or None
            The decode stencils: indices of probes the decoder blends together,
            -1 for absent ones (a grid cell's 8 corners:
            :meth:`probewarp.format.grid.Grid.stencils`).
            Coherent coding (``coherence > 0``) counts distinct prototypes
            per stencil; without cells, swap moves use nearest neighbours.
        """
        t0 = time.perf_counter()
        x, faces = self._check(positions, faces)
        P, R = faces.shape[0], faces.shape[2]
        M = int(self.n_prototypes)
        if not 1 <= M <= P:
            raise InputError(f"n_prototypes must be in 1..{P} (the number of probes), not {M}")
        self.R_ = R
        self.Rp_, self.k_ = self._resolutions(R)
        self.history_ = []
        rng = np.random.default_rng(self.seed)
        x = np.ascontiguousarray(x)
        self.positions_ = x
        Y = np.ascontiguousarray(to_domain(faces, self.domain))
        wt = self._loss_weights(Y)
        sub = sub_directions(R, self.k_)
        Yfeat = _content_features(Y, R)

        # -- initialisation: k-means++ on positions and content ----------------
        span = x.max(axis=0) - x.min(axis=0)
        diag = float(np.sqrt(np.sum(span * span)))
        pos = (x - x.mean(axis=0)) / max(float(x.std(axis=0).max()), 1e-12)
        feat = Yfeat - Yfeat.mean(axis=0)
        feat = feat / max(float(np.sqrt((feat ** 2).sum(axis=1).mean())), 1e-12)
        pos = pos / max(float(np.sqrt((pos ** 2).sum(axis=1).mean())), 1e-12)
        labels = kmeans_exact(np.concatenate([pos, feat], axis=1), M, rng, parallel=bool(self.parallel))
        counts = np.bincount(labels, minlength=M)
        self.centres_ = np.zeros((M, 3))
        np.add.at(self.centres_, labels, x)
        self.centres_ /= counts[:, None]
        ftot = np.concatenate([pos, feat], axis=1)
        cen = np.zeros((M, ftot.shape[1]))
        np.add.at(cen, labels, ftot)
        cen /= counts[:, None]
        d = ((ftot - cen[labels]) ** 2).sum(axis=1)
        medoid = np.empty(M, np.int64)
        for m in range(M):
            mem = np.flatnonzero(labels == m)
            medoid[m] = mem[np.argmin(d[mem])]
        Yimg = Y[medoid].reshape(M, 6, R, R, 3)
        J = np.stack([resample_cube(Yimg[m], self.Rp_) for m in range(M)]) if self.Rp_ != R else Yimg
        self.J_ = np.ascontiguousarray(J.reshape(M, -1, 3).astype(np.float32))
        if self.warp:
            if self.radius is not None:
                r0 = float(self.radius)
            else:
                r0 = self._initial_radius(x, Y, wt, Yfeat, sub, diag, rng)
            self.radii_ = np.full(M, r0)
        else:
            self.radii_ = np.full(M, np.inf)
        self.centre_step_ = np.full(M, CENTRE_STEP_START)
        self.history_.append({"stage": "init", "iteration": 0, "seconds": time.perf_counter() - t0})

        idx = np.zeros((P, self.n_taps), np.int32)
        w = np.zeros((P, self.n_taps), np.float32)
        err = np.full(P, np.inf)
        cand = self._candidates(x, Yfeat)
        self._code(x, Y, wt, cand, sub, idx, w, err)
        self._report("code", 0, err.sum() / P, t0)
        stencils = self._stencils(x, cells) if self.swaps else None

        # held-out probes decide when to stop: they are coded every iteration
        # but take no part in the prototype and geometry updates (the finish
        # below fits on every probe)
        val = self._validation_split(P, rng)
        tr = np.flatnonzero(~val) if val is not None else None
        n_tr = P if tr is None else tr.size

        def tl(e):                      # the loss reported: over the training probes
            return float(e.sum() if tr is None else e[tr].sum()) / n_tr

        prev_val = float(err[val].sum()) if val is not None else None
        self.n_iter_ = 0
        for it in range(1, self.n_iter + 1):
            self.n_iter_ = it
            if self.domain == "linear":
                Yhat = self._render_fit(x, self._pad(self.J_), idx, w, sub, None)
                wt = self._loss_weights(np.maximum(Yhat, 0) * 0.5 + Y * 0.5)
            if tr is None:
                xt, Yt, wtt, it_, wt_ = x, Y, wt, idx, w
            else:
                xt, Yt, it_, wt_ = (np.ascontiguousarray(a[tr]) for a in (x, Y, idx, w))
                wtt = wt if wt.shape[0] == 1 else np.ascontiguousarray(wt[tr])
            taps = self._taps(xt, it_, wt_, sub)      # the geometry is fixed until the geometry update
            self._update_prototypes(xt, Yt, wtt, it_, wt_, sub, taps)
            Jp = self._pad(self.J_)
            Yhat = self._render_fit(xt, Jp, it_, wt_, sub, taps)
            err_t = self._errors(Yt, Yhat, wtt)
            self._report("prototypes", it, err_t.sum() / n_tr, t0)
            if self.warp and (self.fit_radius or self.fit_centres):
                err_t, Yhat, info, Jp = self._update_geometry(xt, Yt, wtt, it_, wt_, sub, Yhat, taps, Jp, err_t)
                self._report("geometry", it, err_t.sum() / n_tr, t0, **info)
            del taps
            if tr is None:
                err = err_t
            else:
                err = self._errors(Y, self._render_fit(x, Jp, idx, w, sub, None), wt)
            cand = self._candidates(x, Yfeat)
            cand = _unique_rows(np.concatenate([cand, np.where(w > 0, idx, -1)], axis=1))   # + the current code
            self._code(x, Y, wt, cand, sub, idx, w, err, Jp=Jp)
            self._report("code", it, tl(err), t0)
            if self.swaps:
                d0 = stencil_distinct(stencils[0], idx, w)
                e0 = float(err.sum())
                moves, lam = self._coherent_code(x, Y, wt, sub, idx, w, err, Jp, stencils)
                d = stencil_distinct(stencils[0], idx, w)
                self._report("swap", it, tl(err), t0, moves=moves, lam=lam,
                             objective_before=(e0 + lam * float(d0.sum())) / P,
                             objective=(float(err.sum()) + lam * float(d.sum())) / P,
                             distinct_per_cell=float(d.mean()) if d.size else None)
            if val is not None:
                v = float(err[val].sum())
                self._report("validation", it, v / int(val.sum()), t0, probes=int(val.sum()))
                if prev_val - v < self.tol * prev_val:
                    break
                prev_val = v

        # -- quantisation-aware finish ---------------------------------------
        # weights are rounded to their 8-bit stored form first; one more joint
        # prototype solve then absorbs the rounding, and the texels are
        # quantised to their stored format last (the finer of the two). The
        # last loss is the exact model's (the decoder's): the published metric.
        w[:] = texformats.quantize_weights(w)
        taps = self._taps(x, idx, w, sub)
        self._update_prototypes(x, Y, wt, idx, w, sub, taps, n_cg=max(1, self.n_cg // 2))
        del taps
        self.texel_format_ = self.texel_format or config.default_texel_format(self.Rp_)
        if self.texel_format_ in texformats.UNIT_RANGE and self.domain != "tonemap":
            raise InputError(f"{self.texel_format_} stores [0, 1] values: it needs the tonemapped blend domain")
        # encoded once: the archive stores these very blocks (re-encoding decoded
        # block-compressed texels is not lossless)
        self.prototypes_stored_ = texformats.encode(self.J_.reshape(M, 6, self.Rp_, self.Rp_, 3), self.texel_format_)
        Jq = texformats.decode(self.prototypes_stored_, self.texel_format_)
        self.J_ = np.ascontiguousarray(Jq.reshape(M, -1, 3).astype(np.float32))
        Yhat = self._render(x, self.J_, idx, w, sub)
        err = self._errors(Y, Yhat, wt)
        self._report("quantised", self.n_iter, err.sum() / P, t0)

        self.indices_ = idx
        self.weights_ = w
        self.prototypes_ = self.J_.reshape(M, 6, self.Rp_, self.Rp_, 3)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _check_fitted(self):
        if not hasattr(self, "prototypes_"):
            raise RuntimeError("ProbeCodec is not fitted; call fit(positions, faces) first")

    def encode(self, positions: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Code new probes against the fixed learned prototypes.

        The coding step of :meth:`fit` (same candidates: the ``n_near``
        spatially nearest prototypes plus the ``n_content`` best-correlated;
        same non-negative OMP kernel, same loss weights), with ``centres_``,
        ``radii_`` and ``prototypes_`` left as they are. Greedy OMP from
        scratch misses many of the supports fit reached over its iterations,
        so each probe then also tries, through the same kernel, the support
        of each of the :data:`ENCODE_NEIGHBOUR_CODES` nearest fitted probes'
        codes; the lowest-error code is kept. Weights are quantised to their
        stored 8-bit form last, as :meth:`fit`'s finish does.

        Parameters
        ----------
        positions : (P, 3) float
        faces : (P, 6, R, R, 3) float16/float32/float64 linear radiance, R the
            resolution of the fitted probes (``R_``)

        Returns
        -------
        indices : (P, N) int32, prototype indices into ``prototypes_``
        weights : (P, N) float32, quantised, non-negative (0 = unused tap)
        """
        self._check_fitted()
        x, faces = self._check(positions, faces)
        if faces.shape[2] != self.R_:
            raise InputError(f"faces: resolution {faces.shape[2]} differs from the fitted probes' {self.R_}")
        P = x.shape[0]
        idx = np.zeros((P, self.n_taps), np.int32)
        w = np.zeros((P, self.n_taps), np.float32)
        sub = sub_directions(self.R_, self.k_)
        n_nb = min(ENCODE_NEIGHBOUR_CODES, self.positions_.shape[0])
        tree = cKDTree(self.positions_)
        Jp = self._pad(self.J_)
        for a in range(0, P, ENCODE_CHUNK):     # bounded memory: one chunk in the blend domain at a time
            xs = np.ascontiguousarray(x[a:a + ENCODE_CHUNK])
            Y = np.ascontiguousarray(to_domain(faces[a:a + ENCODE_CHUNK], self.domain))
            wt = self._loss_weights(Y)
            ic, wc = idx[a:a + ENCODE_CHUNK], w[a:a + ENCODE_CHUNK]
            err = np.full(xs.shape[0], np.inf)
            self._code(xs, Y, wt, self._candidates(xs, _content_features(Y, self.R_)), sub, ic, wc, err, Jp=Jp)
            near = np.asarray(tree.query(xs, k=n_nb)[1]).reshape(xs.shape[0], n_nb)
            for j in range(n_nb):               # each pass keeps a probe's code unless it improves on it
                self._code(xs, Y, wt, _unique_rows(self.indices_[near[:, j]]), sub, ic, wc, err, Jp=Jp)
        w[:] = texformats.quantize_weights(w)
        return idx, w

    def decode(self, positions: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Reconstruct probes from codes, every prototype warped to its position.

        DESIGN-NOTES §4: ``probe(x)(d) = sum_k w_k J_{m_k}(s(x, c, rho, d))``,
        blended in the blend domain, each texel the mean of its ``k x k``
        sub-texel samples, then mapped back to radiance.

        Parameters
        ----------
        positions : (P, 3) float
        indices : (P, N) int, in ``0 .. M-1``
        weights : (P, N) float

        Returns
        -------
        faces : (P, 6, R, R, 3) float32 linear radiance, R = ``R_``
        """
        self._check_fitted()
        x = self._check_positions(positions)
        idx = np.asarray(indices)
        w = np.asarray(weights)
        P, M = x.shape[0], self.centres_.shape[0]
        if idx.ndim != 2 or idx.shape[0] != P or idx.shape[1] < 1:
            raise InputError(f"indices: expected (P, N) with P = {P} positions, got {idx.shape}")
        if idx.dtype.kind not in "iu":
            raise InputError(f"indices: expected an integer dtype, got {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= M):
            raise InputError(f"indices: values must be in 0..{M - 1}, got {idx.min()}..{idx.max()}")
        if w.shape != idx.shape:
            raise InputError(f"weights: expected {idx.shape} like indices, got {w.shape}")
        if w.dtype.kind != "f" or not np.isfinite(w).all():
            raise InputError(f"weights: expected finite floats, got {w.dtype}")
        sub = sub_directions(self.R_, self.k_)
        Yhat = self._render(np.ascontiguousarray(x), self.J_, np.ascontiguousarray(idx, np.int32),
                            np.ascontiguousarray(w, np.float32), sub)
        return from_domain(Yhat, self.domain, self.R_)

    def reconstruct(self, positions: np.ndarray | None = None, faces: np.ndarray | None = None) -> np.ndarray:
        """``decode(positions, *encode(positions, faces))``: (P, 6, R, R, 3) float32 radiance.

        Without arguments: the fitted probes decoded at their own positions
        with their fitted codes (``positions_``, ``indices_``, ``weights_``).
        """
        if positions is None and faces is None:
            self._check_fitted()
            return self.decode(self.positions_, self.indices_, self.weights_)
        if positions is None or faces is None:
            raise InputError("reconstruct: give both positions and faces, or neither (the fitted set)")
        return self.decode(positions, *self.encode(positions, faces))

    def fit_reconstruct(self, positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Fit on the probes and reconstruct them with the fitted codes: (P, 6, R, R, 3) float32."""
        return self.fit(positions, faces).reconstruct()
