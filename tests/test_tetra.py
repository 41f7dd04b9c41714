"""Tetrahedral interpolation of scattered probes (baker/tetra.py) against the
brute-force oracle of tests/naive.py: weights sum to 1, are exact at the
probes, continuous across tetrahedron faces and the hull; degenerate sets
fall back as documented; the CPU decoder of a scattered archive uses it."""
import numpy as np
import pytest

import naive
from probewarp.baker.tetra import Tetrahedra

#: Barycentric weights: float64 solves of well-shaped random tetrahedra.
WEIGHT_TOL = 1e-9


def _cloud(n=40, seed=0):
    return np.random.default_rng(seed).random((n, 3)) * [6.0, 2.0, 4.0]


def _dense(t, ids, w, P):
    out = np.zeros((ids.shape[0], P))
    np.add.at(out, (np.arange(ids.shape[0])[:, None].repeat(ids.shape[1], 1), ids), w)
    return out


def test_weights_against_the_brute_force_oracle():
    p = _cloud()
    t = Tetrahedra(p)
    assert t.mode == "tetrahedra"
    rng = np.random.default_rng(1)
    q = np.concatenate([rng.random((60, 3)) * [6.0, 2.0, 4.0],                 # mostly inside
                        rng.random((40, 3)) * [12.0, 6.0, 10.0] - [3.0, 2.0, 3.0]])   # many outside
    ids, w = t.weights(q)
    got = _dense(t, ids, w, len(p))
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=WEIGHT_TOL)
    assert (got >= -WEIGHT_TOL).all()
    hull = t.hull
    for k in range(len(q)):
        want = np.zeros(len(p))
        for i, v in naive.naive_tetra_weights(p, t.tri.simplices, hull, q[k]).items():
            want[i] += v
        np.testing.assert_allclose(got[k], want, atol=1e-7, err_msg=f"query {k}: {q[k]}")


def test_exact_at_probes_and_reproduces_linear_functions_inside():
    p = _cloud(seed=2)
    t = Tetrahedra(p)
    ids, w = t.weights(p)
    np.testing.assert_allclose(_dense(t, ids, w, len(p)), np.eye(len(p)), atol=WEIGHT_TOL)
    # barycentric weights reproduce any linear function inside the hull
    q = p[t.tri.simplices[:20]].mean(axis=1)
    ids, w = t.weights(q)
    f = p @ np.array([0.3, -1.2, 2.0]) + 0.7
    np.testing.assert_allclose(np.sum(w * f[ids], axis=1), q @ np.array([0.3, -1.2, 2.0]) + 0.7, atol=1e-9)


def test_continuous_across_faces_and_the_hull():
    p = _cloud(seed=3)
    t = Tetrahedra(p)
    rng = np.random.default_rng(4)

    def jump(c, n, eps):
        a = _dense(t, *t.weights((c + eps * n)[None]), len(p))
        b = _dense(t, *t.weights((c - eps * n)[None]), len(p))
        return float(np.abs(a - b).max())

    # a continuous rule: the difference across a face shrinks with the nudge
    # (about linearly, by the tetrahedra's gradients); a jump would not
    def check(c, n):
        big, small = jump(c, n, 1e-6), jump(c, n, 1e-8)
        assert big < 0.05 and small <= big / 20 + 1e-10, (big, small)

    for s in t.tri.simplices[:30]:                 # interior faces (and some hull faces)
        n = np.cross(p[s[1]] - p[s[0]], p[s[2]] - p[s[0]])
        check(p[s[:3]].mean(axis=0), n / np.linalg.norm(n))
    for f in t.hull[rng.choice(len(t.hull), 20, replace=False)]:   # the hull, in and out
        n = np.cross(p[f[1]] - p[f[0]], p[f[2]] - p[f[0]])
        check(p[f].mean(axis=0), n / np.linalg.norm(n))
    # along a segment through the set and out of the hull: where the weights
    # change most between samples, sampling 1000x finer shrinks the change (no jump)
    x = np.linspace(-2, 8, 2001)
    q = np.stack([x, np.full_like(x, 1.0), np.full_like(x, 2.0)], 1)
    d = _dense(t, *t.weights(q), len(p))
    step = np.abs(np.diff(d, axis=0)).max(axis=1)
    for k in np.argsort(step)[-3:]:
        xf = np.linspace(x[k], x[k + 1], 1001)
        qf = np.stack([xf, np.full_like(xf, 1.0), np.full_like(xf, 2.0)], 1)
        fine = np.abs(np.diff(_dense(t, *t.weights(qf), len(p)), axis=0)).max()
        assert fine <= step[k] / 100 + 1e-12, (k, step[k], fine)


