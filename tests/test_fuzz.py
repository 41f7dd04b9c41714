"""Readers of untrusted bytes end every input in the project's own error type
(:class:`~probewarp.format.errors.InputError`) naming the file, never another
exception, never an allocation sized by an unchecked field.

Property tests (hypothesis, deterministic) over the fuzz targets of
``fuzz/targets.py`` — arbitrary bytes and structured mutations of real small
files — the replay of every reproducer in ``fuzz/corpus/regressions/``, and
explicit tests of the hostile inputs: a decompression bomb in a page, fields
claiming sizes beyond the file, an RGBE header of 100000 x 100000 pixels, an
``.npz`` holding a pickled object array. ``fuzz/run.py`` runs the long
coverage-guided campaigns (``fuzz/results/``).
"""
from __future__ import annotations

import contextlib
import json
import resource
import shutil
import struct
import sys
import zlib
from pathlib import Path

import lz4.frame
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))
import targets as T  # noqa: E402

from probewarp.baker.hdrio import HdrImageError, read_hdr_image  # noqa: E402
from probewarp.baker.probeset import ProbeSet  # noqa: E402
from probewarp.baker.validation import ProbeSetError  # noqa: E402
from probewarp.format.archive import ArchiveReader  # noqa: E402
from probewarp.format.errors import InputError  # noqa: E402

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FAST, max_examples=100)

_SEEDS: dict = {}


def seeds(target):
    if target not in _SEEDS:
        _SEEDS[target] = T.seeds(target)
    return _SEEDS[target]


