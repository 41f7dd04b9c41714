"""Scattered probe sets on the GPU: the archive's tetrahedral index
(format/tetindex.py), its GLSL rule (common_probewarp.glsl, PW_SCATTERED)
against the CPU twin (format/tetindex.py lookup, Decoder) and the
brute-force oracle (tests/naive.py), the streamer paging scattered archives,
and the reader refusing damaged indices.

Tolerances:
- STENCIL_TOL = 2e-5: GLSL barycentric weights in float32 against the CPU's
  float64 (positions of magnitude <= 7, spacing ~1: float32 rounding of the
  edge vectors, ~1e-6, measured 4e-7).
- PARITY_TOL (tests/tolerances.py) for decodes of sets with tetrahedra.
- FLAT_TOL = 1e-4 for flat sets (plane, line): the closest triangle of a
  query off the plane is chosen by squared distances that carry the
  off-plane offset, so float32 resolves the in-plane part to about
  sqrt(1e-7) of that offset (measured 3.1e-5 in T).
"""
import json
import struct
import zlib

import lz4.frame
import numpy as np
import pytest

import naive
from probewarp.baker.decoder import Decoder
from probewarp.baker.metrics import tonemap
from probewarp.baker.tetra import Tetrahedra, build_index
from probewarp.format.tetindex import lookup
from probewarp.format.archive import ArchiveReader
from probewarp.format.errors import InputError
from synth import make_scattered_archive, scattered_positions
from tolerances import PARITY_TOL

STENCIL_TOL = 2e-5
FLAT_TOL = 1e-4
KINDS = ["jitter", "subset", "random", "plane", "line", "single"]


def queries(dec, rng, pages_of=None):
    """On probes, between them (random, inside the box), across page borders
    (midpoints of nearest neighbours on different pages), outside the hull
    and outside the bounding box."""
    P = dec.positions
    on = P[rng.choice(len(P), size=min(8, len(P)), replace=False)]
    lo, hi = P.min(0), P.max(0)
    inside = lo + rng.random((24, 3)) * (hi - lo)
    page = np.repeat(np.arange(len(dec._page_first) - 1), np.diff(dec._page_first))
    pid = np.empty(len(P), int)
    pid[dec._page_ids] = page
    border = []
    if len(P) > 1:
        d = np.linalg.norm(P[:, None] - P[None], axis=2)
        np.fill_diagonal(d, np.inf)
        nn = np.argmin(d, axis=1)
        cross = np.flatnonzero(pid != pid[nn])[:10]
        border = (P[cross] + P[nn[cross]]) / 2
    outside = np.array([[-9.0, 1.0, 0.0], [0.0, 7.0, 0.0], [6.0, -3.0, 5.5], [30.0, 30.0, -30.0],
                        [-5.0, 0.0, -4.0], [5.0, 2.0, 4.0]])
    return np.concatenate([on, inside, np.reshape(border, (-1, 3)), outside])


def dense(ids, w, P):
    out = np.zeros((ids.shape[0], P))
    np.add.at(out, (np.arange(ids.shape[0])[:, None].repeat(ids.shape[1], 1), ids), w)
    return out


@pytest.mark.parametrize("kind", ["jitter", "subset", "random", "plane", "single"])
def test_index_rule_equals_the_brute_force_oracle(kind):
    """tetindex.lookup (the stored index alone) = the documented rule by brute
    force: clamp into the box, the tetrahedron holding the query, else the
    closest hull triangle (tests/naive.py); flat sets against Tetrahedra's
    own plane/line fallback."""
    rng = np.random.default_rng(11)
    p = scattered_positions(kind, rng).astype(np.float32).astype(np.float64)
    idx = build_index(p, np.arange(len(p)))
    t = Tetrahedra(p)
    lo, hi = p.min(0), p.max(0)
    q = np.concatenate([p, lo + (rng.random((300, 3)) * 1.6 - 0.3) * (hi - lo + 1e-3)])
    got = dense(*lookup(idx, q), len(p))
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(got[:len(p)], np.eye(len(p)), atol=1e-9)      # exact at the probes
    if t.mode == "tetrahedra":
        for k in range(0, len(q), 3):
            want = np.zeros(len(p))
            for i, v in naive.naive_tetra_weights(p, t.tri.simplices, t.hull, q[k]).items():
                want[i] += v
            np.testing.assert_allclose(got[k], want, atol=1e-7, err_msg=f"query {k}: {q[k]}")
    else:
        np.testing.assert_allclose(got, dense(*t.weights(q), len(p)), atol=1e-7)