@pytest.mark.parametrize("kind", ["plane", "line", "single", "two"])
def test_degenerate_sets_fall_back_as_documented(kind):
    rng = np.random.default_rng(5)
    if kind == "plane":
        p = np.concatenate([rng.random((20, 2)) * 4, np.full((20, 1), 1.5)], 1)
    elif kind == "line":
        s = rng.random(10) * 5
        p = np.stack([s, 2 * s + 1, -s], 1)
    elif kind == "single":
        p = np.array([[1.0, 2.0, 3.0]])
    else:
        p = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    t = Tetrahedra(p)
    assert t.mode == {"plane": "plane", "line": "line", "single": "single", "two": "line"}[kind]
    q = rng.random((50, 3)) * 8 - 2
    ids, w = t.weights(np.concatenate([q, p]))
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    assert (w >= 0).all() and (ids < len(p)).all()
    d = _dense(t, ids[50:], w[50:], len(p))
    np.testing.assert_allclose(d, np.eye(len(p)), atol=1e-9)              # exact at the probes
    if kind == "plane":                                                     # queries off the plane: projected
        a = _dense(t, *t.weights(q), len(p))
        q2 = q.copy()
        q2[:, 2] = 1.5
        np.testing.assert_allclose(a, _dense(t, *t.weights(q2), len(p)), atol=1e-12)


def test_scattered_archive_decodes_with_the_tetrahedral_rule(tmp_path):
    from probewarp.baker.decoder import Decoder
    from probewarp.baker.pipeline import bake_probeset
    from probewarp.baker.probeset import ProbeSet
    from probewarp.format.archive import ArchiveReader
    from test_scale import field
    g, faces = field((6, 2, 6), R=4)
    rng = np.random.default_rng(6)
    pos = g + rng.normal(0, 0.05, g.shape)                                  # jittered: not a lattice
    ps = ProbeSet(positions=pos.astype(np.float32), faces=faces)
    r = bake_probeset(ps, tmp_path / "s.pwa", n_prototypes=10, n_taps=3, n_iter=1, seed=1)
    assert r.lattice_detected is None
    with ArchiveReader(tmp_path / "s.pwa") as ar:
        assert ar.meta["interpolation"] == "tetrahedral" and ar.meta.get("grid") is None
    dec = Decoder(tmp_path / "s.pwa")
    t = Tetrahedra(dec.positions)
    q = pos.min(0) + rng.random((15, 3)) * (pos.max(0) - pos.min(0) + 1.0)
    ids, w = dec.pw_find_probes(q)
    i4, w4 = t.weights(q)
    np.testing.assert_array_equal(ids[:, :4], i4)
    np.testing.assert_allclose(w[:, :4], w4)
    assert (w[:, 4:] == 0).all()
    # at a probe the decode is that probe's own code
    k = 7
    np.testing.assert_allclose(dec.decode(dec.positions[k:k + 1]),
                               dec.pw_radiance((dec.codes_idx[k:k + 1], dec.codes_w[k:k + 1]),
                                               dec.positions[k:k + 1], _dirs(4)).reshape(1, 6, 4, 4, 3),
                               rtol=1e-5, atol=1e-6)


def _dirs(R):
    from probewarp.baker.cubemap import texel_directions
    return texel_directions(R).reshape(-1, 3)
