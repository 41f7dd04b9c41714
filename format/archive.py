"""The probewarp archive (``.pwa``): a versioned, page-based, checksummed file.

Layout, version 4 (all integers little-endian; see docs/FORMAT.md)::

    offset 0   header, 64 bytes
               magic     8s   b"PWARCH\\x00\\x01"
               version   u32  4
               flags     u32  0 (reserved)
               meta_len  u64  length of the JSON metadata that follows
               table_off u64  offset of the page table
               n_pages   u32
               hash_off  u64  offset of the spatial hash (0: none)
               hash_len  u64  its compressed length
               hash_crc  u32  CRC-32 of those bytes
               reserved  4x
               hdr_crc   u32  CRC-32 of the 60 bytes before it
    64         metadata, JSON (UTF-8), meta_len bytes, then its CRC-32 (u32)
    table_off  page table, n_pages records of PAGE_DTYPE, then its CRC-32 (u32)
    hash_off   grid sets: the spatial hash (:mod:`.spatialhash`), an lz4 frame
               of its (capacity, 2) uint32 table, GPU-ready; scattered sets
               (version 4): the tetrahedral index (:mod:`.tetindex`), an lz4
               frame of its probes, simplices and cell lists, GPU-ready
    ...        pages: each an lz4 frame of the page payload; CRC-32 of the
               compressed bytes in its page-table record

Version 1 files (no hash; dense grids or scattered sets) are still read: the
hash of a dense grid is rebuilt from the page table on opening. Version 1
and 2 files store level 0 of the prototypes only: :attr:`ArchiveReader.prototype_levels`
and :meth:`ArchiveReader.page_stored` compute the other levels in numpy for
uncompressed formats, and give level 0 only (1 level) for block formats.

A page is a spatial brick of probes with its own prototypes. Its payload is
the concatenation, in this order, of ``centres (M,3) f32``, ``radii (M,) f32``
(``inf`` = no parallax), ``prototypes`` (``M, 6`` faces in the stored format
of :mod:`.texformats`, GPU-ready: uploads as is), version 3: then the mip
levels 1..L-1 of those prototypes (``M, 6`` faces of ``Rp >> l`` texels
each, same format; L = metadata ``prototype_levels``,
:func:`.texformats.mip_level_count`; each level the 2x2 box filter of the
previous one in the blend domain, :func:`.texformats.mip_chain`), for scattered sets only
``probe_ids (n,) u32`` (global probe index) and ``positions (n,3) f32``, and
the codes ``indices (n,N) u8|u16`` (page-local prototype index) and
``weights (n,N) u8`` (fixed point, :func:`.texformats.decode_weights`).
Pages of a dense grid set are bricks of whole grid cells: their probes are the
brick's, in grid order (z fastest), given by the page table's ``brick_lo``
and ``brick_shape``; ids and positions are implied and not stored. Sparse
grid sets (``grid.dense`` false: only some lattice points hold probes) and
scattered sets store ids and positions.

Every byte of the file is covered by a checksum (header, metadata, table,
pages). Files are written to a temporary name beside the target and renamed,
so a crash never leaves a file that looks valid.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import lz4.frame
import numpy as np

from probewarp.format import constants, spatialhash, tetindex, texformats
from probewarp.format.atomic import atomic_path
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid

MAGIC = b"PWARCH\x00\x01"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
HEADER = struct.Struct("<8sIIQQIQQI4x")        # 60 bytes, then the CRC (u32)
HEADER_SIZE = HEADER.size + 4
assert HEADER_SIZE == 64

PAGE_DTYPE = np.dtype([
    ("offset", "<u8"), ("size", "<u8"), ("raw_size", "<u8"),
    ("crc32", "<u4"), ("n_probes", "<u4"), ("n_prototypes", "<u4"), ("reserved", "<u4"),
    ("lo", "<f4", 3), ("hi", "<f4", 3),
    ("brick_lo", "<u4", 3), ("brick_shape", "<u4", 3),   # grid sets; zeros otherwise
])                                             # 88 bytes per page
assert PAGE_DTYPE.itemsize == 88


@dataclass
class Page:
    """One decoded page. Shapes: centres (M,3) f64, radii (M,) f64, prototypes
    (M,6,Rp,Rp,3) f32 (blend domain, as the GPU samples them), probe_ids (n,)
    int64, positions (n,3) f64, indices (n,N) int32 page-local, weights (n,N) f32."""
    centres: np.ndarray
    radii: np.ndarray
    prototypes: np.ndarray
    probe_ids: np.ndarray
    positions: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    brick: tuple | None = None   # ((i0, j0, k0), (ni, nj, nk)) for grid sets
    #: level 0 of the prototypes as stored (the meta's texel format), when the
    #: producer encoded them itself; None: :func:`pack_page` encodes ``prototypes``
    stored: np.ndarray | None = None


def implicit_ids(meta: dict) -> bool:
    """True when pages are bricks of a dense grid (ids and positions not stored)."""
    grid = meta.get("grid")
    return grid is not None and bool(grid.get("dense", True))


def page_keys(meta: dict, positions: np.ndarray) -> np.ndarray:
    """Lattice keys (uint32) of a grid set's probe positions: what the spatial hash maps."""
    grid = Grid.from_meta(meta)
    return grid.keys(grid.cells(positions))


