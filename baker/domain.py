"""The blend domain and the sub-texel directions: what one probe texel is, for
the learner (:mod:`.prototypes`) and the CPU reference decoder (:mod:`.decoder`).

Prototypes live, and are blended, in the blend domain: ``'tonemap'`` is the
published metric's ``T(v)`` (DESIGN-NOTES §5), ``'linear'`` non-negative
radiance. Decoders map the blend back with :func:`from_domain` (GLSL twin:
``pw_from_domain`` in ``shaders/common_probewarp.glsl``).
"""
from __future__ import annotations

import numpy as np

from probewarp.baker.cubemap import texel_directions
from probewarp.baker.metrics import inverse_tonemap, tonemap


def sub_directions(R: int, k: int) -> np.ndarray:
    """Sub-texel unit directions: (6*R*R, k*k, 3) float64, texel order of §1.

    A probe texel at resolution R is modelled as the mean of the k x k texels
    of resolution kR inside it (super-resolved prototypes, Rp = kR)."""
    d = texel_directions(R * k)                              # (6, Rk, Rk, 3)
    d = d.reshape(6, R, k, R, k, 3).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(d.reshape(6 * R * R, k * k, 3))


def to_domain(faces: np.ndarray, domain: str) -> np.ndarray:
    """(P, 6, R, R, 3) linear radiance -> (P, 6R^2, 3) float32 in the blend domain."""
    P = faces.shape[0]
    f = np.asarray(faces, dtype=np.float32).reshape(P, -1, 3)
    if domain == "tonemap":
        return tonemap(f).astype(np.float32)
    return np.maximum(f, 0.0).astype(np.float32)


def from_domain(Y: np.ndarray, domain: str, R: int | None = None) -> np.ndarray:
    """Inverse of :func:`to_domain`: blend-domain values -> float32 linear radiance,
    ``T^-1(y)`` for ``'tonemap'``, ``max(y, 0)`` for ``'linear'``. With ``R``,
    (P, 6R^2, 3) is reshaped to (P, 6, R, R, 3); without, the shape is kept.
    Twin of GLSL ``pw_from_domain``."""
    v = inverse_tonemap(Y) if domain == "tonemap" else np.maximum(Y, 0.0)
    v = np.asarray(v).astype(np.float32)
    return v if R is None else v.reshape(v.shape[0], 6, R, R, 3)