def test_index_lists_are_what_makes_it_right():
    """The check above can fail: dropping one tetrahedron from the cell lists
    changes the answer wherever it was the holder."""
    rng = np.random.default_rng(12)
    p = scattered_positions("random", rng)
    idx = build_index(p, np.arange(len(p)))
    C = idx.n_cells
    cells = idx.cells.copy()
    items = cells[C + 1:]
    victim = int(items[0])
    holder = p[idx.simplex_ids[victim]].mean(axis=0)                        # its centroid
    before = dense(*lookup(idx, holder[None]), len(p))
    cells[C + 1:] = np.where(items == victim, items[1] if items[1] != victim else items[2], items)
    idx.cells = cells
    after = dense(*lookup(idx, holder[None]), len(p))
    assert np.abs(before - after).max() > 0.1


def test_index_is_compact_and_bounded():
    rng = np.random.default_rng(13)
    p = scattered_positions("random", rng)
    idx = build_index(p, np.arange(len(p)))
    m = idx.meta()
    C = idx.n_cells
    off = idx.cells[:C + 1].astype(np.int64)
    assert off[0] == C + 1 and off[-1] == idx.cells.size and (np.diff(off) >= 1).all()   # no empty cell
    assert m["max_items"] == int(np.diff(off).max())
    assert idx.n_tets == m["n_tets"] > len(p)


@pytest.mark.parametrize("kind", KINDS)
def test_gl_equals_cpu_on_and_between_probes(gl, tmp_path, kind):
    """The GPU's probes and weights (pw_stencil.cs) equal the CPU twin's, and
    its decodes equal the CPU reference decoder's, on probes, between them,
    across page borders, outside the hull and outside the box."""
    from probewarp.runtime.decode import decode_gl, stencil_gl
    from probewarp.runtime.streamer import Streamer
    rng = np.random.default_rng(KINDS.index(kind))
    path, pages, meta = make_scattered_archive(tmp_path / "s.pwa", scattered_positions(kind, rng), seed=2)
    dec = Decoder(path)
    P = dec.positions.shape[0]
    q = queries(dec, rng)
    with Streamer(gl, path, page_slots=64) as s:
        assert s.scattered and s.defines["PW_SCATTERED"] == 1
        s.require(q)
        n, page, local, w = stencil_gl(s, q)
    gpu_ids = np.where(page >= 0, dec._page_ids[dec._page_first[np.maximum(page, 0)] + local], 0)
    cpu_ids, cpu_w = dec.pw_find_probes(q)
    np.testing.assert_allclose(dense(gpu_ids, w, P), dense(cpu_ids, cpu_w, P), atol=STENCIL_TOL)
    assert (n >= 1).all() and (n <= 4).all()
    cpu = dec.decode(q)
    gpu, cov = decode_gl(path, q, ctx=gl, coverage=True, page_slots=64)
    tol = PARITY_TOL if dec.tet_index.mode in ("tetrahedra", "single") else FLAT_TOL
    assert float(np.abs(tonemap(gpu) - tonemap(cpu)).max()) <= tol
    assert (cov == 1.0).all()


def test_streamer_pages_a_scattered_archive(gl, tmp_path):
    """Few slots, a path across the set: pages come and go, every frame's
    decode equals the CPU decoder restricted to the resident pages (absent
    corners dropped and renormalised, as for grids), within the budget."""
    from probewarp.runtime.streamer import Streamer
    from streaming import streamed_frames
    rng = np.random.default_rng(21)
    p = scattered_positions("random", rng)
    path, pages, meta = make_scattered_archive(tmp_path / "s.pwa", p, page_probes=6, seed=3)
    dec = Decoder(path)
    n_pages = len(pages)
    assert n_pages >= 10
    with Streamer(gl, path, page_slots=4, uploads_per_frame=1) as s:
        budget = s.budget_bytes
        path_x = np.stack([np.linspace(-5, 5, 40), np.full(40, 1.0), np.linspace(-4, 4, 40)], 1)
        worst, partial = 0.0, 0
        for x, _, resident, got in streamed_frames(s, path_x):
            want = dec.decode(x[None], resident=resident)[0]
            worst = max(worst, float(np.abs(tonemap(got[..., :3]) - tonemap(want)).max()))
            partial += int(not resident[s.corner_pages(x[None])].all())
            assert s.queried_gpu_bytes() == budget
        assert worst <= PARITY_TOL
        assert s.stats["evicted"] > 0 and s.stats["uploaded"] > 4
        assert partial > 0            # frames with absent corners happened and matched the CPU rule


