"""Streaming probe-set writer (probewarp.baker.probewriter) and streamed capture
(probewarp.capture.capturer.capture_grid_to_store, `probewarp capture ... .zarr`).

The writer's store must be the store ``ProbeSet.save(... .zarr)`` writes, array
for array; it appears atomically (nothing at the path on any failure, an
existing store there untouched); memory is bounded by a block, not by the set.
"""
from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from probewarp.baker.probeset import ProbeSet
from probewarp.baker.probewriter import ZarrProbeWriter, default_chunk_probes
from probewarp.baker.validation import ProbeSetError

GRID = (4, 3, 5)
LO = np.array([0.0, 1.0, -2.0])
HI = np.array([3.0, 2.5, 6.0])
R = 4


def _set(dtype=np.float32, seed=0, names=False):
    pos = ProbeSet.grid(LO, HI, GRID)
    rng = np.random.default_rng(seed)
    faces = (rng.random((len(pos), 6, R, R, 3)) * 50).astype(dtype)
    nm = [f"p{i}" for i in range(len(pos))] if names else None
    return ProbeSet(pos, faces, GRID, LO, HI, names=nm)


def _zarr_arrays(path):
    import zarr
    g = zarr.open_group(str(path), mode="r")
    out = {k: g[k] for k in g.array_keys()}
    return dict(g.attrs), out


def _assert_same_store(a, b):
    """Same group attributes and, per array, same metadata (shape, chunks,
    dtype, codecs, fill value) and the same values."""
    attrs_a, arr_a = _zarr_arrays(a)
    attrs_b, arr_b = _zarr_arrays(b)
    assert attrs_a == attrs_b
    assert sorted(arr_a) == sorted(arr_b)
    for k in arr_a:
        assert arr_a[k].metadata == arr_b[k].metadata, k
        np.testing.assert_array_equal(arr_a[k][...], arr_b[k][...], err_msg=k)


