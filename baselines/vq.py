"""k-means vector-quantisation baseline: an fp16 codebook, one index per probe.

The k-means itself is :func:`probewarp.baker.kmeans.kmeans` (shared with the
bake's initialisation). Conventions: :mod:`probewarp.baselines.base`.
"""
from __future__ import annotations

import numpy as np

from probewarp.baker import kmeans
from probewarp.baker.kmeans import KMEANS_MAX_ITER, KMEANS_TOL
from probewarp.baselines.base import FP16_BYTES, _Baseline, _check_faces, _fp16, _index_bytes, _texel_element_weights
from probewarp.format.errors import InputError
from probewarp.format.texformats import index_dtype

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
        return self._label(f"k-means VQ M={self.n_clusters}")

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
        xn = kmeans.sq_norms(X)
        C, n_iter = kmeans.kmeans(X, M, np.random.default_rng(self.seed), xn=xn,
                                  max_iter=self.max_iter, tol=self.tol)
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
        return kmeans.assign(Xw, xn, C)[0]

    def encode(self, faces) -> np.ndarray:
        """What ships per probe: (P,) index of the nearest stored codeword, in the
        smallest unsigned dtype (uint8 for M <= 256)."""
        self._check_fitted()
        faces = _check_faces(faces, self.R_)
        sw = np.sqrt(_texel_element_weights(self.R_)).astype(np.float32)
        X = self._domain_matrix(faces, np.float32)
        X *= sw
        return self._nearest(X, kmeans.sq_norms(X)).astype(index_dtype(self.codebook_.shape[0]))

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