def build_hash_from_keys(keys_per_page) -> tuple[np.ndarray, int]:
    """The spatial hash from each page's lattice keys, in page order (local index = order in the page)."""
    keys, recs = [], []
    for p, k in enumerate(keys_per_page):
        n = int(k.size)
        if n > spatialhash.MAX_PAGE_PROBES:
            raise ValueError(f"page {p} holds {n} probes; pages hold at most {spatialhash.MAX_PAGE_PROBES}")
        keys.append(np.asarray(k, np.uint32))
        recs.append(spatialhash.record(np.full(n, p), np.arange(n)))
    keys = np.concatenate(keys) if keys else np.zeros(0, np.uint32)
    if np.unique(keys).size != keys.size:
        raise ValueError("two probes share one lattice point of the grid")
    return spatialhash.build(keys, np.concatenate(recs) if recs else keys)


def build_hash(meta: dict, pages) -> tuple[np.ndarray, int]:
    """The spatial hash of a grid set's pages (lattice cell -> page, local index)."""
    return build_hash_from_keys([page_keys(meta, pg.positions) for pg in pages])


_index_dtype = texformats.index_dtype   # one definition, beside the weight codes


def stored_levels(meta: dict) -> int:
    """Prototype mip levels a page payload stores: metadata ``prototype_levels``
    (version 3), 1 for files without it (versions 1, 2)."""
    return int(meta.get("prototype_levels", 1))


def pack_page(page: Page, meta: dict) -> bytes:
    """Page -> uncompressed payload bytes (inverse: :func:`unpack_page`)."""
    M = page.centres.shape[0]
    fmt = meta["texel_format"]
    level0 = page.stored if page.stored is not None else texformats.encode(page.prototypes, fmt)
    levels = texformats.mip_chain(level0, fmt, stored_levels(meta))
    parts = [
        np.ascontiguousarray(page.centres, "<f4").tobytes(),
        np.ascontiguousarray(page.radii, "<f4").tobytes(),
    ] + [np.ascontiguousarray(v).tobytes() for v in levels]
    if not implicit_ids(meta):
        parts += [np.ascontiguousarray(page.probe_ids, "<u4").tobytes(),
                  np.ascontiguousarray(page.positions, "<f4").tobytes()]
    elif page.brick is None or not np.array_equal(Grid.from_meta(meta).brick_ids(page.brick)[0], page.probe_ids):
        raise ValueError("a page of a grid set must be a whole brick in grid order")
    parts += [np.ascontiguousarray(page.indices).astype(_index_dtype(M)).tobytes(),
              texformats.encode_weights(page.weights).tobytes()]
    return b"".join(parts)


def unpack_page(raw: bytes, n: int, M: int, meta: dict, where: str, brick=None) -> Page:
    """Inverse of :func:`pack_page`; raises InputError naming ``where`` on a size mismatch."""
    out = page_fields(raw, n, M, meta, where)
    if implicit_ids(meta):
        if brick is None or int(np.prod(brick[1], dtype=object)) != n:
            raise InputError(f"{where}: field brick: {brick} does not hold {n} probes")
        try:
            out["probe_ids"], out["positions"] = Grid.from_meta(meta).brick_ids(brick)
        except InputError as e:
            raise InputError(f"{where}: field brick: {e}") from None
    return Page(
        centres=out["centres"].astype(np.float64), radii=out["radii"].astype(np.float64),
        prototypes=texformats.decode(out["prototypes"], meta["texel_format"]),
        probe_ids=out["probe_ids"].astype(np.int64), positions=out["positions"].astype(np.float64),
        indices=out["indices"].astype(np.int32), weights=texformats.decode_weights(out["weights"]),
        brick=brick)


#: lz4 cannot expand data by more than about 255:1 (each extra length byte
#: encodes 255 bytes); a record that claims more is corrupt or a bomb.
LZ4_MAX_RATIO = 256
LZ4_SLACK = 1024
#: Sane bounds on metadata fields (far above anything a bake writes).
MAX_FACE_RES = 1 << 13
MAX_TAPS = 64
MAX_PAGE_PROTOTYPES = 1 << 16


def _layout(n: int, M: int, meta: dict) -> list:
    """``(name, shape, dtype)`` of a page payload's arrays, in order."""
    Rp, N, fmt = meta["prototype_res"], meta["n_taps"], meta["texel_format"]
    sizes = [
        ("centres", (M, 3), np.dtype("<f4")),
        ("radii", (M,), np.dtype("<f4")),
    ]
    for lvl in range(stored_levels(meta)):
        face_shape, texel_dtype = texformats.stored_layout(fmt, Rp >> lvl)
        sizes.append(("prototypes" if lvl == 0 else f"prototypes_{lvl}", (M, 6) + face_shape, texel_dtype))
    if not implicit_ids(meta):
        sizes += [("probe_ids", (n,), np.dtype("<u4")), ("positions", (n, 3), np.dtype("<f4"))]
    sizes += [("indices", (n, N), np.dtype(_index_dtype(M))), ("weights", (n, N), np.dtype(np.uint8))]
    return sizes


def payload_size(n: int, M: int, meta: dict) -> int:
    """Bytes of the uncompressed payload of a page of ``n`` probes and ``M`` prototypes."""
    return sum(int(np.prod(s, dtype=object)) * d.itemsize for _, s, d in _layout(n, M, meta))


