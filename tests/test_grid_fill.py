"""Sparse grids' fill rule (meta ``interpolation: trilinear-axis-fill``,
format/grid.py ``axis_fill``, GLSL ``PW_GRID_FILL``): an absent corner passes
its trilinear weight to its present axis neighbours (1/step^2 of their
axis). Checked against the brute-force oracle of tests/naive.py, for
continuity (at missing lattice points too, where the old rule jumped), on
the GPU against the CPU, and for old archives keeping the old rule.

Tolerances: WEIGHT_TOL 1e-12 (float64 sums of the same terms); STENCIL_TOL
2e-5 (GLSL float32 weights; measured 3.6e-7); decodes PARITY_TOL.
"""
import numpy as np
import pytest

import naive
from probewarp.baker.decoder import Decoder
from probewarp.baker.metrics import tonemap
from probewarp.format.archive import write_archive
from probewarp.format.constants import GRID_FILL_RULE
from synth import make_archive
from tolerances import PARITY_TOL

WEIGHT_TOL = 1e-12
STENCIL_TOL = 2e-5


def fill_archive(tmp_path, keep, seed=3, name="f.pwa", rule=GRID_FILL_RULE, **kw):
    path, pages, meta = make_archive(tmp_path / ("old_" + name), keep=keep, seed=seed, **kw)
    meta = dict(meta, interpolation=rule)
    write_archive(tmp_path / name, meta, pages)
    return tmp_path / name


def lattice_points(g):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in g.shape], indexing="ij"), -1).reshape(-1, 3)
    return g.lo + ijk * g.step


def dense(dec, ids, w):
    out = np.zeros((ids.shape[0], dec.positions.shape[0]))
    np.add.at(out, (np.arange(ids.shape[0])[:, None].repeat(ids.shape[1], 1), ids), w)
    return out


def oracle(dec, q):
    g = dec.grid
    cells = g.cells(dec.positions)
    pid = {tuple(int(v) for v in c): i for i, c in enumerate(cells)}
    out = np.zeros((len(q), dec.positions.shape[0]))
    for r, x in enumerate(q):
        for p, v in naive.naive_axis_fill_weights(g.shape, g.step, set(pid), (x - g.lo) / g.step).items():
            out[r, pid[p]] += v
    return out


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_fill_weights_against_the_brute_force_oracle(tmp_path, keep):
    dec = Decoder(fill_archive(tmp_path, keep))
    rng = np.random.default_rng(1)
    g = dec.grid
    q = np.concatenate([lattice_points(g), g.lo + rng.random((200, 3)) * (g.hi - g.lo),
                        rng.uniform(g.lo - 2, g.hi + 2, (40, 3))])
    got = dense(dec, *dec.pw_find_probes(q))
    want = oracle(dec, q)
    has = want.sum(1) > 0
    np.testing.assert_allclose(got[has], want[has], atol=WEIGHT_TOL)
    np.testing.assert_allclose(got[has].sum(1), 1.0, atol=WEIGHT_TOL)
    # exact at the probes
    np.testing.assert_allclose(dense(dec, *dec.pw_find_probes(dec.positions)), np.eye(len(dec.positions)),
                               atol=WEIGHT_TOL)


def test_a_missing_point_blends_its_axis_neighbours_by_inverse_square_spacing(tmp_path):
    """Every other probe of a 5 x 3 x 5 lattice (checkerboard): at a held-out
    point inside, the 6 axis neighbours, weights 1/step_a^2 normalised; the
    old rule gives the present corners of one cell only."""
    shape = (5, 3, 5)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    keep = ijk.sum(1) % 2 == 0
    path = fill_archive(tmp_path, keep, grid_shape=shape, lo=(0.0, 0.0, 0.0), hi=(4.0, 4.0, 4.0))
    dec = Decoder(path)
    g = dec.grid                                     # steps 1, 2, 1
    x = g.lo + np.array([2, 1, 1]) * g.step          # 2+1+1 even? no: (2,1,1) sums to 4 -> present
    x = g.lo + np.array([1, 1, 1]) * g.step          # odd: held out
    ids, w = dec.pw_find_probes(x[None])
    got = {tuple(int(v) for v in g.cells(dec.positions[i:i + 1])[0]): float(v)
           for i, v in zip(ids[0], w[0]) if v > 0}
    a = np.array([1.0, 0.25, 1.0])                   # 1/step^2
    want = {}
    for ax in range(3):
        for s in (-1, 1):
            p = [1, 1, 1]
            p[ax] += s
            want[tuple(p)] = a[ax] / (2 * a.sum())
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=WEIGHT_TOL)
    old = Decoder(fill_archive(tmp_path, keep, grid_shape=shape, lo=(0.0, 0.0, 0.0), hi=(4.0, 4.0, 4.0),
                               name="o.pwa", rule="trilinear-present-corners"))
    assert int((old.pw_find_probes(x[None])[1] > 0).sum()) == 4     # one cell's 4 present corners


