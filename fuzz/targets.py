"""Fuzz targets: one function per reader of untrusted bytes, and their seed corpora.

Every target takes ``bytes``, writes them where the reader expects a file
(a temporary file or directory), calls the reader and everything a user's
command would call next, and lets only the project's own error types
through (:data:`ALLOWED`: :class:`~probewarp.format.errors.InputError` and
its subclasses ``ProbeSetError``, ``HdrImageError``). Anything else — a raw
``ValueError``, ``KeyError``, ``MemoryError``, ``RecursionError`` … — is
re-raised: a crash. An allowed error must also name the file it is about
(:func:`_check_message`), or the target raises :class:`BadMessage`.

Targets (:data:`TARGETS`):

``archive``          the file's bytes as they are (CRCs make most mutations
                     stop at a checksum: the shallow layer).
``archive_fixed``    the bytes with every CRC-32 recomputed first
                     (:func:`fix_archive_crcs`): mutations reach the JSON,
                     the table fields, the lz4 frames.
``archive_inflated`` an archive whose page and hash blobs are given
                     *decompressed* (:func:`inflate_archive`); the target
                     compresses them, fixes sizes, offsets and CRCs
                     (:func:`deflate_archive`): mutations reach the page
                     payloads and the hash table.
``npz``              ``ProbeSet.load`` of a ``.npz`` (eager and ``lazy=True``).
``npz_arrays``       the same on an ``.npz`` that ``np.savez`` writes from
                     arrays drawn from the bytes (:func:`npz_from_fuzz`):
                     shapes and dtypes the checks must reject cleanly.
``zarr``             ``ProbeSet.load`` of a ``.zarr`` store, packed as a
                     list of files (:func:`pack_dir` / :func:`unpack_dir`),
                     lazy (the default) and eager.
``exr``, ``hdr``     ``read_hdr_image`` then ``image_to_cube`` (panorama).
``csv``              ``importer._read_positions_csv``.

Seeds: :func:`seeds` builds the corpus of a target from tiny synthetic
probe sets (``ProbeSet``) and an archive baked from one with
``baker.pipeline.bake_probeset`` (cached under ``fuzz/corpus/seeds/``).

Not an installed package: ``fuzz/run.py`` and ``tests/test_fuzz.py`` put
this folder on ``sys.path``.
"""
from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

from probewarp.format.errors import InputError

HERE = Path(__file__).resolve().parent
SEED_DIR = HERE / "corpus" / "seeds"
REGRESSIONS = HERE / "corpus" / "regressions"

#: The error types a reader may end an input with.
ALLOWED = (InputError,)


class BadMessage(AssertionError):
    """A reader raised an allowed error whose message does not name the file."""


def _check_message(e: Exception, path: Path) -> None:
    msg = str(e)
    if path.name not in msg:
        raise BadMessage(f"{type(e).__name__} without the file name {path.name!r}: {msg!r}") from e


_TMP = None


def _tmpdir() -> Path:
    """One scratch directory per process (fuzzing writes many files)."""
    global _TMP
    if _TMP is None:
        _TMP = Path(tempfile.mkdtemp(prefix="pwfuzz-"))
    return _TMP


def _fresh(name: str) -> Path:
    p = _tmpdir() / name
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
    return p


# -- the archive ---------------------------------------------------------------
def _exercise_archive(path: Path) -> None:
    from probewarp.format.archive import ArchiveReader
    try:
        with ArchiveReader(path) as ar:
            ar.summary()
            ar.hash()
            try:
                tet = ar.tet_index()
                if tet is not None:       # an accepted index must be safe to walk (numba has no bounds checks)
                    from probewarp.format.tetindex import lookup
                    lo, hi = tet.lo.astype(np.float64), tet.hi.astype(np.float64)
                    q = lo + np.linspace(-0.2, 1.2, 7)[:, None] * (hi - lo + 1.0)
                    ids, w = lookup(tet, q)
                    assert (ids >= 0).all() and (ids < tet.probes.size).all() and np.isfinite(w).all()
            except ALLOWED as e:
                _check_message(e, path)
            for i in range(min(ar.n_pages, 64)):
                for call in (ar.page, ar.page_stored):
                    try:
                        call(i)
                    except ALLOWED as e:
                        _check_message(e, path)
            ar.validate()
    except ALLOWED as e:
        _check_message(e, path)


def target_archive(data: bytes) -> None:
    p = _fresh("fuzz.pwa")
    p.write_bytes(data)
    _exercise_archive(p)


