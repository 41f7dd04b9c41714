"""Every input check of a probe set: :func:`validate`, :class:`ProbeSetError`, :class:`SanitizeReport`.

Errors name the file, the probe (index and name) and the field.
``validate(..., sanitize=True)`` repairs what can be repaired (in place on the
set) and returns a :class:`SanitizeReport`. Probe indices in errors and
reports are indices into the set as given (before duplicates were dropped).
The checks take the set duck-typed (:class:`probewarp.baker.probeset.ProbeSet`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from probewarp.baker.lazyfaces import _repair_inplace
from probewarp.format import constants
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid

#: Radiance dtypes a probe set may hold.
FACES_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))
_CHANNELS = "RGB"


def _rebuild_error(cls, detail, kw):
    return cls(detail, **kw)


class ProbeSetError(InputError):
    """A probe set (or its import) failed a check.

    The message reads ``FILE[:LINE]: probe I ('NAME'): FIELD: detail``; the
    parts are also attributes (``file``, ``line``, ``probe``, ``name``,
    ``field``, ``detail``), ``None`` where not applicable.
    """

    def __init__(self, detail: str, *, file=None, probe=None, name=None,
                 field=None, line=None):
        self.detail = detail
        self.file = None if file is None else str(file)
        self.probe = None if probe is None else int(probe)
        self.name = name
        self.field = field
        self.line = line
        super().__init__(self._compose())

    def _compose(self) -> str:
        loc = self.file if self.file is not None else "<memory>"
        if self.line is not None:
            loc += f":{self.line}"
        parts = [loc]
        if self.probe is not None:
            parts.append(f"probe {self.probe}" + (f" ({self.name!r})" if self.name is not None else ""))
        elif self.name is not None:
            parts.append(f"probe {self.name!r}")
        if self.field is not None:
            parts.append(str(self.field))
        parts.append(self.detail)
        return ": ".join(parts)

    def __reduce__(self):
        kw = dict(file=self.file, probe=self.probe, name=self.name, field=self.field, line=self.line)
        return _rebuild_error, (type(self), self.detail, kw)


def _fmt_indices(idx, limit: int = 10) -> str:
    idx = [int(i) for i in idx]
    s = ", ".join(str(i) for i in idx[:limit])
    return s + (f", ... ({len(idx) - limit} more)" if len(idx) > limit else "")


@dataclass
class SanitizeReport:
    """What :func:`validate` found (and, with ``sanitize=True``, repaired).

    Counts of radiance problems are numbers of *values* (one per channel);
    the ``*_probes`` arrays hold the indices (as given, before duplicates
    were dropped) of the probes concerned.
    """
    source: str
    n_in: int
    n_out: int = 0
    sanitized: bool = False
    fp16: bool = False
    nan_values: int = 0
    nan_probes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    posinf_values: int = 0
    posinf_probes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    negative_values: int = 0
    negative_probes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fp16_overflow_values: int = 0
    fp16_overflow_probes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: ``(dropped, kept)`` index pairs: probe ``dropped`` sat on probe ``kept``.
    duplicates: list = field(default_factory=list)
    grid_dropped: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing needed repair."""
        return not (self.nan_values or self.posinf_values or self.negative_values
                    or self.fp16_overflow_values or self.duplicates)

    def summary(self) -> str:
        """A few human-readable lines: counts and what was done."""
        if self.ok:
            return f"{self.source}: {self.n_in} probes, nothing to repair"
        verb = "Sanitized" if self.sanitized else "Problems in"
        lines = [f"{verb} {self.source}: {self.n_in} -> {self.n_out} probes"]
        rows = [
            ("NaN radiance", self.nan_values, self.nan_probes, "set to 0"),
            ("+Inf radiance", self.posinf_values, self.posinf_probes,
             f"clamped to {constants.SANITIZE_POSINF_VALUE:g}"),
            ("negative radiance (incl. -Inf)", self.negative_values, self.negative_probes, "set to 0"),
            ("radiance above the fp16 maximum", self.fp16_overflow_values, self.fp16_overflow_probes,
             f"clamped to {constants.FP16_MAX:g}"),
        ]
        for label, n, probes, action in rows:
            if n:
                done = f" -> {action}" if self.sanitized else ""
                lines.append(f"  {label}: {n} values in {len(probes)} probes "
                             f"({_fmt_indices(probes)}){done}")
        if self.duplicates:
            pairs = ", ".join(f"{d} (same as {k})" for d, k in self.duplicates[:10])
            more = f", ... ({len(self.duplicates) - 10} more)" if len(self.duplicates) > 10 else ""
            done = ", first kept, others dropped" if self.sanitized else ""
            lines.append(f"  duplicate positions: {len(self.duplicates)} probes: {pairs}{more}{done}")
        if self.grid_dropped:
            lines.append("  grid description dropped (the probes no longer form the grid)")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """Plain-Python form (JSON-serialisable)."""
        return dict(source=self.source, n_in=self.n_in, n_out=self.n_out,
                    sanitized=self.sanitized, fp16=self.fp16,
                    nan_values=self.nan_values, nan_probes=self.nan_probes.tolist(),
                    posinf_values=self.posinf_values, posinf_probes=self.posinf_probes.tolist(),
                    negative_values=self.negative_values, negative_probes=self.negative_probes.tolist(),
                    fp16_overflow_values=self.fp16_overflow_values,
                    fp16_overflow_probes=self.fp16_overflow_probes.tolist(),
                    duplicates=[list(p) for p in self.duplicates], grid_dropped=self.grid_dropped)


