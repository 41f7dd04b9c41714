"""The spatial hash: Python table against a dict oracle, GLSL twin against Python,
and the archive's hash section (written, checksummed, rebuilt for version 1)."""
import numpy as np
import pytest

from probewarp.format import spatialhash as sh
from probewarp.format.grid import Grid
from probewarp.format.archive import ArchiveReader
from probewarp.format.errors import InputError
from synth import make_archive


def naive_fmix32(k: int) -> int:
    """MurmurHash3 fmix32 with Python ints (the published constants)."""
    k ^= k >> 16
    k = (k * 0x85EBCA6B) & 0xFFFFFFFF
    k ^= k >> 13
    k = (k * 0xC2B2AE35) & 0xFFFFFFFF
    k ^= k >> 16
    return k


def test_fmix32_matches_reference():
    keys = [0, 1, 2, 12345, 0x7FFFFFFF, 0xFFFFFFFE]
    assert sh.fmix32(np.array(keys)).tolist() == [naive_fmix32(k) for k in keys]
    assert naive_fmix32(1) == 0x514E28B7   # MurmurHash3 fmix32(1), published test vector


@pytest.mark.parametrize("n", [1, 7, 500, 4096])
def test_build_and_lookup_match_a_dict(n):
    rng = np.random.default_rng(n)
    keys = rng.choice(10 * n + 50, size=n, replace=False).astype(np.uint32)
    recs = rng.integers(0, 2**31, size=n).astype(np.uint32)
    table, max_probe = sh.build(keys, recs)
    cap = table.shape[0]
    assert cap & (cap - 1) == 0 and n / cap <= sh.MAX_LOAD
    assert (table[:, 0] != sh.EMPTY).sum() == n
    oracle = dict(zip(keys.tolist(), recs.tolist()))
    probe = np.concatenate([keys, rng.integers(0, 20 * n + 100, size=200).astype(np.uint32), [sh.EMPTY]])
    got = sh.lookup(table, max_probe, probe)
    want = [oracle.get(int(k), int(sh.EMPTY)) for k in probe]
    assert got.tolist() == want
    # every stored key is within max_probe slots of its home, and some key needs all of them
    home = sh.fmix32(keys).astype(np.int64) & (cap - 1)
    where = {int(k): i for i, k in enumerate(table[:, 0]) if k != sh.EMPTY}
    dist = [(where[int(k)] - h) % cap + 1 for k, h in zip(keys, home)]
    assert max(dist) == max_probe


def test_build_rejects_duplicates_and_empty_key():
    with pytest.raises(ValueError, match="distinct"):
        sh.build(np.array([3, 3], np.uint32), np.array([0, 1], np.uint32))
    with pytest.raises(ValueError, match="EMPTY"):
        sh.build(np.array([sh.EMPTY], np.uint32), np.array([0], np.uint32))


def test_lattice_key_order_and_outside():
    shape = (3, 4, 5)
    ijk = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [2, 3, 4], [-1, 0, 0], [0, 4, 0]])
    assert Grid(shape, (0, 0, 0), (1, 1, 1)).keys(ijk).tolist() == [0, 1, 5, 20, 59, int(sh.EMPTY), int(sh.EMPTY)]


def test_record_roundtrip_and_limits():
    page, local = np.array([0, 3, 65535]), np.array([65535, 0, 7])
    p, l = sh.split_record(sh.record(page, local))
    assert p.tolist() == page.tolist() and l.tolist() == local.tolist()
    with pytest.raises(ValueError):
        sh.record([65536], [0])