_HEAD = struct.Struct("<8sIIQQIQQI4x")
_REC = 88


def fix_archive_crcs(data: bytes) -> bytes:
    """``data`` with the header, metadata, table, hash and page CRC-32s recomputed
    where the (possibly mutated) header lets them be found; never raises."""
    b = bytearray(data)
    if len(b) < 64:
        return bytes(b)
    magic, version, flags, meta_len, table_off, n_pages, hash_off, hash_len, _ = _HEAD.unpack_from(b, 0)
    m_end = 64 + meta_len
    if m_end + 4 <= len(b):
        struct.pack_into("<I", b, m_end, zlib.crc32(b[64:m_end]))
    t_end = table_off + n_pages * _REC
    if n_pages <= len(b) // _REC and t_end + 4 <= len(b):
        for i in range(n_pages):
            r = table_off + i * _REC
            off, size = struct.unpack_from("<QQ", b, r)
            if off + size <= len(b):
                struct.pack_into("<I", b, r + 24, zlib.crc32(b[off:off + size]))
        struct.pack_into("<I", b, t_end, zlib.crc32(b[table_off:t_end]))
    hash_crc = zlib.crc32(b[hash_off:hash_off + hash_len]) if hash_off + hash_len <= len(b) else 0
    struct.pack_into("<I", b, 52, hash_crc)
    struct.pack_into("<I", b, 60, zlib.crc32(b[:60]))
    return bytes(b)


def target_archive_fixed(data: bytes) -> None:
    p = _fresh("fuzz.pwa")
    p.write_bytes(fix_archive_crcs(data))
    _exercise_archive(p)


def inflate_archive(data: bytes) -> bytes:
    """A real archive -> the same layout with the hash and page blobs decompressed
    (table ``size`` = the blob's length here; ``raw_size`` kept)."""
    import lz4.frame
    magic, version, flags, meta_len, table_off, n_pages, hash_off, hash_len, hcrc = _HEAD.unpack_from(data, 0)
    table = bytearray(data[table_off:table_off + n_pages * _REC])
    end = table_off + n_pages * _REC + 4
    hash_raw = lz4.frame.decompress(data[hash_off:hash_off + hash_len]) if hash_len else b""
    pages = []
    for i in range(n_pages):
        off, size = struct.unpack_from("<QQ", table, i * _REC)
        pages.append(lz4.frame.decompress(data[off:off + size]))
    out = bytearray(data[:end])
    out[:64] = _HEAD.pack(magic, version, flags, meta_len, table_off, n_pages,
                          end if hash_len else 0, len(hash_raw), hcrc) + b"\0" * 4
    out += hash_raw
    for i, raw in enumerate(pages):
        struct.pack_into("<QQ", table, i * _REC, len(out), len(raw))
        out += raw
    out[table_off:table_off + len(table)] = table
    return bytes(out)


def deflate_archive(data: bytes) -> bytes:
    """Inverse of :func:`inflate_archive` for (mutated) inflated bytes: blobs
    found by the (clamped) offsets and sizes are lz4-compressed, offsets
    re-laid back to back, CRCs fixed. Lenient: never raises."""
    import lz4.frame
    b = bytes(data)
    if len(b) < 64:
        return b
    magic, version, flags, meta_len, table_off, n_pages, hash_off, hash_len, _ = _HEAD.unpack_from(b, 0)
    t_end = table_off + n_pages * _REC
    if n_pages > len(b) // _REC or t_end + 4 > len(b):
        return fix_archive_crcs(b)

    def blob(off, n):
        return b[min(off, len(b)):min(off + n, len(b), off + (1 << 24))]

    if table_off < 64:
        return fix_archive_crcs(b)
    table = bytearray(b[table_off:t_end])
    head_end = t_end + 4
    out = bytearray(b[:head_end])
    if hash_off or hash_len:
        comp = lz4.frame.compress(blob(hash_off, hash_len))
        new_hash_off = len(out) if hash_off else 0
        out += comp
        struct.pack_into("<QQ", out, 36, new_hash_off, len(comp))
    for i in range(n_pages):
        off, size = struct.unpack_from("<QQ", table, i * _REC)
        comp = lz4.frame.compress(blob(off, size))
        struct.pack_into("<QQ", table, i * _REC, len(out), len(comp))
        out += comp
    out[table_off:t_end] = table
    return fix_archive_crcs(bytes(out))


def target_archive_inflated(data: bytes) -> None:
    p = _fresh("fuzz.pwa")
    p.write_bytes(deflate_archive(data))
    _exercise_archive(p)