def _grid_positions64(lo, hi, n) -> np.ndarray:
    """:meth:`Grid.positions` of broadcast ``lo``, ``hi``, ``n`` (ValueError for counts < 1)."""
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), (3,))
    if np.any(n < 1):
        raise ValueError(f"grid counts must be >= 1, got {n.tolist()}")
    return Grid(n, np.broadcast_to(np.asarray(lo, np.float64), (3,)),
                np.broadcast_to(np.asarray(hi, np.float64), (3,))).positions()


def _err(ps, src, detail, *, probe=None, field=None):
    name = ps.probe_name(probe) if probe is not None else None
    return ProbeSetError(detail, file=src, probe=probe, name=name, field=field)


def _check_structure(ps, src: str) -> None:
    pos = ps.positions
    if not isinstance(pos, np.ndarray) or pos.ndim != 2 or pos.shape[1] != 3:
        raise _err(ps, src, f"expected shape (P, 3), got {getattr(pos, 'shape', type(pos))}", field="positions")
    if pos.dtype.kind != "f":
        raise _err(ps, src, f"expected float32, got {pos.dtype}", field="positions")
    P = pos.shape[0]
    if P == 0:
        raise _err(ps, src, "empty probe set (no probes)", field="positions")
    f = ps.faces
    shp = tuple(getattr(f, "shape", ()))
    if len(shp) != 5 or shp[1] != 6 or shp[2] != shp[3] or shp[2] < 1 or shp[4] != 3:
        raise _err(ps, src, f"expected shape (P, 6, R, R, 3), got {shp}", field="faces")
    if shp[0] != P:
        raise _err(ps, src, f"holds {shp[0]} probes but positions holds {P}", field="faces")
    if np.dtype(f.dtype) not in FACES_DTYPES:
        raise _err(ps, src, f"expected float16 or float32, got {np.dtype(f.dtype)}", field="faces")
    bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size - 1} more probes too)" if bad.size > 1 else ""
        raise _err(ps, src, f"non-finite coordinate {pos[i].tolist()}{more}", probe=i, field="positions")
    if ps.names is not None and len(ps.names) != P:
        raise _err(ps, src, f"{len(ps.names)} names for {P} probes", field="names")


