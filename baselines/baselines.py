"""The baseline codecs every claim is measured against (DESIGN-NOTES §6).

Estimators in scikit-learn style: ``__init__`` only stores keyword
parameters; :meth:`fit` learns from ``faces`` ``(P, 6, R, R, 3)`` linear
radiance; learned state ends in ``_``; :meth:`encode` gives what ships per
probe, :meth:`decode` (its twin) turns it back into ``(P, 6, R, R, 3)``
float32 linear radiance, and :meth:`reconstruct` is the two in a row, so the
quality reported is that of the stored (fp16) numbers. :meth:`bytes_per_probe`
counts everything that would ship, shared images amortised over the probes.

=========================  ===============================================
:class:`SphericalHarmonics`  real SH bands ``0..L``, weighted least squares
:class:`PCA`                 mean + K eigen-images, K codes per probe
:class:`VectorQuantizer`     k-means codebook, one index per probe
:func:`neighbour_blend`      held-out baseline: blend known neighbours
=========================  ===============================================

All fits minimise the §5 error they are scored with: squared error weighted
by the texel solid angle (normalised to 1 per probe) and averaged over RGB,
in the estimator's ``domain``: ``'linear'`` radiance, or ``'tonemap'`` (the
metric's ``T(v)``, :func:`probewarp.baker.metrics.tonemap`; the decoder
applies :func:`~probewarp.baker.metrics.inverse_tonemap` after clipping the
reconstruction to ``[0, 1)``).

Notes
-----
- Byte counts are payload only: no container header, no per-set constants
  (order, R, domain), which are a few bytes for the whole set.
- fp16 stores clip to +-65504 (:data:`constants.FP16_MAX`) rather than overflow.
- Linear-domain decodes are not clamped at 0 (SH rings negative); the metric
  clamps with ``max(v, 0)`` as a renderer would.
- Nothing here streams: a fit holds the set as ``(P, 6 R^2 3)`` float32/64
  in memory (0.3 GB for P = 8192, R = 16 in float64). Out-of-core sets are
  to be subsampled for these baselines.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
from scipy.spatial import cKDTree

from probewarp.format import constants
from probewarp.baker.cubemap import texel_directions, texel_weights
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid
from probewarp.baker.metrics import inverse_tonemap, tonemap

__all__ = ["SphericalHarmonics", "PCA", "VectorQuantizer", "real_sh_basis", "sh_count",
           "neighbour_blend", "split_heldout", "DOMAINS"]

# --- constants (one commented place for this module) -------------------------
#: Bytes of one stored fp16 value.
FP16_BYTES = 2
#: The domains a baseline can be fitted in.
DOMAINS = ("linear", "tonemap")
#: Probes per chunk in the encode / decode / distance loops (bounds the
#: temporaries at ~ chunk * 6 R^2 * 3 * 8 bytes: 38 MB at R = 16).
CHUNK_PROBES = 1024
#: PCA: dense ``eigh`` of the (n x n) Gram/covariance when n = min(P, D) is at
#: most this, Lanczos (ARPACK ``eigsh``) for the top K otherwise.
PCA_DENSE_EIGH_MAX = 2048
#: PCA: eigenvalues below this fraction of the largest count as zero (their
#: components are set to zero images rather than noise directions). The
#: covariance is formed in float32 (eps 6e-8), whose rounding puts the
#: eigenvalues of an exactly rank-deficient set at ~1e-8 of the largest.
PCA_RANK_REL_TOL = 1.0e-6
#: k-means: Lloyd iterations at most, and the relative decrease of the
#: objective below which they stop (they also stop when no label changes).
KMEANS_MAX_ITER = 100
KMEANS_TOL = 1.0e-6
#: k-means: squared distances computed as ``|a|^2 - 2ab + |b|^2`` in float32
#: below this fraction of ``|a|^2 + |b|^2`` are rounding noise and count as 0
#: (so a k-means++ draw never picks a copy of a chosen centre). 1e-5 of the
#: energy is far below what the metric resolves (~ 55 dB).
KMEANS_ZERO_REL = 1.0e-5
#: neighbour_blend: a grid coordinate within this (in cells) of an integer is
#: snapped to it, so a query at a probe's position returns that probe.
GRID_SNAP_CELLS = 1.0e-6
#: neighbour_blend: corners whose trilinear weights sum below this count as
#: "no known corner" (the inverse-distance fallback is used).
BLEND_MIN_WEIGHT = 1.0e-9
#: neighbour_blend fallback: known probes within (1 + this) times the
#: nearest known distance are the "nearest" ones (exact grid ties).
BLEND_TIE_REL = 1.0e-3
#: neighbour_blend fallback: candidates examined per query (nearest first).
BLEND_FALLBACK_K = 32


# =============================================================================
# shared plumbing
# =============================================================================

def _fp16(a: np.ndarray) -> np.ndarray:
    """Round to what an fp16 store holds (clipped to +-FP16_MAX): float16."""
    return np.clip(a, -constants.FP16_MAX, constants.FP16_MAX).astype(np.float16)


def _index_bytes(n_values: int) -> int:
    """Fewest whole bytes that hold an index into ``n_values`` entries (0 for 1)."""
    return 0 if n_values <= 1 else (int(n_values - 1).bit_length() + 7) // 8


def _index_dtype(n_values: int):
    """Smallest unsigned numpy dtype that holds indices into ``n_values`` entries."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n_values - 1 <= np.iinfo(dt).max:
            return dt
    return np.uint64