# -- probe sets ----------------------------------------------------------------
def _exercise_probeset(path: Path, lazies) -> None:
    from probewarp.baker.probeset import ProbeSet
    for lazy in lazies:
        try:
            ps = ProbeSet.load(path, lazy=lazy)
            ps.summary()
            ps.faces_array()
        except ALLOWED as e:
            _check_message(e, path)


def target_npz(data: bytes) -> None:
    p = _fresh("fuzz.npz")
    p.write_bytes(data)
    _exercise_probeset(p, (None, True))


_DTYPES = ["<f2", "<f4", "<f8", "<i1", "<i8", "<u4", "|b1", "<c8", "<U3", "|S3", "|V4", "<M8[s]", "<m8[s]",
           ">f4", [("a", "<f4"), ("b", "<f4")], ("<f4", (2,))]


class _Reader:
    """Draw small numbers and bytes from a fuzz input (zeros once it is used up)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        v = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return v

    def take(self, n: int) -> bytes:
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b + bytes(n - len(b))


def npz_from_fuzz(data: bytes) -> dict:
    """Arrays of a probe-set ``.npz`` drawn from ``data``: each of positions,
    faces, grid_shape, lo, hi, names absent, of its natural shape and a
    likely dtype, or of any small shape and dtype; values from the bytes."""
    r = _Reader(data)
    P, R = r.byte() % 9, 1 + r.byte() % 3
    natural = {"positions": ((P, 3), "<f4"), "faces": ((P, 6, R, R, 3), "<f2"), "grid_shape": ((3,), "<i8"),
               "lo": ((3,), "<f8"), "hi": ((3,), "<f8"), "names": ((P,), "<U3")}
    out = {}
    for key, (shape, dt) in natural.items():
        mode = r.byte() % 4
        if mode == 0 and key not in ("positions", "faces"):
            continue
        if mode == 3:
            dt = _DTYPES[r.byte() % len(_DTYPES)]
            shape = tuple(r.byte() % 5 for _ in range(r.byte() % 6))
        elif mode == 2 and key in ("positions", "faces", "lo", "hi"):
            dt = ["<f2", "<f4", "<f8", "<i4"][r.byte() % 4]
        dtype = np.dtype(dt)
        n = int(np.prod(shape)) if shape else 1
        if key == "grid_shape" and mode == 1:
            vals = np.array([1 + r.byte() % 4 for _ in range(3)], np.int64)
            out[key] = vals
            continue
        out[key] = np.ndarray(shape, dtype, buffer=bytearray(r.take(n * dtype.itemsize)))
    return out


def target_npz_arrays(data: bytes) -> None:
    p = _fresh("fuzz.npz")
    arrays = npz_from_fuzz(data)
    with open(p, "wb") as f:
        np.savez(f, **arrays)
    _exercise_probeset(p, (None, True))


def pack_dir(root: Path) -> bytes:
    """A directory as bytes: per file ``u16 name length, name, u32 size, bytes``."""
    out = bytearray()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            name = f.relative_to(root).as_posix().encode()
            data = f.read_bytes()
            out += struct.pack("<H", len(name)) + name + struct.pack("<I", len(data)) + data
    return bytes(out)


def unpack_dir(data: bytes, root: Path) -> None:
    """Inverse of :func:`pack_dir`, lenient (truncated entries clamped, unsafe names skipped)."""
    root.mkdir(parents=True)
    pos = 0
    while pos + 2 <= len(data):
        (n,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2:pos + 2 + n]
        pos += 2 + n
        if pos + 4 > len(data):
            size = 0
        else:
            (size,) = struct.unpack_from("<I", data, pos)
            pos += 4
        body = data[pos:pos + size]
        pos += size
        try:
            s = name.decode("ascii")
        except UnicodeDecodeError:
            continue
        parts = s.split("/")
        if (not s or s.startswith("/") or any(x in ("", ".", "..") for x in parts)
                or not all(c.isalnum() or c in "._-/" for c in s) or len(parts) > 8):
            continue
        f = root.joinpath(*parts)
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            if not f.is_dir():
                f.write_bytes(body)
        except (NotADirectoryError, FileExistsError, IsADirectoryError):
            continue


def target_zarr(data: bytes) -> None:
    p = _fresh("fuzz.zarr")
    unpack_dir(data, p)
    _exercise_probeset(p, (None, False))


# -- images and the CSV --------------------------------------------------------
def _exercise_image(path: Path) -> None:
    from probewarp.baker.hdrio import read_hdr_image
    from probewarp.baker.panorama import detect_layout, image_to_cube
    try:
        img = read_hdr_image(path)
    except ALLOWED as e:
        _check_message(e, path)
        return
    if detect_layout(img.shape) is not None and img.shape[0] * img.shape[1] <= 1 << 16:
        image_to_cube(img, 4, supersample=1)


def target_exr(data: bytes) -> None:
    p = _fresh("fuzz.exr")
    p.write_bytes(data)
    _exercise_image(p)


def target_hdr(data: bytes) -> None:
    p = _fresh("fuzz.hdr")
    p.write_bytes(data)
    _exercise_image(p)


def target_csv(data: bytes) -> None:
    from probewarp.baker.importer import _read_positions_csv
    p = _fresh("fuzz.csv")
    p.write_bytes(data)
    try:
        _read_positions_csv(p)
    except ALLOWED as e:
        _check_message(e, p)


TARGETS = {
    "archive": target_archive,
    "archive_fixed": target_archive_fixed,
    "archive_inflated": target_archive_inflated,
    "npz": target_npz,
    "npz_arrays": target_npz_arrays,
    "zarr": target_zarr,
    "exr": target_exr,
    "hdr": target_hdr,
    "csv": target_csv,
}


# -- seed corpora --------------------------------------------------------------
def tiny_probeset(P_grid=(2, 2, 2), R=2, seed=0, dtype=np.float16):
    from probewarp.baker.probeset import ProbeSet
    rng = np.random.default_rng(seed)
    pos = ProbeSet.grid((0, 0, 0), (1, 1, 1), P_grid)
    faces = rng.uniform(0.05, 2.0, size=(len(pos), 6, R, R, 3)).astype(dtype)
    return ProbeSet(pos, faces, grid_shape=P_grid, lo=(0, 0, 0), hi=(1, 1, 1))


def _baked_archive() -> bytes:
    """A tiny archive baked by the real pipeline (cached: the bake takes seconds)."""
    cached = SEED_DIR / "baked.pwa"
    if cached.exists():
        return cached.read_bytes()
    from probewarp.baker.pipeline import bake_probeset
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "baked.pwa"
        bake_probeset(tiny_probeset((2, 2, 3), R=4), out, n_prototypes=3, n_taps=2, page_probes=6,
                      n_iter=1, threads=1, checkpoint=False, report=False, score=False)
        data = out.read_bytes()
    SEED_DIR.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data


def _synth_archives() -> list[bytes]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from synth import downgrade, make_archive
    out = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for i, kw in enumerate([dict(fmt="rgba16f"), dict(fmt="rgba8", keep=0.6), dict(fmt="bc7", Rp=8, R=4),
                                dict(fmt="rgb9e5", domain="linear")]):
            p, _, _ = make_archive(d / f"{i}.pwa", grid_shape=(2, 2, 3), lo=(0, 0, 0), hi=(1, 1, 1),
                                   page_probes=6, M=3, N=2, Rp=kw.pop("Rp", 4), seed=i, **kw)
            out.append(p.read_bytes())
        out.append(downgrade(d / "0.pwa", d / "v1.pwa", 1).read_bytes())
        out.append(downgrade(d / "0.pwa", d / "v2.pwa", 2).read_bytes())
    return out


def _scattered_archive() -> bytes:
    from probewarp.format.archive import Page, write_archive
    rng = np.random.default_rng(1)
    n, M, N, R = 3, 2, 2, 4
    pg = Page(centres=rng.normal(size=(M, 3)), radii=np.array([2.0, np.inf]),
              prototypes=rng.uniform(0, 1, (M, 6, R, R, 3)).astype(np.float32),
              probe_ids=np.arange(n), positions=rng.normal(size=(n, 3)),
              indices=np.array([[0, 1]] * n), weights=np.full((n, N), 0.5, np.float32))
    meta = {"n_probes": n, "probe_res": R, "prototype_res": R, "n_taps": N, "texel_format": "rgba16f",
            "domain": "tonemap", "interpolation": "inverse-distance-8"}
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.pwa"
        write_archive(p, meta, [pg])
        return p.read_bytes()


def _tetra_archive() -> bytes:
    """A scattered archive of the tetrahedral rule: its version-4 index section."""
    from probewarp.baker.tetra import index_for_pages
    from probewarp.format.archive import Page, write_archive
    rng = np.random.default_rng(2)
    n, M, N, R = 9, 2, 2, 4
    pos = rng.normal(size=(n, 3))
    pages = [Page(centres=rng.normal(size=(M, 3)), radii=np.array([2.0, np.inf]),
                  prototypes=rng.uniform(0, 1, (M, 6, R, R, 3)).astype(np.float32),
                  probe_ids=ids, positions=pos[ids], indices=np.array([[0, 1]] * len(ids)),
                  weights=np.full((len(ids), N), 0.5, np.float32)) for ids in (np.arange(5), np.arange(5, n))]
    meta = {"n_probes": n, "probe_res": R, "prototype_res": R, "n_taps": N, "texel_format": "rgba16f",
            "domain": "tonemap", "interpolation": "tetrahedral"}
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.pwa"
        write_archive(p, meta, pages, tet_index=index_for_pages(pages, n))
        return p.read_bytes()


def _npz_seeds() -> list[bytes]:
    out = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ps = tiny_probeset()
        ps.save(d / "a.npz")
        out.append((d / "a.npz").read_bytes())
        ps.save(d / "b.npz", compressed=True)
        out.append((d / "b.npz").read_bytes())
        ps.names = [f"p{i}" for i in range(ps.n_probes)]
        ps.grid_shape = ps.lo = ps.hi = None
        ps.save(d / "c.npz", dtype=np.float32)
        out.append((d / "c.npz").read_bytes())
    return out


def _zarr_seeds() -> list[bytes]:
    out = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ps = tiny_probeset(R=2)
        ps.save(d / "a.zarr", chunk_probes=3)
        out.append(pack_dir(d / "a.zarr"))
        ps.names = [f"p{i}" for i in range(ps.n_probes)]
        ps.grid_shape = ps.lo = ps.hi = None
        ps.save(d / "b.zarr", dtype=np.float32)
        out.append(pack_dir(d / "b.zarr"))
    return out


def _image_seeds(sfx: str) -> list[bytes]:
    from probewarp.baker.hdrio import write_exr, write_hdr
    rng = np.random.default_rng(0)
    out = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for i, (h, w) in enumerate([(4, 8), (6, 8), (3, 3)]):
            img = rng.uniform(0, 4, (h, w, 3)).astype(np.float32)
            p = d / f"{i}{sfx}"
            if sfx == ".exr":
                write_exr(p, img, half=bool(i % 2))
            else:
                write_hdr(p, img)
            out.append(p.read_bytes())
        if sfx == ".exr":
            write_exr(d / "y.exr", rng.uniform(0, 1, (4, 8)).astype(np.float32))
            out.append((d / "y.exr").read_bytes())
        else:   # a run-length encoded one (width >= 8) and a flat one
            write_hdr(d / "w.hdr", np.ones((2, 40, 3), np.float32))
            out.append((d / "w.hdr").read_bytes())
            out.append(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 2\n" + bytes([128, 128, 128, 129] * 2))
    return out


def seeds(target: str) -> list[bytes]:
    """The seed corpus of ``target`` (a list of inputs)."""
    if target == "archive":
        return [_baked_archive(), _scattered_archive()] + _synth_archives() + [_tetra_archive()]
    if target == "archive_fixed":
        return seeds("archive")
    if target == "archive_inflated":
        return [inflate_archive(a) for a in seeds("archive")]
    if target == "npz":
        return _npz_seeds()
    if target == "npz_arrays":
        rng = np.random.default_rng(0)
        return [bytes([8, 2, 1, 1, 1, 1, 1, 1]) + rng.uniform(0, 2, 1000).astype("<f2").tobytes(),
                bytes([4, 1, 1, 2, 1, 0, 0, 0]) + rng.uniform(0, 2, 300).astype("<f4").tobytes()]
    if target == "zarr":
        return _zarr_seeds()
    if target == "exr":
        return _image_seeds(".exr")
    if target == "hdr":
        return _image_seeds(".hdr")
    if target == "csv":
        return [b"name,x,y,z\np0,0,0,0\np1,1.5,-2,3e2\n", b"# probes\n\na,1,2,3\r\nb,4,5,6\r\n",
                "\ufeffname,x,y,z\nπ,0,0,0\n".encode("utf-8")]
    raise KeyError(target)


def replay(path) -> None:
    """Run a regression file through the target its name starts with (``TARGET-*.bin``)."""
    path = Path(path)
    TARGETS[path.name.split("-", 1)[0]](path.read_bytes())


def cleanup() -> None:
    global _TMP
    if _TMP is not None:
        shutil.rmtree(_TMP, ignore_errors=True)
        _TMP = None


os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
