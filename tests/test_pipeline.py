"""The bake pipeline (probewarp.baker.pipeline) and the decoder's GLSL-named steps.

The pipeline must give exactly what the lower-level calls give (same archive
bytes, same scores), read a zarr set lazily, and leave nothing behind on bad
input.
"""
import json

import numpy as np
import pytest

from probewarp.baker.bake import archive_meta, bake
from probewarp.baker.decoder import Decoder, pw_warp_direction
from probewarp.baker.pipeline import bake_probeset
from probewarp.baker.probeset import LazyFaces, ProbeSet
from probewarp.baker.warp import warp_directions
from probewarp.format.archive import write_archive
from probewarp.format.errors import InputError
from test_prototypes import _field

KW = dict(n_prototypes=6, n_taps=2, prototype_res=4, n_iter=1, page_probes=32, seed=3)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    g, faces = _field(R=4, n=4)
    ps = ProbeSet(positions=g.astype(np.float32), faces=faces, grid_shape=(4, 4, 4), lo=g[0], hi=g[-1])
    d = tmp_path_factory.mktemp("pipeline")
    ps.save(d / "p.npz")
    ps.save(d / "p.zarr", chunk_probes=16)
    return d / "p.npz", d / "p.zarr"


def _low_level(path, out):
    probes = ProbeSet.load(path)
    kw = dict(KW)
    pages, rep = bake(probes.positions, probes.faces, grid=probes.lattice, **kw)
    write_archive(out, archive_meta(probes.n_probes, rep, probes.lattice), pages)
    acc = Decoder(out).score(probes.positions, probes.faces)
    return acc


def test_pipeline_matches_the_low_level_calls_and_reads_zarr_lazily(sets, tmp_path, monkeypatch):
    npz, zarr = sets
    ref = tmp_path / "ref.pwa"
    acc = _low_level(npz, ref)

    def no_full_read(*a, **k):
        raise AssertionError("the pipeline read the whole probe set")
    monkeypatch.setattr(ProbeSet, "faces_array", no_full_read)
    monkeypatch.setattr(LazyFaces, "__array__", no_full_read)
    calls = []
    out = tmp_path / "z.pwa"
    r = bake_probeset(zarr, out, **KW, progress=lambda *a: calls.append(a))
    assert out.read_bytes() == ref.read_bytes()
    q = acc.result()
    assert r.psnr_db == q["psnr_db"] and r.log_rmse == q["log_rmse"]
    np.testing.assert_array_equal(r.per_probe_psnr_db, acc.per_probe_psnr)
    assert r.n_probes == 64 and r.n_pages == 2 and r.file_bytes == out.stat().st_size
    assert r.bytes_per_probe == r.file_bytes / 64 and r.sanitize_report is None
    assert calls and calls[0][1] == 2                       # progress(page, n_pages, stage, info)
    rep = json.loads(r.report_paths["json"].read_text())
    assert rep["psnr_db"] == r.psnr_db and rep["n_pages"] == 2 and len(rep["per_probe_psnr_db"]) == 64
    assert set(rep["seconds"]) == {"bake", "decode_check", "phases"}
    assert {p.name for p in tmp_path.iterdir()} == {"ref.pwa", "z.pwa", "z.report.json", "z.loss.png",
                                                     "z.error.png", "z.border.png"}
    # an in-memory set gives the same archive too
    out2 = tmp_path / "m.pwa"
    monkeypatch.undo()
    bake_probeset(ProbeSet.load(npz), out2, **KW, report=False)
    assert out2.read_bytes() == ref.read_bytes() and not (tmp_path / "m.report.json").exists()


def test_bad_input_leaves_nothing_behind(sets, tmp_path):
    p = ProbeSet.load(sets[0])
    faces = np.array(p.faces)
    faces[5, 1, 2, 0, 1] = np.nan
    bad = tmp_path / "bad.npz"
    np.savez(bad, positions=p.positions, faces=faces)
    with pytest.raises(InputError, match="probe 5"):
        bake_probeset(bad, tmp_path / "bad.pwa", **KW)
    with pytest.raises(InputError, match=".pwa"):
        bake_probeset(sets[0], tmp_path / "bad.bin", **KW)
    with pytest.raises(InputError):                          # bc7 needs Rp divisible by 4
        bake_probeset(sets[0], tmp_path / "bc7.pwa", **dict(KW, prototype_res=6), texel_format="bc7")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["bad.npz"]
    # repaired instead, with the report in the result
    r = bake_probeset(bad, tmp_path / "fixed.pwa", **KW, sanitize=True, report=False)
    assert r.sanitize_report is not None and r.sanitize_report.nan_values == 1
    assert np.isfinite(r.psnr_db)


def test_decoder_steps_are_the_glsl_twins(sets, tmp_path):
    out = tmp_path / "a.pwa"
    bake_probeset(sets[0], out, **KW, report=False)
    dec = Decoder(out)
    rng = np.random.default_rng(0)
    q = rng.uniform(-1.3, 1.3, size=(5, 3))
    ids, w = dec.pw_find_probes(q)
    ids2, w2 = dec.pw_find_probes(q)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    idx, cw = dec.pw_code_at(q)
    assert idx.shape == cw.shape == (5, 8 * 2)
    d = rng.normal(size=(7, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    one = np.stack([dec.radiance(x, d) for x in q])
    np.testing.assert_array_equal(dec.pw_decode(q, d), one)
    np.testing.assert_array_equal(dec.pw_radiance((idx, cw), q, d), one)
    # the warp: baker/warp.py's, with the GPU's "radius <= 0 is infinitely far"
    x, c = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    rho = np.array([0.5, 2.0, 3.0, np.inf, 0.0, -1.0, 1.0])
    s = pw_warp_direction(x, d, c, rho)
    np.testing.assert_array_equal(s[:4], warp_directions(x[:4], c[:4], rho[:4], d[:4]))
    np.testing.assert_allclose(s[4:6], d[4:6])