@contextlib.contextmanager
def address_space_cap(extra_bytes=1 << 30):
    """Cap the process's address space at its current size plus ``extra_bytes``:
    an allocation sized by an unchecked field fails (MemoryError) instead of
    passing unnoticed on an overcommitting kernel."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        now = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (now + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# -- structured mutations -------------------------------------------------------
BOUNDARY = [0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 63, 2 ** 64 - 1]
mutation = st.one_of(
    st.tuples(st.just("xor"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("int"), st.integers(0, 1 << 20), st.sampled_from([1, 2, 4, 8]), st.sampled_from(BOUNDARY)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 64)),
)


def apply(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for m in muts:
        if not b:
            break
        i = m[1] % len(b)
        if m[0] == "xor":
            b[i] ^= m[2]
        elif m[0] == "int":
            w = m[2]
            i = min(i - i % w, max(len(b) - w, 0))
            b[i:i + w] = (m[3] & ((1 << 8 * w) - 1)).to_bytes(w, "little")[:len(b) - i]
        elif m[0] == "cut":
            del b[i:]
        elif m[0] == "insert":
            b[i:i] = m[2]
        else:
            del b[i:i + m[2]]
    return bytes(b)


# -- the archive ----------------------------------------------------------------
@FAST
@given(st.binary(max_size=600))
def test_archive_arbitrary_bytes(data):
    T.target_archive(data)
    T.target_archive_fixed(b"PWARCH\x00\x01" + data)


@FAST
@given(st.integers(0, 7), st.lists(mutation, min_size=1, max_size=4), st.sampled_from(["raw", "fixed", "inflated"]))
def test_archive_mutations(which, muts, mode):
    """Mutations of real archives (baked, grid, sparse, scattered, bc7, v1, v2):
    as they are, with every CRC recomputed, or of the decompressed payloads."""
    base = seeds("archive")[which % len(seeds("archive"))]
    if mode == "raw":
        T.target_archive(apply(base, muts))
    elif mode == "fixed":
        T.target_archive_fixed(apply(base, muts))
    else:
        T.target_archive_inflated(apply(T.inflate_archive(base), muts))


def _rewrite(data: bytes, meta=None, table=None) -> bytes:
    """A real archive with its metadata and/or page table replaced, CRCs fixed."""
    magic, version, flags, meta_len, table_off, n_pages, hash_off, hash_len, hcrc = T._HEAD.unpack_from(data, 0)
    old_meta = data[64:64 + meta_len]
    tb = bytearray(data[table_off:table_off + 88 * n_pages])
    rest = data[table_off + 88 * n_pages + 4:]
    mb = json.dumps(meta).encode() if meta is not None else old_meta
    shift = len(mb) - len(old_meta)
    if table is not None:
        table(tb)
    for i in range(n_pages):
        off = struct.unpack_from("<Q", tb, 88 * i)[0]
        struct.pack_into("<Q", tb, 88 * i, off + shift)
    head = T._HEAD.pack(magic, version, flags, len(mb), table_off + shift, n_pages,
                        hash_off + shift if hash_off else 0, hash_len, hcrc)
    return T.fix_archive_crcs(head + b"\0" * 4 + mb + b"\0" * 4 + bytes(tb) + b"\0" * 4 + rest)


meta_value = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True),
                       st.text(max_size=8), st.lists(st.integers(-5, 2 ** 33), max_size=4),
                       st.dictionaries(st.sampled_from(["shape", "lo", "hi", "dense", "capacity", "max_probe"]),
                                       st.one_of(st.integers(-3, 2 ** 40), st.lists(st.floats(), max_size=4)),
                                       max_size=4))


@FAST
@given(st.integers(0, 7), st.sampled_from(["n_probes", "probe_res", "prototype_res", "n_taps", "texel_format",
                                           "domain", "grid", "hash", "prototype_levels", "radiance_max",
                                           "format_version", "n_pages"]), meta_value)
def test_archive_metadata_fields(which, key, value):
    """Any metadata field set to any JSON value: opened and read, or InputError naming the file."""
    base = seeds("archive")[which % len(seeds("archive"))]
    with ArchiveReader(_tmp("base.pwa", base)) as ar:
        meta = dict(ar.meta)
    meta[key] = value
    T.target_archive(_rewrite(base, meta=meta))


@FEW
@given(st.integers(0, 7), st.integers(0, 1), st.sampled_from([(0, "<Q"), (8, "<Q"), (16, "<Q"), (28, "<I"),
                                                               (32, "<I"), (64, "<I"), (68, "<I"), (76, "<I"),
                                                               (80, "<I")]), st.sampled_from(BOUNDARY))
def test_archive_table_fields(which, page, field, value):
    """A page-table field (offset, size, raw_size, counts, brick) at a boundary value."""
    base = seeds("archive")[which % len(seeds("archive"))]
    off, fmt = field

    def edit(tb):
        if len(tb) >= 88 * (page + 1):
            struct.pack_into(fmt, tb, 88 * page + off, value & ((1 << 8 * struct.calcsize(fmt)) - 1))
    T.target_archive(_rewrite(base, table=edit))


def _tmp(name, data: bytes) -> Path:
    p = T._fresh(name)
    p.write_bytes(data)
    return p


# -- probe sets -----------------------------------------------------------------
@FAST
@given(st.integers(0, 2), st.lists(mutation, min_size=1, max_size=3))
def test_npz_mutations(which, muts):
    T.target_npz(apply(seeds("npz")[which], muts))


@FAST
@given(st.binary(max_size=400))
def test_npz_arrays(data):
    """``.npz`` files of arrays of any small shape and dtype (values from the bytes)."""
    T.target_npz_arrays(data)


zarr_value = st.one_of(st.integers(-1, 2 ** 45), st.lists(st.integers(-1, 2 ** 41), max_size=6),
                       st.sampled_from(["float16", "float32", "int8", "complex64", "string", "bool", "|O",
                                        "float64", "uint64"]),
                       st.none(), st.text(max_size=5), st.floats(),
                       st.just([{"name": "bytes"}, {"name": "blosc"}]), st.just([{"name": "sharding_indexed"}]),
                       st.just({"name": "regular", "configuration": {"chunk_shape": [0, 6, 2, 2, 3]}}))


@FAST
@given(st.integers(0, 1), st.sampled_from(["faces", "positions", "grid_shape", "lo"]),
       st.sampled_from(["shape", "data_type", "fill_value", "codecs", "chunk_grid", "zarr_format", "node_type",
                        "chunk_key_encoding"]), zarr_value)
def test_zarr_metadata_fields(which, array, key, value):
    """A field of an array's zarr.json set to any value."""
    root = T._fresh("meta.zarr")
    T.unpack_dir(seeds("zarr")[which], root)
    mp = root / array / "zarr.json"
    if not mp.exists():
        return
    meta = json.loads(mp.read_text())
    meta[key] = value
    mp.write_text(json.dumps(meta))
    T._exercise_probeset(root, (None, False))


