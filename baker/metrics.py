"""Quality metrics, exactly as DESIGN-NOTES §5.

- PSNR (dB) on tonemapped values ``T(v) = (max(v,0) / (1 + max(v,0)))^(1/2.2)``:
  per-texel squared error averaged over RGB, weighted by the texel solid
  angle normalised to sum 1 per probe; MSE pooled (mean) over probes;
  ``PSNR = 10 log10(1 / MSE)``.
- log-RMSE on ``log(1 + max(v, 0))`` with the same weights and pooling:
  ``sqrt(mean_p MSE_p)``.

:class:`QualityAccumulator` pools chunk by chunk, so sets larger than memory
are scored in one streaming pass; :func:`evaluate` is the one-shot form.
"""
from __future__ import annotations

import numpy as np

from probewarp.format import constants
from probewarp.baker.cubemap import texel_weights


def tonemap(v: np.ndarray) -> np.ndarray:
    """The metric's tonemap ``(max(v,0)/(1+max(v,0)))^(1/2.2)``; same shape, float32/64.

    Inverse twin: :func:`inverse_tonemap`.
    """
    v = np.maximum(v, 0.0)
    return (v / (1.0 + v)) ** (1.0 / constants.TONEMAP_GAMMA)


def inverse_tonemap(y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`tonemap` on ``[0, 1)``: ``u = y^2.2; v = u / (1 - u)``."""
    u = np.clip(y, 0.0, constants.TONEMAP_Y_MAX) ** constants.TONEMAP_GAMMA
    return u / (1.0 - u)


def _check_pair(ref, test):
    if ref.shape != test.shape:
        raise ValueError(f"reference {ref.shape} and test {test.shape} differ in shape")
    if ref.ndim != 5 or ref.shape[1] != 6 or ref.shape[2] != ref.shape[3]:
        raise ValueError(f"expected (P, 6, R, R, C) cubemaps, got {ref.shape}")


def per_probe_mse(ref: np.ndarray, test: np.ndarray, domain: str = "tonemap") -> np.ndarray:
    """Solid-angle-weighted MSE of every probe.

    Parameters
    ----------
    ref, test : (P, 6, R, R, C) float
    domain : 'tonemap' (PSNR's) or 'log' (log-RMSE's)

    Returns
    -------
    mse : (P,) float64
    """
    ref = np.asarray(ref)
    test = np.asarray(test)
    _check_pair(ref, test)
    if domain == "tonemap":
        f = tonemap
    elif domain == "log":
        def f(v):
            return np.log1p(np.maximum(v, 0.0))
    else:
        raise ValueError(f"unknown domain {domain!r}")
    w = texel_weights(ref.shape[2])
    e = (f(ref.astype(np.float64)) - f(test.astype(np.float64))) ** 2
    return np.einsum("pftsc,fts->p", e, w) / ref.shape[-1]


def psnr_from_mse(mse) -> float:
    """``10 log10(1 / mean(mse))``; inf for a perfect match."""
    m = float(np.mean(mse))
    return float("inf") if m <= 0 else 10.0 * np.log10(1.0 / m)


class QualityAccumulator:
    """Pools the §5 metrics over chunks of probes.

    Examples
    --------
    >>> acc = QualityAccumulator()
    >>> for ref, test in chunks:           # doctest: +SKIP
    ...     acc.update(ref, test)
    >>> acc.result()["psnr_db"]           # doctest: +SKIP
    """

    def __init__(self):
        self.mse_tonemap = []
        self.mse_log = []

    def update(self, ref: np.ndarray, test: np.ndarray) -> None:
        """Add a chunk: ``ref``, ``test`` (p, 6, R, R, C)."""
        self.mse_tonemap.append(per_probe_mse(ref, test, "tonemap"))
        self.mse_log.append(per_probe_mse(ref, test, "log"))

    @property
    def per_probe_psnr(self) -> np.ndarray:
        """(P,) float64 PSNR of each probe on its own (inf where exact)."""
        m = np.concatenate(self.mse_tonemap) if self.mse_tonemap else np.zeros(0)
        with np.errstate(divide="ignore"):
            return 10.0 * np.log10(1.0 / m)

    def result(self) -> dict:
        """``{'psnr_db', 'log_rmse', 'n_probes'}``."""
        if not self.mse_tonemap:
            raise ValueError("no probes were scored")
        mt = np.concatenate(self.mse_tonemap)
        ml = np.concatenate(self.mse_log)
        return {"psnr_db": psnr_from_mse(mt), "log_rmse": float(np.sqrt(ml.mean())),
                "n_probes": int(mt.size)}


def evaluate(ref: np.ndarray, test: np.ndarray) -> dict:
    """One-shot §5 metrics of ``test`` against ``ref`` ((P, 6, R, R, C) each)."""
    acc = QualityAccumulator()
    acc.update(ref, test)
    return acc.result()


def cell_corner_ids(shape) -> np.ndarray:
    """Flat grid-order ids of the 8 corners of every lattice cell of a dense
    ``shape`` = (nx, ny, nz) grid: (C, 8) int64 (an axis with one point has
    one layer of cells whose two corners on that axis coincide)."""
    s = np.asarray(shape, np.int64).reshape(3)
    if (s < 1).any():
        raise ValueError(f"grid shape {tuple(s)}: every axis needs a point")
    lo = [np.arange(max(n - 1, 1)) for n in s]
    i0 = np.stack(np.meshgrid(*lo, indexing="ij"), -1).reshape(-1, 3)
    off = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], np.int64)
    ijk = np.minimum(i0[:, None, :] + off[None], s - 1)
    return (ijk[..., 0] * s[1] + ijk[..., 1]) * s[2] + ijk[..., 2]


def distinct_per_cell(shape, indices, weights) -> np.ndarray:
    """Distinct prototypes a decode between probes reads: for every cell of a
    dense grid (:func:`cell_corner_ids`), the number of different prototype
    indices among its 8 corners' codes (taps of weight 0 not counted): (C,)
    int64. ``indices``/``weights`` (P, N) in grid order. Inside a cell every
    corner has a positive trilinear weight, so this is what the decoder
    (GLSL ``pw_code_merge``) warps and samples per position."""
    corners = cell_corner_ids(shape)
    if np.asarray(indices).shape[0] != int(np.prod(shape)):
        raise ValueError(f"codes of {np.asarray(indices).shape[0]} probes for a {tuple(shape)} grid")
    return stencil_distinct(corners, indices, weights)


def stencil_distinct(stencils, indices, weights) -> np.ndarray:
    """Distinct prototypes (weight > 0) among the codes of every stencil's
    probes: ``stencils`` (C, k) int probe indices, -1 absent
    (:meth:`probewarp.format.grid.Grid.stencils`) -> (C,) int64."""
    idx = np.asarray(indices, np.int64)
    w = np.asarray(weights)
    st = np.asarray(stencils, np.int64)
    ok = st >= 0
    s0 = np.where(ok, st, 0)
    e = np.where(ok[..., None] & (w[s0] > 0), idx[s0], -1).reshape(st.shape[0], st.shape[1] * idx.shape[1])
    e = np.sort(e, axis=1)
    new = np.ones(e.shape, bool)
    new[:, 1:] = e[:, 1:] != e[:, :-1]
    return (new & (e >= 0)).sum(axis=1)
