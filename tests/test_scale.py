"""Bakes of many pages: halos, engines, checkpoints, bounded reads.

- the plan: a page's halo is its brick grown by whole lattice layers
  (oracle: lattice index arithmetic), disjoint from the page;
- the same input and seed give byte-identical archives in this thread, in
  threads, on a Dask ``LocalCluster`` and after a SIGKILL and a resume;
- a killed bake leaves no file that looks like an archive, and the checkpoint
  refuses a different bake;
- the border band: probes next to a page border are within 0.3 dB of
  interior ones with the halo (and measurably worse without it, so the
  check can fail); decoding across a page border is continuous;
- reads are bounded by the page (and its halo), never the whole set.
"""
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from probewarp.baker.bake import page_border_distance, plan_pages
from probewarp.baker.checkpoint import checkpoint_dir
from probewarp.baker.cubemap import texel_directions
from probewarp.baker.decoder import Decoder
from probewarp.baker.pipeline import bake_arrays, bake_probeset
from probewarp.baker.probeset import ProbeSet
from probewarp.format.archive import MAGIC
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid

HERE = Path(__file__).resolve().parent
#: Border band within this much of the interior (the issue's bound), dB.
BORDER_GAP_DB = 0.3


def field(shape=(16, 2, 16), R=4, depth=4.0, lo=(-2, -0.25, -2), hi=(2, 0.25, 2)):
    """Probes inside a textured sphere world of radius ``depth`` on a grid:
    real parallax, smooth content, several pages at small page sizes."""
    ax = [np.linspace(a, b, n) for a, b, n in zip(lo, hi, shape)]
    g = np.stack(np.meshgrid(*ax, indexing="ij"), -1).reshape(-1, 3)
    d = texel_directions(R).reshape(-1, 3)
    b = g @ d.T                                               # (P, T)
    t = -b + np.sqrt(b * b - ((g * g).sum(1)[:, None] - depth ** 2))
    s = (g[:, None, :] + t[..., None] * d[None]) / depth      # (P, T, 3)
    v = np.stack([1 + np.sin(6 * s[..., 0]) * np.cos(5 * s[..., 1]),
                  1 + 0.5 * np.sin(7 * s[..., 2] + 3 * s[..., 0]), 1.2 + s[..., 1]], -1) * 2
    return g, np.maximum(v, 0).reshape(-1, 6, R, R, 3).astype(np.float32)


def probe_set(shape=(16, 2, 16), R=4):
    g, f = field(shape, R)
    return ProbeSet(positions=g.astype(np.float32), faces=f, grid_shape=shape, lo=g[0], hi=g[-1])


KW = dict(n_prototypes=24, n_taps=3, page_probes=128, n_iter=2, seed=5)


@pytest.fixture(scope="module")
def zarr_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale")
    ps = probe_set()
    ps.save(d / "p.zarr", chunk_probes=32)
    ps.save(d / "p.npz")
    return d / "p.zarr", d / "p.npz"


@pytest.fixture(scope="module")
def reference(zarr_set, tmp_path_factory):
    """The uninterrupted bake in this thread (one page at a time)."""
    out = tmp_path_factory.mktemp("ref") / "ref.pwa"
    r = bake_probeset(zarr_set[0], out, **KW, threads=1, report=False)
    return out.read_bytes(), r


# -- the plan ---------------------------------------------------------------------
@pytest.mark.parametrize("halo", [0, 1, 2])
def test_halo_is_the_brick_grown_by_whole_layers(halo):
    shape = (10, 3, 9)
    grid = Grid(shape, (0, 0, 0), (9, 2, 8))
    pos = grid.positions()
    tasks = plan_pages(pos, 60, grid, halo)
    assert len(tasks) > 2
    seen = np.concatenate([t.ids for t in tasks])
    assert np.array_equal(np.sort(seen), np.arange(pos.shape[0]))        # a partition
    lattice = np.stack(np.unravel_index(np.arange(pos.shape[0]), shape), 1)
    for t in tasks:
        (b0, bs) = t.brick
        lo = np.maximum(np.array(b0) - halo, 0)
        hi = np.minimum(np.array(b0) + np.array(bs) + halo, shape)
        inside = np.all((lattice >= lo) & (lattice < hi), axis=1)
        own = np.all((lattice >= b0) & (lattice < np.array(b0) + bs), axis=1)
        np.testing.assert_array_equal(t.halo, np.flatnonzero(inside & ~own))
        np.testing.assert_array_equal(np.sort(t.ids), np.flatnonzero(own))
    one = plan_pages(pos, 10 ** 6, grid, halo)
    assert len(one) == 1 and one[0].halo.size == 0