def test_fill_is_continuous_where_the_old_rule_jumps(tmp_path):
    """Around a missing lattice point with a present axis neighbour, the fill's
    weights converge from every side (nudges 1e-6 vs 1e-8 shrink the
    difference); the old rule's do not."""
    keep = 0.5
    dec = Decoder(fill_archive(tmp_path, keep, seed=4))
    old = Decoder(fill_archive(tmp_path, keep, seed=4, name="o.pwa", rule="trilinear-present-corners"))
    g = dec.grid
    pts = lattice_points(g)
    present = {tuple(c) for c in g.cells(dec.positions).tolist()}
    def has_neighbour(c):
        return any(tuple(c[:a] + [c[a] + s] + c[a + 1:]) in present for a in range(3) for s in (-1, 1))
    # missing points with a present axis neighbour (where the fill is continuous; a hole
    # with none around loses its weight, as the old rule does)
    missing = [p for p, c in zip(pts, g.cells(pts).tolist()) if tuple(c) not in present and has_neighbour(c)]
    assert len(missing) >= 10
    rng = np.random.default_rng(5)
    jumps_new, jumps_old = [], []
    for p in missing[:25]:
        d = rng.normal(size=(2, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        for D, out in ((dec, jumps_new), (old, jumps_old)):
            a = dense(D, *D.pw_find_probes(np.stack([p + 1e-6 * d[0], p + 1e-6 * d[1]])))
            b = dense(D, *D.pw_find_probes(np.stack([p + 1e-8 * d[0], p + 1e-8 * d[1]])))
            out.append((np.abs(a[0] - a[1]).max(), np.abs(b[0] - b[1]).max()))
    for big, small in jumps_new:
        assert big < 1e-4 and small < 1e-6
    assert max(s for _, s in jumps_old) > 0.1          # the old rule: a jump that does not shrink


@pytest.mark.parametrize("keep", [0.25, 0.55])
def test_gl_equals_cpu_with_the_fill(gl, tmp_path, keep):
    """Stencils (pw_stencil.cs) and decodes at every lattice point (the held-out
    case), between them and outside the grid: GPU = CPU."""
    from probewarp.runtime.decode import decode_gl, stencil_gl
    from probewarp.runtime.streamer import Streamer
    path = fill_archive(tmp_path, keep)
    dec = Decoder(path)
    g = dec.grid
    rng = np.random.default_rng(6)
    q = np.concatenate([lattice_points(g), rng.uniform(g.lo - 1, g.hi + 1, (60, 3))])
    with Streamer(gl, path, page_slots=64) as s:
        assert s.defines["PW_GRID_FILL"] == 1 and s.code_corners == 32
        s.require(q)
        n, page, local, w = stencil_gl(s, q)
    gid = np.where(page >= 0, dec._page_ids[dec._page_first[np.maximum(page, 0)] + local], 0)
    np.testing.assert_allclose(dense(dec, gid, w), dense(dec, *dec.pw_find_probes(q)), atol=STENCIL_TOL)
    cpu = dec.decode(q)
    gpu = decode_gl(path, q, ctx=gl, page_slots=64)
    assert float(np.abs(tonemap(gpu) - tonemap(cpu)).max()) <= PARITY_TOL


def test_streamed_fill_equals_cpu_with_absent_pages(gl, tmp_path):
    """Few slots: the fill's outside neighbours are on other pages too; every
    decode equals the CPU decoder restricted to the resident pages."""
    from probewarp.runtime.streamer import Streamer
    from streaming import streamed_frames
    path = fill_archive(tmp_path, 0.5, page_probes=6)
    dec = Decoder(path)
    g = dec.grid
    xs = g.lo + np.linspace(0, 1, 30)[:, None] * (g.hi - g.lo)
    worst = 0.0
    with Streamer(gl, path, page_slots=8, uploads_per_frame=1) as s:
        for x, _, resident, got in streamed_frames(s, xs):
            want = dec.decode(x[None], resident=resident)[0]
            worst = max(worst, float(np.abs(tonemap(got[..., :3]) - tonemap(want)).max()))
    assert worst <= PARITY_TOL


def test_bakes_of_sparse_grids_use_the_fill(tmp_path):
    from probewarp.baker.pipeline import bake_arrays
    from probewarp.format.archive import ArchiveReader
    from test_scale import field
    g, faces = field((6, 2, 6), R=4)
    keep = np.random.default_rng(7).random(len(g)) < 0.6
    from probewarp.format.grid import Grid
    grid = Grid((6, 2, 6), g.min(0), g.max(0)).with_dense(False)
    bake_arrays(g[keep], faces[keep], tmp_path / "s.pwa", grid=grid, n_prototypes=8, n_taps=3, n_iter=1,
                score=False)
    with ArchiveReader(tmp_path / "s.pwa") as ar:
        assert ar.meta["interpolation"] == GRID_FILL_RULE
