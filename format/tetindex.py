"""The GPU-ready tetrahedral index of a scattered probe set (archive version 4).

A scattered archive stores, in the section where grid archives keep their
spatial hash, everything a decoder needs to find the probes around any
position without qhull or a search tree: one lz4 frame of, in order,

- ``probes`` (P,) :data:`~.layout.PROBE_DTYPE`: each probe's position
  (float32, as the pages store it) and record ``page << 16 | local`` (the
  page holding its code and its index there), by global probe id;
- ``simplices`` (E,) :data:`~.layout.SIMPLEX_DTYPE`: up to 4 probe ids each
  (:data:`~.layout.SIMPLEX_NONE` in unused slots). Mode ``tetrahedra``: the
  Delaunay tetrahedra (``n_tets`` of them, first), then the hull's outer
  triangles. Mode ``plane`` (coplanar probes): the triangles of their 2-D
  Delaunay triangulation. Mode ``line`` (collinear): the segments between
  consecutive probes along the line. Mode ``single``: one point;
- ``cells`` (C + 1 + K,) uint32: a grid of ``shape`` cells over the probes'
  bounding box ``[lo, hi]`` (cell id ``(i * sy + j) * sz + k``); entries
  ``0..C`` are offsets into this same array (cell c's element ids are
  ``cells[cells[c]:cells[c+1]]``, every offset in ``[C+1, C+1+K]``), then
  the K element ids. A cell lists every simplex that can answer a query in
  it: the tetrahedra overlapping it and the hull elements that can be the
  closest for a point of it outside the hull.

Every cell of the box holds something (a tetrahedron overlaps it or it is
outside the hull and has hull elements), so the cells are a dense table and
need no hashing. ``max_items`` (metadata) is the longest list: the bound of
the GLSL loop. The rule the index answers (:mod:`probewarp.baker.tetra`,
``pw_find_probes`` in shaders/common_probewarp.glsl) is documented in
docs/FORMAT.md ("Tetrahedral index").

This module reads and checks the stored form (numpy only, like the rest of
:mod:`probewarp.format`); the builder needs qhull and lives in
:func:`probewarp.baker.tetra.build_index`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probewarp.format import constants, layout, spatialhash
from probewarp.format.errors import InputError

MODES = ("tetrahedra", "plane", "line", "single")
#: Corners of a simplex of each mode's main elements (hull elements have one fewer).
MODE_CORNERS = {"tetrahedra": 4, "plane": 3, "line": 2, "single": 1}
#: Most cells of an index (a 2^26-cell table is 256 MiB of offsets).
MAX_CELLS = 1 << 26
#: Most cells per axis.
MAX_CELLS_AXIS = 1 << 12


@dataclass
class TetIndex:
    """The stored index (see the module docstring)."""
    mode: str
    probes: np.ndarray        # (P,) layout.PROBE_DTYPE
    simplices: np.ndarray     # (E,) layout.SIMPLEX_DTYPE
    n_tets: int
    cells: np.ndarray         # (C + 1 + K,) uint32
    lo: np.ndarray            # (3,) float32
    hi: np.ndarray            # (3,) float32
    shape: tuple              # (3,) cells per axis

    @property
    def n_cells(self) -> int:
        return int(np.prod(self.shape))

    @property
    def max_items(self) -> int:
        off = self.cells[:self.n_cells + 1].astype(np.int64)
        return int(np.diff(off).max(initial=0))

    @property
    def scale(self) -> np.ndarray:
        """(3,) float32 cells per world unit on each axis (0 on flat axes):
        cell = clamp(floor((x - lo) * scale), 0, shape - 1) after x is clamped
        into [lo, hi]. GLSL uniform ``pw_cell_scale``."""
        ext = self.hi.astype(np.float64) - self.lo.astype(np.float64)
        sh = np.asarray(self.shape, np.float64)
        return np.where(ext > 0, sh / np.where(ext > 0, ext, 1.0), 0.0).astype(np.float32)

    @property
    def simplex_ids(self) -> np.ndarray:
        """(E, 4) int64 probe ids, -1 where unused."""
        s = self.simplices["probes"].astype(np.int64)
        return np.where(s == int(layout.SIMPLEX_NONE), -1, s)

    @property
    def nbytes(self) -> int:
        return int(self.probes.nbytes + self.simplices.nbytes + self.cells.nbytes)

    def meta(self) -> dict:
        """The archive metadata entry ``tetra_index`` describing this index."""
        return {"mode": self.mode, "n_probes": int(self.probes.size), "n_simplices": int(self.simplices.size),
                "n_tets": int(self.n_tets), "cell_shape": [int(v) for v in self.shape],
                "lo": [float(v) for v in self.lo], "hi": [float(v) for v in self.hi],
                "n_items": int(self.cells.size - self.n_cells - 1), "max_items": self.max_items,
                "raw_size": self.nbytes}

    def to_bytes(self) -> bytes:
        return b"".join(np.ascontiguousarray(a).tobytes() for a in (self.probes, self.simplices, self.cells))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_meta(m, n_probes: int, where: str) -> None:
    """The ``tetra_index`` metadata entry: types and ranges (before any allocation)."""
    if not isinstance(m, dict):
        raise InputError(f"{where}: an object is needed, got {m!r}")
    if m.get("mode") not in MODES:
        raise InputError(f"{where}: field mode: one of {', '.join(MODES)} is needed, got {m.get('mode')!r}")
    for key, hi in (("n_probes", (1 << 32) - 2), ("n_simplices", 1 << 31), ("n_tets", 1 << 31),
                    ("n_items", 1 << 31), ("max_items", 1 << 31), ("raw_size", 1 << 40)):
        v = m.get(key)
        if not _is_int(v) or not 0 <= v <= hi:
            raise InputError(f"{where}: field {key}: an integer in [0, {hi}] is needed, got {v!r}")
    if m["n_probes"] != n_probes:
        raise InputError(f"{where}: field n_probes: the index has {m['n_probes']} probes, the archive {n_probes}")
    if m["n_tets"] > m["n_simplices"] or m["n_simplices"] < 1:
        raise InputError(f"{where}: field n_tets: {m['n_tets']} tetrahedra of {m['n_simplices']} simplices")
    shape = m.get("cell_shape")
    if (not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(v) and 1 <= v <= MAX_CELLS_AXIS
                                                                  for v in shape)
            or int(np.prod(shape, dtype=object)) > MAX_CELLS):
        raise InputError(f"{where}: field cell_shape: 3 integers in [1, {MAX_CELLS_AXIS}] "
                         f"(at most {MAX_CELLS} cells) are needed, got {shape!r}")
    for key in ("lo", "hi"):
        v = m.get(key)
        if not isinstance(v, list) or len(v) != 3 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in v):
            raise InputError(f"{where}: field {key}: 3 finite numbers are needed, got {v!r}")
    if any(a > b for a, b in zip(m["lo"], m["hi"])):
        raise InputError(f"{where}: field hi: {m['hi']} is below lo {m['lo']}")
    C = int(np.prod(shape))
    expect = (m["n_probes"] * layout.PROBE_DTYPE.itemsize + m["n_simplices"] * layout.SIMPLEX_DTYPE.itemsize
              + (C + 1 + m["n_items"]) * layout.CELL_DTYPE.itemsize)
    if m["raw_size"] != expect:
        raise InputError(f"{where}: field raw_size: {m['raw_size']} bytes, the counts make {expect}")


def from_bytes(raw: bytes, m: dict, page_probes: np.ndarray, where: str) -> TetIndex:
    """Parse and check a stored index (``m``: its checked metadata entry;
    ``page_probes``: the page table's probe counts). Every id the GLSL
    loops follow is checked to land inside its buffer."""
    P, E, C, K = m["n_probes"], m["n_simplices"], int(np.prod(m["cell_shape"])), m["n_items"]
    if len(raw) != m["raw_size"]:
        raise InputError(f"{where}: field raw_size: {len(raw)} bytes, expected {m['raw_size']}")
    o = 0
    probes = np.frombuffer(raw, layout.PROBE_DTYPE, count=P, offset=o)
    o += probes.nbytes
    simplices = np.frombuffer(raw, layout.SIMPLEX_DTYPE, count=E, offset=o)
    o += simplices.nbytes
    cells = np.frombuffer(raw, layout.CELL_DTYPE, count=C + 1 + K, offset=o)
    if not np.isfinite(probes["xyz"]).all():
        raise InputError(f"{where}: field probes: a position is not finite")
    k = spatialhash.first_bad_record(probes["record"], page_probes)
    if k >= 0:
        page, local = spatialhash.split_record(probes["record"])
        raise InputError(f"{where}: field probes: probe {k}'s record names page {int(page[k])}, probe "
                         f"{int(local[k])}, which the page table does not hold")
    if P and np.unique(probes["record"]).size != P:
        raise InputError(f"{where}: field probes: two probes share one page record")
    ids = simplices["probes"].astype(np.int64)
    used = ids != int(layout.SIMPLEX_NONE)
    corners = used.sum(axis=1)
    if (ids[used] >= P).any():
        raise InputError(f"{where}: field simplices: a simplex names a probe beyond the {P} of the index")
    # used slots first, then unused: a simplex of k corners is ids[:k]
    if (used[:, 1:] & ~used[:, :-1]).any() or (corners < 1).any():
        raise InputError(f"{where}: field simplices: a simplex with no corners or a gap among them")
    k_main = MODE_CORNERS[m["mode"]]
    nt = m["n_tets"]
    if (corners[:nt] != 4).any() or (m["mode"] != "tetrahedra" and nt) or (
            m["mode"] != "tetrahedra" and (corners != k_main).any()) or (
            m["mode"] == "tetrahedra" and (corners[nt:] != 3).any()):
        raise InputError(f"{where}: field simplices: corner counts do not match mode {m['mode']!r} "
                         f"with {nt} tetrahedra")
    off = cells[:C + 1].astype(np.int64)
    if off[0] != C + 1 or off[-1] != C + 1 + K or (np.diff(off) < 0).any():
        raise InputError(f"{where}: field cells: offsets are not a non-decreasing run from {C + 1} to {C + 1 + K}")
    if int(np.diff(off).max(initial=0)) != m["max_items"]:
        raise InputError(f"{where}: field max_items: {m['max_items']}, the longest cell list is "
                         f"{int(np.diff(off).max(initial=0))}")
    if K and int(cells[C + 1:].max()) >= E:
        raise InputError(f"{where}: field cells: a cell names a simplex beyond the {E} of the index")
    return TetIndex(m["mode"], probes, simplices, nt, cells, np.asarray(m["lo"], np.float32),
                    np.asarray(m["hi"], np.float32), tuple(int(v) for v in m["cell_shape"]))


# -- the rule (CPU twin of GLSL pw_find_probes with PW_SCATTERED) ---------------------
#: Query-simplex pairs evaluated at once (bounded memory).
LOOKUP_CHUNK = 1 << 18


def closest_points(x, a, b, c, k):
    """Per pair: squared distance from x to the point (k = 1), segment (2) or
    triangle (3) with corners a, b, c (n, 3 each) and the (n, 3) barycentric
    weights of the closest point (Ericson, Real-Time Collision Detection
    5.1.5; GLSL twin pw_closest). The rule's primitive, also the index
    builder's distance bounds and Tetrahedra's projection onto the hull."""
    n = x.shape[0]
    u = np.zeros(n)
    v = np.zeros(n)
    ab, ac, ap = b - a, c - a, x - a
    # segments
    seg = k == 2
    den = np.einsum("ij,ij->i", ab, ab)
    t = np.where(den > 0, np.einsum("ij,ij->i", ap, ab) / np.where(den > 0, den, 1.0), 0.0)
    u = np.where(seg, np.clip(t, 0.0, 1.0), u)
    # triangles (regions in Ericson's order: the first that applies wins)
    tri = k == 3
    bp, cp = x - b, x - c
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    tu, tv = np.zeros(n), np.zeros(n)
    done = ~tri
    with np.errstate(divide="ignore", invalid="ignore"):
        for m, uu, vv in (
                ((d1 <= 0) & (d2 <= 0), 0.0, 0.0),
                ((d3 >= 0) & (d4 <= d3), 1.0, 0.0),
                ((d6 >= 0) & (d5 <= d6), 0.0, 1.0),
                ((vc <= 0) & (d1 >= 0) & (d3 <= 0), d1 / (d1 - d3), 0.0),
                ((vb <= 0) & (d2 >= 0) & (d6 <= 0), 0.0, d2 / (d2 - d6)),
                ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),
                 1.0 - (d4 - d3) / ((d4 - d3) + (d5 - d6)), (d4 - d3) / ((d4 - d3) + (d5 - d6))),
                (np.ones(n, bool), vb / (va + vb + vc), vc / (va + vb + vc))):
            m = m & ~done
            tu = np.where(m, uu, tu)
            tv = np.where(m, vv, tv)
            done |= m
    u = np.where(tri, tu, u)
    v = np.where(tri, tv, 0.0)
    d = ap - u[:, None] * ab - v[:, None] * ac
    w = np.stack([1.0 - u - v, u, v], 1)
    return np.einsum("ij,ij->i", d, d), w


def tet_barycentric(x, a, b, c, d):
    """Per pair: barycentric coordinates (n, 4) of x in tetrahedron (a, b, c, d)
    and whether it is flat (GLSL twin pw_tet_bary, Cramer's rule)."""
    e1, e2, e3, p = b - a, c - a, d - a, x - a
    c23 = np.cross(e2, e3)
    det = np.einsum("ij,ij->i", e1, c23)
    scale = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1) * np.linalg.norm(e3, axis=1)
    ok = np.abs(det) > constants.TET_FLAT_REL * scale
    det = np.where(ok, det, 1.0)
    l1 = np.einsum("ij,ij->i", p, c23) / det
    l2 = np.einsum("ij,ij->i", e1, np.cross(p, e3)) / det
    l3 = np.einsum("ij,ij->i", e1, np.cross(e2, p)) / det
    return np.stack([1.0 - l1 - l2 - l3, l1, l2, l3], 1), ok


def lookup(index: TetIndex, q, with_corners: bool = False):
    """The index's rule: (Q, 3) queries -> (Q, 4) int64 probe ids and (Q, 4)
    float64 weights (sum 1; unused slots id 0, weight 0) [, (Q,) corners of
    the chosen simplex]. The CPU twin of GLSL ``pw_find_probes`` of scattered
    archives (shaders/common_probewarp.glsl), step for step: clamp the query
    into [lo, hi]; take its cell; of the cell's simplices in list order, the
    first tetrahedron whose smallest barycentric coordinate is at least
    ``-TET_INSIDE_EPS`` (weights clipped at 0, renormalised); else the closest
    other simplex (first of equal distances) with its closest point's
    barycentric weights; else (float rounding only) the tetrahedron the query
    is least outside of."""
    q = np.asarray(q, np.float64).reshape(-1, 3)
    Q = q.shape[0]
    ids = np.zeros((Q, 4), np.int64)
    w = np.zeros((Q, 4))
    kk = np.zeros(Q, np.int64)
    pos = index.probes["xyz"].astype(np.float64)
    simp = index.simplex_ids
    corners = (simp >= 0).sum(axis=1)
    lo, hi = index.lo.astype(np.float64), index.hi.astype(np.float64)
    scale, shape = index.scale.astype(np.float64), np.asarray(index.shape, np.int64)
    cells = index.cells.astype(np.int64)
    x_all = np.clip(q, lo, hi)
    ci = np.clip(np.floor((x_all - lo) * scale).astype(np.int64), 0, shape - 1)
    cid = (ci[:, 0] * shape[1] + ci[:, 1]) * shape[2] + ci[:, 2]
    start, count = cells[cid], cells[cid + 1] - cells[cid]
    a = 0
    while a < Q:                                   # chunks of at most LOOKUP_CHUNK pairs
        b = a + 1
        total = int(count[a])
        while b < Q and total + int(count[b]) <= LOOKUP_CHUNK:
            total += int(count[b])
            b += 1
        rows = np.repeat(np.arange(a, b), count[a:b])
        rank = np.arange(rows.size) - np.repeat(np.cumsum(count[a:b]) - count[a:b], count[a:b])
        e = cells[start[rows] + rank]
        s, k, x = simp[e], corners[e], x_all[rows]
        P = pos[np.maximum(s, 0)]                  # (n, 4, 3); unused corners read probe 0, ignored
        lam, ok = tet_barycentric(x, P[:, 0], P[:, 1], P[:, 2], P[:, 3])
        is_tet = (k == 4) & ok
        m = lam.min(axis=1)
        inside = is_tet & (m >= -constants.TET_INSIDE_EPS)
        d2, cw = closest_points(x, P[:, 0], P[:, 1], P[:, 2], k)
        d2 = np.where(k < 4, d2, np.inf)
        big = rows.size + 1
        # per row: the first inside tetrahedron; else the first closest; else the least-outside
        first_in = np.full(Q, big)
        np.minimum.at(first_in, rows[inside], rank[inside])
        best = np.full(Q, np.inf)
        np.minimum.at(best, rows, d2)
        at_best = (k < 4) & (d2 == best[rows]) & np.isfinite(d2)
        first_best = np.full(Q, big)
        np.minimum.at(first_best, rows[at_best], rank[at_best])
        mt = np.where(is_tet, m, -np.inf)
        fb = np.full(Q, -np.inf)
        np.maximum.at(fb, rows, mt)
        at_fb = is_tet & (mt == fb[rows])
        first_fb = np.full(Q, big)
        np.minimum.at(first_fb, rows[at_fb], rank[at_fb])
        sel_rank = np.where(first_in < big, first_in, np.where(first_best < big, first_best, first_fb))
        sel_kind = np.where(first_in < big, 0, np.where(first_best < big, 1, 2))
        pick = (rank == sel_rank[rows])
        pr = rows[pick]
        kind = sel_kind[pr]
        ps, pk = s[pick], k[pick]
        wt = np.zeros((pr.size, 4))
        tet_w = np.clip(lam[pick], 0.0, None)
        tet_w /= np.maximum(tet_w.sum(axis=1, keepdims=True), 1e-300)
        wt = np.where((kind != 1)[:, None], tet_w, 0.0)
        wt[kind == 1, :3] = cw[pick][kind == 1]
        used = np.arange(4) < pk[:, None]
        ids[pr] = np.where(used, ps, 0)
        w[pr] = np.where(used, wt, 0.0)
        kk[pr] = pk
        a = b
    return (ids, w, kk) if with_corners else (ids, w)
