"""Spherical-harmonics baseline: real SH bands ``0..L``, weighted least squares.

Conventions, domains and byte counts: :mod:`probewarp.baselines.base`. The GL
decoder twin is :mod:`probewarp.baselines.sh_gl`.
"""
from __future__ import annotations

import math

import numpy as np

from probewarp.baker.cubemap import texel_directions, texel_weights
from probewarp.baselines.base import CHUNK_PROBES, FP16_BYTES, _Baseline, _check_faces, _fp16
from probewarp.format.errors import InputError

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
