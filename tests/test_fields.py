"""The benchmark probe field (benchmarks/fields.py): a valid, HDR, parallax-rich
grid set, the same whether made in memory or streamed into a zarr store."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from probewarp.baker.metrics import per_probe_mse
from probewarp.baker.probeset import ProbeSet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fields  # noqa: E402

R = 8


@pytest.fixture(scope="module")
def grid_set():
    return fields.field_probes((10, 5, 8), R)


def test_set_validates_in_lattice_order(grid_set):
    ps = grid_set
    assert ps.faces.shape == (400, 6, R, R, 3) and ps.faces.dtype == np.float16
    ps.validate()
    assert ps.grid_shape == (10, 5, 8) and ps.grid_dense
    np.testing.assert_array_equal(ps.positions, ProbeSet.grid(fields.GRID_LO, fields.GRID_HI, (10, 5, 8)))


def test_hdr_range(grid_set):
    f = grid_set.faces.astype(np.float32)
    assert f.min() >= 0 and np.isfinite(f).all()
    assert f.max() / np.median(f) > 10
    assert f.max() > 30                      # the lamp and the sun glow are seen directly


def test_faces_follow_the_cubemap_convention():
    # below the lamp's centre: +Y (face 2) looks at the lamp, -Y (face 3) at the floor
    lamp_c = [(fields.LAMP_RECT[0] + fields.LAMP_RECT[1]) / 2, 2.0,
              (fields.LAMP_RECT[2] + fields.LAMP_RECT[3]) / 2]
    # in room B facing the window: +X (face 0) sees the sky
    window = [11.5, (fields.WINDOW_RECT[0] + fields.WINDOW_RECT[1]) / 2,
              (fields.WINDOW_RECT[2] + fields.WINDOW_RECT[3]) / 2]
    f = fields.Field(0).render(np.array([lamp_c, window]), R)
    c = slice(R // 2 - 1, R // 2 + 1)
    np.testing.assert_allclose(f[0, 2, c, c], np.broadcast_to(fields.LAMP_RADIANCE, (2, 2, 3)), rtol=1e-6)
    assert f[0, 3, c, c].max() < 5
    # row 0 looks up (DESIGN-NOTES §1: +X texel (s, t) looks along (1, -tc, -sc)):
    # the sky above the horizon, the ground below it
    assert f[1, 0, R // 2 - 1, c].min() > fields.SKY_ZENITH.min()
    assert f[1, 0, R // 2, c].max() < fields.SKY_ZENITH.min()


def test_streamed_zarr_equals_in_memory(tmp_path):
    shape, lo, hi = (4, 3, 5), (1.0, 0.5, 1.0), (10.0, 3.5, 7.0)
    calls = []
    path = fields.write_field_zarr(tmp_path / "f.zarr", shape, R, lo=lo, hi=hi, chunk_probes=7,
                                   block_probes=11, seed=3, progress=lambda d, t: calls.append((d, t)))
    z = ProbeSet.load(path)                  # validates
    m = fields.field_probes(shape, R, lo=lo, hi=hi, seed=3)
    assert z.is_lazy and z.faces.chunk_probes == 7
    np.testing.assert_array_equal(z.positions, m.positions)
    np.testing.assert_array_equal(z.faces_array(), m.faces)
    assert z.grid_shape == shape
    np.testing.assert_array_equal(z.lo, lo)
    np.testing.assert_array_equal(z.hi, hi)
    assert calls[-1] == (60, 60) and len(calls) == 6


def test_seed_is_deterministic_and_matters():
    a = fields.field_probes((3, 2, 3), R, seed=1).faces
    b = fields.field_probes((3, 2, 3), R, seed=1).faces
    c = fields.field_probes((3, 2, 3), R, seed=2).faces
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_neighbours_differ_by_parallax():
    """Within a room, probes differ more the farther apart they are (along
    every axis, on average, spacings about 0.4-0.5 m), and nearest neighbours
    already differ: nearby geometry, not a distant environment."""
    shape = (8, 5, 8)
    ps = fields.field_probes(shape, R, lo=(1.0, 0.8, 2.5), hi=(4.5, 3.0, 6.5))
    f = ps.faces.astype(np.float32).reshape(*shape, 6, R, R, 3)
    for axis in range(3):
        d = []
        for k in (1, 2, 4):
            a = np.take(f, np.arange(f.shape[axis] - k), axis=axis).reshape(-1, 6, R, R, 3)
            b = np.take(f, np.arange(k, f.shape[axis]), axis=axis).reshape(-1, 6, R, R, 3)
            d.append(per_probe_mse(a, b).mean())
        assert 0 < d[0] < d[1] < d[2] and d[2] > 2 * d[0], (axis, d)
