"""The cubemap convention (DESIGN-NOTES §1) against the plain-numpy oracle."""
import numpy as np
import pytest

from probewarp.baker import cubemap as cm
from probewarp.baker import warp
import naive


@pytest.mark.parametrize("R", [1, 2, 5, 8])
def test_texel_directions_match_design_table(R):
    np.testing.assert_allclose(cm.texel_directions(R), naive.naive_all_directions(R), atol=1e-12)


@pytest.mark.parametrize("R", [3, 8])
def test_direction_to_texel_is_inverse(R):
    d = cm.texel_directions(R)
    face, s, t = cm.direction_to_face_st(d)
    assert (face == np.arange(6)[:, None, None]).all()
    np.testing.assert_allclose(s * R - 0.5, np.broadcast_to(np.arange(R), (6, R, R)), atol=1e-12)
    np.testing.assert_allclose(t * R - 0.5, np.broadcast_to(np.arange(R)[:, None], (6, R, R)), atol=1e-12)
    for n in np.random.default_rng(0).integers(0, 6 * R * R, 20):
        f, tt, ss = np.unravel_index(n, (6, R, R))
        nf, ns, nt = naive.naive_direction_to_texel(d[f, tt, ss], R)
        assert (nf, round(ns, 9), round(nt, 9)) == (f, ss, tt)


def test_solid_angles():
    # midpoint rule: relative error about 0.25 / R^2
    for R, tol in ((4, 2e-2), (16, 1.5e-3)):
        w = cm.texel_solid_angles(R)
        assert abs(w.sum() / (4 * np.pi) - 1) < tol
        np.testing.assert_allclose(cm.texel_weights(R), naive.naive_solid_angle_weights(R), rtol=1e-12)


@pytest.mark.parametrize("R", [1, 2, 4, 7])
def test_seamless_bilinear_matches_oracle(R):
    rng = np.random.default_rng(R)
    faces = rng.random((6, R, R, 3))
    dirs = rng.normal(size=(3000, 3))
    # include directions exactly at edges and corners
    dirs[:8] = np.array([[1, 1, 1], [1, -1, 1], [-1, 1, -1], [1, 1, 0], [0, 1, -1], [1, 0, 1], [-1, -1, -1], [1, 0, 0]])
    np.testing.assert_allclose(cm.sample_cube(faces, dirs), naive.naive_sample_cube(faces, dirs), atol=1e-12)


def test_texel_centres_return_texels_and_constant_is_exact():
    R = 6
    faces = np.random.default_rng(3).random((6, R, R, 2))
    np.testing.assert_allclose(cm.sample_cube(faces, cm.texel_directions(R)), faces, atol=1e-12)
    ones = np.full((6, R, R, 1), 2.5)
    np.testing.assert_allclose(cm.sample_cube(ones, np.random.default_rng(4).normal(size=(500, 3))), 2.5, atol=1e-12)


def test_sampling_is_continuous_across_edges():
    """Seamless: a field sampled across every edge has no jumps larger than
    one texel's worth of variation of a smooth function."""
    R = 16
    d = cm.texel_directions(R)
    faces = (d[..., :1] * 0.5 + d[..., 1:2] ** 2)  # smooth in direction
    a = np.linspace(0, 2 * np.pi, 4000)
    for axis in range(3):
        ring = np.zeros((a.size, 3))
        ring[:, axis] = np.cos(a)
        ring[:, (axis + 1) % 3] = np.sin(a)
        ring[:, (axis + 2) % 3] = 0.3
        v = cm.sample_cube(faces, ring)[:, 0]
        assert np.abs(np.diff(v)).max() < 0.05


def test_downsample_and_resample():
    R = 8
    faces = np.random.default_rng(5).random((6, R, R, 3)).astype(np.float32)
    small = cm.downsample_box(faces, 4)
    np.testing.assert_allclose(small[2, 1, 0], faces[2, 4:8, 0:4].mean(axis=(0, 1)), rtol=1e-6)
    # resampling a smooth function to a non-integer ratio stays close to it
    d12 = cm.texel_directions(12)
    smooth = (1.0 + d12[..., :3] ** 2 * [1, 2, 3]).astype(np.float32)
    r5 = cm.resample_cube(smooth, 5)
    d5 = cm.texel_directions(5)
    np.testing.assert_allclose(r5, 1.0 + d5 ** 2 * [1, 2, 3], atol=0.12)
    with pytest.raises(ValueError):
        cm.downsample_box(faces, 3)


def test_warp_matches_oracle_and_invariants():
    rng = np.random.default_rng(7)
    n = 400
    x = rng.normal(size=(n, 3)) * 3
    c = rng.normal(size=(n, 3))
    rho = rng.uniform(0.5, 6.0, n)       # many rays start outside their sphere: misses covered
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    got = warp.warp_directions(x, c, rho, d)
    ref = np.array([naive.naive_warp_direction(x[i], c[i], rho[i], d[i]) for i in range(n)])
    np.testing.assert_allclose(got, ref, atol=1e-12)
    # at its own centre, and with rho -> inf, the warp is the identity
    np.testing.assert_allclose(warp.warp_directions(c, c, rho, d), d, atol=1e-12)
    np.testing.assert_allclose(warp.warp_directions(x, c, np.inf, d), d, atol=0)
    np.testing.assert_allclose(warp.warp_directions(x, c, 1e9, d), d, atol=1e-8)
    # scalar kernel agrees after normalising
    for i in range(20):
        o = x[i] - c[i]
        s = np.array(warp._warp_dir(o[0], o[1], o[2], rho[i], d[i, 0], d[i, 1], d[i, 2]))
        assert np.linalg.norm(s) >= rho[i] * (1 - 1e-12)
        np.testing.assert_allclose(s / np.linalg.norm(s), ref[i], atol=1e-12)