def lz4_decompress_bounded(blob, n_expect: int, where: str) -> bytes:
    """Decompress one lz4 frame that must hold exactly ``n_expect`` bytes, never
    allocating more than that: the frame's declared content size is checked
    first, then at most ``n_expect + 1`` bytes are produced."""
    try:
        info = lz4.frame.get_frame_info(blob)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"{where}: cannot decompress (not an lz4 frame: {e})") from e
    declared = int(info.get("content_size") or 0)
    if declared and declared != n_expect:
        raise InputError(f"{where}: lz4 frame declares {declared} bytes, the record says {n_expect}")
    d = lz4.frame.LZ4FrameDecompressor()
    try:
        raw = d.decompress(blob, max_length=n_expect + 1)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"{where}: cannot decompress ({e})") from e
    if len(raw) != n_expect or not d.eof:
        raise InputError(f"{where}: decompressed to {len(raw)}{'' if d.eof else '+'} bytes, expected {n_expect}")
    return raw


def page_fields(raw: bytes, n: int, M: int, meta: dict, where: str) -> dict:
    """The stored arrays of a page payload, as stored (zero-copy views): centres,
    radii, prototypes (level 0, GPU-ready texel layout), prototype_levels (list
    of the stored levels 0..L-1, level 0 being ``prototypes``), probe_ids and
    positions (not for dense grids), indices, weights (u8). Checks sizes and
    prototype indices."""
    sizes = _layout(n, M, meta)
    expect = payload_size(n, M, meta)
    if len(raw) != expect:
        raise InputError(f"{where}: field raw_size: payload is {len(raw)} bytes, expected {expect}")
    out, pos = {}, 0
    for name, shape, dt in sizes:
        nbytes = int(np.prod(shape)) * dt.itemsize
        out[name] = np.frombuffer(raw, dt, count=int(np.prod(shape)), offset=pos).reshape(shape)
        pos += nbytes
    out["prototype_levels"] = [out["prototypes"]] + [out.pop(f"prototypes_{lvl}")
                                                     for lvl in range(1, stored_levels(meta))]
    if n and (out["indices"].max(initial=0) >= M):
        raise InputError(f"{where}: field indices: a code refers to prototype "
                         f"{int(out['indices'].max())} of {M}")
    return out


def blend_max(meta: dict) -> float:
    """The largest blend-domain value a decoder maps back to radiance
    (``T^-1`` clips the blended sum here): ``T(meta['radiance_max'])``, the
    tonemap of the brightest input texel, where the archive records it (a
    blend of prototypes that overshoots it would decode to radiance no probe
    had, up to ``T^-1(TONEMAP_Y_MAX)``, about 4e6), else
    ``constants.TONEMAP_Y_MAX``. Only the tonemap domain clips."""
    v = meta.get("radiance_max")
    if v is None:
        return float(constants.TONEMAP_Y_MAX)
    v = max(float(v), 0.0)
    t = (v / (1.0 + v)) ** (1.0 / constants.TONEMAP_GAMMA)
    return float(min(t, constants.TONEMAP_Y_MAX))


def finalize_meta(meta: dict, n_pages: int) -> dict:
    """The metadata as written: ``meta`` plus format_version, n_pages,
    prototype_levels and the grid's ``dense`` flag. :func:`encode_page` needs
    this form (it decides the stored levels and whether ids are implicit)."""
    meta = dict(meta, format_version=VERSION, n_pages=int(n_pages))
    meta["prototype_levels"] = texformats.mip_level_count(meta["prototype_res"], meta["probe_res"],
                                                          meta["texel_format"])
    if meta.get("grid") is not None:
        meta["grid"] = dict(meta["grid"], dense=bool(meta["grid"].get("dense", True)))
    return meta


@dataclass
class EncodedPage:
    """A page packed and compressed for the file (its blob kept apart): the
    page-table fields and, for grid sets, its probes' lattice keys (for the
    spatial hash). Small: what a streaming writer keeps per page."""
    size: int
    raw_size: int
    crc32: int
    n_probes: int
    n_prototypes: int
    lo: tuple
    hi: tuple
    brick: tuple | None = None
    keys: np.ndarray | None = None
    #: Largest linear radiance of the page's own input probes (the bake knows
    #: it; :func:`write_encoded` turns the pages' values into ``meta['radiance_max']``).
    radiance_max: float | None = None

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("size", "raw_size", "crc32", "n_probes", "n_prototypes")}
        d.update(lo=list(map(float, self.lo)), hi=list(map(float, self.hi)),
                 brick=None if self.brick is None else [list(map(int, b)) for b in self.brick])
        if self.radiance_max is not None:
            d["radiance_max"] = float(self.radiance_max)
        return d

    @classmethod
    def from_json(cls, d: dict, keys=None) -> "EncodedPage":
        brick = None if d.get("brick") is None else tuple(tuple(int(v) for v in b) for b in d["brick"])
        return cls(size=int(d["size"]), raw_size=int(d["raw_size"]), crc32=int(d["crc32"]),
                   n_probes=int(d["n_probes"]), n_prototypes=int(d["n_prototypes"]),
                   lo=tuple(d["lo"]), hi=tuple(d["hi"]), brick=brick, keys=keys,
                   radiance_max=None if d.get("radiance_max") is None else float(d["radiance_max"]))


