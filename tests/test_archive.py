"""The archive: round trip, checksums over every byte, atomic writes, and the
reference decoder between and outside probes."""
import os

import numpy as np
import pytest

from probewarp.format import texformats
from probewarp.format.archive import ArchiveReader, write_archive
from probewarp.baker.bake import Decoder, archive_meta, bake, split_pages
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid
from test_prototypes import _field
import naive


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


def test_atomic_write_leaves_nothing_on_failure(baked, tmp_path):
    g, faces, pages, path, size = baked
    target = tmp_path / "x.pwa"
    with pytest.raises(TypeError):
        write_archive(target, {"n_probes": 1, "texel_format": "rgba16f", "bad": object()}, pages)
    assert list(tmp_path.iterdir()) == []


def test_decoder_matches_oracle_between_and_outside_probes(baked):
    """Trilinear blend of the 8 neighbours' codes, each prototype warped to the
    query itself (DESIGN-NOTES §4); outside the grid the codes clamp."""
    g, faces, pages, path, size = baked
    dec = Decoder(path)
    rng = np.random.default_rng(1)
    q = np.concatenate([rng.uniform(-1, 1, (3, 3)), [[1.7, 0.2, -2.0]], g[5:6]])
    got = dec.decode(q, R=4)
    lo, hi, shape = g[0], g[-1], np.array([4, 4, 4])
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
        np.testing.assert_allclose(got[n], inverse_tonemap(ref), rtol=2e-4, atol=1e-5)


def test_split_pages_bricks_cover_the_grid():
    g, _ = _field(R=4, n=5)
    groups = split_pages(g, 30, Grid((5, 5, 5), g[0], g[-1]))
    allids = np.sort(np.concatenate(groups))
    np.testing.assert_array_equal(allids, np.arange(125))
    assert max(len(a) for a in groups) <= 45
    scattered = split_pages(g, 30, None)
    np.testing.assert_array_equal(np.sort(np.concatenate(scattered)), np.arange(125))
    assert max(len(a) for a in scattered) <= 30