def _siblings(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


# ----------------------------------------------------------------- layout
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("names", [False, True])
def test_store_equals_probeset_save(tmp_path, dtype, names):
    ps = _set(np.float32, names=names)
    ps.save(tmp_path / "saved.zarr", dtype=dtype, chunk_probes=16)
    with ZarrProbeWriter(tmp_path / "streamed.zarr", ps.positions, R, dtype=dtype, grid_shape=GRID,
                         lo=LO, hi=HI, names=ps.names, chunk_probes=16) as w:
        assert w.chunk_probes == 16
        for start in range(0, ps.n_probes, 16):
            w.write(start, ps.faces[start:start + 16])
    _assert_same_store(tmp_path / "saved.zarr", tmp_path / "streamed.zarr")
    got = ProbeSet.load(tmp_path / "streamed.zarr")
    assert got.grid_shape == GRID and got.names == ps.names and got.faces.dtype == dtype
    np.testing.assert_array_equal(got.positions, ps.positions)
    np.testing.assert_array_equal(got.lo, LO)
    np.testing.assert_array_equal(got.faces_array(), ps.faces.astype(dtype))
    assert _siblings(tmp_path) == ["saved.zarr", "streamed.zarr"]      # no temporary left


def test_default_chunks_match_save(tmp_path):
    ps = _set(np.float16)
    ps.save(tmp_path / "saved.zarr")
    with ZarrProbeWriter(tmp_path / "streamed.zarr", ps.positions, R, grid_shape=GRID, lo=LO, hi=HI) as w:
        assert w.chunk_probes == min(default_chunk_probes(R), ps.n_probes)
        w.write(0, ps.faces)
    _assert_same_store(tmp_path / "saved.zarr", tmp_path / "streamed.zarr")


def test_blocks_out_of_chunk_alignment(tmp_path):
    """Any block sizes, across chunk boundaries, the last chunk short: same store."""
    ps = _set(np.float32)
    P = ps.n_probes                                                      # 60, chunks of 16
    ps.save(tmp_path / "saved.zarr", dtype=np.float16, chunk_probes=16)
    cuts = [0, 1, 7, 16, 17, 40, 41, 48, 59, P]
    with ZarrProbeWriter(tmp_path / "streamed.zarr", ps.positions, R, grid_shape=GRID, lo=LO, hi=HI,
                         chunk_probes=16) as w:
        for a, b in zip(cuts[:-1], cuts[1:]):
            w.write(a, ps.faces[a:b])
            assert w.n_written == b
    _assert_same_store(tmp_path / "saved.zarr", tmp_path / "streamed.zarr")


def test_scattered_set_without_grid(tmp_path):
    rng = np.random.default_rng(1)
    pos = rng.random((10, 3)).astype(np.float32)
    faces = rng.random((10, 6, R, R, 3)).astype(np.float32)
    ProbeSet(pos, faces).save(tmp_path / "saved.zarr", dtype=np.float32)
    with ZarrProbeWriter(tmp_path / "streamed.zarr", pos, R, dtype=np.float32) as w:
        w.write(0, faces[:3])
        w.write(3, faces[3:])
    _assert_same_store(tmp_path / "saved.zarr", tmp_path / "streamed.zarr")


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize("value,kind", [(np.nan, "NaN"), (-0.5, "negative"), (np.inf, "+Inf"),
                                        (70000.0, "float16 maximum")])
def test_bad_block_raises_naming_the_probe_and_writes_nothing(tmp_path, value, kind):
    ps = _set(np.float32)
    target = tmp_path / "s.zarr"
    old = _set(np.float16, seed=5)
    old.save(target)                                  # an existing store: must stay as it was
    before = old.faces.copy()
    bad = 37
    faces = ps.faces.copy()
    faces[bad, 2, 1, 3, 1] = value
    with pytest.raises(ProbeSetError) as ei:
        with ZarrProbeWriter(target, ps.positions, R, grid_shape=GRID, lo=LO, hi=HI, chunk_probes=16) as w:
            for start in range(0, ps.n_probes, 16):
                w.write(start, faces[start:start + 16])
    e = ei.value
    msg = str(e)
    assert e.probe == bad and e.field == "faces" and e.file == str(target)
    assert f"probe {bad}" in msg and kind in msg and str(target) in msg, msg
    assert str(ps.positions[bad].tolist()) in msg, msg                 # its position
    assert "face +Y, row 1, column 3, channel G" in msg, msg
    assert _siblings(tmp_path) == ["s.zarr"]                           # temporary removed
    kept = ProbeSet.load(target)
    np.testing.assert_array_equal(kept.faces_array(), before)


def test_bad_block_without_with_aborts_the_writer(tmp_path):
    ps = _set(np.float32)
    w = ZarrProbeWriter(tmp_path / "s.zarr", ps.positions, R, grid_shape=GRID, lo=LO, hi=HI)
    faces = ps.faces[:10].copy()
    faces[4, 0, 0, 0, 0] = np.nan
    with pytest.raises(ProbeSetError, match="probe 4"):
        w.write(0, faces)
    assert w.closed and _siblings(tmp_path) == []
    with pytest.raises(ValueError, match="closed"):
        w.write(0, ps.faces[:10])


def test_incomplete_close_raises_and_leaves_nothing(tmp_path):
    ps = _set(np.float32)
    target = tmp_path / "s.zarr"
    with pytest.raises(ValueError, match="only 40 of 60 probes"):
        with ZarrProbeWriter(target, ps.positions, R, grid_shape=GRID, lo=LO, hi=HI, chunk_probes=16) as w:
            w.write(0, ps.faces[:40])
    assert _siblings(tmp_path) == []
    # an explicit close() too, and over an existing store (left untouched)
    old = _set(np.float16, seed=5)
    old.save(target)
    w = ZarrProbeWriter(target, ps.positions, R, grid_shape=GRID, lo=LO, hi=HI, chunk_probes=16)
    w.write(0, ps.faces[:7])
    with pytest.raises(ValueError, match="only 7 of 60"):
        w.close()
    assert _siblings(tmp_path) == ["s.zarr"]
    np.testing.assert_array_equal(ProbeSet.load(target).faces_array(), old.faces)


def test_exception_inside_with_leaves_nothing(tmp_path):
    ps = _set(np.float32)
    with pytest.raises(KeyboardInterrupt):
        with ZarrProbeWriter(tmp_path / "s.zarr", ps.positions, R, grid_shape=GRID, lo=LO, hi=HI) as w:
            w.write(0, ps.faces[:20])
            raise KeyboardInterrupt
    assert _siblings(tmp_path) == []


def test_order_shape_and_overrun_are_errors(tmp_path):
    ps = _set(np.float32)
    for call in (lambda w: w.write(5, ps.faces[5:10]),                      # gap
                 lambda w: w.write(0, ps.faces[:10, :, :2]),                # wrong shape
                 lambda w: w.write(0, ps.faces[:10].astype(np.int32)),      # not float
                 lambda w: w.write(0, np.concatenate([ps.faces, ps.faces[:1]]))):  # too many
        w = ZarrProbeWriter(tmp_path / "s.zarr", ps.positions, R, grid_shape=GRID, lo=LO, hi=HI)
        with pytest.raises(ValueError):
            call(w)
        assert w.closed and _siblings(tmp_path) == []
    w = ZarrProbeWriter(tmp_path / "s.zarr", ps.positions, R, grid_shape=GRID, lo=LO, hi=HI)
    w.write(0, ps.faces[:10])
    with pytest.raises(ValueError, match="expected 10"):
        w.write(0, ps.faces[:10])                                          # rewrite
    assert _siblings(tmp_path) == []


def test_positions_and_target_checked_before_anything_is_written(tmp_path):
    ps = _set(np.float32)
    dup = ps.positions.copy()
    dup[9] = dup[3]
    with pytest.raises(ProbeSetError, match="duplicate of probe 3"):
        ZarrProbeWriter(tmp_path / "s.zarr", dup, R)
    with pytest.raises(ProbeSetError, match="grid point"):
        ZarrProbeWriter(tmp_path / "s.zarr", ps.positions[::-1], R, grid_shape=GRID, lo=LO, hi=HI)
    assert _siblings(tmp_path) == []
    (tmp_path / "s.zarr").mkdir()                                          # not a zarr store
    with pytest.raises(FileExistsError):
        ZarrProbeWriter(tmp_path / "s.zarr", ps.positions, R)
    ps.save(tmp_path / "t.zarr")
    with pytest.raises(FileExistsError):
        ZarrProbeWriter(tmp_path / "t.zarr", ps.positions, R, overwrite=False)
    with pytest.raises(ValueError, match=".zarr"):
        ZarrProbeWriter(tmp_path / "t.npz", ps.positions, R)
    assert _siblings(tmp_path) == ["s.zarr", "t.zarr"]


# ---------------------------------------------------------------- memory
def test_peak_memory_is_bounded_by_a_block(tmp_path):
    """20k probes at R = 4 in blocks of 256: while blocks are written, numpy's
    traced allocations peak at a few blocks (the writer holds at most a block
    and a chunk); opening the writer costs a few times the positions (the
    grid and duplicate checks of a save), nothing of the faces; both far
    below the set's 11.5 MB."""
    P, B = 20_000, 256
    gs, lo, hi = (50, 20, 20), [0, 0, 0], [1, 1, 1]
    pos = ProbeSet.grid(lo, hi, gs)
    assert len(pos) == P
    block = np.random.default_rng(0).random((B, 6, R, R, 3)).astype(np.float32)
    set_bytes = P * block[0].nbytes // 2                                 # stored float16
    ZarrProbeWriter(tmp_path / "warm.zarr", pos[:10], R).abort()        # imports zarr, scipy: not traced
    tracemalloc.start()
    try:
        w = ZarrProbeWriter(tmp_path / "m.zarr", pos, R, grid_shape=gs, lo=lo, hi=hi)
        _, open_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with w:
            for start in range(0, P, B):
                w.write(start, block[:min(B, P - start)])
        _, write_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert write_peak < 3 * block.nbytes, (write_peak, block.nbytes)     # < 0.9 MB
    assert open_peak < 16 * pos.nbytes, (open_peak, pos.nbytes)          # < 3.8 MB
    assert max(open_peak, write_peak) < set_bytes / 3
    got = ProbeSet.load(tmp_path / "m.zarr")
    assert got.n_probes == P
    np.testing.assert_array_equal(got.faces[P - 1], block[(P - 1) % B].astype(np.float16))


# --------------------------------------------------------------- capture
def test_streamed_capture_equals_in_memory_capture(gl, tmp_path):
    """4 x 2 x 4 grid of the built-in town at R = 4: the store streamed pass by
    pass equals capture_grid(...).save(...) array for array. Exactly: the same
    batch (8 probes, one chunk) renders the same passes. (A different batch
    would differ by a few ulps of edge coverage: see capturer's notes.)"""
    from probewarp.capture.capturer import capture_grid, capture_grid_to_store
    from probewarp.capture.scene import Scene

    scene = Scene.builtin(seed=0)
    lo, hi = Scene.builtin_grid()
    n = (4, 2, 4)
    calls = []
    ref = capture_grid(scene, lo, hi, n, R, supersample=2, ctx=gl, batch=8)
    for dtype in (np.float32, np.float16):
        ref.save(tmp_path / "ref.zarr", dtype=dtype, chunk_probes=8)
        out = capture_grid_to_store(scene, lo, hi, n, R, tmp_path / "stream.zarr", supersample=2,
                                    ctx=gl, batch=12, dtype=dtype, chunk_probes=8,
                                    progress=lambda d, t: calls.append((d, t)))
        assert out == tmp_path / "stream.zarr"
        _assert_same_store(tmp_path / "ref.zarr", out)
        got = ProbeSet.load(out)
        assert got.grid_shape == n and got.faces.chunk_probes == 8
        np.testing.assert_array_equal(got.faces_array(), ref.faces.astype(dtype))
    # batch 12 rounded down to whole chunks of 8: passes of 8 probes
    assert calls[:4] == [(8, 32), (16, 32), (24, 32), (32, 32)]
    assert _siblings(tmp_path) == ["ref.zarr", "stream.zarr"]


def test_cli_capture_streams_into_zarr(tmp_path, in_terminal):
    """`probewarp capture ... -o X.zarr` streams (float16 by default), shows
    the bar with its rate on a terminal, and the store loads as the grid."""
    pytest.importorskip("trimesh")
    out = tmp_path / "c.zarr"
    cmd = [sys.executable, "-m", "probewarp.cli.main", "capture", "builtin", "--n", "2", "2", "3",
           "--res", "4", "--supersample", "1", "-o", str(out)]
    rc, shown = in_terminal(cmd, timeout=300)
    if rc == 4 and "EGL" in shown:
        pytest.skip(f"no headless GL here: {shown[-300:]}")
    assert rc == 0, shown
    assert "capture" in shown and "100%" in shown and ("probe/s" in shown or "s/probe" in shown), shown
    assert "captured 12 probes at R=4 (float16)" in shown and "probes/s" in shown, shown
    ps = ProbeSet.load(out)
    assert ps.is_lazy and ps.grid_shape == (2, 2, 3) and ps.faces.dtype == np.float16
    assert _siblings(tmp_path) == ["c.zarr"]
    # a suffix that is neither: bad input before anything is rendered
    r = subprocess.run(cmd[:-1] + [str(tmp_path / "c.h5")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and ".zarr" in r.stderr, r.stderr
    assert _siblings(tmp_path) == ["c.zarr"]