def encode_page(page: Page, meta: dict) -> tuple[EncodedPage, bytes]:
    """Pack and compress one page: ``(EncodedPage, compressed blob)``.
    ``meta`` is the :func:`finalize_meta` form. Pure: the same page and
    metadata give the same bytes wherever it runs (bakes on a cluster rely on it)."""
    raw = pack_page(page, meta)
    comp = lz4.frame.compress(raw, compression_level=9)
    if page.positions.size:
        lo = tuple(float(v) for v in page.positions.min(axis=0).astype("<f4"))
        hi = tuple(float(v) for v in page.positions.max(axis=0).astype("<f4"))
    else:
        lo = hi = (0.0, 0.0, 0.0)
    keys = page_keys(meta, page.positions) if meta.get("grid") is not None else None
    brick = page.brick if page.brick is not None and implicit_ids(meta) else None
    enc = EncodedPage(size=len(comp), raw_size=len(raw), crc32=zlib.crc32(comp),
                      n_probes=int(page.probe_ids.size), n_prototypes=int(page.centres.shape[0]),
                      lo=lo, hi=hi, brick=brick, keys=keys)
    return enc, comp


def needs_tet_index(meta: dict) -> bool:
    """True for archives whose decoders use the tetrahedral rule (scattered sets
    with ``interpolation: tetrahedral``): version 4 stores their index."""
    return meta.get("grid") is None and meta.get("interpolation") == "tetrahedral"


def page_records(pages_probe_ids, n_probes: int) -> np.ndarray:
    """(n_probes,) uint32 record ``page << 16 | local`` of every probe, from each
    page's probe ids in page order (what a tetrahedral index stores)."""
    rec = np.full(int(n_probes), spatialhash.EMPTY, np.uint32)
    for p, ids in enumerate(pages_probe_ids):
        ids = np.asarray(ids, np.int64)
        if ids.size > spatialhash.MAX_PAGE_PROBES:
            raise ValueError(f"page {p} holds {ids.size} probes; pages hold at most {spatialhash.MAX_PAGE_PROBES}")
        rec[ids] = spatialhash.record(np.full(ids.size, p), np.arange(ids.size))
    if (rec == spatialhash.EMPTY).any():
        raise ValueError(f"probe {int(np.flatnonzero(rec == spatialhash.EMPTY)[0])} is on no page")
    return rec


def write_archive(path, meta: dict, pages: list[Page], tet_index=None) -> int:
    """Write pages atomically; returns the file size in bytes.

    ``meta`` needs: n_probes, probe_res, prototype_res, n_taps, texel_format,
    domain; optional grid (shape, lo, hi) and anything JSON-serialisable.
    All pages are held in memory: a bake of many pages streams them through
    :func:`write_encoded` instead. Scattered sets with the tetrahedral rule
    need ``tet_index`` (:func:`probewarp.baker.tetra.index_for_pages`; the
    builder needs qhull, which this package does not import).
    """
    meta = finalize_meta(meta, len(pages))
    encoded = [encode_page(pg, meta) for pg in pages]
    return write_encoded(path, meta, [e for e, _ in encoded], lambda i: encoded[i][1], tet_index=tet_index)


