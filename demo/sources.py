"""Where the flythrough's objects get their lighting from, besides the decoded field.

Each source turns positions into radiance cubemaps ``(Q, 6, r, r, 3)``
float32 (linear) on the CPU; the flythrough uploads them and shades the same
objects with them as with the decoded field:

- :class:`TruthSource`: a probe captured at the position by the capture
  renderer (the ground truth; the probes' own capture settings).
- :class:`NearestProbe`: the stored probe nearest to the position among the
  8 around it (what an engine without blending shows; it pops).
- :class:`SHTrilinear`: spherical harmonics of order 2 (9 coefficients a
  channel, the classic irradiance-volume encoding) fitted to every probe and
  blended trilinearly between the 8 around the position.

Grid probe sets only (dense or with holes); absent corners are dropped and
the others renormalised, the decoder's rule.
"""
from __future__ import annotations

import numpy as np

from probewarp.baker.cubemap import texel_directions
from probewarp.baselines.sh import SphericalHarmonics, real_sh_basis
from probewarp.format.errors import InputError


class _GridProbes:
    """Lattice lookup of a grid probe set: corner probes and weights at positions."""

    def __init__(self, probes):
        grid = probes.lattice
        if grid is None:
            raise InputError(f"{probes.source or 'probe set'}: field grid_shape: the demo's baselines "
                             "blend probes on a lattice; this set is scattered")
        self.grid = grid
        ids = grid.ids_of(grid.cells(np.asarray(probes.positions, np.float64)))
        self.probe_of = np.full(grid.n_points, -1, np.int64)
        self.probe_of[ids] = np.arange(ids.size)

    def corners(self, positions):
        """(Q, 8) probe indices (-1 absent) and (Q, 8) weights (renormalised over present)."""
        ijk, w = self.grid.corners(positions)
        idx = self.probe_of[self.grid.ids_of(ijk)]
        w = np.where(idx >= 0, w, 0.0)
        total = w.sum(axis=1, keepdims=True)
        count = (idx >= 0).sum(axis=1, keepdims=True)
        w = np.where(total > 0, w / np.where(total > 0, total, 1), (idx >= 0) / np.maximum(count, 1))
        return idx, w


class NearestProbe:
    """The stored probe of largest trilinear weight among the 8 around a position
    (the nearest lattice point that holds a probe), shown at its own resolution."""

    name = "nearest probe"

    def __init__(self, probes):
        self.probes = probes
        self.lookup = _GridProbes(probes)

    def choose(self, positions) -> np.ndarray:
        idx, w = self.lookup.corners(positions)
        return idx[np.arange(idx.shape[0]), np.argmax(np.where(idx >= 0, w, -1), axis=1)]

    def cubemaps(self, positions, r: int | None = None) -> np.ndarray:
        """(Q, 6, R, R, 3): the chosen probes at their own resolution R."""
        return np.stack([np.asarray(self.probes.faces[int(i)], np.float32) for i in self.choose(positions)])


class SHTrilinear:
    """SH of ``order`` (default 2) per probe, float16 like the SH baseline that
    ships, blended trilinearly and evaluated at ``r x r`` per face."""

    def __init__(self, probes, order: int = 2):
        self.order = int(order)
        self.name = f"SH order {self.order}, trilinear"
        self.lookup = _GridProbes(probes)
        sh = SphericalHarmonics(order=self.order, domain="linear")
        faces = probes.faces
        sh.fit(faces[:1])
        coeffs = np.empty((probes.n_probes, sh.n_coefficients, 3), np.float32)
        for a in range(0, probes.n_probes, 4096):
            coeffs[a:a + 4096] = sh.encode(np.asarray(faces[a:a + 4096], np.float32))
        self.coeffs = coeffs
        self._basis = {}

    def cubemaps(self, positions, r: int = 16) -> np.ndarray:
        idx, w = self.lookup.corners(positions)
        c = np.einsum("qk,qkjc->qjc", w, self.coeffs[np.maximum(idx, 0)] * (idx >= 0)[..., None, None])
        if r not in self._basis:
            self._basis[r] = real_sh_basis(texel_directions(r).reshape(-1, 3), self.order)
        out = np.einsum("tj,qjc->qtc", self._basis[r], c)
        return np.maximum(out, 0.0).astype(np.float32).reshape(-1, 6, r, r, 3)


class TruthSource:
    """Ground truth: probes captured at the positions by the capture renderer.

    The capture renders at ``4 R`` per face (R the probe set's resolution:
    the probes' own supersampling) and box-filters to ``r``, so at ``r = R``
    it is exactly what a probe there would have been."""

    name = "ground truth"

    def __init__(self, scene, R: int, r: int, ctx=None, sky=None):
        from probewarp.capture.capturer import Capturer
        ss = max(1, (4 * int(R)) // int(r))
        self.r, self.R = int(r), int(R)
        self.last = None
        self._others = {}
        self.capturer = Capturer(scene, self.r, ss, sky=sky, ctx=ctx)

    def cubemaps(self, positions, r: int | None = None) -> np.ndarray:
        """(Q, 6, r, r, 3) at ``r`` (default: this source's own; another ``r``
        captures with a capturer made for it); also kept in :attr:`last`."""
        if r is not None and int(r) != self.r:
            if int(r) not in self._others:
                from probewarp.capture.capturer import Capturer
                c = self.capturer
                self._others[int(r)] = Capturer(c.scene, int(r), max(1, (4 * self.R) // int(r)), sky=c.sky,
                                                ctx=c.ctx)
            return self._others[int(r)].render(np.asarray(positions, np.float64).reshape(-1, 3))
        self.last = self.capturer.render(np.asarray(positions, np.float64).reshape(-1, 3))
        return self.last

    def release(self) -> None:
        for c in self._others.values():
            c.release()
        self._others = {}
        self.capturer.release()
