"""The probe lattice: one definition of DESIGN-NOTES §2's regular grid.

A :class:`Grid` is ``shape`` lattice points per axis from ``lo`` to ``hi``
(x, y, z order; flat ids z fastest, ``np.meshgrid(..., indexing='ij')``
flattened). ``dense`` grids hold a probe on every point; sparse ones only on
some, each on its own point. Everything that needs lattice geometry (probe
sets, pages, the spatial hash, the CPU and GPU decoders, the baselines) asks
a :class:`Grid`; the archive's metadata stores it as ``{"shape", "lo", "hi",
"dense"}`` (:meth:`Grid.to_meta` / :meth:`Grid.from_meta`).

Twins: :meth:`Grid.corners` is GLSL ``pw_find_probes``' corner rule
(``shaders/common_probewarp.glsl``), and :meth:`Grid.keys` its ``pw_lattice_key``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probewarp.format.constants import GRID_POSITION_REL_TOL
from probewarp.format.errors import InputError
from probewarp.format import spatialhash
from probewarp.format.spatialhash import EMPTY

#: Key of "no lattice point" (outside the grid): the hash's empty key, never stored.
NO_KEY = int(EMPTY)
#: Most lattice points along one axis (lattice ids are 32-bit: see :meth:`Grid.keys`).
MAX_AXIS_POINTS = 1 << 32
#: :meth:`Grid.detect`: the probes must fill at least this fraction of the
#: lattice they lie on (a quarter of a grid kept is still a grid with holes;
#: a handful of points on a fine lattice is a scattered set).
LATTICE_MIN_FILL = 1.0 / 16
#: Offsets of the 8 corners of a cell: corner ``c`` is ``((c>>2)&1, (c>>1)&1, c&1)``, as in GLSL.
CORNER_OFFSETS = np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)], np.int64)


@dataclass(frozen=True, eq=False)
class Grid:
    """A regular lattice of probe positions.

    Parameters
    ----------
    shape : (3,) int
        Lattice points per axis (each >= 1).
    lo, hi : (3,) float
        First and last lattice point; ``hi > lo`` on every axis with more
        than one point.
    dense : bool
        True when every lattice point holds a probe (pages are then implicit
        bricks); False for a sparse grid.

    Use :meth:`checked` to build one from untrusted values (raises
    :class:`InputError`).
    """

    shape: tuple
    lo: np.ndarray
    hi: np.ndarray
    dense: bool = True

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(v) for v in np.asarray(self.shape).reshape(-1)))
        object.__setattr__(self, "lo", np.asarray(self.lo, np.float64).reshape(-1).copy())
        object.__setattr__(self, "hi", np.asarray(self.hi, np.float64).reshape(-1).copy())
        object.__setattr__(self, "dense", bool(self.dense))
        self.lo.setflags(write=False)
        self.hi.setflags(write=False)

    # -- construction ---------------------------------------------------------
    @classmethod
    def checked(cls, shape, lo, hi, dense: bool = True, where: str = "grid") -> "Grid":
        """A :class:`Grid` from untrusted values; :class:`InputError` names ``where``."""
        try:
            s = np.asarray(shape, np.float64).reshape(-1)
            lo_, hi_ = (np.asarray(v, np.float64).reshape(-1) for v in (lo, hi))
        except (TypeError, ValueError, OverflowError) as e:
            raise InputError(f"{where}: shape, lo, hi must be numeric (3,) arrays: {e}") from None
        if s.shape != (3,) or lo_.shape != (3,) or hi_.shape != (3,):
            raise InputError(f"{where}: shape, lo, hi must each have 3 values, got "
                             f"{s.tolist()}, {lo_.tolist()}, {hi_.tolist()}")
        if not (np.isfinite(s).all() and (s == np.round(s)).all() and (s >= 1).all()):
            raise InputError(f"{where}: shape must be 3 positive integers, got {s.tolist()}")
        if (s > MAX_AXIS_POINTS).any():
            raise InputError(f"{where}: shape {s.tolist()}: at most {MAX_AXIS_POINTS} points an axis")
        if not (np.isfinite(lo_).all() and np.isfinite(hi_).all()):
            raise InputError(f"{where}: lo and hi must be finite, got {lo_.tolist()}, {hi_.tolist()}")
        if ((s > 1) & ~(hi_ > lo_)).any():
            raise InputError(f"{where}: hi must exceed lo along every axis with more than one point: "
                             f"lo {lo_.tolist()}, hi {hi_.tolist()}")
        return cls(s.astype(np.int64), lo_, hi_, dense)

    @classmethod
    def from_meta(cls, meta: dict | None, where: str = "grid") -> "Grid | None":
        """The grid of an archive's metadata (``meta["grid"]`` or the dict itself), or None."""
        if meta is None:
            return None
        g = meta if "shape" in meta else meta.get("grid")
        if g is None:
            return None
        if not isinstance(g, dict) or not {"shape", "lo", "hi"} <= set(g):
            raise InputError(f"{where}: expected an object with shape, lo, hi, got {g!r}")
        return cls.checked(g["shape"], g["lo"], g["hi"], bool(g.get("dense", True)), where)

    @classmethod
    def detect(cls, positions, rel_tol: float = GRID_POSITION_REL_TOL,
               min_fill: float = LATTICE_MIN_FILL) -> "Grid | None":
        """The regular lattice ``positions`` lie on, when they lie on one (a
        probe set exported without ``grid_shape``/``lo``/``hi``), else None.

        Per axis the coordinates are clustered (within the tolerance), the
        spacing is the smallest gap between clusters and every cluster must
        sit on ``lo + k * spacing``; then every probe must be on its lattice
        point by :meth:`off_lattice` (``rel_tol``, the probe sets' own grid
        check), no two on the same point, and the probes must fill at least
        ``min_fill`` of the lattice (any finite set lies on a fine enough
        lattice; a grid with holes, such as a navigable area, fills a good
        part of its own). ``dense`` when every point holds a probe and the
        probes are in grid order (z fastest); a complete lattice in another
        order comes back with ``dense=False``: reorder the probes
        (``ids_of(cells(positions))``) to use it densely.
        """
        p = np.asarray(positions, np.float64).reshape(-1, 3)
        P = p.shape[0]
        if P < 2 or not np.isfinite(p).all():
            return None
        lo, hi = p.min(axis=0), p.max(axis=0)
        scale = max(float(np.linalg.norm(hi - lo)), float(np.abs(p).max()), 1e-30)
        tol = rel_tol * scale
        shape = []
        for a in range(3):
            v = np.sort(p[:, a])
            if v[-1] - v[0] <= tol:
                shape.append(1)
                continue
            cut = np.flatnonzero(np.diff(v) > tol)
            starts = np.concatenate([[0], cut + 1])
            centres = np.add.reduceat(v, starts) / np.diff(np.concatenate([starts, [v.size]]))
            step = float(np.diff(centres).min())
            n = int(round((v[-1] - v[0]) / step)) + 1
            if n > MAX_AXIS_POINTS or n > P / min_fill:
                return None
            step = (v[-1] - v[0]) / (n - 1)
            k = (centres - v[0]) / step
            if np.abs(k - np.round(k)).max() * step > tol:
                return None
            shape.append(n)
        n_points = int(np.prod(shape))
        if P < min_fill * n_points:
            return None
        g = cls(tuple(shape), lo, hi, True)
        if g.off_lattice(p, rel_tol).any():
            return None
        ids = g.ids_of(g.cells(p))
        if np.unique(ids).size != P:
            return None
        dense = P == n_points and bool(np.array_equal(ids, np.arange(P)))
        return cls(tuple(shape), lo, hi, dense)

    def to_meta(self) -> dict:
        """JSON form stored in archive metadata (inverse: :meth:`from_meta`)."""
        return {"shape": list(self.shape), "lo": [float(v) for v in self.lo],
                "hi": [float(v) for v in self.hi], "dense": self.dense}

    def with_dense(self, dense: bool) -> "Grid":
        return Grid(self.shape, self.lo, self.hi, dense)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Grid) and self.shape == other.shape and self.dense == other.dense
                and np.array_equal(self.lo, other.lo) and np.array_equal(self.hi, other.hi))

    def __repr__(self) -> str:
        return (f"Grid(shape={self.shape}, lo={self.lo.tolist()}, hi={self.hi.tolist()}"
                f"{'' if self.dense else ', dense=False'})")

    # -- geometry -------------------------------------------------------------
    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape))

    @property
    def shape_array(self) -> np.ndarray:
        return np.asarray(self.shape, np.int64)

    @property
    def step(self) -> np.ndarray:
        """(3,) float64 lattice spacing; 1 on axes with a single point (index always 0)."""
        s = self.shape_array
        return np.where(s > 1, (self.hi - self.lo) / np.maximum(s - 1, 1), 1.0)

    def axes(self) -> list[np.ndarray]:
        """The lattice coordinates per axis (``np.linspace(lo, hi, n)``: end points exact)."""
        return [np.linspace(self.lo[a], self.hi[a], self.shape[a]) for a in range(3)]

    def cells_of(self, ids) -> np.ndarray:
        """Flat lattice ids -> ``(n, 3)`` int64 cells."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        return np.stack(np.unravel_index(ids, self.shape), axis=1).astype(np.int64) if ids.size \
            else np.zeros((0, 3), np.int64)

    def ids_of(self, cells) -> np.ndarray:
        """``(..., 3)`` cells inside the lattice -> flat ids (int64)."""
        c = np.asarray(cells, np.int64)
        s = self.shape_array
        return (c[..., 0] * s[1] + c[..., 1]) * s[2] + c[..., 2]

    def positions(self, ids=None) -> np.ndarray:
        """``(n, 3)`` float64 positions of lattice ids (all points, grid order, when None)."""
        ax = self.axes()
        if ids is None:
            g = np.meshgrid(*ax, indexing="ij")
            return np.stack([a.ravel() for a in g], axis=-1)
        c = self.cells_of(ids)
        return np.stack([ax[a][c[:, a]] for a in range(3)], axis=-1) if c.size else np.zeros((0, 3))

    def cells(self, positions) -> np.ndarray:
        """``(n, 3)`` int64 nearest lattice points of positions (clamped into the lattice)."""
        u = (np.asarray(positions, np.float64).reshape(-1, 3) - self.lo) / self.step
        return np.clip(np.rint(u), 0, self.shape_array - 1).astype(np.int64)

    def off_lattice(self, positions, rel_tol: float) -> np.ndarray:
        """Distance of each position from its nearest lattice point, relative to
        ``max(bounding-box diagonal, largest |coordinate|, 1e-30)``; ``> rel_tol`` is off."""
        p = np.asarray(positions, np.float64).reshape(-1, 3)
        scale = max(float(np.linalg.norm(self.hi - self.lo)), float(np.abs(p).max(initial=0.0)),
                    float(np.abs(self.lo).max()), float(np.abs(self.hi).max()), 1e-30)
        near = self.positions(self.ids_of(self.cells(p)))
        return np.linalg.norm(p - near, axis=1) / scale > rel_tol

    def keys(self, cells) -> np.ndarray:
        """Hash keys of ``(..., 3)`` cells: the flat id as uint32, :data:`NO_KEY` outside.

        The twin of GLSL ``pw_lattice_key``."""
        if self.n_points >= NO_KEY:
            raise ValueError(f"lattice {list(self.shape)} has 2^32 - 1 or more points: too large for the hash")
        c = np.asarray(cells, np.int64)
        inside = np.all((c >= 0) & (c < self.shape_array), axis=-1)
        return np.where(inside, self.ids_of(c), NO_KEY).astype(np.uint32)

    def corners(self, q):
        """The 8 lattice cells around each query ``(Q, 8, 3)`` int64 and their
        trilinear weights ``(Q, 8)`` float64, the query clamped into the grid
        box; on an axis with one lattice point both offsets name point 0.

        The twin of GLSL ``pw_find_probes``' corner rule."""
        q = np.asarray(q, np.float64).reshape(-1, 3)
        s = self.shape_array
        u = np.clip((q - self.lo) / self.step, 0, s - 1)
        i0 = np.minimum(np.floor(u).astype(np.int64), np.maximum(s - 2, 0))
        f = u - i0
        o = CORNER_OFFSETS
        ijk = np.minimum(i0[:, None, :] + o[None], s - 1)
        w = np.prod(np.where(o[None] == 1, f[:, None, :], 1 - f[:, None, :]), axis=2)
        return ijk, w

    def stencils(self, positions, min_corners: int = 2) -> np.ndarray:
        """The decode stencils among a set of probes on this lattice: for every
        lattice cell with at least ``min_corners`` of its 8 corners among
        ``positions`` (n, 3), the indices (into ``positions``) of those
        corners, ``-1`` where a corner is absent: (C, 8) int64, cells in
        lattice order. The decoder blends exactly these corners between
        probes (absent ones dropped, :meth:`corners`)."""
        p = np.asarray(positions, np.float64).reshape(-1, 3)
        if p.shape[0] == 0:
            return np.zeros((0, 8), np.int64)
        s = self.shape_array
        ids = self.ids_of(self.cells(p))
        order = np.argsort(ids, kind="stable")
        sid = ids[order]
        first = np.ones(sid.size, bool)
        first[1:] = sid[1:] != sid[:-1]             # a duplicate lattice point: its first probe
        sid, order = sid[first], order[first]
        top = np.maximum(s - 2, 0)                  # lower corners of cells: 0 .. n - 2 (0 on a flat axis)
        c = self.cells_of(sid)
        low = np.minimum(np.maximum(c[:, None, :] - CORNER_OFFSETS[None], 0), top).reshape(-1, 3)
        low = np.unique(self.ids_of(low))
        i0 = self.cells_of(low)
        ijk = np.minimum(i0[:, None, :] + CORNER_OFFSETS[None], s - 1)
        want = self.ids_of(ijk)
        pos = np.minimum(np.searchsorted(sid, want), sid.size - 1)
        hit = sid[pos] == want
        out = np.where(hit, order[pos], -1)
        # on a flat axis both offsets name one point: count it once
        dup = np.zeros(out.shape, bool)
        for a in range(8):
            for b in range(a):
                dup[:, a] |= (out[:, a] == out[:, b]) & (out[:, a] >= 0)
        out[dup] = -1
        return out[(out >= 0).sum(axis=1) >= min_corners].astype(np.int64)

    # -- bricks (pages of dense grids) ----------------------------------------
    def brick_ids(self, brick) -> tuple[np.ndarray, np.ndarray]:
        """Flat ids and positions of a brick ``((i0, j0, k0), (ni, nj, nk))``'s points, in grid order."""
        lo_b, sh_b = (np.asarray(v, np.int64).reshape(3) for v in brick)
        if (lo_b < 0).any() or (sh_b < 1).any() or (lo_b + sh_b > self.shape_array).any():
            raise InputError(f"brick {tuple(lo_b.tolist())} + {tuple(sh_b.tolist())} lies outside the grid "
                             f"{self.shape}")
        axes = [np.arange(a, a + n) for a, n in zip(lo_b, sh_b)]
        ijk = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        ids = self.ids_of(ijk).astype(np.int64)
        return ids, self.positions(ids)

    def brick_of(self, ids) -> tuple:
        """The brick ``((i0, j0, k0), (ni, nj, nk))`` that the flat ``ids`` fill exactly."""
        ijk = self.cells_of(ids)
        b_lo = ijk.min(axis=0)
        b_shape = ijk.max(axis=0) - b_lo + 1
        if int(np.prod(b_shape)) != ijk.shape[0]:
            raise ValueError("internal: these lattice ids are not a whole brick")
        return tuple(int(v) for v in b_lo), tuple(int(v) for v in b_shape)

    def bricks(self, page_probes: int) -> list[np.ndarray]:
        """Cut a dense grid into bricks of whole cells of about ``page_probes``
        points (the same brick shape everywhere; brick counts per axis roughly
        proportional to the grid's extent): list of flat-id arrays, sorted."""
        P = self.n_points
        if page_probes >= P:
            return [np.arange(P)]
        s = self.shape_array
        n_bricks = int(np.ceil(P / page_probes))
        b = np.ones(3, np.int64)
        while np.prod(b) < n_bricks:
            ax = int(np.argmax(s / b))
            b[ax] += 1
        edge = np.ceil(s / b).astype(np.int64)
        key = self.cells_of(np.arange(P)) // edge
        key = (key[:, 0] * b[1] + key[:, 1]) * b[2] + key[:, 2]
        return [np.flatnonzero(key == k) for k in np.unique(key)]

    def checkerboard(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat ids with ``i + j + k`` even and odd: the held-out split (DESIGN-NOTES §5)."""
        parity = self.cells_of(np.arange(self.n_points)).sum(axis=1) % 2
        return np.flatnonzero(parity == 0).astype(np.int64), np.flatnonzero(parity == 1).astype(np.int64)


def axis_fill(grid, hash_table, ijk, rec, w):
    """The sparse grids' fill (meta ``interpolation: trilinear-axis-fill``;
    GLSL ``PW_GRID_FILL``): an absent corner passes its trilinear weight to
    the present lattice points among its 6 axis neighbours, in proportion
    to 1 / step^2 of their axis. In-cell neighbours are other corners
    (columns 0..7 accumulate); the 3 outside ones of corner c (one per axis
    with more than one lattice point, leaving the cell) are columns
    8 + 3 c + axis, listed only when c passes a weight > 0.
    ``hash_table``: ``(table, max_probe)`` of the archive's spatial hash;
    ``ijk``, ``rec``, ``w``: :meth:`Grid.corners` and the corners' records.
    (Q, 8) records and weights -> (Q, 32) each (the CPU twin of the
    ``PW_GRID_FILL`` part of GLSL ``pw_find_probes``)."""
    g = grid
    shape = g.shape_array
    Q = rec.shape[0]
    inv2 = 1.0 / np.maximum(g.step, 1e-300) ** 2
    absent = rec == spatialhash.EMPTY
    out_rec = np.full((Q, 32), spatialhash.EMPTY, np.uint32)
    out_w = np.zeros((Q, 32))
    out_rec[:, :8] = rec
    out_w[:, :8] = np.where(absent, 0.0, w)
    o = CORNER_OFFSETS
    for c in range(8):
        # this corner's present neighbours: in-cell (corner c ^ bit) and outside
        share = np.zeros((Q, 3, 2))            # [axis, 0: in-cell / 1: outside] weight factor
        orec = np.full((Q, 3), spatialhash.EMPTY, np.uint32)
        for a in range(3):
            if shape[a] < 2:
                continue
            cc = c ^ (4 >> a)
            share[:, a, 0] = np.where(rec[:, cc] != spatialhash.EMPTY, inv2[a], 0.0)
            step = np.zeros(3, np.int64)
            step[a] = -1 if o[c, a] == 0 else 1
            nb = ijk[:, c] + step
            inside = (nb[:, a] >= 0) & (nb[:, a] < shape[a])
            r = spatialhash.lookup(*hash_table, g.keys(np.where(inside[:, None], nb, 0)))
            orec[:, a] = np.where(inside, r, spatialhash.EMPTY)
            share[:, a, 1] = np.where(orec[:, a] != spatialhash.EMPTY, inv2[a], 0.0)
        tot = share.sum(axis=(1, 2))
        give = np.where(absent[:, c] & (w[:, c] > 0) & (tot > 0), w[:, c] / np.where(tot > 0, tot, 1.0), 0.0)
        for a in range(3):
            out_w[:, c ^ (4 >> a)] += give * share[:, a, 0]
            out_rec[:, 8 + 3 * c + a] = np.where(give > 0, orec[:, a], spatialhash.EMPTY)
            out_w[:, 8 + 3 * c + a] = give * share[:, a, 1]
    return out_rec, out_w