def test_bake_writes_the_index_and_the_gpu_decodes_it(gl, tmp_path):
    from probewarp.baker.pipeline import bake_probeset
    from probewarp.baker.probeset import ProbeSet
    from probewarp.runtime.decode import decode_gl
    from test_scale import field
    g, faces = field((6, 2, 6), R=4)
    rng = np.random.default_rng(6)
    pos = (g + rng.normal(0, 0.05, g.shape)).astype(np.float32)
    bake_probeset(ProbeSet(positions=pos, faces=faces), tmp_path / "s.pwa", n_prototypes=10, n_taps=3,
                  n_iter=1, seed=1, page_probes=24)
    with ArchiveReader(tmp_path / "s.pwa") as ar:
        assert ar.version == 4 and ar.meta["tetra_index"]["mode"] == "tetrahedra"
        ar.validate()
        tet = ar.tet_index()
        assert ar.summary()["tetra_index"]["bytes"] > 0
    np.testing.assert_array_equal(tet.probes["xyz"], pos)
    dec = Decoder(tmp_path / "s.pwa")
    q = queries(dec, rng)
    assert float(np.abs(tonemap(decode_gl(tmp_path / "s.pwa", q, ctx=gl)) - tonemap(dec.decode(q))).max()) \
        <= PARITY_TOL


# -- the stored form is checked before anything reaches a buffer ------------------
def _rewrite(src, dst, edit_meta=None, edit_raw=None, version=None, drop_index=False):
    """Rewrite an archive with its index section or metadata changed (all CRCs recomputed)."""
    from probewarp.format import archive as A
    with ArchiveReader(src) as ar:
        meta, table = dict(ar.meta), ar.table.copy()
        off, n, _ = ar._hash_blob
        sec = lz4.frame.decompress(bytes(ar._mm[off:off + n]))
        blobs = [bytes(ar._mm[int(r["offset"]):int(r["offset"]) + int(r["size"])]) for r in table]
    if edit_raw is not None:
        sec = edit_raw(bytearray(sec), meta["tetra_index"])
    if edit_meta is not None:
        edit_meta(meta)
    blob = b"" if drop_index else lz4.frame.compress(bytes(sec))
    if drop_index:
        meta.pop("tetra_index", None)
    if version is not None:
        meta["format_version"] = version
    mb = json.dumps(meta, sort_keys=True).encode()
    table_off = A.HEADER_SIZE + len(mb) + 4
    hash_off = table_off + table.nbytes + 4
    o = hash_off + len(blob)
    for r in table:
        r["offset"] = o
        o += int(r["size"])
    head = A.HEADER.pack(A.MAGIC, version or A.VERSION, 0, len(mb), table_off, len(table),
                         hash_off if blob else 0, len(blob), zlib.crc32(blob))
    tb = table.tobytes()
    with open(dst, "wb") as f:
        f.write(head + struct.pack("<I", zlib.crc32(head)) + mb + struct.pack("<I", zlib.crc32(mb))
                + tb + struct.pack("<I", zlib.crc32(tb)) + blob + b"".join(blobs))


def _bad(region, value_of):
    """Edit the first uint32 of one region of the raw index (probes' records,
    simplices, cells) to ``value_of(index metadata)``."""
    def edit(sec, m):
        arr = np.frombuffer(bytes(sec), np.uint32).copy()
        P, E = m["n_probes"], m["n_simplices"]
        arr[{"records": 3, "simplices": P * 4, "cells": P * 4 + E * 4}[region]] = value_of(m)
        return arr.tobytes()
    return edit