def write_encoded(path, meta: dict, pages: list[EncodedPage], blob, progress=None, tet_index=None) -> int:
    """Write an archive from encoded pages, streaming their blobs; returns the size.

    ``meta``: the :func:`finalize_meta` form the pages were encoded with;
    ``blob(i)`` returns page ``i``'s compressed bytes (e.g. read from a
    checkpoint), called once per page in order, so memory holds one page.
    The file is written to a temporary name beside ``path`` whose header
    (with the magic) is written last, then renamed: a killed writer leaves
    no file that looks like an archive. Scattered sets with the tetrahedral
    rule need ``tet_index`` (:class:`.tetindex.TetIndex`, built over the
    pages' probes: :func:`probewarp.baker.tetra.build_index`).
    """
    path = Path(path)
    meta = dict(meta)
    if int(meta["n_pages"]) != len(pages):
        raise ValueError(f"meta says {meta['n_pages']} pages, {len(pages)} given")
    if pages and all(pg.radiance_max is not None for pg in pages):
        meta["radiance_max"] = float(max(pg.radiance_max for pg in pages))
    hash_blob = b""
    if meta.get("grid") is not None:
        htable, max_probe = build_hash_from_keys([pg.keys for pg in pages])
        hash_blob = lz4.frame.compress(htable.astype("<u4").tobytes(), compression_level=9)
        meta["hash"] = {"capacity": int(htable.shape[0]), "max_probe": int(max_probe),
                        "n_keys": int(sum(pg.n_probes for pg in pages)),
                        "function": "fmix32(lattice id) & (capacity-1), linear probing",
                        "record": "page << 16 | local"}
    elif needs_tet_index(meta):
        if tet_index is None:
            raise ValueError("a scattered archive with the tetrahedral rule needs its index (tet_index)")
        if tet_index.probes.size != int(meta["n_probes"]):
            raise ValueError(f"the index holds {tet_index.probes.size} probes, the archive {meta['n_probes']}")
        hash_blob = lz4.frame.compress(tet_index.to_bytes(), compression_level=9)
        meta["tetra_index"] = tet_index.meta()
    table = np.zeros(len(pages), PAGE_DTYPE)
    for i, pg in enumerate(pages):
        rec = table[i]
        rec["size"], rec["raw_size"], rec["crc32"] = pg.size, pg.raw_size, pg.crc32
        rec["n_probes"], rec["n_prototypes"] = pg.n_probes, pg.n_prototypes
        rec["lo"], rec["hi"] = pg.lo, pg.hi
        if pg.brick is not None and implicit_ids(meta):
            rec["brick_lo"], rec["brick_shape"] = pg.brick
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    table_off = HEADER_SIZE + len(meta_bytes) + 4
    hash_off = table_off + table.nbytes + 4
    off = hash_off + len(hash_blob)
    for i, pg in enumerate(pages):
        table[i]["offset"] = off
        off += pg.size
    head = HEADER.pack(MAGIC, VERSION, 0, len(meta_bytes), table_off, len(pages),
                       hash_off if hash_blob else 0, len(hash_blob), zlib.crc32(hash_blob))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(bytes(HEADER_SIZE))             # the header goes in last
        f.write(meta_bytes + struct.pack("<I", zlib.crc32(meta_bytes)))
        tb = table.tobytes()
        f.write(tb + struct.pack("<I", zlib.crc32(tb)))
        f.write(hash_blob)
        for i, pg in enumerate(pages):
            b = blob(i)
            if len(b) != pg.size or zlib.crc32(b) != pg.crc32:
                raise ValueError(f"page {i}: its blob does not match its record (size or CRC-32)")
            f.write(b)
            if progress is not None:
                progress(i + 1, len(pages))
        f.flush()
        f.seek(0)
        f.write(head + struct.pack("<I", zlib.crc32(head)))
    return path.stat().st_size


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_meta(meta: dict, p: str, version: int, n_pages: int) -> None:
    """The metadata fields a reader relies on: types and sane ranges
    (InputError ``"{file}: field {name}: ..."``)."""
    def need_int(key, lo, hi, required=True):
        if key not in meta and not required:
            return
        v = meta.get(key)
        if not _is_int(v) or not lo <= v <= hi:
            raise InputError(f"{p}: field {key}: an integer in [{lo}, {hi}] is needed, got {v!r}")
    need_int("n_probes", 0, (1 << 32) - 1)
    need_int("probe_res", 1, MAX_FACE_RES)
    need_int("prototype_res", 1, MAX_FACE_RES)
    need_int("n_taps", 1, MAX_TAPS)
    need_int("format_version", 1, VERSION, required=False)
    if "n_pages" in meta and (not _is_int(meta["n_pages"]) or meta["n_pages"] != n_pages):
        raise InputError(f"{p}: field n_pages: the metadata says {meta['n_pages']!r}, the header {n_pages}")
    need_int("prototype_levels", 1, MAX_FACE_RES.bit_length(), required=version >= 3)
    fmt = meta.get("texel_format")
    if not isinstance(fmt, str) or fmt not in texformats.FORMATS:
        raise InputError(f"{p}: field texel_format: {fmt!r} is none of {', '.join(texformats.FORMATS)}")
    if fmt in texformats.BLOCK_FORMATS and meta["prototype_res"] % 4:
        raise InputError(f"{p}: field prototype_res: {fmt} needs a multiple of 4, got {meta['prototype_res']}")
    L, Rp = stored_levels(meta), meta["prototype_res"]
    if L > Rp.bit_length() or (fmt in texformats.BLOCK_FORMATS and (Rp >> (L - 1)) % 4):
        raise InputError(f"{p}: field prototype_levels: {L!r} levels do not fit prototypes of {Rp} texels ({fmt})")
    if meta.get("domain") not in ("tonemap", "linear"):
        raise InputError(f"{p}: field domain: 'tonemap' or 'linear' is needed, got {meta.get('domain')!r}")
    g = meta.get("grid")
    if g is not None and not isinstance(g, dict):
        raise InputError(f"{p}: field grid: an object is needed, got {g!r}")