def test_border_distance_of_a_grid_is_the_lattice_distance_to_the_next_brick():
    shape = (8, 1, 8)
    grid = Grid(shape, (0, 0, 0), (7, 0, 7))
    pos = grid.positions()
    tasks = plan_pages(pos, 16, grid, 0)
    d = page_border_distance(pos, tasks, grid)
    lattice = np.stack(np.unravel_index(np.arange(pos.shape[0]), shape), 1)
    label = np.empty(pos.shape[0], int)
    for t in tasks:
        label[t.ids] = t.index
    # oracle: brute force over all pairs
    dd = np.sqrt(((lattice[:, None, :] - lattice[None, :, :]) ** 2).sum(-1)).astype(float)
    dd[label[:, None] == label[None, :]] = np.inf
    np.testing.assert_allclose(d, dd.min(axis=1))


# -- engines: the same bytes ----------------------------------------------------------
def test_threads_and_memory_mapped_npz_give_the_same_bytes(zarr_set, reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "t.pwa"
    r = bake_probeset(zarr_set[0], out, **KW, threads=2, report=False)
    assert out.read_bytes() == ref
    assert r.throughput["engine"] == "threads" and r.throughput["threads"] == 2
    assert r.throughput["probes_fitted"] == 512 and r.throughput["probes_per_second"] > 0
    out2 = tmp_path / "m.pwa"
    probes = ProbeSet.load(zarr_set[1], lazy=True)
    assert isinstance(probes.faces, np.memmap)
    bake_probeset(zarr_set[1], out2, **KW, report=False)
    assert out2.read_bytes() == ref
    assert not checkpoint_dir(out).exists() and not checkpoint_dir(out2).exists()


def test_dask_local_cluster_gives_the_same_bytes(zarr_set, reference, tmp_path):
    pytest.importorskip("distributed")
    ref, _ = reference
    out = tmp_path / "d.pwa"
    r = bake_probeset(zarr_set[0], out, **KW, workers=2, report=False)
    assert out.read_bytes() == ref
    t = r.throughput
    assert t["engine"] == "dask" and t["workers"] == 2 and len(t["peak_rss_workers_bytes"]) == 2
    assert t["peak_rss_bytes"] == t["peak_rss_main_bytes"] + sum(t["peak_rss_workers_bytes"].values())
    # an in-memory set on Dask: tasks carry their probes
    out2 = tmp_path / "d2.pwa"
    bake_probeset(ProbeSet.load(zarr_set[1]), out2, **KW, workers=1, report=False)
    assert out2.read_bytes() == ref


# -- checkpoints ------------------------------------------------------------------------
SCRIPT = textwrap.dedent("""
    import sys
    from probewarp.baker.pipeline import bake_probeset
    kw = dict(n_prototypes=24, n_taps=3, page_probes=128, n_iter=2, seed=5)
    bake_probeset(sys.argv[1], sys.argv[2], **kw, threads=1, report=False)
""")


def _looks_like_archive(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def test_a_bake_killed_at_a_random_point_resumes_to_the_same_bytes(zarr_set, reference, tmp_path):
    ref, r0 = reference
    n_pages = r0.n_pages
    rng = np.random.default_rng(int(time.time()))
    kill_after = int(rng.integers(1, n_pages))         # pages finished before the kill
    page_s = min(st["fit_seconds"] for st in r0.bake_report["page_stats"])
    jitter = float(rng.uniform(0.0, 0.7 * page_s))     # and somewhere inside the next page
    out = tmp_path / "k.pwa"
    script = tmp_path / "bake.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(zarr_set[0]), str(out)])
    ck = checkpoint_dir(out)
    t0 = time.time()
    try:
        while len(list(ck.glob("page-*.pwp"))) < kill_after:
            assert proc.poll() is None, "the bake ended before it could be killed"
            assert time.time() - t0 < 300
            time.sleep(0.02)
        time.sleep(jitter)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = len(list(ck.glob("page-*.pwp")))
    assert 1 <= done <= n_pages
    assert not out.exists()
    assert not any(_looks_like_archive(p) for p in tmp_path.glob("*.pwa")), "a killed bake left an archive"
    r = bake_probeset(zarr_set[0], out, **KW, threads=1, report=False)
    assert out.read_bytes() == ref
    assert r.throughput["pages_resumed"] == done and r.throughput["pages_fitted"] == n_pages - done
    assert not ck.exists()


def test_a_checkpoint_of_another_bake_is_refused_unless_fresh(zarr_set, reference, tmp_path, monkeypatch):
    ref, _ = reference
    out = tmp_path / "c.pwa"
    ck = checkpoint_dir(out)
    import probewarp.baker.checkpoint as ckm
    monkeypatch.setattr(ckm.Checkpoint, "remove", lambda self: self.release())   # as if killed at the end
    bake_probeset(zarr_set[0], out, **dict(KW, seed=6), report=False)
    monkeypatch.undo()
    out.unlink()
    with pytest.raises(InputError, match=r"different bake \(seed: 6 there, 5 now"):
        bake_probeset(zarr_set[0], out, **KW, report=False)
    assert not out.exists()
    ck2 = checkpoint_dir(tmp_path / "j.pwa")
    ck2.mkdir()
    (ck2 / "bake.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        bake_probeset(zarr_set[0], tmp_path / "j.pwa", **KW, report=False)
    bake_probeset(zarr_set[0], out, **KW, report=False, fresh=True)
    assert out.read_bytes() == ref and not ck.exists()


def test_a_damaged_page_checkpoint_is_redone(zarr_set, reference, tmp_path, monkeypatch):
    """A page file that fails its CRC is dropped and fitted again."""
    ref, _ = reference
    out = tmp_path / "x.pwa"
    import probewarp.baker.checkpoint as ckm
    monkeypatch.setattr(ckm.Checkpoint, "remove", lambda self: self.release())   # keep the pages
    bake_probeset(zarr_set[0], out, **KW, report=False)
    monkeypatch.undo()
    out.unlink()
    page = checkpoint_dir(out) / "page-000001.pwp"
    raw = bytearray(page.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    page.write_bytes(bytes(raw))
    r = bake_probeset(zarr_set[0], out, **KW, report=False)
    assert out.read_bytes() == ref and r.throughput["pages_fitted"] == 1


# -- seams --------------------------------------------------------------------------------
def test_border_band_is_within_the_bound_with_a_halo_and_not_without(tmp_path):
    ps = probe_set()
    kw = dict(KW, n_iter=3)
    with_halo = bake_probeset(ps, tmp_path / "h.pwa", **kw, halo=1, report=False).border
    without = bake_probeset(ps, tmp_path / "n.pwa", **kw, halo=0, report=False).border
    assert with_halo["n_band"] > 50 and with_halo["n_interior"] > 50
    assert with_halo["gap_db"] <= BORDER_GAP_DB, with_halo
    assert without["gap_db"] > BORDER_GAP_DB, without       # the check can fail: the seam is real


def test_decoding_across_a_page_border_is_continuous(tmp_path):
    ps = probe_set()
    out = tmp_path / "s.pwa"
    bake_probeset(ps, out, **KW, report=False)
    dec = Decoder(out)
    grid = ps.lattice
    tasks = plan_pages(ps.positions, KW["page_probes"], grid, 1)
    # the brick face between pages along x: halfway between the last column of
    # one page and the first of the next
    xs = sorted({int(t.brick[0][0]) for t in tasks if t.brick[0][0] > 0})
    assert xs
    step = grid.step[0]
    x_border = grid.lo[0] + (xs[0] - 0.5) * step
    y, z = 0.0, grid.lo[2] + 3.3 * grid.step[2]
    eps = step * np.array([1e-4, 1e-3, 1e-2])
    left = dec.decode(np.stack([np.full(3, x_border) - eps, np.full(3, y), np.full(3, z)], 1))
    right = dec.decode(np.stack([np.full(3, x_border) + eps, np.full(3, y), np.full(3, z)], 1))
    jump = np.abs(right - left).max(axis=(1, 2, 3, 4))
    # a step in the decoded value would stay as eps shrinks; continuity makes it shrink with eps
    line = np.stack([np.linspace(x_border - step, x_border + step, 21), np.full(21, y), np.full(21, z)], 1)
    vals = dec.decode(line)
    slope = np.abs(np.diff(vals, axis=0)).max() / (line[1, 0] - line[0, 0])
    assert np.all(jump <= 2 * eps * slope + 1e-5), (jump, slope)


# -- bounded reads -----------------------------------------------------------------------
class SpyFaces:
    """An array-like that records how many probes each read asks for."""

    def __init__(self, faces):
        self.faces = faces
        self.reads = []
        self.shape, self.dtype = faces.shape, faces.dtype

    def __getitem__(self, key):
        block = self.faces[key]
        self.reads.append(len(block) if np.ndim(block) == 5 else 1)
        return block

    def __array__(self, *a, **k):
        raise AssertionError("the bake read the whole set")


def test_reads_are_bounded_by_the_page_and_its_halo(tmp_path):
    ps = probe_set((16, 2, 16))
    spy = SpyFaces(ps.faces)
    tasks = plan_pages(ps.positions, KW["page_probes"], ps.lattice, 2)
    biggest = max(t.fit_ids.size for t in tasks)
    r = bake_arrays(ps.positions, spy, tmp_path / "b.pwa", grid=ps.lattice, halo=2, **KW, threads=2)
    assert max(spy.reads) <= max(biggest, 4096)        # pages + halo; the score reads 4096 at a time
    assert biggest < ps.n_probes and r.n_pages == len(tasks)


def test_a_one_page_bake_reports_no_border(tmp_path):
    ps = probe_set((4, 2, 4))
    r = bake_probeset(ps, tmp_path / "o.pwa", **dict(KW, page_probes=10 ** 6))
    assert r.n_pages == 1 and r.border == {}
    assert "border_png" not in r.report_paths and not (tmp_path / "o.border.png").exists()
    assert json.loads(r.report_paths["json"].read_text())["border"] == {}