@pytest.mark.parametrize("case,edit_raw,edit_meta,message", [
    ("record beyond the pages", _bad("records", lambda m: 0xFFFF0000), None, "field probes"),
    ("simplex id beyond the probes", _bad("simplices", lambda m: m["n_probes"] + 5), None, "field simplices"),
    ("cell offset out of order", _bad("cells", lambda m: 0), None, "field cells"),
    ("max_items lies", None, lambda m: m["tetra_index"].update(max_items=1), "field max_items"),
    ("cell shape too large", None, lambda m: m["tetra_index"].update(cell_shape=[5000, 1, 1]), "cell_shape"),
    ("raw size lies", None, lambda m: m["tetra_index"].update(raw_size=12), "raw_size"),
    ("mode unknown", None, lambda m: m["tetra_index"].update(mode="cubes"), "field mode"),
])
def test_reader_refuses_a_damaged_index(tmp_path, case, edit_raw, edit_meta, message):
    rng = np.random.default_rng(31)
    path, _, _ = make_scattered_archive(tmp_path / "s.pwa", scattered_positions("random", rng))
    _rewrite(path, tmp_path / "bad.pwa", edit_meta=edit_meta, edit_raw=edit_raw)
    with pytest.raises(InputError, match=message):
        with ArchiveReader(tmp_path / "bad.pwa") as ar:
            ar.tet_index()
    with pytest.raises(InputError, match="tetra_index"):
        Decoder(tmp_path / "bad.pwa")


def test_version_4_without_its_index_is_refused_and_version_3_still_decodes(gl, tmp_path):
    from probewarp.runtime.decode import decode_gl
    rng = np.random.default_rng(32)
    path, _, _ = make_scattered_archive(tmp_path / "s.pwa", scattered_positions("jitter", rng))
    _rewrite(path, tmp_path / "v4.pwa", drop_index=True)
    with pytest.raises(InputError, match="without its index"):
        ArchiveReader(tmp_path / "v4.pwa")
    # a version 3 file of the tetrahedral rule (written before the index): the CPU
    # decoder builds the same index from its positions; the GL runtime, which
    # imports no qhull, asks for a new bake
    _rewrite(path, tmp_path / "v3.pwa", drop_index=True, version=3)
    q = queries(Decoder(path), rng)
    old = Decoder(tmp_path / "v3.pwa")
    assert old.tet_index is not None
    np.testing.assert_array_equal(old.decode(q), Decoder(path).decode(q))
    with pytest.raises(InputError, match="before format version 4"):
        decode_gl(tmp_path / "v3.pwa", q, ctx=gl)


def test_streamer_refuses_the_old_inverse_distance_rule(gl, tmp_path):
    from probewarp.runtime.decode import decode_gl
    rng = np.random.default_rng(33)
    path, _, _ = make_scattered_archive(tmp_path / "s.pwa", scattered_positions("jitter", rng),
                                        interpolation="inverse-distance-8")
    with ArchiveReader(path) as ar:
        assert ar.tet_index() is None
    with pytest.raises(InputError, match="interpolation"):
        decode_gl(path, np.zeros((1, 3)), ctx=gl)


def test_cli_decodes_a_scattered_archive_on_both_backends(tmp_path, gl):
    """``probewarp decode --backend gl`` of a scattered archive equals ``--backend cpu``."""
    from probewarp.baker.probeset import ProbeSet
    from probewarp.cli.main import main
    rng = np.random.default_rng(41)
    path, _, _ = make_scattered_archive(tmp_path / "s.pwa", scattered_positions("jitter", rng))
    q = np.unique(queries(Decoder(path), rng), axis=0)      # a probe set: distinct positions
    np.save(tmp_path / "q.npy", q)
    for backend in ("cpu", "gl"):
        assert main(["decode", str(path), "--at", str(tmp_path / "q.npy"), "-o", str(tmp_path / f"{backend}.npz"),
                     "--backend", backend]) == 0
    cpu, glf = (np.asarray(ProbeSet.load(tmp_path / f"{b}.npz").faces) for b in ("cpu", "gl"))
    assert float(np.abs(tonemap(glf) - tonemap(cpu)).max()) <= PARITY_TOL


def test_pages_too_large_for_a_record_are_refused_before_any_work(tmp_path):
    """Records have 16 bits for a probe's place in its page: a bake asking for
    bigger pages of a bigger set is refused up front, not after baking."""
    from probewarp.baker.pipeline import bake_arrays
    pos = np.random.default_rng(0).random((70000, 3))
    faces = np.full((70000, 6, 1, 1, 3), 0.5, np.float32)
    with pytest.raises(InputError, match="page_probes 100000: a page holds at most 65536"):
        bake_arrays(pos, faces, tmp_path / "big.pwa", page_probes=100000)
    assert not any(tmp_path.iterdir())
