"""Baking probes into archive pages.

A bake is a list of independent page tasks (:func:`plan_pages`): each page
is a spatial brick of about K probes (:func:`split_pages`) plus a **halo**,
the probes within ``halo`` probe spacings of the brick that belong to other
pages. :func:`fit_page` fits one :class:`.prototypes.ProbeCodec` on the
page's probes and its halo together, so that a probe at a page border is
fitted with the same context as one inside, then keeps the codes of the
page's own probes and the prototypes they use, and encodes the page for
the archive (:func:`probewarp.format.archive.encode_page`).

:func:`fit_page` is a pure function of its inputs (the seed of page ``p`` is
``seed + p``): the same input gives the same bytes in a thread, a process or
on a Dask worker. Running many pages, checkpoints and the final archive are
:mod:`.engines` and :mod:`.pipeline`; :func:`bake` is the small in-memory
form (pages in order, in this thread) that tests and notebooks use.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from probewarp.baker import config
from probewarp.format.archive import EncodedPage, Page, encode_page, finalize_meta
from probewarp.format.grid import Grid
from probewarp.format.constants import GRID_FILL_RULE
from probewarp.baker.prototypes import ProbeCodec

#: Default halo width, in probe spacings (see :func:`plan_pages`).
DEFAULT_HALO = config.DEFAULT_HALO


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


@dataclass
class PageTask:
    """One page to fit: ``ids`` its own probes (global indices, in page
    order), ``halo`` neighbouring probes of other pages fitted with it but not
    coded in it (sorted), ``brick`` the lattice brick of a dense grid set."""
    index: int
    ids: np.ndarray
    halo: np.ndarray
    brick: tuple | None = None

    @property
    def fit_ids(self) -> np.ndarray:
        """The probes the page is fitted on: its own, then its halo."""
        return np.concatenate([self.ids, self.halo])


def probe_spacing(positions: np.ndarray, grid: Grid | None) -> np.ndarray:
    """(3,) typical probe spacing: the lattice step of a grid set, else the
    median nearest-neighbour distance (on a sample) on every axis."""
    if grid is not None:
        return np.asarray(grid.step, np.float64)
    from scipy.spatial import cKDTree
    P = positions.shape[0]
    if P < 2:
        return np.ones(3)
    sample = positions[np.linspace(0, P - 1, min(P, 4096)).astype(np.int64)]
    d = cKDTree(positions).query(sample, k=2)[0][:, 1]
    return np.full(3, max(float(np.median(d)), 1e-9))


def plan_pages(positions, page_probes: int, grid: Grid | None = None, halo: float = DEFAULT_HALO
               ) -> list[PageTask]:
    """The bake's pages: bricks (:func:`split_pages`) with their halos.

    A page's halo is every probe of another page inside its own probes'
    bounding box grown by ``halo`` probe spacings (:func:`probe_spacing`) on
    each side: for a dense grid, ``halo`` whole lattice layers around the
    brick. ``halo=0`` fits pages on their own probes only.
    """
    positions = np.asarray(positions, np.float64)
    groups = split_pages(positions, page_probes, grid)
    if halo < 0:
        raise ValueError(f"halo must be >= 0 probe spacings, not {halo}")
    dense = grid is not None and grid.dense
    if len(groups) == 1 or halo == 0:
        return [PageTask(p, ids.astype(np.int64), np.zeros(0, np.int64),
                         grid.brick_of(ids) if dense else None) for p, ids in enumerate(groups)]
    grow = halo * probe_spacing(positions, grid) * (1 + 1e-6)
    tasks = []
    for p, ids in enumerate(groups):
        lo = positions[ids].min(axis=0) - grow
        hi = positions[ids].max(axis=0) + grow
        inside = np.all((positions >= lo) & (positions <= hi), axis=1)
        inside[ids] = False
        tasks.append(PageTask(p, ids.astype(np.int64), np.flatnonzero(inside).astype(np.int64),
                              grid.brick_of(ids) if dense else None))
    return tasks


def page_border_distance(positions, tasks: list[PageTask], grid: Grid | None = None) -> np.ndarray:
    """(P,) distance of every probe to the nearest probe of another page, in
    probe spacings (1 on the layer at a brick face of a grid); ``inf`` in a
    one-page bake. Measured up to 4 spacings: farther probes get 4+ values
    only when the nearest other-page probe is among their 125 nearest."""
    from scipy.spatial import cKDTree
    positions = np.asarray(positions, np.float64)
    P = positions.shape[0]
    out = np.full(P, np.inf)
    if len(tasks) < 2:
        return out
    label = np.empty(P, np.int64)
    for t in tasks:
        label[t.ids] = t.index
    scale = probe_spacing(positions, grid)
    scale = np.where(scale > 0, scale, 1.0)
    z = positions / scale
    k = min(P, 125)
    tree = cKDTree(z)
    for a in range(0, P, 65536):
        d, j = tree.query(z[a:a + 65536], k=k)
        other = label[j] != label[a:a + 65536, None]
        dd = np.where(other, d, np.inf).min(axis=1)
        out[a:a + 65536] = dd
    return out


@dataclass
class PageOutput:
    """What :func:`fit_page` returns: the encoded page and its blob, the learner's
    history and a few statistics (seconds, probes fitted, halo size)."""
    index: int
    encoded: EncodedPage
    blob: bytes = field(repr=False)
    history: list
    stats: dict


def codec_for(task: PageTask, n_fit: int, params: dict, seed: int, parallel: bool = True) -> ProbeCodec:
    """The learner of one page: ``params`` are ProbeCodec parameters; M is capped
    by the probes the page is fitted on; seed ``seed + page``."""
    kw = dict(params)
    kw["n_prototypes"] = min(int(kw.get("n_prototypes", config.DEFAULT_PROTOTYPES)), n_fit)
    kw["seed"] = int(seed) + int(task.index)
    if "parallel" in ProbeCodec().get_params():
        kw["parallel"] = bool(parallel)
    return ProbeCodec(**kw)


def fit_page(task: PageTask, positions_fit: np.ndarray, faces_fit: np.ndarray, params: dict, meta: dict,
             seed: int = 0, parallel: bool = True, keep_page: bool = False) -> PageOutput:
    """Fit one page on its probes and halo, keep its own probes' codes, encode it.

    Parameters
    ----------
    task : the page
    positions_fit, faces_fit : (n, 3) and (n, 6, R, R, 3): the probes of
        ``task.fit_ids``, in that order (own probes first)
    params : :class:`ProbeCodec` parameters (n_prototypes, n_taps, ...)
    meta : the archive metadata (:func:`archive_meta`), final form
        (:func:`probewarp.format.archive.finalize_meta`)
    parallel : numba's parallel kernels (False: serial ones, for running
        several pages in threads)
    keep_page : also return the decoded :class:`Page` in ``stats['page']``

    Notes
    -----
    Prototypes that no own probe uses (they served the halo only) are
    dropped and the codes renumbered, so pages may hold fewer than M.
    """
    t0 = time.perf_counter()
    n_own = task.ids.size
    codec = codec_for(task, positions_fit.shape[0], params, seed, parallel)
    grid = Grid.from_meta(meta)
    cells = grid.stencils(positions_fit) if grid is not None else None
    codec.fit(positions_fit, faces_fit, cells=cells)
    idx = codec.indices_[:n_own]
    w = codec.weights_[:n_own]
    used = np.zeros(codec.centres_.shape[0], bool)
    used[idx[w > 0]] = True
    used[idx[:, 0]] = True                     # a probe with no weight still names a prototype
    remap = np.cumsum(used) - 1
    page = Page(centres=codec.centres_[used], radii=codec.radii_[used], prototypes=codec.prototypes_[used],
                probe_ids=task.ids.astype(np.int64), positions=np.asarray(positions_fit[:n_own], np.float64),
                indices=remap[idx].astype(np.int32), weights=w.astype(np.float32), brick=task.brick,
                stored=codec.prototypes_stored_[used])
    fit_s = time.perf_counter() - t0
    enc, blob = encode_page(page, meta)
    enc.radiance_max = float(np.max(faces_fit[:n_own])) if n_own else 0.0     # -> meta radiance_max
    stats = {"probes": int(n_own), "halo": int(task.halo.size), "prototypes": int(used.sum()),
             "fit_seconds": fit_s, "encode_seconds": time.perf_counter() - t0 - fit_s,
             "probe_res": int(codec.R_), "prototype_res": int(codec.Rp_), "iterations": int(codec.n_iter_)}
    if keep_page:
        stats["page"] = page
    return PageOutput(task.index, enc, blob, codec.history_, stats)


def read_fit_faces(faces, ids: np.ndarray) -> np.ndarray:
    """``faces[ids]`` read in ascending order (chunked stores read each chunk
    once), returned in the order of ``ids``."""
    order = np.argsort(ids, kind="stable")
    block = np.asarray(faces[ids[order]])
    out = np.empty_like(block)
    out[order] = block
    return out


def bake(positions, faces, *, n_prototypes=config.DEFAULT_PROTOTYPES, n_taps=config.DEFAULT_TAPS,
         prototype_res=None, page_probes=config.DEFAULT_PAGE_PROBES, grid: Grid | None = None, seed=0, halo=DEFAULT_HALO, progress=None, **codec_kw):
    """Fit every page, in order, in this thread; the pages held in memory.

    Parameters
    ----------
    positions : (P, 3) float
    faces : (P, 6, R, R, 3) float16/float32, or a lazy array indexable by probe lists
    progress : callable(page, n_pages, stage, info) or None, after each page

    Returns
    -------
    pages : list of :class:`.archive.Page`
    report : dict (per-page history, seconds, parameters)
    """
    positions = np.asarray(positions, np.float64)
    tasks = plan_pages(positions, page_probes, grid, halo)
    params = dict(n_prototypes=n_prototypes, n_taps=n_taps, prototype_res=prototype_res, **codec_kw)
    R = int(np.shape(faces)[2])
    meta = finalize_meta(archive_meta(positions.shape[0], page_report_fields(params, R), grid), len(tasks))
    pages, histories, rmax = [], [], 0.0
    t0 = time.perf_counter()
    for t in tasks:
        ids = t.fit_ids
        out = fit_page(t, positions[ids], read_fit_faces(faces, ids), params, meta, seed, keep_page=True)
        pages.append(out.stats.pop("page"))
        histories.append(out.history)
        rmax = max(rmax, float(out.encoded.radiance_max))
        if progress is not None:
            progress(t.index, len(tasks), "page", out.stats)
    report = {"n_pages": len(tasks), "seconds": time.perf_counter() - t0, "pages": histories,
              "radiance_max": rmax, **page_report_fields(params, R)}
    return pages, report


def page_report_fields(params: dict, R: int) -> dict:
    """The archive-describing fields of a bake (probe_res, prototype_res,
    domain, texel_format, n_taps) from the learner's parameters, the
    learner's defaults filling the gaps: known before any page is fitted."""
    codec = {**ProbeCodec().get_params(), **params}
    Rp = int(codec["prototype_res"] or R)
    return {"probe_res": int(R), "prototype_res": Rp, "domain": codec["domain"],
            "texel_format": codec["texel_format"] or config.default_texel_format(Rp),
            "n_taps": int(codec["n_taps"])}


def archive_meta(n_probes: int, report: dict, grid: Grid | None = None) -> dict:
    """The archive metadata of a bake (see :mod:`probewarp.format.archive`); ``grid``
    the set's lattice (dense or sparse), None for a scattered set."""
    meta = {"n_probes": int(n_probes), "probe_res": int(report["probe_res"]),
            "prototype_res": int(report["prototype_res"]), "n_taps": int(report["n_taps"]),
            "texel_format": report["texel_format"], "domain": report["domain"],
            "warp_miss_rule": "closest-approach", "weight_encoding": "u8/128",
            "interpolation": ("trilinear" if grid.dense else GRID_FILL_RULE)
            if grid is not None else "tetrahedral"}
    if grid is not None:
        meta["grid"] = grid.to_meta()
    if report.get("radiance_max") is not None:      # the brightest input texel (docs/FORMAT.md)
        meta["radiance_max"] = float(report["radiance_max"])
    return meta