@FEW
@given(st.integers(0, 1), st.lists(mutation, min_size=1, max_size=3), st.booleans())
def test_zarr_chunk_and_group_bytes(which, muts, group):
    """Mutated chunk bytes (zstd frames) or the group's zarr.json."""
    root = T._fresh("chunk.zarr")
    T.unpack_dir(seeds("zarr")[which], root)
    f = root / "zarr.json" if group else sorted((root / "faces" / "c").rglob("*"))[-1]
    if f.is_file():
        f.write_bytes(apply(f.read_bytes(), muts))
    T._exercise_probeset(root, (None, False))


@FEW
@given(st.integers(0, 1), st.lists(mutation, min_size=1, max_size=4))
def test_zarr_packed_mutations(which, muts):
    T.target_zarr(apply(seeds("zarr")[which], muts))


# -- images and the CSV ---------------------------------------------------------
@FAST
@given(st.sampled_from(["exr", "hdr"]), st.integers(0, 4), st.lists(mutation, min_size=1, max_size=4))
def test_image_mutations(kind, which, muts):
    s = seeds(kind)
    T.TARGETS[kind](apply(s[which % len(s)], muts))


@FAST
@given(st.integers(0, 2 ** 31), st.integers(0, 2 ** 31), st.sampled_from(["-Y", "+Y"]), st.sampled_from(["+X", "-X"]),
       st.binary(max_size=64))
