"""probewarp.baselines: what users had before (SH, PCA, VQ, neighbour blending), the GL SH decoder, and compare.

=========================  =====================================  =========================
:class:`SphericalHarmonics`  real SH bands ``0..L``                 :mod:`.sh`
:class:`PCA`                 mean + K eigen-images                  :mod:`.pca`
:class:`VectorQuantizer`     k-means codebook, one index per probe  :mod:`.vq`
:func:`neighbour_blend`      held-out: blend known neighbours       :mod:`.neighbour`
=========================  =====================================  =========================

Shared conventions (domains, fp16 stores, byte counts): :mod:`.base`.
"""
from probewarp.baselines.base import DOMAINS
from probewarp.baselines.neighbour import neighbour_blend, split_heldout
from probewarp.baselines.pca import PCA
from probewarp.baselines.sh import SphericalHarmonics, real_sh_basis, sh_count
from probewarp.baselines.vq import VectorQuantizer

__all__ = ["SphericalHarmonics", "PCA", "VectorQuantizer", "real_sh_basis", "sh_count",
           "neighbour_blend", "split_heldout", "DOMAINS"]
