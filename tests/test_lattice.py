"""Lattice detection: a probe set exported without grid_shape/lo/hi whose
positions lie on a regular lattice (dense, shuffled, or with holes) is baked
and decoded as that grid; jittered and random sets stay scattered."""
import numpy as np
import pytest

from probewarp.baker.probeset import ProbeSet
from probewarp.format.grid import Grid

from test_scale import field

SHAPE = (7, 3, 5)
LO, HI = np.array([-3.0, 0.0, -2.0]), np.array([3.0, 2.0, 2.0])


def _lattice():
    return ProbeSet.grid(LO, HI, SHAPE).astype(np.float64)


def test_detect_dense_shuffled_holes_and_flat():
    g = _lattice()
    d = Grid.detect(g)
    assert d is not None and d.shape == SHAPE and d.dense
    np.testing.assert_array_equal(d.lo, LO)
    np.testing.assert_array_equal(d.hi, HI)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(g))
    s = Grid.detect(g[perm])
    assert s.shape == SHAPE and not s.dense
    np.testing.assert_array_equal(s.ids_of(s.cells(g[perm])), perm)        # the lattice ids of the probes
    keep = rng.random(len(g)) < 0.3
    keep[[0, -1]] = True                                                     # keep the box
    h = Grid.detect(g[keep])
    assert h.shape == SHAPE and not h.dense
    flat = ProbeSet.grid(LO, [3.0, 0.0, 2.0], (7, 1, 5)).astype(np.float64)
    f = Grid.detect(flat)
    assert f.shape == (7, 1, 5) and f.dense
    # float32 positions far from the origin (exports) are still on their lattice
    far = (ProbeSet.grid(LO + 1e4, HI + 1e4, SHAPE)).astype(np.float32)
    assert Grid.detect(far).shape == SHAPE


def test_scattered_sets_are_not_lattices():
    g = _lattice()
    rng = np.random.default_rng(1)
    step = (HI - LO) / (np.array(SHAPE) - 1)
    assert Grid.detect(g + rng.normal(0, 0.05, g.shape) * step) is None, "jittered by 5 % of the spacing"
    assert Grid.detect(rng.random((200, 3)) * 10) is None, "random"
    assert Grid.detect(g[:1]) is None
    assert Grid.detect(np.concatenate([g, g[:1]])) is None, "two probes on one point"
    few = g[rng.choice(len(g), 4, replace=False)]                            # 4 of 105 points: too sparse
    assert Grid.detect(few) is None or Grid.detect(few).n_points <= 16 * 4


@pytest.mark.parametrize("order", ["grid", "shuffled"])
def test_a_lattice_without_metadata_bakes_exactly_as_with_it(tmp_path, order):
    from probewarp.baker.decoder import Decoder
    from probewarp.baker.pipeline import bake_probeset
    shape = (8, 2, 8)
    g, faces = field(shape, R=4)
    with_meta = ProbeSet(positions=g.astype(np.float32), faces=faces, grid_shape=shape, lo=g[0], hi=g[-1])
    idx = np.arange(len(g)) if order == "grid" else np.random.default_rng(2).permutation(len(g))
    without = ProbeSet(positions=g[idx].astype(np.float32), faces=faces[idx])
    assert without.grid_shape is None
    kw = dict(n_prototypes=12, n_taps=3, page_probes=64, n_iter=1, seed=3)
    a = bake_probeset(with_meta, tmp_path / "a.pwa", **kw)
    b = bake_probeset(without, tmp_path / "b.pwa", **kw)
    assert a.lattice_detected is None
    assert b.lattice_detected == {"shape": list(shape), "lo": g[0].tolist(), "hi": g[-1].tolist(),
                                  "dense": True, "holes": 0, "reordered": order == "shuffled", "as_grid": True}
    assert (tmp_path / "a.pwa").read_bytes() == (tmp_path / "b.pwa").read_bytes()
    q = g[0] + np.random.default_rng(4).random((20, 3)) * (g[-1] - g[0])
    np.testing.assert_array_equal(Decoder(tmp_path / "a.pwa").decode(q), Decoder(tmp_path / "b.pwa").decode(q))


@pytest.mark.parametrize("fill,as_grid", [(0.3, False), (0.7, True)])
def test_a_lattice_with_holes_bakes_by_its_fill_or_as_asked(tmp_path, fill, as_grid):
    """Holes: below half full the tetrahedral rule measured better between
    probes than the sparse grid's axis fill, from half full on the sparse
    grid is as good or better per byte (benchmarks/bench_scattered.py,
    config.HOLES_GRID_MIN_FILL); both are reported, either can be forced."""
    from probewarp.baker.pipeline import bake_probeset
    from probewarp.format.archive import ArchiveReader
    from probewarp.format.constants import GRID_FILL_RULE
    shape = (8, 2, 8)
    g, faces = field(shape, R=4)
    rng = np.random.default_rng(5)
    keep = np.zeros(len(g), bool)
    keep[rng.choice(len(g), int(round(fill * len(g))), replace=False)] = True
    keep[[0, -1]] = True                     # the lattice's box
    ps = ProbeSet(positions=g[keep].astype(np.float32), faces=faces[keep])
    r = bake_probeset(ps, tmp_path / "s.pwa", n_prototypes=12, n_taps=3, page_probes=64, n_iter=1, seed=3)
    lat = r.lattice_detected
    assert lat["holes"] == int((~keep).sum()) and lat["shape"] == list(shape) and lat["as_grid"] is as_grid
    with ArchiveReader(tmp_path / "s.pwa") as ar:
        if as_grid:
            assert ar.meta["grid"]["dense"] is False and ar.meta["interpolation"] == GRID_FILL_RULE
        else:
            assert ar.meta.get("grid") is None and ar.meta["interpolation"] == "tetrahedral"
    sparse, info = ps.with_detected_lattice(holes="grid")
    assert info["as_grid"] and not sparse.grid_dense and tuple(sparse.grid_shape) == shape
    same, info = ps.with_detected_lattice(holes="scattered")
    assert not info["as_grid"] and same.grid_shape is None
    with pytest.raises(ValueError, match="holes"):
        ps.with_detected_lattice(holes="maybe")


def test_info_and_bake_say_what_was_detected(tmp_path, capsys):
    from probewarp.cli.main import main
    shape = (6, 2, 5)
    g, faces = field(shape, R=4)
    ProbeSet(positions=g.astype(np.float32), faces=faces).save(tmp_path / "p.npz")
    assert main(["info", str(tmp_path / "p.npz")]) == 0
    out = capsys.readouterr().out
    assert "'detected': True" in out and "[6, 2, 5]" in out
    assert main(["bake", str(tmp_path / "p.npz"), "-o", str(tmp_path / "p.pwa"), "--prototypes", "8", "--taps", "2",
                 "--iterations", "1"]) == 0
    assert "lattice detected (no grid in the input): 6 x 2 x 5, dense" in capsys.readouterr().out
