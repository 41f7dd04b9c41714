"""The sphere reprojection of DESIGN-NOTES §3 (the warp), on the CPU.

A prototype has centre ``c``, radius ``rho`` and cubemap ``J``. Seen from
``x`` along unit ``d``::

    o = x - c;  b = dot(o, d);  q2 = dot(o, o) - rho^2
    t = -b + sqrt(max(b^2 - q2, 0))
    s = normalize(o + t d);   value = J(s)

Miss rule (``constants.WARP_MISS_RULE``): a ray that misses the sphere (only
possible from outside it) has its discriminant clamped at 0, i.e. it uses its
point of closest approach to ``c``. ``|o + t d| >= rho`` always, so ``s`` is
well defined for ``rho > 0`` and continuous in ``x`` and ``d``. ``rho = inf``
gives ``s = d`` (no parallax). GLSL twin: ``pw_warp_direction`` in
``shaders/common_probewarp.glsl``.
"""
from __future__ import annotations

import numpy as np
import numba as nb

from probewarp.baker import config


_JIT = dict(nogil=True, cache=config.NUMBA_CACHE, fastmath=config.NUMBA_FASTMATH)


def warp_directions(x: np.ndarray, c: np.ndarray, rho, d: np.ndarray) -> np.ndarray:
    """Vectorised warp.

    Parameters
    ----------
    x : (..., 3) query positions
    c : (..., 3) prototype centres
    rho : (...) radii (``np.inf`` allowed)
    d : (..., 3) unit view directions
    (all broadcast together)

    Returns
    -------
    s : (..., 3) float64 unit directions to sample the prototype along.
    """
    x, c, d = (np.asarray(a, dtype=np.float64) for a in (x, c, d))
    rho = np.asarray(rho, dtype=np.float64)
    finite = np.isfinite(rho)
    r = np.where(finite, rho, 1.0)
    o = x - c
    b = np.sum(o * d, axis=-1)
    q2 = np.sum(o * o, axis=-1) - r * r
    t = -b + np.sqrt(np.maximum(b * b - q2, 0.0))
    s = o + t[..., None] * d
    s = s / np.linalg.norm(s, axis=-1, keepdims=True)
    return np.where(finite[..., None], s, np.broadcast_to(d, s.shape))


@nb.njit(**_JIT)
def _warp_dir(ox, oy, oz, rho, dx, dy, dz):
    """Scalar warp for kernels: ``o = x - c``, unit ``d``; returns the unnormalised
    direction ``o + t d`` (length >= rho; samplers need no normalisation)."""
    if not np.isfinite(rho):
        return dx, dy, dz
    b = ox * dx + oy * dy + oz * dz
    q2 = ox * ox + oy * oy + oz * oz - rho * rho
    disc = b * b - q2
    if disc < 0.0:
        disc = 0.0
    t = -b + np.sqrt(disc)
    return ox + t * dx, oy + t * dy, oz + t * dz
