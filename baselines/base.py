"""Shared plumbing of the baseline codecs (DESIGN-NOTES §6): constants, checks, :class:`_Baseline`.

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

import numpy as np

from probewarp.baker.cubemap import texel_weights
from probewarp.baker.metrics import inverse_tonemap, tonemap
from probewarp.format import constants
from probewarp.format.errors import InputError

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

def _fp16(a: np.ndarray) -> np.ndarray:
    """Round to what an fp16 store holds (clipped to +-FP16_MAX): float16."""
    return np.clip(a, -constants.FP16_MAX, constants.FP16_MAX).astype(np.float16)


def _index_bytes(n_values: int) -> int:
    """Fewest whole bytes that hold an index into ``n_values`` entries (0 for 1)."""
    return 0 if n_values <= 1 else (int(n_values - 1).bit_length() + 7) // 8




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

    def _label(self, text: str) -> str:
        """A table label, tagged with the fit domain unless it is the default ``'tonemap'``."""
        return text if self.domain == "tonemap" else f"{text} ({self.domain})"

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
