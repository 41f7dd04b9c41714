"""Synthetic archives for runtime tests: valid pages with random smooth
prototypes and random codes, written without a bake (fast, any size).

Quality is irrelevant here: the GL decoder must reproduce the CPU reference
decoder on whatever the archive holds.
"""
from __future__ import annotations

import numpy as np

from probewarp.format import texformats
from probewarp.format.archive import Page, write_archive
from probewarp.baker.bake import split_pages
from probewarp.format.grid import Grid
from probewarp.baker.cubemap import texel_directions
from probewarp.baker.probeset import ProbeSet


def smooth_prototypes(rng, M, Rp):
    """(M, 6, Rp, Rp, 3) values in (0.05, 0.95): a few random lobes each."""
    d = texel_directions(Rp).reshape(-1, 3)
    out = np.empty((M, d.shape[0], 3))
    for m in range(M):
        axes = rng.normal(size=(3, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        sharp = rng.uniform(1.0, 6.0, size=3)
        col = rng.uniform(0.1, 0.8, size=(3, 3))
        lobes = np.exp(sharp[:, None] * (d @ axes.T - 1.0).T)        # (3, T)
        out[m] = 0.05 + 0.9 * np.clip(lobes.T @ col / 1.5, 0, 1)
    return out.reshape(M, 6, Rp, Rp, 3).astype(np.float32)


def make_archive(path, grid_shape=(6, 3, 5), lo=(-5.0, 0.0, -4.0), hi=(5.0, 2.0, 4.0), *, page_probes=16,
                 M=12, N=4, Rp=8, R=None, fmt="rgba16f", domain="tonemap", keep=None, seed=0,
                 radius_range=(1.5, 15.0)):
    """Write a grid archive; returns (path, pages, meta).

    ``keep`` (bool mask over the dense grid, or a fraction) makes a sparse grid.
    ``radius_range``: range of the prototypes' radii (15% get an infinite one).
    """
    rng = np.random.default_rng(seed)
    R = R or Rp
    shape = tuple(int(v) for v in grid_shape)
    pos = ProbeSet.grid(lo, hi, shape).astype(np.float64)
    P = pos.shape[0]
    dense = keep is None
    if dense:
        ids = np.arange(P)
        groups = split_pages(pos, page_probes, Grid(shape, lo, hi))
    else:
        mask = keep if isinstance(keep, np.ndarray) else rng.random(P) < float(keep)
        ids = np.flatnonzero(mask)
        groups = [ids[g] for g in split_pages(pos[ids], page_probes)]
    pages = []
    for g in groups:
        Mp = int(M)
        centres = pos[g][rng.integers(len(g), size=Mp)] + rng.normal(scale=0.7, size=(Mp, 3))
        radii = rng.uniform(*radius_range, size=Mp)
        radii[rng.random(Mp) < 0.15] = np.inf
        protos = smooth_prototypes(rng, Mp, Rp)
        if domain == "linear":
            protos = protos * 3.0
        idx = np.stack([rng.choice(Mp, size=N, replace=False) for _ in g]).astype(np.int32)
        w = rng.dirichlet(np.ones(N), size=len(g)) * rng.uniform(0.8, 1.2, size=(len(g), 1))
        w = texformats.decode_weights(texformats.encode_weights(w))
        protos = texformats.decode(texformats.encode(protos, fmt), fmt)
        brick = None
        if dense:
            ijk = np.stack(np.unravel_index(g, shape), axis=1)
            b_lo = ijk.min(axis=0)
            brick = (tuple(int(v) for v in b_lo), tuple(int(v) for v in ijk.max(axis=0) - b_lo + 1))
        local_ids = g if dense else np.searchsorted(ids, g)
        pages.append(Page(centres=centres, radii=radii, prototypes=protos, probe_ids=local_ids.astype(np.int64),
                          positions=pos[g], indices=idx, weights=w.astype(np.float32), brick=brick))
    meta = {"n_probes": int(ids.size), "probe_res": int(R), "prototype_res": int(Rp), "n_taps": int(N),
            "texel_format": fmt, "domain": domain, "warp_miss_rule": "closest-approach",
            "weight_encoding": "u8/128", "interpolation": "trilinear" if dense else "trilinear-present-corners",
            "grid": {"shape": list(shape), "lo": [float(v) for v in lo], "hi": [float(v) for v in hi],
                     "dense": dense}}
    write_archive(path, meta, pages)
    return path, pages, meta


def downgrade(src, dst, version):
    """Rewrite archive ``src`` as a format ``version`` 1 or 2 file at ``dst``
    (what older writers produced): payloads keep level 0 of the prototypes
    only, metadata without ``prototype_levels``, version 1 without the hash."""
    import json
    import struct
    import zlib

    import lz4.frame

    from probewarp.format import archive as A
    from probewarp.format.archive import ArchiveReader
    with ArchiveReader(src) as ar:
        meta, table = dict(ar.meta), ar.table.copy()
        L = ar.prototype_levels
        blobs = [bytes(ar._mm[int(r["offset"]):int(r["offset"]) + int(r["size"])]) for r in table]
        hash_blob = bytes(ar._mm[ar._hash_blob[0]:ar._hash_blob[0] + ar._hash_blob[1]]) \
            if meta.get("grid") is not None else b""
    fmt, Rp = meta["texel_format"], meta["prototype_res"]
    out = []
    for rec, b in zip(table, blobs):
        raw = lz4.frame.decompress(b)
        M = int(rec["n_prototypes"])
        start = M * 16                                   # centres (M,3) f32 + radii (M,) f32
        sizes = [M * 6 * int(np.prod(s)) * d.itemsize
                 for s, d in (texformats.stored_layout(fmt, Rp >> lvl) for lvl in range(L))]
        raw = raw[:start + sizes[0]] + raw[start + sum(sizes):]
        comp = lz4.frame.compress(raw, compression_level=9)
        rec["size"], rec["raw_size"], rec["crc32"] = len(comp), len(raw), zlib.crc32(comp)
        out.append(comp)
    meta.pop("prototype_levels", None)
    meta["format_version"] = version
    if version == 1:
        meta.pop("hash", None)
        hash_blob = b""
    mb = json.dumps(meta, sort_keys=True).encode()
    table_off = A.HEADER_SIZE + len(mb) + 4
    hash_off = table_off + table.nbytes + 4
    off = hash_off + len(hash_blob)
    for i, b in enumerate(out):
        table[i]["offset"] = off
        off += len(b)
    head = A.HEADER.pack(A.MAGIC, version, 0, len(mb), table_off, len(out), hash_off if hash_blob else 0,
                         len(hash_blob), zlib.crc32(hash_blob) if hash_blob else 0)
    tb = table.tobytes()
    with open(dst, "wb") as f:
        f.write(head + struct.pack("<I", zlib.crc32(head)) + mb + struct.pack("<I", zlib.crc32(mb))
                + tb + struct.pack("<I", zlib.crc32(tb)) + hash_blob + b"".join(out))
    return dst


def scattered_positions(kind, rng, lo=(-5.0, 0.0, -4.0), hi=(5.0, 2.0, 4.0)):
    """Probe positions of a scattered set: ``jitter`` (a 6 x 3 x 5 grid moved
    by up to 0.3 spacings), ``subset`` (30 % of a 10 x 4 x 8 grid: cospherical
    points, qhull's hard case), ``random`` (uniform in the box), ``plane``,
    ``line`` (exactly collinear in float32), ``single``."""
    lo, hi = np.asarray(lo), np.asarray(hi)
    if kind == "jitter":
        g = ProbeSet.grid(lo, hi, (6, 3, 5)).astype(np.float64)
        step = (hi - lo) / np.array([5, 2, 4])
        return g + rng.uniform(-0.3, 0.3, g.shape) * step
    if kind == "subset":
        g = ProbeSet.grid(lo, hi, (10, 4, 8)).astype(np.float64)
        return g[rng.random(len(g)) < 0.3]
    if kind == "random":
        return rng.uniform(lo, hi, (70, 3))
    if kind == "plane":
        p = rng.uniform(lo, hi, (30, 3))
        p[:, 1] = 1.0
        return p
    if kind == "line":
        return np.stack([np.linspace(-4, 4, 9), np.full(9, 1.0), np.full(9, 0.5)], 1)
    if kind == "single":
        return np.array([[0.5, 1.0, -0.5]])
    raise ValueError(kind)


def make_scattered_archive(path, positions, *, page_probes=12, M=8, N=3, Rp=8, fmt="rgba16f",
                           domain="tonemap", seed=0, interpolation="tetrahedral"):
    """Write a scattered archive (no grid metadata) over ``positions``; returns
    (path, pages, meta). Pages: :func:`split_pages` of the positions."""
    rng = np.random.default_rng(seed)
    pos = np.asarray(positions, np.float32).astype(np.float64)
    groups = split_pages(pos, page_probes)
    pages = []
    for g in groups:
        centres = pos[g][rng.integers(len(g), size=M)] + rng.normal(scale=0.7, size=(M, 3))
        radii = rng.uniform(1.5, 15.0, size=M)
        radii[rng.random(M) < 0.15] = np.inf
        protos = texformats.decode(texformats.encode(smooth_prototypes(rng, M, Rp), fmt), fmt)
        idx = np.stack([rng.choice(M, size=N, replace=False) for _ in g]).astype(np.int32)
        w = rng.dirichlet(np.ones(N), size=len(g))
        w = texformats.decode_weights(texformats.encode_weights(w))
        pages.append(Page(centres=centres, radii=radii, prototypes=protos, probe_ids=np.asarray(g, np.int64),
                          positions=pos[g], indices=idx, weights=w.astype(np.float32)))
    meta = {"n_probes": int(pos.shape[0]), "probe_res": int(Rp), "prototype_res": int(Rp), "n_taps": int(N),
            "texel_format": fmt, "domain": domain, "warp_miss_rule": "closest-approach",
            "weight_encoding": "u8/128", "interpolation": interpolation}
    from probewarp.baker.tetra import index_for_pages
    write_archive(path, meta, pages,
                  tet_index=index_for_pages(pages, len(pos)) if interpolation == "tetrahedral" else None)
    return path, pages, meta