def _check_grid(ps, src: str) -> None:
    gs, lo, hi = ps.grid_shape, ps.lo, ps.hi
    if gs is None:
        if lo is not None or hi is not None:
            raise _err(ps, src, "lo/hi given without grid_shape", field="grid_shape")
        return
    if (not isinstance(gs, tuple) or len(gs) != 3 or any(not isinstance(v, int) for v in gs)
            or any(v < 1 for v in gs)):
        raise _err(ps, src, f"expected 3 positive integers, got {gs!r}", field="grid_shape")
    P = ps.n_probes
    if int(np.prod(gs)) < P or (int(np.prod(gs)) > P and (lo is None or hi is None)):
        raise _err(ps, src, f"{gs} has {int(np.prod(gs))} points but the set has {P} probes "
                   "(a sparse grid, with fewer probes than points, needs lo and hi)", field="grid_shape")
    if (lo is None) != (hi is None):
        raise _err(ps, src, "only one of lo/hi given", field="lo" if lo is None else "hi")
    if int(np.prod(gs)) > P:
        _check_sparse_grid(ps, src)
        return
    if lo is None:
        lo, hi = ps.positions[0].astype(np.float64), ps.positions[-1].astype(np.float64)
    for key, v in (("lo", lo), ("hi", hi)):
        a = np.asarray(v)
        if a.shape != (3,) or a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
            raise _err(ps, src, f"expected 3 finite numbers, got {v!r}", field=key)
    expect = _grid_positions64(lo, hi, gs)
    pos = ps.positions.astype(np.float64)
    scale = max(float(np.linalg.norm(expect.max(0) - expect.min(0))), float(np.abs(expect).max()),
                float(np.abs(pos).max()))
    tol = constants.GRID_POSITION_REL_TOL * scale
    off = np.abs(pos - expect).max(axis=1)
    bad = np.flatnonzero(off > tol)
    if bad.size:
        i = int(bad[0])
        raise _err(ps, src, f"position {pos[i].tolist()} is not grid point {expect[i].tolist()} "
                   f"of grid_shape {gs}, lo {np.asarray(lo).tolist()}, hi {np.asarray(hi).tolist()} "
                   f"(meshgrid 'ij' order, z fastest; {bad.size} probes off)", probe=i, field="positions")


def _check_sparse_grid(ps, src: str) -> None:
    """Every probe of a sparse grid sits on its own lattice point of lo..hi."""
    gs = np.asarray(ps.grid_shape, np.int64)
    for key, v in (("lo", ps.lo), ("hi", ps.hi)):
        a = np.asarray(v)
        if a.shape != (3,) or a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
            raise _err(ps, src, f"expected 3 finite numbers, got {v!r}", field=key)
    lo, hi = np.asarray(ps.lo, np.float64), np.asarray(ps.hi, np.float64)
    step = np.where(gs > 1, (hi - lo) / np.maximum(gs - 1, 1), 0.0)
    pos = ps.positions.astype(np.float64)
    u = np.where(step != 0, (pos - lo) / np.where(step != 0, step, 1.0), 0.0)
    ijk = np.rint(u).astype(np.int64)
    snapped = lo + ijk * step
    scale = max(float(np.linalg.norm(hi - lo)), float(np.abs(lo).max()), float(np.abs(hi).max()),
                float(np.abs(pos).max(initial=0.0)))
    tol = constants.GRID_POSITION_REL_TOL * scale
    off = np.where(((ijk < 0) | (ijk >= gs)).any(axis=1), np.inf, np.abs(pos - snapped).max(axis=1))
    bad = np.flatnonzero(off > tol)
    if bad.size:
        i = int(bad[0])
        raise _err(ps, src, f"{tuple(gs.tolist())} has {int(np.prod(gs))} points but the set has "
                   f"{ps.n_probes} probes; read as a sparse grid (lo {lo.tolist()}, hi {hi.tolist()}), "
                   f"position {pos[i].tolist()} is not one of its lattice points ({bad.size} probes off)",
                   probe=i, field="grid_shape")
    lin = Grid(gs, lo, hi, dense=False).ids_of(ijk)
    uniq, first, counts = np.unique(lin, return_index=True, return_counts=True)
    if (counts > 1).any():
        c = int(np.flatnonzero(counts > 1)[0])
        j = int(first[c])
        i = int(np.flatnonzero(lin == uniq[c])[1])
        raise _err(ps, src, f"probes {j} and {i} share the lattice point {ijk[i].tolist()} of the "
                   "sparse grid", probe=i, field="positions")


def _duplicate_pairs(positions: np.ndarray) -> np.ndarray:
    """``(n, 2)`` int64 pairs ``(i, j)``, ``i < j``, closer than the duplicate tolerance."""
    from scipy.spatial import cKDTree
    pos = positions.astype(np.float64)
    if len(pos) < 2:
        return np.zeros((0, 2), np.int64)
    diag = float(np.linalg.norm(pos.max(0) - pos.min(0)))
    tol = constants.DUPLICATE_POSITION_REL_TOL * diag
    pairs = cKDTree(pos).query_pairs(tol, output_type="ndarray").astype(np.int64)
    if pairs.size:
        pairs = np.sort(pairs, axis=1)
        pairs = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
    return pairs.reshape(-1, 2)