def _gpu_lookup(ctx, streamer, cells):
    from probewarp.runtime import shaders
    prog = shaders.compute(ctx, "pw_lookup.cs", streamer.defines)
    data = np.zeros((len(cells), 4), np.int32)
    data[:, :3] = cells
    src = ctx.buffer(data.tobytes())
    dst = ctx.buffer(reserve=len(cells) * 16)
    try:
        streamer.bind(prog)
        src.bind_to_storage_buffer(0)
        dst.bind_to_storage_buffer(1)
        prog["u_count"].value = len(cells)
        prog.run(-(-len(cells) // 64))
        return np.frombuffer(dst.read(), np.uint32).reshape(-1, 4)
    finally:
        src.release()
        dst.release()
        prog.release()


@pytest.mark.parametrize("keep", [None, 0.5])
def test_glsl_hash_agrees_with_python(gl, tmp_path, keep):
    """Every lattice cell plus cells outside the lattice: key, hash and record
    from GLSL equal the Python twin's, slot for slot."""
    from probewarp.runtime.streamer import Streamer
    path, pages, meta = make_archive(tmp_path / "a.pwa", grid_shape=(7, 3, 6), keep=keep, page_probes=20)
    with Streamer(gl, path, page_slots=8) as s:
        shape = np.array(meta["grid"]["shape"])
        ijk = np.stack(np.meshgrid(*[np.arange(-1, n + 1) for n in shape], indexing="ij"), -1).reshape(-1, 3)
        got = _gpu_lookup(gl, s, ijk)
        keys = Grid.from_meta(meta).keys(ijk)
        assert got[:, 0].tolist() == keys.tolist()
        inside = keys != sh.EMPTY
        assert got[inside, 1].tolist() == sh.fmix32(keys[inside]).tolist()
        want = sh.lookup(s.hash_table, s.hash_max_probe, keys)
        assert got[:, 2].tolist() == want.tolist()
        # and the records name the probe at that lattice point
        hit = want != sh.EMPTY
        assert hit.sum() == meta["n_probes"]
        page, local = sh.split_record(want[hit])
        pos = np.array([pages[p].positions[l] for p, l in zip(page, local)])
        lo, hi = np.array(meta["grid"]["lo"]), np.array(meta["grid"]["hi"])
        np.testing.assert_allclose(pos, lo + ijk[hit] * (hi - lo) / (shape - 1), atol=1e-5)


def test_archive_hash_section_is_checked(tmp_path):
    path, pages, meta = make_archive(tmp_path / "a.pwa", keep=0.7)
    from probewarp.format.archive import VERSION
    with ArchiveReader(path) as ar:
        assert ar.version == VERSION
        table, mp = ar.hash()
        ar.validate()
        hash_off = int(ar.table[0]["offset"]) - ar.summary()["hash"]["bytes"]
    data = bytearray(path.read_bytes())
    data[hash_off + 5] ^= 0x40
    bad = tmp_path / "bad.pwa"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match="hash: checksum mismatch"):
        ArchiveReader(bad)


def test_version1_dense_archive_still_reads(tmp_path):
    """A version 1 file (no hash section) of a dense grid: readable, its hash
    rebuilt from the page table, identical to the one versions 2 and 3 store."""
    import json
    import struct
    import zlib
    from probewarp.format import archive as A
    from probewarp.baker.decoder import Decoder
    path, pages, meta = make_archive(tmp_path / "a.pwa", page_probes=16)
    with ArchiveReader(path) as ar:
        table2, mp2 = ar.hash()
        meta2, table = dict(ar.meta), ar.table.copy()
        blobs = [bytes(ar._mm[int(r["offset"]):int(r["offset"]) + int(r["size"])]) for r in table]
    meta2.pop("hash")
    meta2.pop("prototype_levels")
    meta2["format_version"] = 1
    mb = json.dumps(meta2, sort_keys=True).encode()
    table_off = A.HEADER_SIZE + len(mb) + 4
    off = table_off + table.nbytes + 4
    for i, b in enumerate(blobs):
        table[i]["offset"] = off
        off += len(b)
    head = struct.pack("<8sIIQQI24x", A.MAGIC, 1, 0, len(mb), table_off, len(blobs))
    tb = table.tobytes()
    v1 = tmp_path / "v1.pwa"
    v1.write_bytes(head + struct.pack("<I", zlib.crc32(head)) + mb + struct.pack("<I", zlib.crc32(mb))
                   + tb + struct.pack("<I", zlib.crc32(tb)) + b"".join(blobs))
    with ArchiveReader(v1) as ar:
        assert ar.version == 1
        table1, mp1 = ar.hash()
        ar.validate()
    assert np.array_equal(table1, table2) and mp1 == mp2
    q = np.array([[0.3, 1.1, -0.7], [9.0, 9.0, 9.0]])
    np.testing.assert_array_equal(Decoder(v1).decode(q), Decoder(path).decode(q))