def test_rgbe_declared_sizes(h, w, ys, xs, body):
    T.target_hdr(f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n{ys} {h} {xs} {w}\n".encode() + body)


@FAST
@given(st.text(alphabet=st.sampled_from(list("ab,#\n\r\"' 0123456789.-+eEinfa\x00\ufeff")), max_size=200))
def test_csv_text(text):
    T.target_csv(text.encode("utf-8"))


@FEW
@given(st.binary(max_size=300))
def test_csv_bytes(data):
    T.target_csv(data)


# -- replays of fixed crashes ---------------------------------------------------
REGRESSIONS = sorted(T.REGRESSIONS.glob("*.bin"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_regression_replay(path):
    """Every reproducer of a bug the fuzzer found ends in an allowed error naming
    the file (or reads), within a 1 GiB address-space cap (the memory bombs)."""
    with address_space_cap():
        T.replay(path)


def test_regressions_exist():
    assert len(REGRESSIONS) >= 20, "the reproducers of the fixed bugs are kept in fuzz/corpus/regressions/"


# -- explicit hostile inputs ----------------------------------------------------
def _bomb_frame(claimed: int) -> bytes:
    """An lz4 frame whose header declares ``claimed`` bytes of content (holding 100 zeros)."""
    c = lz4.frame.LZ4FrameCompressor()
    head = c.begin(source_size=claimed)
    return head + lz4.frame.compress(b"\0" * 100, store_size=False)[7:]


def _with_page0(base: bytes, blob: bytes, raw_size=None) -> bytes:
    """``base`` with page 0's blob replaced (offsets of later pages moved, CRCs fixed)."""
    inflated_table = T._HEAD.unpack_from(base, 0)
    table_off, n_pages = inflated_table[4], inflated_table[5]
    b = bytearray(base)
    off, size, raw = struct.unpack_from("<QQQ", b, table_off)
    b[off:off + size] = blob
    struct.pack_into("<QQ", b, table_off + 8, len(blob), raw if raw_size is None else raw_size)
    for i in range(1, n_pages):
        o = struct.unpack_from("<Q", b, table_off + 88 * i)[0]
        struct.pack_into("<Q", b, table_off + 88 * i, o + len(blob) - size)
    return T.fix_archive_crcs(bytes(b))


@pytest.mark.parametrize("raw_size", ["record", "claimed"])
def test_decompression_bomb_in_a_page(tmp_path, raw_size):
    """A page's lz4 frame claims 8 GiB: rejected from the frame header or the
    record, before anything is allocated (under a 1 GiB address-space cap)."""
    base = seeds("archive")[2]
    claimed = 8 << 30
    p = tmp_path / "bomb.pwa"
    p.write_bytes(_with_page0(base, _bomb_frame(claimed), None if raw_size == "record" else claimed))
    with address_space_cap():
        with pytest.raises(InputError) as ei:
            with ArchiveReader(p) as ar:
                ar.page(0)
    msg = str(ei.value)
    assert "bomb.pwa" in msg and "page 0" in msg
    assert ("declares 8589934592 bytes" in msg) if raw_size == "record" else ("field raw_size" in msg)


def test_hash_bomb(tmp_path):
    """The hash's metadata claims 2^31 slots (16 GiB) for its few compressed bytes."""
    base = seeds("archive")[2]
    with ArchiveReader(_tmp("b.pwa", base)) as ar:
        meta = dict(ar.meta)
    meta["hash"] = dict(meta["hash"], capacity=1 << 31)
    p = tmp_path / "hash.pwa"
    p.write_bytes(_rewrite(base, meta=meta))
    with address_space_cap(), pytest.raises(InputError, match=r"hash\.pwa: field hash: capacity 2147483648"):
        with ArchiveReader(p) as ar:
            ar.hash()


def test_tetra_index_bomb(tmp_path):
    """A scattered archive's index metadata claims 2^31 cell entries (8 GiB,
    counts and raw_size consistent) for its few compressed bytes."""
    base = seeds("archive")[-1]
    with ArchiveReader(_tmp("t.pwa", base)) as ar:
        meta = dict(ar.meta)
        assert ar.tet_index() is not None
    m = dict(meta["tetra_index"])
    m["raw_size"] += ((1 << 31) - m["n_items"]) * 4
    m["n_items"] = 1 << 31
    meta["tetra_index"] = m
    p = tmp_path / "tet.pwa"
    p.write_bytes(_rewrite(base, meta=meta))
    with address_space_cap(), pytest.raises(InputError, match=r"tet\.pwa: field tetra_index: \d+ bytes cannot come"):
        with ArchiveReader(p) as ar:
            ar.tet_index()


@pytest.mark.parametrize("what, edit, match", [
    ("meta_len", lambda b: struct.pack_into("<Q", b, 16, 1 << 62), "metadata runs past the end"),
    ("n_pages", lambda b: struct.pack_into("<I", b, 32, 2 ** 32 - 1), "field n_pages: the metadata says 2, "
     "the header 4294967295"),
    ("page size", lambda b: struct.pack_into("<Q", b, T._HEAD.unpack_from(b, 0)[4] + 8, 1 << 40),
     "page 0: truncated or misplaced"),
    ("hash_len", lambda b: struct.pack_into("<Q", b, 44, 1 << 40), "field hash: truncated or misplaced"),
    ("raw_size", lambda b: struct.pack_into("<Q", b, T._HEAD.unpack_from(b, 0)[4] + 16, 1 << 40),
     "page 0: field raw_size"),
    ("n_probes", lambda b: struct.pack_into("<I", b, T._HEAD.unpack_from(b, 0)[4] + 28, 2 ** 32 - 1),
     "page 0: field n_probes"),
], ids=["meta_len", "n_pages", "page_size", "hash_len", "raw_size", "n_probes"])
def test_fields_claiming_sizes_beyond_the_file(tmp_path, what, edit, match):
    b = bytearray(seeds("archive")[2])
    edit(b)
    p = tmp_path / "big.pwa"
    p.write_bytes(T.fix_archive_crcs(bytes(b)))
    with address_space_cap(), pytest.raises(InputError, match=match) as ei:
        with ArchiveReader(p) as ar:
            ar.validate()
    assert str(ei.value).startswith(str(p))


@pytest.mark.parametrize("key, value, match", [
    ("n_taps", 10 ** 12, "field n_taps"),
    ("prototype_res", 1 << 40, "field prototype_res"),
    ("grid", {"shape": [10 ** 6, 10 ** 6, 10 ** 6], "lo": [0, 0, 0], "hi": [1, 1, 1]}, "field grid"),
    ("grid", {"shape": [10 ** 400, 1, 1], "lo": [0, 0, 0], "hi": [1, 1, 1]}, "field grid"),
    ("texel_format", "bc2h", "field texel_format"),
], ids=["n_taps", "prototype_res", "grid_points", "grid_overflow", "texel_format"])
def test_metadata_claiming_sizes(tmp_path, key, value, match):
    base = seeds("archive")[2]
    with ArchiveReader(_tmp("b.pwa", base)) as ar:
        meta = dict(ar.meta)
    meta[key] = value
    p = tmp_path / "meta.pwa"
    p.write_bytes(_rewrite(base, meta=meta))
    with address_space_cap(), pytest.raises(InputError, match=match) as ei:
        ArchiveReader(p)
    assert str(ei.value).startswith(str(p))


def test_metadata_not_json(tmp_path):
    b = bytearray(seeds("archive")[2])
    b[64] = 0xFF
    p = tmp_path / "nj.pwa"
    p.write_bytes(T.fix_archive_crcs(bytes(b)))
    with pytest.raises(InputError, match=r"nj\.pwa: field metadata: not UTF-8 JSON"):
        ArchiveReader(p)


def test_rgbe_header_of_100000_by_100000(tmp_path):
    p = tmp_path / "huge.hdr"
    p.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100000 +X 100000\n" + bytes(64))
    with address_space_cap(), pytest.raises(HdrImageError, match=r"huge\.hdr: field resolution: 100000 x 100000"):
        read_hdr_image(p)
    assert issubclass(HdrImageError, InputError)


def test_rgbe_header_larger_than_the_file(tmp_path):
    """Under the pixel limit, but the file cannot hold the scanlines it declares."""
    p = tmp_path / "short.hdr"
    p.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 8000 +X 8000\n" + bytes(64))
    with address_space_cap(), pytest.raises(HdrImageError, match=r"short\.hdr: field resolution: .*need at least"):
        read_hdr_image(p)


def test_exr_data_window_beyond_the_file(tmp_path):
    data = bytearray(seeds("exr")[0])
    i = data.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4
    struct.pack_into("<4i", data, i, 0, 0, 99999, 99999)
    p = tmp_path / "huge.exr"
    p.write_bytes(bytes(data))
    with address_space_cap(), pytest.raises(HdrImageError, match=r"huge\.exr: field dataWindow: 100000 x 100000"):
        read_hdr_image(p)


class _Touch:
    """Unpickling this creates a file: proof that a reader unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("key", ["positions", "faces", "names"])
@pytest.mark.parametrize("lazy", [None, True])
def test_npz_object_array_is_refused_without_unpickling(tmp_path, key, lazy):
    marker = tmp_path / "unpickled"
    ps = T.tiny_probeset()
    arrays = dict(positions=ps.positions, faces=ps.faces, names=np.array(["a"] * ps.n_probes))
    arrays[key] = np.array([_Touch(marker)] * 2, dtype=object)
    p = tmp_path / "obj.npz"
    np.savez(p, **arrays)
    with pytest.raises(ProbeSetError, match=rf"obj\.npz: {key}: dtype object holds Python objects: refused"):
        ProbeSet.load(p, lazy=lazy)
    assert not marker.exists()


@pytest.mark.parametrize("lazy", [None, True])
def test_npz_that_is_a_pickle_or_npy(tmp_path, lazy):
    import pickle
    marker = tmp_path / "unpickled"
    p = tmp_path / "pickle.npz"
    p.write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(ProbeSetError, match=r"pickle\.npz: not a readable \.npz archive"):
        ProbeSet.load(p, lazy=lazy)
    np.save(tmp_path / "x.npy", np.zeros((10 ** 4, 3)))
    shutil.move(tmp_path / "x.npy", tmp_path / "x.npz")
    with pytest.raises(ProbeSetError, match=r"x\.npz: not a readable \.npz archive"):
        ProbeSet.load(tmp_path / "x.npz", lazy=lazy)
    assert not marker.exists()


def test_npz_header_claiming_more_than_the_member(tmp_path):
    """A stored member whose .npy header claims 10^12 values (TBs)."""
    import re
    ps = T.tiny_probeset((4, 4, 4), R=4)
    p = tmp_path / "claim.npz"
    ps.save(p)
    data = p.read_bytes()
    old = re.search(rb"'shape': \(64, 6, 4, 4, 3\), ", data).group(0)
    new = b"'shape': (999999999999,), "
    data = data.replace(old, new + b" " * (len(old) - len(new)))
    p.write_bytes(data)
    for lazy in (None, True):
        with address_space_cap(), pytest.raises(ProbeSetError, match=r"claim\.npz: faces: header says shape"):
            ProbeSet.load(p, lazy=lazy)


def test_npz_deflate_bomb_claim(tmp_path):
    """A deflated member whose zip entry claims more bytes than deflate can expand to."""
    ps = T.tiny_probeset()
    p = tmp_path / "zbomb.npz"
    ps.save(p, compressed=True)
    data = bytearray(p.read_bytes())
    for start in [j for j in range(len(data)) if data.startswith(b"PK\x01\x02", j)]:
        name_len = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46:start + 46 + name_len] == b"faces.npy":
            struct.pack_into("<I", data, start + 24, 2 ** 32 - 2)     # uncompressed size
    p.write_bytes(bytes(data))
    with address_space_cap(), pytest.raises(ProbeSetError, match=r"zbomb\.npz: faces: .*decompression bomb"):
        ProbeSet.load(p)


def _zarr(tmp_path) -> Path:
    root = tmp_path / "s.zarr"
    T.tiny_probeset().save(root, chunk_probes=3)
    return root


def test_zarr_shape_beyond_the_store(tmp_path):
    """faces and positions declare 2^40 probes (absent chunks read as the fill value)."""
    root = _zarr(tmp_path)
    for a in ("positions", "faces"):
        mp = root / a / "zarr.json"
        meta = json.loads(mp.read_text())
        meta["shape"][0] = 1 << 40
        mp.write_text(json.dumps(meta))
    for lazy in (None, False):
        with address_space_cap(), pytest.raises(ProbeSetError, match=r"s\.zarr: (positions|faces): shape .* declares"):
            ProbeSet.load(root, lazy=lazy)


def test_zarr_chunk_zstd_bomb(tmp_path):
    """A chunk's zstd frame declares 4 GiB of content."""
    root = _zarr(tmp_path)
    chunk = root / "faces" / "c" / "0" / "0" / "0" / "0" / "0"
    b = bytearray(chunk.read_bytes())
    b[4] = 0xE0                        # FCS 8 bytes, single segment, no dictionary
    b[5:5] = (4 << 30).to_bytes(8, "little")
    chunk.write_bytes(bytes(b))
    with address_space_cap(), pytest.raises(ProbeSetError, match=r"s\.zarr: faces: chunk .*declares 4294967296"):
        ProbeSet.load(root)


def test_zarr_damaged_chunk_names_the_store(tmp_path):
    root = _zarr(tmp_path)
    chunk = root / "faces" / "c" / "1" / "0" / "0" / "0" / "0"
    b = chunk.read_bytes()
    chunk.write_bytes(b[:len(b) // 2])
    with pytest.raises(ProbeSetError, match=r"s\.zarr: faces: cannot read probes"):
        ProbeSet.load(root)


def test_zarr_pickle_codec_is_refused(tmp_path):
    root = _zarr(tmp_path)
    mp = root / "faces" / "zarr.json"
    meta = json.loads(mp.read_text())
    meta["codecs"] = [{"name": "numcodecs.pickle"}]
    mp.write_text(json.dumps(meta))
    with pytest.raises(ProbeSetError, match=r"s\.zarr: faces: codecs \['numcodecs.pickle'\]"):
        ProbeSet.load(root)


def test_targets_catch_a_wrong_error_type(monkeypatch):
    """The harness itself: a reader raising anything but InputError is a crash,
    and an InputError without the file name is one too (so these tests can fail)."""
    import probewarp.format.archive as A

    def boom(self, path):
        raise KeyError("boom")
    monkeypatch.setattr(A.ArchiveReader, "__init__", boom)
    with pytest.raises(KeyError):
        T.target_archive(b"x")

    def anonymous(self, path):
        raise InputError("something is wrong")
    monkeypatch.setattr(A.ArchiveReader, "__init__", anonymous)
    with pytest.raises(T.BadMessage):
        T.target_archive(b"x")


def test_crc_fixing_reaches_past_the_checksums():
    """The fixed target is not stopped at a checksum: a fixed seed opens."""
    for s in seeds("archive"):
        ArchiveReader(_tmp("ok.pwa", T.fix_archive_crcs(s))).close()
        ArchiveReader(_tmp("ok.pwa", T.deflate_archive(T.inflate_archive(s)))).close()
    assert zlib.crc32(b"") == 0


def test_mutation_engine_records_a_crash(monkeypatch, tmp_path):
    """fuzz/run.py's fallback engine (no atheris) finds, shrinks and keeps a crash."""
    import run

    def fragile(data):
        if data.count(b",") > 3:
            raise KeyError("too many commas")
    monkeypatch.setitem(T.TARGETS, "csv", fragile)
    monkeypatch.setattr(run, "CRASHES", tmp_path)
    res = run.run_mutate("csv", 3000, 0, keep_going=False)
    assert res["engine"] == "mutate" and len(res["crashes"]) == 1
    c = res["crashes"][0]
    assert c["kind"] == "KeyError" and c["minimal_size"] == 4 and c["minimal_size"] <= c["input_size"]