def _greedy_keep(P: int, pairs: np.ndarray) -> tuple[np.ndarray, list]:
    """Keep the first of every group of duplicates: (keep mask, [(dropped, kept)])."""
    keep = np.ones(P, bool)
    dropped = []
    for i, j in pairs:  # sorted by j: i's fate is known when j is decided
        if keep[j] and keep[i]:
            keep[j] = False
            dropped.append((int(j), int(i)))
    return keep, dropped


def _check_global(ps, src: str, sanitize: bool) -> np.ndarray:
    """Structure, grid and duplicates; returns the duplicate pairs (raises on them unless sanitizing)."""
    _check_structure(ps, src)
    _check_grid(ps, src)
    pairs = _duplicate_pairs(ps.positions)
    if pairs.size and not sanitize:
        i, j = (int(v) for v in pairs[0])
        d = float(np.linalg.norm(ps.positions[j].astype(np.float64) - ps.positions[i]))
        other = ps.probe_name(i)
        raise _err(ps, src, f"duplicate of probe {i}" + (f" ({other!r})" if other is not None else "")
                   + f" at {ps.positions[j].tolist()} (distance {d:.3g}; "
                   f"{len(pairs)} duplicate pairs in all)", probe=j, field="positions")
    return pairs


def _scan_block(block: np.ndarray, fp16: bool) -> np.ndarray:
    """Per-probe counts ``(n, 4)``: NaN, +Inf, negative (incl. -Inf), finite above FP16_MAX."""
    b = block.reshape(len(block), -1)
    out = np.zeros((len(block), 4), np.int64)
    out[:, 0] = np.isnan(b).sum(1)
    out[:, 1] = np.isposinf(b).sum(1)
    out[:, 2] = (b < 0).sum(1)
    if fp16:
        out[:, 3] = (np.isfinite(b) & (b > constants.FP16_MAX)).sum(1)
    return out


_KINDS = (("NaN", "NaN radiance"), ("+Inf", "+Inf radiance"), ("negative", "negative radiance"),
          ("fp16", f"radiance above the float16 maximum {constants.FP16_MAX:g}"))


def _first_location(values: np.ndarray, kind: int) -> str:
    if kind == 0:
        m = np.isnan(values)
    elif kind == 1:
        m = np.isposinf(values)
    elif kind == 2:
        m = values < 0
    else:
        m = np.isfinite(values) & (values > constants.FP16_MAX)
    f, t, s, c = (int(v) for v in np.argwhere(m)[0])
    return (f"face {constants.FACE_NAMES[f]}, row {t}, column {s}, channel {_CHANNELS[c]} "
            f"= {float(values[f, t, s, c]):g}")


def _raise_first(block, counts, orig_idx, ps, src):
    probe_row = int(np.flatnonzero(counts.any(1))[0])
    kind = int(np.flatnonzero(counts[probe_row])[0])
    i = int(orig_idx[probe_row])
    n = int(counts[probe_row, kind])
    label = _KINDS[kind][1]
    raise _err(ps, src, f"{label} in {n} value(s), first at {_first_location(block[probe_row], kind)}",
               probe=i, field="faces")


def _check_block(block, orig_idx, ps, src, fp16: bool) -> None:
    counts = _scan_block(block, fp16)
    if counts.any():
        _raise_first(block, counts, orig_idx, ps, src)


def _iter_view(ps, keep_idx, batch: int):
    """Yield ``(orig_indices, faces_block)`` over probes ``keep_idx`` (None: all)."""
    if keep_idx is None:
        for start, _, block in ps.iter_chunks(batch):
            yield np.arange(start, start + len(block)), block
        return
    for a in range(0, len(keep_idx), batch):
        idx = keep_idx[a:a + batch]
        block = ps.faces.take(idx) if ps.is_lazy else np.asarray(ps.faces)[idx]
        yield idx, block