def _check_faces(faces, R=None) -> np.ndarray:
    """Validate ``(P, 6, R, R, 3)`` finite float radiance; returns the array."""
    faces = np.asarray(faces)
    if (faces.ndim != 5 or faces.shape[1] != 6 or faces.shape[2] != faces.shape[3]
            or faces.shape[4] != 3):
        raise InputError(f"faces must be (P, 6, R, R, 3), got {faces.shape}")
    if faces.dtype.kind != "f":
        raise InputError(f"faces must be float16/32/64 radiance, got {faces.dtype}")
    if faces.shape[0] == 0:
        raise InputError("faces holds no probes")
    if R is not None and faces.shape[2] != R:
        raise InputError(f"faces have R = {faces.shape[2]}, the estimator was fitted at R = {R}")
    if not np.isfinite(faces).all():
        bad = np.flatnonzero(~np.isfinite(faces).reshape(faces.shape[0], -1).all(axis=1))
        raise InputError(f"faces hold non-finite radiance (probes {bad[:5].tolist()} ...); "
                         "sanitise the set first")
    return faces


def _texel_element_weights(R: int) -> np.ndarray:
    """Metric weight of every element of a flattened probe: ``(6 R^2 3,)`` float64, sum 1.

    ``per_probe_mse = sum_d wd[d] * err[d]^2`` exactly (solid-angle weight of
    the texel divided by 3 for the mean over RGB).
    """
    return np.repeat(texel_weights(R).reshape(-1), 3) / 3.0


