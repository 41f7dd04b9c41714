"""Probe sets: positions plus cubemaps (DESIGN-NOTES §2).

(Skeleton: the full loader/validator is being written; the constructor
contract below is fixed.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ProbeSet:
    """A set of probes.

    Attributes
    ----------
    positions : (P, 3) float32
        Probe centres, world units.
    faces : (P, 6, R, R, 3) float16 or float32, or a lazy chunked array
        Linear radiance, DESIGN-NOTES §1 layout.
    grid_shape : (3,) int or None
        When the probes form a regular grid (x, y, z order, z fastest).
    lo, hi : (3,) float or None
        Grid bounds (first and last probe centre along each axis).
    """
    positions: np.ndarray
    faces: np.ndarray
    grid_shape: tuple | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None

    @property
    def n_probes(self) -> int:
        return int(self.positions.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.faces.shape[2])