def validate(probeset, name=None, *, sanitize: bool = False, fp16: bool = False) -> SanitizeReport:
    """Check every input rule of a probe set, or repair what can be repaired.

    Parameters
    ----------
    probeset : ProbeSet
    name : str, optional
        The file named in messages (default ``probeset.source``, else
        ``'<memory>'``).
    sanitize : bool
        Repair instead of raising where a repair exists, *in place*: new
        arrays are assigned to ``probeset`` (the caller's arrays are never
        written to; a lazy set repairs on read). NaN -> 0; +Inf ->
        ``constants.SANITIZE_POSINF_VALUE``; negative (and -Inf) -> 0; with
        ``fp16`` finite values above ``constants.FP16_MAX`` -> ``FP16_MAX``;
        duplicate positions -> the first (lowest index) is kept and the others
        dropped, with their names, and a grid description is then dropped.
    fp16 : bool
        Also reject (or clamp) radiance that float16 cannot hold.

    Returns
    -------
    SanitizeReport
        Counts and, with ``sanitize``, what was done (``report.ok`` when the
        set was clean).

    Raises
    ------
    ProbeSetError
        Message ``FILE: probe I ('NAME'): FIELD: detail`` for: positions not
        ``(P, 3)`` float or not finite; faces not ``(P, 6, R, R, 3)``
        float16/float32; empty set; names of the wrong count; grid_shape not 3
        positive ints or its product != P, lo/hi without grid_shape or only
        one of them, positions not the ``lo``..``hi`` 'ij' meshgrid (lo/hi
        default to the first/last probe); and, unless sanitizing, duplicate
        positions (``constants.DUPLICATE_POSITION_REL_TOL`` of the bounding-box
        diagonal), NaN/Inf or negative radiance, fp16 overflow. Structural
        problems raise even when sanitizing. The first problem found raises;
        the scan runs chunk-wise (bounded memory for lazy sets).
    """
    ps = probeset
    src = str(name) if name is not None else (ps.source or "<memory>")
    pairs = _check_global(ps, src, sanitize)
    P = ps.n_probes
    report = SanitizeReport(source=src, n_in=P, n_out=P, sanitized=bool(sanitize), fp16=bool(fp16))
    keep_idx = None
    if pairs.size:
        keep, dropped = _greedy_keep(P, pairs)
        keep_idx = np.flatnonzero(keep)
        report.duplicates = dropped
    fp16_eff = bool(fp16) and np.dtype(ps.faces.dtype) != np.float16
    batch = ps._default_batch()
    tot = np.zeros(4, np.int64)
    probes = [[] for _ in range(4)]
    for orig, block in _iter_view(ps, keep_idx, batch):
        counts = _scan_block(block, fp16_eff)
        if not counts.any():
            continue
        if not sanitize:
            _raise_first(block, counts, orig, ps, src)
        tot += counts.sum(0)
        for k in range(4):
            probes[k].append(orig[counts[:, k] > 0])
    cat = [np.concatenate(p).astype(np.int64) if p else np.zeros(0, np.int64) for p in probes]
    report.nan_values, report.posinf_values, report.negative_values, report.fp16_overflow_values = (
        int(v) for v in tot)
    report.nan_probes, report.posinf_probes, report.negative_probes, report.fp16_overflow_probes = cat
    if not sanitize or report.ok:
        return report
    # --- repair, in place on the ProbeSet object --------------------------------
    radiance = bool(tot.any())
    if ps.is_lazy:
        faces = ps.faces.subset(keep_idx) if keep_idx is not None else ps.faces
        if radiance:
            faces = faces.with_repair(fp16_eff)
    else:
        src_faces = np.asarray(ps.faces)
        if keep_idx is not None:
            faces = src_faces[keep_idx]
        elif radiance:
            faces = src_faces.copy()
        else:
            faces = src_faces
        if radiance:
            for a in range(0, len(faces), batch):
                _repair_inplace(faces[a:a + batch], fp16_eff)
    if keep_idx is not None:
        ps.positions = ps.positions[keep_idx]
        if ps.names is not None:
            ps.names = [ps.names[i] for i in keep_idx]
        if ps.grid_shape is not None or ps.lo is not None or ps.hi is not None:
            ps.grid_shape, ps.lo, ps.hi = None, None, None
            report.grid_dropped = True
    ps.faces = faces
    report.n_out = ps.n_probes
    return report