class _Baseline:
    """Common interface: domain transforms, reconstruct, fit_reconstruct."""

    _params: tuple = ()

    def get_params(self) -> dict:
        """The constructor's keyword parameters (scikit-learn style)."""
        return {k: getattr(self, k) for k in self._params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_params(self):
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {self.domain!r}")

    def _check_fitted(self):
        if not hasattr(self, "R_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(faces) first")

    def _forward(self, faces: np.ndarray, dtype=np.float64) -> np.ndarray:
        """(p, 6, R, R, 3) radiance -> (p, D) values in the fit domain."""
        x = faces.reshape(faces.shape[0], -1).astype(np.float64)
        if self.domain == "tonemap":
            x = tonemap(x)
        return x.astype(dtype, copy=False)

    def _inverse(self, x: np.ndarray) -> np.ndarray:
        """(p, D) domain values -> (p, 6, R, R, 3) float32 linear radiance."""
        if self.domain == "tonemap":
            x = inverse_tonemap(x)
        R = self.R_
        return np.asarray(x, dtype=np.float32).reshape(x.shape[0], 6, R, R, 3)

    def _domain_matrix(self, faces: np.ndarray, dtype=np.float64) -> np.ndarray:
        """The whole set in the fit domain, chunk by chunk: (P, D) ``dtype``."""
        P = faces.shape[0]
        out = np.empty((P, int(np.prod(faces.shape[1:]))), dtype)
        for a in range(0, P, CHUNK_PROBES):
            out[a:a + CHUNK_PROBES] = self._forward(faces[a:a + CHUNK_PROBES], dtype)
        return out

    def reconstruct(self, faces) -> np.ndarray:
        """``decode(encode(faces))``: (P, 6, R, R, 3) float32 linear radiance, as shipped."""
        return self.decode(self.encode(faces))

    def fit_reconstruct(self, faces) -> np.ndarray:
        """Fit on ``faces`` and reconstruct them: (P, 6, R, R, 3) float32."""
        return self.fit(faces).reconstruct(faces)

    def _n_probes(self, n_probes):
        if n_probes is None:
            self._check_fitted()
            n_probes = self.n_probes_fit_
        if n_probes < 1:
            raise ValueError(f"n_probes must be >= 1, got {n_probes}")
        return int(n_probes)


# =============================================================================
# 1. spherical harmonics
# =============================================================================

def sh_count(order: int) -> int:
    """Number of real SH functions in bands ``0..order``: ``(order + 1)^2``."""
    return (int(order) + 1) ** 2


def real_sh_basis(dirs: np.ndarray, order: int) -> np.ndarray:
    """Real spherical harmonics, orthonormal on the unit sphere.

    Parameters
    ----------
    dirs : (..., 3) float
        Directions (normalised here; must be nonzero).
    order : int
        Highest band ``L >= 0``.

    Returns
    -------
    Y : (..., (L+1)^2) float64
        ``Y[..., l*l + l + m]`` for ``l = 0..L``, ``m = -l..l``, with
        ``integral Y_i Y_j dOmega = delta_ij``.

    Notes
    -----
    Convention: polar angle ``theta`` from +Z, azimuth ``phi = atan2(y, x)``,
    no Condon-Shortley phase in the real functions (the "Wikipedia" real SH):
    ``Y_lm = sqrt(2) N_l|m| P_l^|m|(cos theta) * (cos m phi  if m > 0, sin |m| phi  if m < 0)``,
    ``Y_l0 = N_l0 P_l(cos theta)``, so band 1 is ``0.4886 * (y, z, x)``. Equal
    to scipy's ``sph_harm_y`` through ``sqrt(2) (-1)^m Re/Im``. Computed with
    the normalised associated-Legendre recurrence in ``z`` times
    ``Re/Im (x + i y)^m`` (polynomials: no pole singularity, any ``L``).
    """
    d = np.asarray(dirs, dtype=np.float64)
    shape = d.shape[:-1]
    d = d.reshape(-1, 3)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    L = int(order)
    if L < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    out = np.empty((d.shape[0], sh_count(L)))
    # Q[l] = Nbar_l^m P_l^m(z) / s^m for the current m (s = sin theta).
    qmm = np.full_like(z, 1.0 / math.sqrt(4.0 * math.pi))
    cm, sm = np.ones_like(x), np.zeros_like(x)  # Re, Im of (x + i y)^m
    for m in range(L + 1):
        if m > 0:
            qmm = qmm * math.sqrt((2 * m + 1) / (2 * m))
            cm, sm = cm * x - sm * y, cm * y + sm * x
        q_prev2, q_prev = None, qmm
        for l in range(m, L + 1):
            if l == m:
                q = qmm
            elif l == m + 1:
                q = math.sqrt(2 * m + 3) * z * qmm
            else:
                a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
                b = math.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
                q = a * (z * q_prev - b * q_prev2)
            if l > m:
                q_prev2, q_prev = q_prev, q
            if m == 0:
                out[:, l * l + l] = q
            else:
                out[:, l * l + l + m] = math.sqrt(2.0) * q * cm
                out[:, l * l + l - m] = math.sqrt(2.0) * q * sm
    return out.reshape(shape + (out.shape[1],))


class SphericalHarmonics(_Baseline):
    """Real SH bands ``0..order`` per colour channel, fitted by solid-angle
    weighted least squares over the cube texels, coefficients stored fp16.

    Parameters
    ----------
    order : int, default 6
        Highest band ``L``; ``(L+1)^2`` coefficients per channel (49 at 6).
    domain : {'linear', 'tonemap'}, default 'linear'
        'linear' (the classic usage: SH of radiance) or 'tonemap' (fit
        ``T(v)``, invert after).

    Attributes
    ----------
    R_ : int
    basis_ : (6 R^2, K) float64
        ``real_sh_basis`` at the texel centres.
    projector_ : (K, 6 R^2) float64
        Weighted least-squares solve: ``coeffs = projector_ @ values``.
    n_probes_fit_ : int

    Notes
    -----
    Least squares, not projection (``sum omega f Y``): on a cube the texel
    quadrature is not exact, so projection leaks between bands (1.6 % at
    R = 4); least squares reproduces any field in the span exactly and
    minimises the scored error. Bytes: ``(L+1)^2 * 3 * 2`` per probe (294 at
    L = 6), nothing shared (the basis is analytic).

    Measured on a synthetic outdoor scene (8192 probes, R = 16: sky, a
    0.08 rad sun disk of radiance 5000, textured ground, emissive spheres;
    not the users' scene of DESIGN-NOTES §6), PSNR for orders 2 / 4 / 6:

    - ``domain='linear'``: 6.4 / 6.3 / 6.1 dB (sun dimmed to 50: 15.9 / 14.5
      / 12.9 dB). The weighted linear error falls with the order as it must,
      but the tonemapped PSNR falls too: ringing around a small bright source
      goes negative (clamped to 0) over the dark ground, where ``T`` is steep.
    - ``domain='tonemap'``: 19.5 / 20.6 / 21.2 dB (the same with the sun at 50).
    """

    _params = ("order", "domain")

    def __init__(self, order: int = 6, domain: str = "linear"):
        self.order = order
        self.domain = domain

    @property
    def name(self) -> str:
        """Label for tables, e.g. ``'SH order 6'`` (``'SH order 6 (tonemap)'``)."""
        tag = "" if self.domain == "linear" else f" ({self.domain})"
        return f"SH order {self.order}{tag}"

    @property
    def n_coefficients(self) -> int:
        """Coefficients per channel, ``(order + 1)^2``."""
        return sh_count(self.order)

    def fit(self, faces) -> "SphericalHarmonics":
        """Set up the basis and the weighted solve for ``faces``' resolution.

        Parameters
        ----------
        faces : (P, 6, R, R, 3) float
            Only R (and P, for :meth:`bytes_per_probe`) are used: SH has no
            learned basis.
        """
        self._check_params()
        if int(self.order) != self.order or self.order < 0:
            raise ValueError(f"order must be an integer >= 0, got {self.order!r}")
        faces = _check_faces(faces)
        R = faces.shape[2]
        K, T = self.n_coefficients, 6 * R * R
        if K > T:
            raise InputError(f"SH order {self.order} has {K} coefficients, more than the "
                             f"{T} texels of an R = {R} cube")
        Y = real_sh_basis(texel_directions(R).reshape(-1, 3), self.order)
        sw = np.sqrt(texel_weights(R).reshape(-1))
        # argmin_c |sw * (f - Y c)|^2  =  pinv(sw Y) (sw f)
        self.projector_ = np.linalg.pinv(sw[:, None] * Y) * sw[None, :]
        self.basis_ = Y
        self.R_ = R
        self.n_probes_fit_ = faces.shape[0]
        return self

    def project(self, faces) -> np.ndarray:
        """Exact (unquantised) weighted least-squares coefficients.

        Parameters
        ----------
        faces : (P, 6, R, R, 3) float

        Returns
        -------
        coeffs : (P, K, 3) float64, ``K = (order + 1)^2``
        """
        self._check_fitted()
        faces = _check_faces(faces, self.R_)
        P = faces.shape[0]
        out = np.empty((P, self.n_coefficients, 3))
        for a in range(0, P, CHUNK_PROBES):
            x = self._forward(faces[a:a + CHUNK_PROBES]).reshape(-1, 6 * self.R_ ** 2, 3)
            out[a:a + CHUNK_PROBES] = np.einsum("kt,ptc->pkc", self.projector_, x, optimize=True)
        return out

    def encode(self, faces) -> np.ndarray:
        """What ships: ``(P, K, 3)`` float16 coefficients (:meth:`project` rounded)."""
        return _fp16(self.project(faces))

    def decode(self, coeffs) -> np.ndarray:
        """Twin of :meth:`encode`: ``(P, K, 3)`` coefficients -> ``(P, 6, R, R, 3)`` float32."""
        self._check_fitted()
        coeffs = np.asarray(coeffs)
        if coeffs.ndim != 3 or coeffs.shape[1:] != (self.n_coefficients, 3):
            raise InputError(f"coeffs must be (P, {self.n_coefficients}, 3), got {coeffs.shape}")
        P = coeffs.shape[0]
        out = np.empty((P, 6, self.R_, self.R_, 3), np.float32)
        for a in range(0, P, CHUNK_PROBES):
            c = coeffs[a:a + CHUNK_PROBES].astype(np.float64)
            x = np.einsum("tk,pkc->ptc", self.basis_, c, optimize=True)
            out[a:a + CHUNK_PROBES] = self._inverse(x.reshape(c.shape[0], -1))
        return out

    def bytes_per_probe(self, n_probes: int | None = None) -> float:
        """``(order+1)^2 * 3 * 2`` bytes (fp16 coefficients); no shared data,
        so independent of ``n_probes`` (accepted for a common signature)."""
        if n_probes is not None and n_probes < 1:
            raise ValueError(f"n_probes must be >= 1, got {n_probes}")
        return float(self.n_coefficients * 3 * FP16_BYTES)


# =============================================================================
# 2. PCA eigen-images
# =============================================================================

def _top_eigh(A: np.ndarray, K: int):
    """Top-K eigenpairs of the symmetric PSD (n x n) ``A``, descending.

    Dense ``eigh`` (subset) for small n or K close to n, deterministic Lanczos
    (ARPACK, fixed start vector) otherwise.
    """
    n = A.shape[0]
    if n <= PCA_DENSE_EIGH_MAX or K >= n // 2:
        lam, V = scipy.linalg.eigh(A, subset_by_index=[n - K, n - 1])
    else:
        v0 = np.full(n, 1.0 / math.sqrt(n))
        lam, V = scipy.sparse.linalg.eigsh(A, k=K, which="LA", v0=v0, tol=0)
    order = np.argsort(lam)[::-1]
    return lam[order], V[:, order]


class PCA(_Baseline):
    """Dense eigen-images: a mean image plus K components (fp16, shared) and
    K fp16 codes per probe, minimising the solid-angle-weighted error.

    Parameters
    ----------
    n_components : int, default 16
    domain : {'tonemap', 'linear'}, default 'tonemap'

    Attributes
    ----------
    R_ : int
    mean_ : (D,) float16, ``D = 6 R^2 3``
        Mean image in the fit domain (as stored).
    components_ : (K, D) float16
        Eigen-images as stored, normalised to unit weighted norm
        (``sum_d wd[d] B_kd^2 = 1``, ``wd`` the metric's element weights).
    explained_variance_ : (K,) float64
        Weighted variance (per probe, metric units) each component explains.
    encoder_ : (D, K) float64
        ``codes = (x - mean_) @ encoder_``: weighted least squares against
        the stored (fp16) components.
    n_probes_fit_ : int

    Notes
    -----
    PCA of ``sqrt(wd) * (x - mean)``: the top-K subspace minimises exactly the
    §5 weighted squared error in the fit domain. Fitted by the (n x n)
    Gram or covariance matrix, whichever is smaller (n = min(P, D)), formed
    in float32 BLAS; dense float64 eigh up to n = 2048, Lanczos above. The
    set is held once as (P, D) float32 (151 MB at P = 8192, R = 16).
    The mean is removed exactly for the fit and stored fp16; codes are a
    weighted least-squares solve against the stored mean and components.
    Component signs are fixed (largest entry positive). Bytes per probe:
    ``2 K + 2 (K + 1) D / n_probes``.

    On the synthetic scene of :class:`SphericalHarmonics` (8192 probes,
    R = 16): K = 16 scores 22.2 dB tonemap-fitted (51.1 B/probe), 18.2 dB
    linear-fitted; K = 64 24.7 dB tonemap, 17.7 dB linear (the linear fit
    spends its components on the sun: its linear error falls, PSNR does not).
    """

    _params = ("n_components", "domain")

    def __init__(self, n_components: int = 16, domain: str = "tonemap"):
        self.n_components = n_components
        self.domain = domain

    @property
    def name(self) -> str:
        """Label for tables, e.g. ``'PCA K=16'`` (``'PCA K=16 (linear)'``)."""
        tag = "" if self.domain == "tonemap" else f" ({self.domain})"
        return f"PCA K={self.n_components}{tag}"

    def fit(self, faces) -> "PCA":
        """Learn the mean and the K eigen-images of ``faces`` ((P, 6, R, R, 3) float)."""
        self._check_params()
        faces = _check_faces(faces)
        P, R = faces.shape[0], faces.shape[2]
        D = 6 * R * R * 3
        K = int(self.n_components)
        if K != self.n_components or not 1 <= K <= min(P, D):
            raise ValueError(f"n_components must be an integer in [1, min(P, D) = {min(P, D)}], "
                             f"got {self.n_components!r}")
        self.R_ = R
        wd = _texel_element_weights(R)
        sw = np.sqrt(wd)
        X = self._domain_matrix(faces, np.float32)        # (P, D)
        mean = X.mean(axis=0, dtype=np.float64)
        X -= mean.astype(np.float32)
        X *= sw.astype(np.float32)                        # weighted, centred
        # float32 products (half the time of float64; the top-K subspace
        # agrees with a float64 fit to ~1e-12 in residual energy), float64 eigh
        if P >= D:
            lam, V = _top_eigh((X.T @ X).astype(np.float64), K)  # V: (D, K)
        else:
            lam, U = _top_eigh((X @ X.T).astype(np.float64), K)  # U: (P, K)
            V = X.T.astype(np.float64) @ U
            V /= np.maximum(np.linalg.norm(V, axis=0), np.finfo(float).tiny)
        lam = np.maximum(lam, 0.0)
        dead = lam <= PCA_RANK_REL_TOL * max(lam[0], np.finfo(float).tiny)
        V[:, dead] = 0.0
        # deterministic signs: largest |entry| of each component positive
        big = np.argmax(np.abs(V), axis=0)
        V *= np.where(V[big, np.arange(K)] < 0, -1.0, 1.0)
        B16 = _fp16(V.T / sw)                             # (K, D) stored eigen-images
        B = B16.astype(np.float64)
        G = (B * wd) @ B.T                                # weighted Gram of the stored basis
        self.encoder_ = (B * wd).T @ np.linalg.pinv(G, hermitian=True)
        self.mean_ = _fp16(mean)
        self.components_ = B16
        self.explained_variance_ = lam / P
        self.n_probes_fit_ = P
        return self

    def project(self, faces) -> np.ndarray:
        """Exact (unquantised) codes against the stored basis: (P, K) float64."""
        self._check_fitted()
        faces = _check_faces(faces, self.R_)
        P = faces.shape[0]
        out = np.empty((P, self.components_.shape[0]))
        m = self.mean_.astype(np.float64)
        for a in range(0, P, CHUNK_PROBES):
            out[a:a + CHUNK_PROBES] = (self._forward(faces[a:a + CHUNK_PROBES]) - m) @ self.encoder_
        return out

    def encode(self, faces) -> np.ndarray:
        """What ships per probe: (P, K) float16 codes."""
        return _fp16(self.project(faces))

    def decode(self, codes) -> np.ndarray:
        """Twin of :meth:`encode`: (P, K) codes -> (P, 6, R, R, 3) float32."""
        self._check_fitted()
        codes = np.asarray(codes)
        K = self.components_.shape[0]
        if codes.ndim != 2 or codes.shape[1] != K:
            raise InputError(f"codes must be (P, {K}), got {codes.shape}")
        P = codes.shape[0]
        out = np.empty((P, 6, self.R_, self.R_, 3), np.float32)
        B = self.components_.astype(np.float64)
        m = self.mean_.astype(np.float64)
        for a in range(0, P, CHUNK_PROBES):
            out[a:a + CHUNK_PROBES] = self._inverse(m + codes[a:a + CHUNK_PROBES].astype(np.float64) @ B)
        return out

    def bytes_per_probe(self, n_probes: int | None = None) -> float:
        """``2 K + 2 (K + 1) D / n_probes``: fp16 codes, fp16 mean and eigen-images
        shared by ``n_probes`` (default: the number fitted)."""
        self._check_fitted()
        n = self._n_probes(n_probes)
        K, D = self.components_.shape
        return float(K * FP16_BYTES + (K + 1) * D * FP16_BYTES / n)


# =============================================================================
# 3. k-means vector quantisation
# =============================================================================

def _sq_norms(X: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", X, X, dtype=np.float64)


def _sq_dist(X, xn, C, cn) -> np.ndarray:
    """(p, m) squared distances ``|x|^2 - 2 x.c + |c|^2`` (float64), rounding noise -> 0."""
    d = (xn[:, None] + cn[None, :]) - 2.0 * (X @ C.T).astype(np.float64)
    floor = KMEANS_ZERO_REL * (xn[:, None] + cn[None, :])
    return np.where(d <= floor, 0.0, d)


def _assign(X, xn, C):
    """Nearest centre of every row (chunked BLAS): labels (P,) int64, sq. distances (P,)."""
    cn = _sq_norms(C)
    P = X.shape[0]
    labels = np.empty(P, np.int64)
    dist = np.empty(P)
    for a in range(0, P, CHUNK_PROBES):
        d = _sq_dist(X[a:a + CHUNK_PROBES], xn[a:a + CHUNK_PROBES], C, cn)
        labels[a:a + CHUNK_PROBES] = np.argmin(d, axis=1)
        dist[a:a + CHUNK_PROBES] = d[np.arange(d.shape[0]), labels[a:a + CHUNK_PROBES]]
    return labels, dist


def _kmeans_pp(X, xn, M, rng):
    """Greedy k-means++ (2 + log M trials per centre, the best kept): (M,) row indices."""
    P = X.shape[0]
    trials = 2 + int(math.log(M))
    first = int(rng.integers(P))
    chosen = [first]
    closest = _sq_dist(X, xn, X[first:first + 1], xn[first:first + 1])[:, 0]
    for _ in range(1, M):
        total = closest.sum()
        if total <= 0.0:           # fewer distinct rows than M: take any unused rows
            rest = np.setdiff1d(np.arange(P), chosen)
            chosen.extend(rest[:M - len(chosen)].tolist())
            break
        cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total, side="right")
        cand = np.minimum(cand, P - 1)
        dc = np.minimum(closest[:, None], _sq_dist(X, xn, X[cand], xn[cand]))  # (P, trials)
        best = int(np.argmin(dc.sum(axis=0)))
        chosen.append(int(cand[best]))
        closest = dc[:, best]
    return np.asarray(chosen, np.int64)


def _centroids(X, labels, M, old):
    """Cluster means (M, D) float64; empty clusters keep ``old``. Counts (M,)."""
    P = X.shape[0]
    S = scipy.sparse.csr_matrix((np.ones(P, X.dtype), (labels, np.arange(P))), shape=(M, P))
    counts = np.bincount(labels, minlength=M).astype(np.float64)
    sums = np.asarray(S @ X, dtype=np.float64)
    C = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], old)
    return C, counts


