"""Probe sets on disk (DESIGN-NOTES §2): round trips, every rejected input, sanitising.

Tolerances: npz and zarr round trips are exact (bitwise); float32 -> float16
storage is within ``constants.FP16_REL_TOL`` relative (values kept in the
float16 normal range).
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from probewarp.baker import config
from probewarp.format import constants
from probewarp.baker import probeset as psmod
from probewarp.baker.lazyfaces import LazyFaces
from probewarp.baker.probeset import ProbeSet
from probewarp.baker.validation import ProbeSetError, SanitizeReport, validate

GRID = (2, 3, 4)
LO = np.array([-1.0, 0.0, 2.0])
HI = np.array([1.0, 4.0, 5.0])
R = 4


def make_set(dtype=np.float32, grid=True, names=True, seed=0) -> ProbeSet:
    rng = np.random.default_rng(seed)
    pos = ProbeSet.grid(LO, HI, GRID)
    P = len(pos)
    faces = (0.01 + 100 * rng.random((P, 6, R, R, 3))).astype(dtype)
    kw = dict(names=[f"p{i:02d}" for i in range(P)]) if names else {}
    if grid:
        return ProbeSet(pos, faces, GRID, LO, HI, **kw)
    return ProbeSet(pos, faces, **kw)


def dir_listing(d):
    return sorted(p.name for p in d.iterdir())


# ---------------------------------------------------------------------------
# construction, grid helper, basic API
# ---------------------------------------------------------------------------

def test_grid_order_is_meshgrid_ij_z_fastest():
    pos = ProbeSet.grid(LO, HI, GRID)
    assert pos.dtype == np.float32 and pos.shape == (24, 3)
    xs, ys, zs = (np.linspace(LO[i], HI[i], GRID[i]) for i in range(3))
    X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
    np.testing.assert_array_equal(pos, np.stack([X.ravel(), Y.ravel(), Z.ravel()], -1).astype(np.float32))
    # z fastest: the first GRID[2] probes differ only in z
    assert np.all(pos[:4, 0] == LO[0]) and np.all(pos[:4, 1] == LO[1])
    np.testing.assert_allclose(pos[:4, 2], np.linspace(LO[2], HI[2], 4), rtol=1e-6)
    assert ProbeSet.grid(0, 1, 3).shape == (27, 3)
    single = ProbeSet.grid([1, 2, 3], [1, 2, 3], 1)
    np.testing.assert_array_equal(single, [[1, 2, 3]])


def test_constructor_contract_and_basics():
    ps = make_set()
    assert ps.n_probes == 24 and len(ps) == 24 and ps.resolution == R
    assert ps.grid_shape == GRID and ps.lo.dtype == np.float64
    # positional construction, numeric positions become float32
    ps2 = ProbeSet(np.zeros((1, 3), np.float64), np.zeros((1, 6, 2, 2, 3), np.float32))
    assert ps2.positions.dtype == np.float32 and ps2.grid_shape is None
    assert "P=1" in repr(ps2)
    assert ps.validate().ok


def test_subset_and_summary():
    ps = make_set()
    sub = ps.subset([5, 1, 7])
    np.testing.assert_array_equal(sub.positions, ps.positions[[5, 1, 7]])
    np.testing.assert_array_equal(sub.faces, ps.faces[[5, 1, 7]])
    assert sub.names == ["p05", "p01", "p07"] and sub.grid_shape is None and sub.lo is None
    mask = np.zeros(24, bool)
    mask[[2, 3]] = True
    assert ps.subset(mask).names == ["p02", "p03"]
    with pytest.raises(IndexError):
        ps.subset([24])
    s = ps.summary()
    assert s["count"] == 24 and s["resolution"] == R and s["dtype"] == "float32"
    assert s["grid"]["shape"] == list(GRID)
    np.testing.assert_allclose(s["bbox"]["lo"], LO, rtol=1e-6)
    np.testing.assert_allclose(s["bbox"]["hi"], HI, rtol=1e-6)
    f = ps.faces.astype(np.float64)
    assert s["radiance"]["min"] == pytest.approx(f.min()) and s["radiance"]["max"] == pytest.approx(f.max())
    assert s["radiance"]["mean"] == pytest.approx(f.mean()) and s["radiance"]["nonfinite"] == 0


def test_iter_chunks_in_memory():
    ps = make_set()
    seen = []
    for start, pos, faces in ps.iter_chunks(5):
        assert len(pos) == len(faces) <= 5
        np.testing.assert_array_equal(faces, ps.faces[start:start + len(faces)])
        seen.append((start, len(pos)))
    assert seen == [(0, 5), (5, 5), (10, 5), (15, 5), (20, 4)]
    assert ps.faces_array() is ps.faces or np.shares_memory(ps.faces_array(), ps.faces)


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("suffix", [".npz", ".zarr"])
def test_roundtrip_exact(tmp_path, dtype, suffix):
    ps = make_set(dtype)
    out = ps.save(tmp_path / f"set{suffix}")
    assert dir_listing(tmp_path) == [f"set{suffix}"]  # no temp left behind
    back = ProbeSet.load(out)
    assert back.source == str(out)
    assert back.positions.dtype == np.float32
    np.testing.assert_array_equal(back.positions, ps.positions)
    fa = back.faces_array()
    assert fa.dtype == dtype
    np.testing.assert_array_equal(fa, ps.faces)
    assert back.grid_shape == GRID
    np.testing.assert_array_equal(back.lo, LO)
    np.testing.assert_array_equal(back.hi, HI)
    assert back.names == ps.names
    assert back.is_lazy == (suffix == ".zarr")


def test_roundtrip_without_grid_or_names(tmp_path):
    ps = make_set(grid=False, names=False)
    for suffix in (".npz", ".zarr"):
        back = ProbeSet.load(ps.save(tmp_path / f"s{suffix}"))
        assert back.grid_shape is None and back.lo is None and back.names is None
        np.testing.assert_array_equal(back.faces_array(), ps.faces)


def test_npz_is_the_plain_interchange_form(tmp_path):
    ps = make_set()
    ps.save(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        assert z["positions"].dtype == np.float32 and z["positions"].shape == (24, 3)
        assert z["faces"].shape == (24, 6, R, R, 3)
        np.testing.assert_array_equal(z["grid_shape"], GRID)
        np.testing.assert_array_equal(z["lo"], LO)


@pytest.mark.parametrize("suffix", [".npz", ".zarr"])
def test_fp16_storage_within_tolerance(tmp_path, suffix):
    ps = make_set(np.float32)
    back = ProbeSet.load(ps.save(tmp_path / f"h{suffix}", dtype=np.float16))
    fa = back.faces_array()
    assert fa.dtype == np.float16
    rel = np.abs(fa.astype(np.float64) - ps.faces) / np.abs(ps.faces)
    assert rel.max() <= constants.FP16_REL_TOL


def test_zarr_lazy_access_and_chunks(tmp_path):
    ps = make_set()
    ps.save(tmp_path / "c.zarr", chunk_probes=5)
    lz = ProbeSet.load(tmp_path / "c.zarr")
    assert isinstance(lz.faces, LazyFaces) and lz.faces.chunk_probes == 5
    assert lz.faces.shape == (24, 6, R, R, 3) and lz.faces.dtype == np.float32
    np.testing.assert_array_equal(lz.faces[3], ps.faces[3])
    np.testing.assert_array_equal(lz.faces[-1], ps.faces[-1])
    np.testing.assert_array_equal(lz.faces[2:9:3], ps.faces[2:9:3])
    np.testing.assert_array_equal(lz.faces[[20, 1, 1]], ps.faces[[20, 1, 1]])
    np.testing.assert_array_equal(lz.faces[4:6, 2, 0], ps.faces[4:6, 2, 0])
    np.testing.assert_array_equal(np.asarray(lz.faces), ps.faces)
    starts = [s for s, _, _ in lz.iter_chunks()]
    assert starts == [0, 5, 10, 15, 20]
    sub = lz.subset([23, 0, 11])
    assert sub.is_lazy
    np.testing.assert_array_equal(sub.faces_array(), ps.faces[[23, 0, 11]])
    eager = ProbeSet.load(tmp_path / "c.zarr", lazy=False)
    assert isinstance(eager.faces, np.ndarray)
    s1, s2 = lz.summary(), ps.summary()
    assert s1["radiance"] == pytest.approx(s2["radiance"]) and s1["count"] == 24 and s1["lazy"]


class _CountingArray:
    """Wraps a zarr array; records the number of probes of every read."""

    def __init__(self, a):
        self.a, self.reads = a, []
        self.shape, self.dtype, self.chunks, self.store_path = a.shape, a.dtype, a.chunks, a.store_path

    def __getitem__(self, key):
        out = self.a[key]
        self.reads.append(len(out))
        return out

    @property
    def oindex(self):
        outer = self

        class _O:
            def __getitem__(self, key):
                out = outer.a.oindex[key]
                outer.reads.append(len(out))
                return out
        return _O()


def test_lazy_validation_and_save_read_chunk_wise(tmp_path):
    """Bounded memory: validate and save never read more than one chunk of a lazy set."""
    make_set().save(tmp_path / "c.zarr", chunk_probes=5)
    lz = ProbeSet.load(tmp_path / "c.zarr", validate=False)
    counting = _CountingArray(lz.faces.array)
    lz.faces = LazyFaces(counting)
    lz.validate()
    lz.save(tmp_path / "d.npz")
    assert counting.reads and max(counting.reads) <= 5
    lz.save(tmp_path / "d.zarr", chunk_probes=3)  # written in the target's chunks
    assert max(counting.reads) <= 5


# ---------------------------------------------------------------------------
# every rejected input
# ---------------------------------------------------------------------------

def _bad(kind):
    """(ProbeSet, validate kwargs, expected field, expected probe) for one bad input."""
    ps = make_set()
    P = ps.n_probes
    f = ps.faces.copy()
    pos = ps.positions.copy()
    if kind == "faces_channels":
        return ProbeSet(pos, np.zeros((P, 6, R, R, 4), np.float32)), {}, "faces", None
    if kind == "faces_five":
        return ProbeSet(pos, np.zeros((P, 5, R, R, 3), np.float32)), {}, "faces", None
    if kind == "faces_not_square":
        return ProbeSet(pos, np.zeros((P, 6, R, R + 1, 3), np.float32)), {}, "faces", None
    if kind == "faces_ndim":
        return ProbeSet(pos, np.zeros((P, 6 * R * R * 3), np.float32)), {}, "faces", None
    if kind == "faces_float64":
        return ProbeSet(pos, f.astype(np.float64)), {}, "faces", None
    if kind == "faces_int":
        return ProbeSet(pos, f.astype(np.int32)), {}, "faces", None
    if kind == "faces_count":
        return ProbeSet(pos, f[:-1]), {}, "faces", None
    if kind == "positions_shape":
        return ProbeSet(pos[:, :2], f), {}, "positions", None
    if kind == "positions_nan":
        pos[3, 1] = np.nan
        return ProbeSet(pos, f), {}, "positions", 3
    if kind == "positions_inf":
        pos[6, 0] = np.inf
        return ProbeSet(pos, f), {}, "positions", 6
    if kind == "empty":
        return ProbeSet(np.zeros((0, 3)), np.zeros((0, 6, R, R, 3), np.float32)), {}, "positions", None
    if kind == "nan_radiance":
        f[5, 2, 1, 3, 0] = np.nan
        return ProbeSet(pos, f, names=ps.names), {}, "faces", 5
    if kind == "posinf_radiance":
        f[2, 0, 0, 0, 2] = np.inf
        return ProbeSet(pos, f, names=ps.names), {}, "faces", 2
    if kind == "neginf_radiance":
        f[11, 5, 3, 3, 1] = -np.inf
        return ProbeSet(pos, f, names=ps.names), {}, "faces", 11
    if kind == "negative_radiance":
        f[7, 4, 2, 2, 1] = -0.5
        f[9, 4, 2, 2, 1] = -0.5
        return ProbeSet(pos, f, names=ps.names), {}, "faces", 7
    if kind == "duplicate":
        diag = float(np.linalg.norm(pos.max(0) - pos.min(0)))
        pos[9] = pos[4] + np.float32(0.3 * constants.DUPLICATE_POSITION_REL_TOL * diag)
        return ProbeSet(pos, f, names=ps.names), {}, "positions", 9
    if kind == "grid_product":
        # more points than probes reads as a sparse grid; probe 1 is off its lattice
        return ProbeSet(pos, f, (2, 3, 5), LO, HI), {}, "grid_shape", 1
    if kind == "grid_len":
        return ProbeSet(pos, f, (6, 4), LO, HI), {}, "grid_shape", None
    if kind == "grid_order_xy":
        xs, ys, zs = (np.linspace(LO[i], HI[i], GRID[i]) for i in range(3))
        X, Y, Z = np.meshgrid(xs, ys, zs, indexing="xy")
        wrong = np.stack([X.ravel(), Y.ravel(), Z.ravel()], -1)
        first = int(np.flatnonzero(np.abs(wrong - pos).max(1) > 0)[0])
        return ProbeSet(wrong, f, GRID, LO, HI), {}, "positions", first
    if kind == "grid_bounds":
        return ProbeSet(pos, f, GRID, LO, HI + 1), {}, "positions", 1
    if kind == "lo_without_grid":
        return ProbeSet(pos, f, None, LO, HI), {}, "grid_shape", None
    if kind == "only_lo":
        return ProbeSet(pos, f, GRID, LO, None), {}, "hi", None
    if kind == "lo_shape":
        return ProbeSet(pos, f, GRID, LO[:2], HI), {}, "lo", None
    if kind == "names_count":
        return ProbeSet(pos, f, names=ps.names[:-1]), {}, "names", None
    if kind == "fp16_overflow":
        f[13, 1, 0, 1, 2] = 1e6
        return ProbeSet(pos, f, names=ps.names), dict(fp16=True), "faces", 13
    raise KeyError(kind)


BAD_KINDS = ["faces_channels", "faces_five", "faces_not_square", "faces_ndim", "faces_float64",
             "faces_int", "faces_count", "positions_shape", "positions_nan", "positions_inf", "empty",
             "nan_radiance", "posinf_radiance", "neginf_radiance", "negative_radiance", "duplicate",
             "grid_product", "grid_len", "grid_order_xy", "grid_bounds", "lo_without_grid", "only_lo",
             "lo_shape", "names_count", "fp16_overflow"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_validate_rejects(kind):
    ps, kw, field, probe = _bad(kind)
    with pytest.raises(ProbeSetError) as ei:
        ps.validate("scene.npz", **kw)
    e = ei.value
    msg = str(e)
    assert e.file == "scene.npz" and msg.startswith("scene.npz: ")
    assert e.field == field and f": {field}: " in msg
    assert e.probe == probe
    if probe is not None:
        assert f"probe {probe}" in msg
        if ps.names is not None:
            assert f"'p{probe:02d}'" in msg
    # the module function is the same check
    with pytest.raises(ProbeSetError):
        validate(ps, "scene.npz", **kw)


@pytest.mark.parametrize("suffix", [".npz", ".zarr"])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_save_rejects_and_writes_nothing(tmp_path, kind, suffix):
    ps, kw, field, probe = _bad(kind)
    target = tmp_path / f"out{suffix}"
    dtype = np.float16 if kw.get("fp16") else None
    with pytest.raises(ProbeSetError) as ei:
        ps.save(target, dtype=dtype)
    assert ei.value.field == field and ei.value.probe == probe
    assert str(target) in str(ei.value)
    assert dir_listing(tmp_path) == []


@pytest.mark.parametrize("suffix", [".npz", ".zarr"])
def test_rejected_save_keeps_existing_target(tmp_path, suffix):
    good = make_set()
    target = good.save(tmp_path / f"keep{suffix}")
    ps, _, _, _ = _bad("nan_radiance")
    with pytest.raises(ProbeSetError):
        ps.save(target)
    assert dir_listing(tmp_path) == [target.name]
    np.testing.assert_array_equal(ProbeSet.load(target).faces_array(), good.faces)


def test_fp16_overflow_on_save(tmp_path):
    ps = make_set()
    ps.faces[17, 3, 1, 1, 0] = 7.0e4
    ps.save(tmp_path / "f32.npz")  # float32 storage holds it
    with pytest.raises(ProbeSetError) as ei:
        ps.save(tmp_path / "f16.zarr", dtype=np.float16)
    e = ei.value
    assert e.probe == 17 and e.name == "p17" and e.field == "faces" and "float16" in str(e)
    assert "f16.zarr" in str(e)
    assert dir_listing(tmp_path) == ["f32.npz"]


def test_duplicate_tolerance_is_relative_to_diagonal():
    ps = make_set()
    diag = float(np.linalg.norm(ps.positions.max(0) - ps.positions.min(0)))
    ps.grid_shape = ps.lo = ps.hi = None
    ps.positions[9] = ps.positions[4] + np.float32(3 * constants.DUPLICATE_POSITION_REL_TOL * diag)
    assert ps.validate().ok  # beyond the tolerance: a distinct probe
    ps.positions[9] = ps.positions[4]
    with pytest.raises(ProbeSetError, match="duplicate of probe 4"):
        ps.validate()


def test_grid_without_bounds_uses_first_and_last_probe():
    ps = make_set()
    ok = ProbeSet(ps.positions, ps.faces, GRID)
    assert ok.validate().ok
    # reversed order is the grid from hi to lo: still a grid
    assert ProbeSet(ps.positions[::-1].copy(), ps.faces, GRID).validate().ok
    swapped = ps.positions.copy()
    swapped[[5, 6]] = swapped[[6, 5]]
    with pytest.raises(ProbeSetError) as ei:
        ProbeSet(swapped, ps.faces, GRID).validate()
    assert ei.value.field == "positions" and ei.value.probe == 5


def test_lazy_validation_finds_problem_in_later_chunk(tmp_path):
    ps = make_set()
    ps.faces[17, 0, 0, 0, 0] = np.nan
    import zarr  # save() would refuse this set: write the store by hand
    g = zarr.open_group(str(tmp_path / "raw.zarr"), mode="w")
    g.create_array("positions", data=ps.positions)
    fa = g.create_array("faces", shape=ps.faces.shape, chunks=(5, 6, R, R, 3), dtype=np.float32)
    fa[...] = ps.faces
    with pytest.raises(ProbeSetError) as ei:
        ProbeSet.load(tmp_path / "raw.zarr")
    e = ei.value
    assert e.probe == 17 and e.field == "faces" and "raw.zarr" in e.file and "NaN" in str(e)


# ---------------------------------------------------------------------------
# sanitising
# ---------------------------------------------------------------------------

def _dirty_set():
    ps = make_set()
    f = ps.faces.copy()
    f[3, 0, 0, 0, 0] = np.nan
    f[3, 1, 0, 0, 0] = np.nan
    f[4, 0, 1, 1, 1] = np.inf
    f[5, 2, 2, 2, 2] = -np.inf
    f[6, 3, 3, 3, 0] = -2.0
    f[8, 0, 0, 0, 0] = 1e5
    pos = ps.positions.copy()
    pos[10] = pos[2]
    pos[20] = pos[2]
    return ProbeSet(pos, f, GRID, LO, HI, names=ps.names), ps


def test_sanitize_repairs_and_reports():
    dirty, clean = _dirty_set()
    f_before = dirty.faces
    snapshot = f_before.copy()
    with pytest.raises(ProbeSetError):  # the grid is broken by the duplicates: structural
        dirty.validate(sanitize=True)
    dirty.grid_shape = dirty.lo = dirty.hi = None
    rep = dirty.validate(sanitize=True, fp16=True)
    assert isinstance(rep, SanitizeReport) and not rep.ok and rep.sanitized
    assert rep.n_in == 24 and rep.n_out == 22
    assert rep.nan_values == 2 and rep.nan_probes.tolist() == [3]
    assert rep.posinf_values == 1 and rep.posinf_probes.tolist() == [4]
    assert rep.negative_values == 2 and rep.negative_probes.tolist() == [5, 6]
    assert rep.fp16_overflow_values == 1 and rep.fp16_overflow_probes.tolist() == [8]
    assert rep.duplicates == [(10, 2), (20, 2)]
    np.testing.assert_array_equal(f_before, snapshot)  # caller's array untouched
    keep = [i for i in range(24) if i not in (10, 20)]
    assert dirty.names == [f"p{i:02d}" for i in keep]
    np.testing.assert_array_equal(dirty.positions, clean.positions[keep])
    f = dirty.faces
    assert f.shape[0] == 22 and np.isfinite(f).all() and (f >= 0).all() and f.max() <= constants.FP16_MAX
    row = keep.index
    assert f[row(3), 0, 0, 0, 0] == 0 and f[row(4), 0, 1, 1, 1] == constants.SANITIZE_POSINF_VALUE
    assert f[row(5), 2, 2, 2, 2] == 0 and f[row(6), 3, 3, 3, 0] == 0
    assert f[row(8), 0, 0, 0, 0] == constants.FP16_MAX
    text = rep.summary()
    for word in ("24 -> 22", "NaN", "+Inf", "negative", "fp16", "duplicate", "10 (same as 2)"):
        assert word in text
    assert rep.as_dict()["duplicates"] == [[10, 2], [20, 2]]
    assert dirty.validate(fp16=True).ok


def test_sanitize_drops_grid_on_degenerate_duplicates():
    pos = ProbeSet.grid([0, 0, 0], [1, 0, 1], (2, 2, 2))  # y axis collapsed: pairs coincide
    ps = ProbeSet(pos, np.ones((8, 6, 2, 2, 3), np.float32), (2, 2, 2), [0, 0, 0], [1, 0, 1])
    with pytest.raises(ProbeSetError, match="duplicate"):
        ps.validate()
    rep = ps.validate(sanitize=True)
    assert rep.grid_dropped and ps.grid_shape is None and ps.n_probes == 4
    assert "grid description dropped" in rep.summary()


def test_sanitize_clean_set_is_a_noop():
    ps = make_set()
    faces = ps.faces
    rep = ps.validate(sanitize=True)
    assert rep.ok and ps.faces is faces and "nothing to repair" in rep.summary()


def test_sanitize_lazy_set_repairs_on_read_and_never_writes_store(tmp_path):
    dirty, _ = _dirty_set()
    dirty.grid_shape = dirty.lo = dirty.hi = None
    import zarr
    g = zarr.open_group(str(tmp_path / "dirty.zarr"), mode="w")
    g.create_array("positions", data=dirty.positions)
    fa = g.create_array("faces", shape=dirty.faces.shape, chunks=(5, 6, R, R, 3), dtype=np.float32)
    fa[...] = dirty.faces
    with pytest.raises(ProbeSetError):
        ProbeSet.load(tmp_path / "dirty.zarr")
    lz = ProbeSet.load(tmp_path / "dirty.zarr", validate=False)
    mem = ProbeSet(dirty.positions, dirty.faces.copy())
    rep_lazy = lz.validate(sanitize=True, fp16=True)
    rep_mem = mem.validate(sanitize=True, fp16=True)
    assert lz.is_lazy and rep_lazy.as_dict() | {"source": ""} == rep_mem.as_dict() | {"source": ""}
    np.testing.assert_array_equal(lz.faces_array(), mem.faces)
    raw = zarr.open_group(str(tmp_path / "dirty.zarr"), mode="r")["faces"][...]
    assert np.isnan(raw).sum() == 2  # the store is untouched
    lz.save(tmp_path / "clean.zarr", dtype=np.float16)
    back = ProbeSet.load(tmp_path / "clean.zarr")
    assert back.n_probes == 22


# ---------------------------------------------------------------------------
# loading errors, atomicity, misc
# ---------------------------------------------------------------------------

def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ProbeSet.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="unknown probe-set format"):
        ProbeSet.load(tmp_path / "x.h5")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ProbeSetError) as ei:
        ProbeSet.load(tmp_path / "junk.npz")
    assert "junk.npz" in str(ei.value)
    np.savez(tmp_path / "nofaces.npz", positions=np.zeros((2, 3), np.float32))
    with pytest.raises(ProbeSetError) as ei:
        ProbeSet.load(tmp_path / "nofaces.npz")
    assert ei.value.field == "faces" and "nofaces.npz" in str(ei.value)
    np.savez(tmp_path / "obj.npz", positions=np.zeros((1, 3), np.float32),
             faces=np.array([None], dtype=object))
    with pytest.raises(ProbeSetError) as ei:
        ProbeSet.load(tmp_path / "obj.npz")
    assert ei.value.field == "faces"
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ProbeSetError) as ei:
        ProbeSet.load(tmp_path / "empty.zarr")
    assert "empty.zarr" in str(ei.value)
    import zarr
    g = zarr.open_group(str(tmp_path / "nopos.zarr"), mode="w")
    g.create_array("faces", data=np.zeros((1, 6, 2, 2, 3), np.float32))
    with pytest.raises(ProbeSetError) as ei:
        ProbeSet.load(tmp_path / "nopos.zarr")
    assert ei.value.field == "positions"


def test_load_validates_by_default(tmp_path):
    ps = make_set()
    f = ps.faces.copy()
    f[12, 0, 0, 0, 0] = -1
    np.savez(tmp_path / "neg.npz", positions=ps.positions, faces=f)
    with pytest.raises(ProbeSetError) as ei:
        ProbeSet.load(tmp_path / "neg.npz")
    assert ei.value.probe == 12 and ei.value.field == "faces" and ei.value.file.endswith("neg.npz")
    loaded = ProbeSet.load(tmp_path / "neg.npz", validate=False)
    assert loaded.validate(sanitize=True).negative_values == 1


def test_save_is_atomic_on_write_failure(tmp_path, monkeypatch):
    good = make_set()
    good.save(tmp_path / "a.npz")
    good.save(tmp_path / "a.zarr", chunk_probes=5)
    other = make_set(seed=1)
    calls = {"n": 0}
    real = psmod._check_block

    def fail_late(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (injected)")
        return real(*a, **k)

    def savez_partial(fh, **kw):
        fh.write(b"PK partial")
        raise OSError("disk full (injected)")

    monkeypatch.setattr(psmod.np, "savez", savez_partial)
    monkeypatch.setattr(psmod, "_check_block", fail_late)
    for name in ("a.npz", "a.zarr", "new.npz", "new.zarr"):
        calls["n"] = 0
        with pytest.raises(OSError, match="injected"):
            other.save(tmp_path / name, chunk_probes=5)
        if name.startswith("a."):
            np.testing.assert_array_equal(ProbeSet.load(tmp_path / name).faces_array(), good.faces)
    assert dir_listing(tmp_path) == ["a.npz", "a.zarr"]
    monkeypatch.undo()
    other.save(tmp_path / "a.zarr")  # replacing a store works
    np.testing.assert_array_equal(ProbeSet.load(tmp_path / "a.zarr").faces_array(), other.faces)
    assert dir_listing(tmp_path) == ["a.npz", "a.zarr"]


def test_save_refusals(tmp_path):
    ps = make_set()
    ps.save(tmp_path / "s.npz")
    with pytest.raises(FileExistsError):
        ps.save(tmp_path / "s.npz", overwrite=False)
    (tmp_path / "notzarr.zarr").mkdir()
    with pytest.raises(FileExistsError):
        ps.save(tmp_path / "notzarr.zarr")
    with pytest.raises(ValueError, match="dtype"):
        ps.save(tmp_path / "t.npz", dtype=np.float64)
    ps.save(tmp_path / "s.zarr")
    lz = ProbeSet.load(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="reads from"):
        lz.save(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="unknown probe-set format"):
        ps.save(tmp_path / "s.bin")


def test_error_pickles_and_formats():
    e = ProbeSetError("bad", file="a.npz", probe=3, name="kitchen", field="faces", line=7)
    assert str(e) == "a.npz:7: probe 3 ('kitchen'): faces: bad"
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) and e2.probe == 3 and isinstance(e2, ValueError)
    assert str(ProbeSetError("x")) == "<memory>: x"


def test_grid_check_tolerates_float32_bounds_far_from_origin():
    lo = np.array([-3.3, 0.1, 1000.7], np.float32)
    hi = np.array([7.9, 0.1, 1004.2], np.float32)
    n = (5, 1, 7)
    pos = ProbeSet.grid(lo, hi, n)
    ps = ProbeSet(pos, np.ones((35, 6, 2, 2, 3), np.float16), n, lo, hi)
    assert ps.validate().ok
    bad = pos.copy()
    bad[8, 2] += 0.5  # half a spacing off
    with pytest.raises(ProbeSetError) as ei:
        ProbeSet(bad, ps.faces, n, lo, hi).validate()
    assert ei.value.probe == 8


def test_zarr_chunks_are_bounded_in_bytes(tmp_path, monkeypatch):
    ps = make_set()
    per_probe = 6 * R * R * 3 * 4
    monkeypatch.setattr(config, "ZARR_CHUNK_MAX_BYTES", 3 * per_probe)
    ps.save(tmp_path / "b.zarr")
    assert ProbeSet.load(tmp_path / "b.zarr").faces.chunk_probes == 3


def test_sparse_grid_validates_and_rejects_shared_points():
    """A sparse grid: fewer probes than lattice points, each on its own point, any order."""
    pos = ProbeSet.grid(LO, HI, GRID)
    f = np.ones((len(pos), 6, 2, 2, 3), np.float32)
    keep = np.array([0, 3, 5, 6, 11, 17, 23])[::-1]
    ps = ProbeSet(pos[keep], f[keep], GRID, LO, HI)
    ps.validate("sparse.npz")
    assert ps.grid_dense is False
    assert ProbeSet(pos, f, GRID, LO, HI).grid_dense is True
    twice = ProbeSet(pos[[0, 3, 3]] + np.float32(1e-7), f[:3], GRID, LO, HI)
    with pytest.raises(ProbeSetError, match="share the lattice point") as ei:
        twice.validate("sparse.npz")
    assert ei.value.field == "positions"
