"""Baking probes into archive pages.

:func:`split_pages` cuts a probe set into spatial bricks of about K probes;
:func:`bake` fits one :class:`.prototypes.ProbeCodec` per page and returns
the pages (and a report) for :func:`probewarp.format.archive.write_archive`;
:func:`archive_meta` is the archive metadata of such a bake.

The whole job (load lazily, bake, write atomically, score the written file,
report) is :func:`probewarp.baker.pipeline.bake_probeset`; the CPU reference
decoder is :class:`probewarp.baker.decoder.Decoder`.
"""
from __future__ import annotations

import time

import numpy as np

from probewarp.format.archive import Page
from probewarp.format.grid import Grid
from probewarp.baker.prototypes import ProbeCodec


def split_pages(positions: np.ndarray, page_probes: int, grid: Grid | None = None) -> list[np.ndarray]:
    """Spatial bricks of about ``page_probes`` probes: list of index arrays.

    Dense grid sets (``grid``, a dense :class:`~probewarp.format.grid.Grid`)
    are cut into bricks of whole grid cells (:meth:`Grid.bricks`); other sets by recursive median splits along the longest
    axis. One page when ``page_probes >= P``.
    """
    P = positions.shape[0]
    if page_probes >= P:
        return [np.arange(P)]
    if grid is not None and grid.dense:
        if grid.n_points != P:
            raise ValueError(f"a dense grid of {grid.n_points} points holds {P} probes")
        return grid.bricks(page_probes)
    out, stack = [], [np.arange(P)]
    while stack:
        ids = stack.pop()
        if ids.size <= page_probes:
            out.append(ids)
            continue
        pts = positions[ids]
        ax = int(np.argmax(np.ptp(pts, axis=0)))
        order = ids[np.argsort(pts[:, ax], kind="stable")]
        half = order.size // 2
        stack += [order[half:], order[:half]]
    return sorted(out, key=lambda a: int(a[0]))


def bake(positions, faces, *, n_prototypes=256, n_taps=4, prototype_res=None, page_probes=16384,
         grid: Grid | None = None, seed=0, progress=None, **codec_kw):
    """Fit every page.

    Parameters
    ----------
    positions : (P, 3) float
    faces : (P, 6, R, R, 3) float16/float32, or a lazy array indexable by probe lists
    progress : callable(page, n_pages, stage, info) or None

    Returns
    -------
    pages : list of :class:`.archive.Page`
    report : dict (per-page history, seconds, parameters)
    """
    positions = np.asarray(positions, np.float64)
    groups = split_pages(positions, page_probes, grid)
    pages, histories = [], []
    t0 = time.perf_counter()
    for p, ids in enumerate(groups):
        M = min(int(n_prototypes), ids.size)
        cb = None if progress is None else (lambda st, info, p=p: progress(p, len(groups), st, info))
        codec = ProbeCodec(n_prototypes=M, n_taps=n_taps, prototype_res=prototype_res, seed=seed + p,
                           progress=cb, **codec_kw)
        codec.fit(positions[ids], np.asarray(faces[ids]))
        brick = grid.brick_of(ids) if grid is not None and grid.dense else None
        pages.append(Page(centres=codec.centres_, radii=codec.radii_, prototypes=codec.prototypes_,
                          probe_ids=ids.astype(np.int64), positions=positions[ids],
                          indices=codec.indices_, weights=codec.weights_, brick=brick))
        histories.append(codec.history_)
        last = codec
    report = {"n_pages": len(groups), "seconds": time.perf_counter() - t0, "pages": histories,
              "probe_res": last.R_, "prototype_res": last.Rp_, "domain": last.domain,
              "texel_format": last.texel_format, "n_taps": n_taps}
    return pages, report


def archive_meta(n_probes: int, report: dict, grid: Grid | None = None) -> dict:
    """The archive metadata of a bake (see :mod:`probewarp.format.archive`); ``grid``
    the set's lattice (dense or sparse), None for a scattered set."""
    meta = {"n_probes": int(n_probes), "probe_res": int(report["probe_res"]),
            "prototype_res": int(report["prototype_res"]), "n_taps": int(report["n_taps"]),
            "texel_format": report["texel_format"], "domain": report["domain"],
            "warp_miss_rule": "closest-approach", "weight_encoding": "u8/128",
            "interpolation": ("trilinear" if grid.dense else "trilinear-present-corners")
            if grid is not None else "inverse-distance-8"}
    if grid is not None:
        meta["grid"] = grid.to_meta()
    return meta