class VectorQuantizer(_Baseline):
    """k-means vector quantisation: an fp16 codebook of M images (shared), one
    index per probe.

    Parameters
    ----------
    n_clusters : int, default 256
    domain : {'tonemap', 'linear'}, default 'tonemap'
    seed : int, default 0
        k-means++ draws; the fit is deterministic for a seed.
    max_iter : int, default :data:`KMEANS_MAX_ITER`
    tol : float, default :data:`KMEANS_TOL`

    Attributes
    ----------
    R_ : int
    codebook_ : (M, D) float16, ``D = 6 R^2 3``
        Codewords in the fit domain, as stored.
    labels_ : (P,) int64
        Index of every fitted probe (nearest stored codeword).
    inertia_ : float
        Mean weighted squared error per probe against the stored codebook
        (the §5 MSE in the fit domain).
    n_iter_ : int
    n_probes_fit_ : int

    Notes
    -----
    Weighted k-means == plain k-means on ``sqrt(wd) * x`` (per-element
    weights leave cluster means unweighted). k-means++ with greedy trials
    (as scikit-learn), Lloyd iterations in float32 BLAS
    (``|a|^2 - 2ab + |b|^2``, chunked); an empty cluster takes the probe worst
    served by its centre. Fewer distinct probes than M leave duplicate
    codewords. Indices cost the fewest whole bytes (1 up to M = 256).
    Bytes per probe: ``ceil(log2 M / 8) + 2 M D / n_probes``.

    On the synthetic scene of :class:`SphericalHarmonics` (8192 probes,
    R = 16, M = 256, 289 B/probe): 23.4 dB tonemap-fitted, 20.2 dB linear.
    """

    _params = ("n_clusters", "domain", "seed", "max_iter", "tol")

    def __init__(self, n_clusters: int = 256, domain: str = "tonemap", seed: int = 0,
                 max_iter: int = KMEANS_MAX_ITER, tol: float = KMEANS_TOL):
        self.n_clusters = n_clusters
        self.domain = domain
        self.seed = seed
        self.max_iter = max_iter
        self.tol = tol

    @property
    def name(self) -> str:
        """Label for tables, e.g. ``'k-means VQ M=256'``."""
        tag = "" if self.domain == "tonemap" else f" ({self.domain})"
        return f"k-means VQ M={self.n_clusters}{tag}"

    def fit(self, faces) -> "VectorQuantizer":
        """Learn the codebook of ``faces`` ((P, 6, R, R, 3) float)."""
        self._check_params()
        faces = _check_faces(faces)
        P, R = faces.shape[0], faces.shape[2]
        M = int(self.n_clusters)
        if M != self.n_clusters or not 1 <= M <= P:
            raise ValueError(f"n_clusters must be an integer in [1, P = {P}], got {self.n_clusters!r}")
        self.R_ = R
        sw = np.sqrt(_texel_element_weights(R))
        X = self._domain_matrix(faces, np.float32)
        X *= sw.astype(np.float32)
        xn = _sq_norms(X)
        rng = np.random.default_rng(self.seed)
        C = X[_kmeans_pp(X, xn, M, rng)].astype(np.float64)
        labels, dist = _assign(X, xn, C.astype(np.float32))
        obj = dist.sum()
        n_iter = 0
        for n_iter in range(1, int(self.max_iter) + 1):
            C, counts = _centroids(X, labels, M, C)
            for j in np.flatnonzero(counts == 0):     # re-seed empty clusters
                far = int(np.argmax(dist))
                C[j] = X[far]
                dist[far] = 0.0
            new_labels, dist = _assign(X, xn, C.astype(np.float32))
            new_obj = dist.sum()
            done = np.array_equal(new_labels, labels) or obj - new_obj <= self.tol * obj
            labels, obj = new_labels, new_obj
            if done:
                break
        self.codebook_ = _fp16(C / sw)
        self.n_iter_ = n_iter
        self.labels_ = self._nearest(X, xn)
        cb = self.codebook_.astype(np.float64) * sw
        self.inertia_ = float(np.mean(((X.astype(np.float64) - cb[self.labels_]) ** 2).sum(axis=1)))
        self.n_probes_fit_ = P
        return self

    def _nearest(self, Xw, xn) -> np.ndarray:
        sw = np.sqrt(_texel_element_weights(self.R_))
        C = (self.codebook_.astype(np.float64) * sw).astype(np.float32)
        return _assign(Xw, xn, C)[0]

    def encode(self, faces) -> np.ndarray:
        """What ships per probe: (P,) index of the nearest stored codeword, in the
        smallest unsigned dtype (uint8 for M <= 256)."""
        self._check_fitted()
        faces = _check_faces(faces, self.R_)
        sw = np.sqrt(_texel_element_weights(self.R_)).astype(np.float32)
        X = self._domain_matrix(faces, np.float32)
        X *= sw
        return self._nearest(X, _sq_norms(X)).astype(_index_dtype(self.codebook_.shape[0]))

    def decode(self, indices) -> np.ndarray:
        """Twin of :meth:`encode`: (P,) int indices -> (P, 6, R, R, 3) float32."""
        self._check_fitted()
        idx = np.asarray(indices)
        M = self.codebook_.shape[0]
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= M)):
            raise InputError(f"indices must be (P,) integers in [0, {M}), got {idx.shape} {idx.dtype}")
        return self._inverse(self.codebook_[idx].astype(np.float64))

    def bytes_per_probe(self, n_probes: int | None = None) -> float:
        """``index_bytes(M) + 2 M D / n_probes``: one index in the fewest whole
        bytes (0 for M = 1), the fp16 codebook shared by ``n_probes``."""
        self._check_fitted()
        n = self._n_probes(n_probes)
        M, D = self.codebook_.shape
        return float(_index_bytes(M) + M * D * FP16_BYTES / n)


# =============================================================================
# 4. held-out baseline: blend the known neighbours
# =============================================================================

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