class ArchiveReader:
    """Random access to an archive through a memory map.

    Opening checks the header, metadata and page table (magic, version,
    checksums, bounds); :meth:`page` checks and decodes one page;
    :meth:`validate` checks every page. Errors are :class:`InputError`
    naming the file, the page and the field.
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as e:
            raise InputError(f"{self.path}: cannot open ({e.strerror})") from e
        import mmap
        size = os.fstat(self._file.fileno()).st_size
        if size < HEADER_SIZE:
            self._file.close()
            raise InputError(f"{self.path}: truncated: {size} bytes is shorter than the header")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._open(size)
        except Exception:
            self.close()
            raise

    def _open(self, size):
        mm, p = self._mm, self.path
        head = mm[:HEADER.size]
        magic, version, flags, meta_len, table_off, n_pages, hash_off, hash_len, hash_crc = HEADER.unpack(head)
        if magic != MAGIC:
            raise InputError(f"{p}: field magic: not a probewarp archive (bad magic {magic!r})")
        if version not in READABLE_VERSIONS:
            raise InputError(f"{p}: field version: unknown format version {version} "
                             f"(this reader knows {', '.join(map(str, READABLE_VERSIONS))})")
        if struct.unpack("<I", mm[HEADER.size:HEADER_SIZE])[0] != zlib.crc32(head):
            raise InputError(f"{p}: field header: checksum mismatch")
        m_end = HEADER_SIZE + meta_len
        if m_end + 4 > size:
            raise InputError(f"{p}: truncated: metadata runs past the end of the file")
        mb = mm[HEADER_SIZE:m_end]
        if struct.unpack("<I", mm[m_end:m_end + 4])[0] != zlib.crc32(mb):
            raise InputError(f"{p}: field metadata: checksum mismatch")
        try:
            self.meta = json.loads(mb.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise InputError(f"{p}: field metadata: not UTF-8 JSON ({type(e).__name__}: {e})") from None
        if not isinstance(self.meta, dict):
            raise InputError(f"{p}: field metadata: a JSON object is needed, got {type(self.meta).__name__}")
        _check_meta(self.meta, f"{p}", version, n_pages)
        rmax = self.meta.get("radiance_max")
        if rmax is not None and (isinstance(rmax, bool) or not isinstance(rmax, (int, float))
                                 or not np.isfinite(rmax) or rmax < 0):
            raise InputError(f"{p}: field radiance_max: a finite radiance >= 0 is needed, got {rmax!r}")
        self.grid = Grid.from_meta(self.meta, where=f"{p}: field grid")
        if self.grid is not None:
            if self.grid.n_points >= spatialhash.EMPTY:
                raise InputError(f"{p}: field grid: lattice {list(self.grid.shape)} has 2^32 - 1 or more "
                                 "points: too large for the hash")
            if self.grid.dense and self.grid.n_points != self.meta["n_probes"]:
                raise InputError(f"{p}: field grid: a dense grid of {self.grid.n_points} points, "
                                 f"but n_probes is {self.meta['n_probes']}")
        t_end = table_off + n_pages * PAGE_DTYPE.itemsize
        if table_off != m_end + 4 or t_end + 4 > size:
            raise InputError(f"{p}: truncated: page table runs past the end of the file")
        tb = mm[table_off:t_end]
        if struct.unpack("<I", mm[t_end:t_end + 4])[0] != zlib.crc32(tb):
            raise InputError(f"{p}: field page table: checksum mismatch")
        self.table = np.frombuffer(tb, PAGE_DTYPE).copy()
        end = t_end + 4
        self.version = version
        if version >= 3:
            L, Rp, fmt = self.meta.get("prototype_levels"), self.meta.get("prototype_res"), self.meta.get("texel_format")
            if not _is_int(L) or not 1 <= L <= int(Rp).bit_length() or (
                    fmt in texformats.BLOCK_FORMATS and (int(Rp) >> (L - 1)) % 4):
                raise InputError(f"{p}: field prototype_levels: {L!r} levels do not fit prototypes of "
                                 f"{Rp} texels ({fmt})")
            self.prototype_levels = L
        else:
            # versions 1, 2 store level 0 only: uncompressed formats get the
            # chain computed on reading (page_stored), block formats level 0 only
            fmt = self.meta["texel_format"]
            self.prototype_levels = 1 if fmt in texformats.BLOCK_FORMATS else texformats.mip_level_count(
                self.meta["prototype_res"], self.meta["probe_res"], fmt)
        self._hash = None
        self._tet = None
        tet_meta = self.meta.get("tetra_index")
        if self.meta.get("grid") is None and (hash_off or hash_len or tet_meta is not None):
            # scattered sets (version 4): the section holds the tetrahedral index
            if version < 4 or not needs_tet_index(self.meta):
                raise InputError(f"{p}: field tetra_index: only version 4 archives of scattered sets with "
                                 f"interpolation 'tetrahedral' store an index (version {version}, "
                                 f"interpolation {self.meta.get('interpolation')!r})")
            tetindex.check_meta(tet_meta, self.meta["n_probes"], f"{p}: field tetra_index")
            if hash_off != end or end + hash_len > size or not hash_len:
                raise InputError(f"{p}: field tetra_index: truncated or misplaced (offset {hash_off}, "
                                 f"size {hash_len}, file {size} bytes)")
            if zlib.crc32(mm[hash_off:hash_off + hash_len]) != hash_crc:
                raise InputError(f"{p}: field tetra_index: checksum mismatch")
            if tet_meta["raw_size"] > LZ4_MAX_RATIO * hash_len + LZ4_SLACK:
                raise InputError(f"{p}: field tetra_index: {tet_meta['raw_size']} bytes cannot come from "
                                 f"{hash_len} compressed bytes")
            self._hash_blob = (hash_off, hash_len, hash_crc)
            end += hash_len
        elif version >= 4 and needs_tet_index(self.meta):
            raise InputError(f"{p}: field tetra_index: a version 4 scattered archive without its index")
        elif hash_off or hash_len:
            if hash_off != end or end + hash_len > size:
                raise InputError(f"{p}: field hash: truncated or misplaced (offset {hash_off}, "
                                 f"size {hash_len}, file {size} bytes)")
            self._hash_blob = (hash_off, hash_len, hash_crc)
            if zlib.crc32(mm[hash_off:hash_off + hash_len]) != hash_crc:
                raise InputError(f"{p}: field hash: checksum mismatch")
            h = self.meta.get("hash")
            if not isinstance(h, dict):
                raise InputError(f"{p}: field hash: the file has a hash but the metadata does not describe it")
            cap, mp, nk = h.get("capacity"), h.get("max_probe"), h.get("n_keys", 0)
            if not (_is_int(cap) and _is_int(mp) and _is_int(nk) and 16 <= cap <= 1 << 32
                    and not cap & (cap - 1) and 1 <= mp <= cap and 0 <= nk <= cap // 2):
                raise InputError(f"{p}: field hash: capacity {cap!r}, max_probe {mp!r}, n_keys {nk!r} "
                                 "(a power of two >= 16, 1 <= max_probe <= capacity, load <= 0.5)")
            if cap * 8 > LZ4_MAX_RATIO * hash_len + LZ4_SLACK:
                raise InputError(f"{p}: field hash: capacity {cap} ({cap * 8} bytes) cannot come from "
                                 f"{hash_len} compressed bytes")
            end += hash_len
        elif version >= 2 and self.meta.get("grid") is not None:
            raise InputError(f"{p}: field hash: a grid archive without its spatial hash")
        if n_pages > spatialhash.MAX_PAGES:
            raise InputError(f"{p}: field n_pages: {n_pages} pages; an archive holds at most {spatialhash.MAX_PAGES}")
        implicit = implicit_ids(self.meta)
        for i, rec in enumerate(self.table):
            if int(rec["offset"]) != end or end + int(rec["size"]) > size:
                raise InputError(f"{p}: page {i}: truncated or misplaced (offset {int(rec['offset'])}, "
                                 f"size {int(rec['size'])}, file {size} bytes)")
            end += int(rec["size"])
            self._check_record(i, rec, implicit)
        if end != size:
            raise InputError(f"{p}: {size - end} unexpected bytes after the last page")
        self.size = size

    def _check_record(self, i: int, rec, implicit: bool) -> None:
        """A page-table record's counts against the metadata, sane limits and its
        compressed size (before anything is allocated from them)."""
        where = f"{self.path}: page {i}"
        n, M, raw, comp = int(rec["n_probes"]), int(rec["n_prototypes"]), int(rec["raw_size"]), int(rec["size"])
        if not 1 <= M <= MAX_PAGE_PROTOTYPES:
            raise InputError(f"{where}: field n_prototypes: {M} (1 to {MAX_PAGE_PROTOTYPES})")
        if n > self.meta["n_probes"] or (self.grid is not None and n > spatialhash.MAX_PAGE_PROBES):
            raise InputError(f"{where}: field n_probes: {n} probes (the archive has {self.meta['n_probes']}; "
                             f"a page of a grid holds at most {spatialhash.MAX_PAGE_PROBES})")
        expect = payload_size(n, M, self.meta)
        if raw != expect:
            raise InputError(f"{where}: field raw_size: {raw} bytes, a page of {n} probes and {M} "
                             f"prototypes is {expect}")
        if raw > LZ4_MAX_RATIO * comp + LZ4_SLACK:
            raise InputError(f"{where}: field raw_size: {raw} bytes cannot come from {comp} compressed bytes")
        if implicit:
            b_lo, b_sh = rec["brick_lo"].astype(np.int64), rec["brick_shape"].astype(np.int64)
            if (b_sh < 1).any() or (b_lo + b_sh > self.grid.shape_array).any() or int(np.prod(b_sh)) != n:
                raise InputError(f"{where}: field brick: {tuple(b_lo.tolist())} + {tuple(b_sh.tolist())} is "
                                 f"not a brick of {n} probes inside the grid {self.grid.shape}")

    @property
    def n_pages(self) -> int:
        return int(self.table.size)

    def hash(self) -> tuple[np.ndarray, int] | None:
        """The spatial hash of a grid archive: ``(table (capacity, 2) uint32, max_probe)``
        (:mod:`.spatialhash`), or None for scattered sets. Version 1 files of dense
        grids get theirs rebuilt from the page table."""
        if self.meta.get("grid") is None:
            return None
        if self._hash is None:
            if self.version == 1:
                if not implicit_ids(self.meta):
                    raise InputError(f"{self.path}: field hash: a version 1 archive of a sparse grid "
                                     "(version 1 knew dense grids only)")
                pages = []
                for rec in self.table:
                    ids, pos = self.grid.brick_ids((rec["brick_lo"], rec["brick_shape"]))
                    pages.append(Page(None, None, None, ids, pos, None, None))
                try:
                    self._hash = build_hash(self.meta, pages)
                except ValueError as e:
                    raise InputError(f"{self.path}: field brick: the pages' bricks overlap ({e})") from None
            else:
                off, n, _ = self._hash_blob
                h = self.meta["hash"]
                cap, mp = int(h["capacity"]), int(h["max_probe"])
                raw = lz4_decompress_bounded(self._mm[off:off + n], cap * 8, f"{self.path}: field hash")
                self._hash = (np.frombuffer(raw, "<u4").reshape(cap, 2).copy(), mp)
        return self._hash

    def tet_index(self):
        """The tetrahedral index of a version 4 scattered archive
        (:class:`.tetindex.TetIndex`, checked: every id the decoders follow
        lands in its buffer), or None (grid sets; scattered archives before
        version 4, whose decoders build it from the positions)."""
        if self.meta.get("grid") is not None or self.meta.get("tetra_index") is None:
            return None
        if self._tet is None:
            off, n, _ = self._hash_blob
            m = self.meta["tetra_index"]
            where = f"{self.path}: field tetra_index"
            raw = lz4_decompress_bounded(self._mm[off:off + n], m["raw_size"], where)
            if self.table.size and (self.table["n_probes"] > spatialhash.MAX_PAGE_PROBES).any():
                raise InputError(f"{where}: a page holds more than {spatialhash.MAX_PAGE_PROBES} probes")
            self._tet = tetindex.from_bytes(raw, m, self.table["n_probes"], where)
        return self._tet

    def page(self, i: int) -> Page:
        """Page ``i``, checked and decoded to float (see :class:`Page`)."""
        raw = self._page_bytes(i)
        rec = self.table[i]
        brick = (tuple(int(v) for v in rec["brick_lo"]), tuple(int(v) for v in rec["brick_shape"])) \
            if implicit_ids(self.meta) else None
        return unpack_page(raw, int(rec["n_probes"]), int(rec["n_prototypes"]), self.meta,
                           f"{self.path}: page {i}", brick)

    def page_stored(self, i: int) -> dict:
        """Page ``i``, checked, its arrays as stored (:func:`page_fields`): what the
        GPU streamer uploads, ``prototype_levels`` holding :attr:`prototype_levels`
        levels (computed here in numpy for version 1 and 2 files of uncompressed
        formats). Safe to call from another thread than the opener's."""
        rec = self.table[i]
        out = page_fields(self._page_bytes(i), int(rec["n_probes"]), int(rec["n_prototypes"]),
                          self.meta, f"{self.path}: page {i}")
        if len(out["prototype_levels"]) < self.prototype_levels:
            out["prototype_levels"] = texformats.mip_chain(out["prototypes"], self.meta["texel_format"],
                                                           self.prototype_levels)
        return out

    def _page_bytes(self, i: int) -> bytes:
        if not 0 <= i < self.n_pages:
            raise IndexError(f"{self.path}: page {i} of {self.n_pages}")
        rec = self.table[i]
        off, n = int(rec["offset"]), int(rec["size"])
        blob = self._mm[off:off + n]
        if zlib.crc32(blob) != int(rec["crc32"]):
            raise InputError(f"{self.path}: page {i}: checksum mismatch")
        return lz4_decompress_bounded(blob, int(rec["raw_size"]), f"{self.path}: page {i}")

    def validate(self) -> None:
        """Decode and check every page; raises InputError at the first bad one."""
        seen = 0
        pages = []
        for i in range(self.n_pages):
            pg = self.page(i)
            seen += pg.probe_ids.size
            pages.append(Page(None, None, None, pg.probe_ids, pg.positions, None, None))
        if seen != self.meta.get("n_probes", seen):
            raise InputError(f"{self.path}: field n_probes: pages hold {seen} probes, metadata says {self.meta['n_probes']}")
        if self.meta.get("grid") is not None:
            table, max_probe = self.hash()
            try:
                expect, _ = build_hash(self.meta, pages)
            except ValueError as e:
                raise InputError(f"{self.path}: field positions: the pages' probes are no set of distinct "
                                 f"lattice points ({e})") from None
            if not np.array_equal(table, expect):
                raise InputError(f"{self.path}: field hash: does not map the pages' probes")
        tet = self.tet_index()
        if tet is not None:
            try:
                rec = page_records([pg.probe_ids for pg in pages], self.meta["n_probes"])
            except (ValueError, IndexError) as e:
                raise InputError(f"{self.path}: field probe_ids: the pages' probes are not each probe once ({e})") from None
            pos = np.zeros((int(self.meta["n_probes"]), 3), np.float32)
            for pg in pages:
                pos[pg.probe_ids] = pg.positions
            if not np.array_equal(tet.probes["record"], rec) or not np.array_equal(tet.probes["xyz"], pos):
                raise InputError(f"{self.path}: field tetra_index: its probes' records or positions are not "
                                 "the pages'")

    def summary(self) -> dict:
        m = self.meta
        return {"format_version": m.get("format_version", self.version), "file_bytes": self.size, "n_probes": m["n_probes"],
                "bytes_per_probe": self.size / max(m["n_probes"], 1), "n_pages": self.n_pages,
                "prototypes_total": int(self.table["n_prototypes"].sum()), "probe_res": m["probe_res"],
                "prototype_res": m["prototype_res"], "prototype_levels": self.prototype_levels, "n_taps": m["n_taps"], "texel_format": m["texel_format"],
                "domain": m["domain"], "grid": m.get("grid"),
                "hash": None if m.get("grid") is None else {
                    "capacity": self.hash()[0].shape[0], "max_probe": self.hash()[1],
                    "bytes": int(self._hash_blob[1]) if self.version >= 2 else 0},
                "tetra_index": None if m.get("tetra_index") is None else dict(
                    m["tetra_index"], bytes=int(self._hash_blob[1]))}

    def close(self):
        if getattr(self, "_mm", None) is not None:
            self._mm.close()
            self._mm = None
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
