"""The archive: round trip, checksums over every byte, atomic writes, and the
reference decoder between and outside probes."""
import os

import numpy as np
import pytest

from probewarp.format import texformats
from probewarp.format.archive import ArchiveReader, write_archive
from probewarp.baker.bake import archive_meta, bake, split_pages
from probewarp.baker.decoder import Decoder
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid
from test_prototypes import _field
import naive
import tolerances as tol


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    g, faces = _field(R=4, n=4)
    pages, rep = bake(g, faces, n_prototypes=6, n_taps=2, prototype_res=8, page_probes=32,
                      grid=Grid((4, 4, 4), g[0], g[-1]), n_iter=1)
    path = tmp_path_factory.mktemp("arch") / "a.pwa"
    size = write_archive(path, archive_meta(len(g), rep, Grid((4, 4, 4), g[0], g[-1])), pages)
    return g, faces, pages, path, size


def test_round_trip_and_summary(baked):
    g, faces, pages, path, size = baked
    assert len(pages) == 2 and os.path.getsize(path) == size
    with ArchiveReader(path) as ar:
        ar.validate()
        assert ar.summary()["n_probes"] == 64
        for i, pg in enumerate(pages):
            back = ar.page(i)
            np.testing.assert_array_equal(back.probe_ids, pg.probe_ids)
            np.testing.assert_array_equal(back.indices, pg.indices)
            np.testing.assert_allclose(back.weights, pg.weights, atol=0.5 / texformats.WEIGHT_ONE)
            np.testing.assert_allclose(back.prototypes, pg.prototypes, rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(back.centres, pg.centres, rtol=1e-6)


def test_every_byte_is_covered(baked, tmp_path):
    """Flip one byte anywhere: opening or validating must fail with InputError."""
    *_, path, size = baked
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    spots = sorted(set(rng.integers(0, size, 40).tolist()) | {0, 9, 63, 64, size - 1})
    for pos in spots:
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        p = tmp_path / "bad.pwa"
        p.write_bytes(bytes(bad))
        with pytest.raises(InputError):
            with ArchiveReader(p) as ar:
                ar.validate()


@pytest.mark.parametrize("cut", [10, 64, 200, -1])
def test_truncation_and_bad_magic_version(baked, tmp_path, cut):
    *_, path, size = baked
    p = tmp_path / "t.pwa"
    p.write_bytes(path.read_bytes()[:cut if cut > 0 else size - 1])
    with pytest.raises(InputError, match="truncated|checksum|shorter|unexpected"):
        with ArchiveReader(p) as ar:
            ar.validate()


def test_magic_and_version_messages(baked, tmp_path):
    *_, path, size = baked
    raw = bytearray(path.read_bytes())
    p = tmp_path / "m.pwa"
    p.write_bytes(b"NOTANARC" + bytes(raw[8:]))
    with pytest.raises(InputError, match="magic"):
        ArchiveReader(p)
    v = bytearray(raw)
    v[8] = 99
    p.write_bytes(bytes(v))
    with pytest.raises(InputError, match="version 99"):
        ArchiveReader(p)


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
@pytest.mark.parametrize("existing", [False, True])
def test_atomic_write_keeps_the_old_file_and_leaves_no_temporary(baked, tmp_path, monkeypatch, fail_at, existing):
    """A failure after the archive's bytes went to the temporary file (at its
    fsync, or at the rename onto the target) leaves the target as it was
    (old bytes, or absent) and no temporary file behind."""
    from probewarp.format import archive as arch
    g, faces, pages, path, size = baked
    with ArchiveReader(path) as ar:
        meta = dict(ar.meta)
    target = tmp_path / "x.pwa"
    old = b"the previous archive"
    if existing:
        target.write_bytes(old)
    seen = {}

    def fail(*args, **kw):
        for f in tmp_path.iterdir():           # what is on disk at the moment of failure
            if f.name != target.name:
                f_size = f.stat().st_size if fail_at == "replace" else os.fstat(args[0]).st_size
                seen[f.name] = f_size
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(arch.os, fail_at, fail)
    with pytest.raises(OSError, match="injected"):
        write_archive(target, meta, pages)
    monkeypatch.undo()
    assert seen and max(seen.values()) > 1000, seen   # the failure came after the bytes were written
    if existing:
        assert target.read_bytes() == old
    else:
        assert not target.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == (["x.pwa"] if existing else [])


def test_decoder_matches_oracle_between_and_outside_probes(baked):
    """Trilinear blend of the 8 neighbours' codes, each prototype warped to the
    query itself (DESIGN-NOTES §4); outside the grid the codes clamp."""
    g, faces, pages, path, size = baked
    dec = Decoder(path)
    rng = np.random.default_rng(1)
    q = np.concatenate([rng.uniform(-1, 1, (3, 3)), [[1.7, 0.2, -2.0]], g[5:6]])
    got = dec.decode(q, R=4)
    lo, hi = g[0], g[-1]
    step = (hi - lo) / 3
    protos = dec.J.reshape(-1, 6, 8, 8, 3).astype(np.float64)
    for n, p in enumerate(q):
        u = np.clip((p - lo) / step, 0, 3)
        i0 = np.minimum(np.floor(u).astype(int), 2)
        f = u - i0
        ref = np.zeros((6, 4, 4, 3))
        for c in range(8):
            o = np.array([(c >> 2) & 1, (c >> 1) & 1, c & 1])
            wc = np.prod(np.where(o == 1, f, 1 - f))
            pid = np.ravel_multi_index(i0 + o, (4, 4, 4))
            ref += wc * naive.naive_decode_probe(p, dec.centres, dec.radii, protos, dec.codes_idx[pid],
                                                 dec.codes_w[pid], 4)
        from probewarp.baker.metrics import inverse_tonemap
        # the blend is clipped at the tonemap of the brightest input (docs/FORMAT.md radiance_max):
        # this field's blends overshoot it
        ref = np.minimum(ref, naive.naive_tonemap(dec.meta["radiance_max"]))
        np.testing.assert_allclose(got[n], inverse_tonemap(ref), rtol=tol.DECODE_RADIANCE_RTOL,
                                   atol=tol.DECODE_RADIANCE_ATOL)


def test_split_pages_bricks_cover_the_grid():
    g, _ = _field(R=4, n=5)
    groups = split_pages(g, 30, Grid((5, 5, 5), g[0], g[-1]))
    allids = np.sort(np.concatenate(groups))
    np.testing.assert_array_equal(allids, np.arange(125))
    assert max(len(a) for a in groups) <= 45
    scattered = split_pages(g, 30, None)
    np.testing.assert_array_equal(np.sort(np.concatenate(scattered)), np.arange(125))
    assert max(len(a) for a in scattered) <= 30


# -- format versions --------------------------------------------------------------------
# level-1 error against the box filter: float16 rounding; BC6H's block endpoints
# on 8x8 faces of the synthetic lobes (measured max 0.047, mean ~4e-3)
@pytest.mark.parametrize("fmt, atol, mean_tol", [("rgba16f", 1e-3, 1e-4), ("bc6h", 0.1, 1e-2)])
def test_v3_stores_the_prototype_mip_chain(tmp_path, fmt, atol, mean_tol):
    """Rp = 2R: a version 3 page stores L = 2 levels in the stored format, level 1
    the 2x2 box filter of level 0 (through texformats.decode) within the format's
    tolerance; with Rp = R it stores level 0 only (payload as in version 2)."""
    from probewarp.format import texformats
    from probewarp.format.archive import VERSION
    from synth import make_archive
    path, pages, meta = make_archive(tmp_path / "a.pwa", Rp=16, R=8, fmt=fmt, seed=2)
    with ArchiveReader(path) as ar:
        assert ar.version == VERSION == 4
        assert ar.meta["prototype_levels"] == ar.prototype_levels == 2
        f = ar.page_stored(0)
        l0, l1 = f["prototype_levels"]
        assert l0 is f["prototypes"] and l1.shape[:2] == l0.shape[:2]
        assert (l1.shape, l1.dtype) == ((l0.shape[0], 6) + texformats.stored_layout(fmt, 8)[0],
                                        texformats.stored_layout(fmt, 8)[1])
        box = texformats.downsample_box(texformats.decode(l0, fmt), 2)
        np.testing.assert_allclose(texformats.decode(l1, fmt), box, atol=atol)
        assert float(np.abs(texformats.decode(l1, fmt) - box).mean()) <= mean_tol
        np.testing.assert_array_equal(l1, texformats.encode(box, fmt))   # the writer's rule, exactly
    path1, _, _ = make_archive(tmp_path / "b.pwa", Rp=8, R=8, fmt=fmt, seed=2)
    with ArchiveReader(path1) as ar:
        assert ar.prototype_levels == 1 and len(ar.page_stored(0)["prototype_levels"]) == 1


@pytest.mark.parametrize("fmt", ["rgba16f", "bc6h"])
def test_v2_files_still_read(tmp_path, fmt):
    """A version 2 file (level 0 only) of Rp = 2R: read; uncompressed formats get
    their mip chain computed on reading (equal to what version 3 stores), block
    formats stream level 0 only; the CPU decode is unchanged."""
    from probewarp.baker.decoder import Decoder
    from synth import downgrade, make_archive
    path, _, _ = make_archive(tmp_path / "a.pwa", Rp=16, R=8, fmt=fmt, seed=4)
    v2 = downgrade(path, tmp_path / "v2.pwa", 2)
    with ArchiveReader(path) as a3, ArchiveReader(v2) as a2:
        assert a2.version == 2 and "prototype_levels" not in a2.meta
        a2.validate()
        s3, s2 = a3.page_stored(1), a2.page_stored(1)
        np.testing.assert_array_equal(s2["prototypes"], s3["prototypes"])
        if fmt == "bc6h":
            assert a2.prototype_levels == 1 and len(s2["prototype_levels"]) == 1
        else:
            assert a2.prototype_levels == 2
            for a, b in zip(s2["prototype_levels"], s3["prototype_levels"], strict=True):
                np.testing.assert_array_equal(a, b)
    q = np.array([[0.3, 1.1, -0.7], [2.0, 0.5, 1.0]])
    np.testing.assert_array_equal(Decoder(v2).decode(q), Decoder(path).decode(q))
