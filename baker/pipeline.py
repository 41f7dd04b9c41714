"""The bake job as one library call: probe set in, scored archive out.

:func:`bake_probeset` loads a probe set lazily (a ``.zarr`` store is read
page by page, never all at once), checks or repairs it, decides its grid
once, bakes (:func:`.bake.bake`), writes the archive atomically
(:func:`probewarp.format.archive.write_archive`), scores the *written*
file by decoding it (:class:`.decoder.Decoder`) and writes the report and
plots beside it (:mod:`.report`). :func:`bake_arrays` is the same job on
arrays already in hand (the comparison's many bakes), without the report.

Nothing here prints or parses arguments: progress goes to a callback,
``progress(page, n_pages, stage, info)`` as in :func:`.bake.bake`.

Example
-------
>>> from probewarp.baker.pipeline import bake_probeset     # doctest: +SKIP
>>> r = bake_probeset("probes.zarr", "probes.pwa", n_prototypes=512, n_taps=4)
>>> r.psnr_db, r.bytes_per_probe, r.report_paths["json"]
"""
from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probewarp.baker import config, engines
from probewarp.baker import report as rep
from probewarp.baker.bake import (DEFAULT_HALO, archive_meta, page_border_distance, page_report_fields,
                                  plan_pages)
from probewarp.baker.checkpoint import Checkpoint, checkpoint_dir
from probewarp.baker.decoder import Decoder
from probewarp.baker.probeset import ProbeSet
from probewarp.baker.prototypes import ProbeCodec
from probewarp.baker.tetra import build_index
from probewarp.format.archive import VERSION, finalize_meta, needs_tet_index, page_records, write_encoded
from probewarp.format import spatialhash
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid

if TYPE_CHECKING:
    from probewarp.baker.probeset import SanitizeReport

#: The suffix every archive carries.
ARCHIVE_SUFFIX = ".pwa"
#: Reports list every probe's PSNR up to this many probes (percentiles beyond).
REPORT_PER_PROBE_MAX = 65536


@dataclass
class BakeResult:
    """What a bake produced and how well the written archive decodes.

    Attributes
    ----------
    archive : Path of the written archive
    n_probes, probe_res, prototype_res, n_pages : int
    file_bytes : int, the archive's size; ``bytes_per_probe = file_bytes / n_probes``
    psnr_db, log_rmse : float, DESIGN-NOTES §5, from decoding the written file
        at ``score_positions`` (NaN when not scored)
    per_probe_psnr_db : (Q,) float64, per scored position (inf where exact)
    seconds : dict, ``bake``, ``write``, ``decode_check`` and ``phases``
        (seconds per learner stage, summed over pages; ``read`` and
        ``encode`` too)
    throughput : dict, ``probes_per_second`` (probes fitted this run over the
        bake's wall time), ``pages_fitted``, ``pages_resumed``,
        ``peak_rss_bytes`` (this process plus every Dask worker), the engine
    border : dict, error against the distance to a page border
        (:func:`.report.border_stats`; empty without ``score`` or with one page)
    parameters : dict, the bake's parameters (the report's ``parameters``)
    bake_report : dict, :func:`.bake.bake`'s report (loss per iteration ...)
    sanitize_report : SanitizeReport or None (``sanitize=True`` only)
    lattice_detected : dict or None, the lattice a set without grid metadata was found on
    report_paths : dict ``{json, loss_png, error_png}`` of files written, or {}
    summary : dict, the JSON report's content (``{}`` without ``report``)
    """
    archive: Path
    n_probes: int
    probe_res: int
    prototype_res: int
    n_pages: int
    file_bytes: int
    bytes_per_probe: float
    psnr_db: float
    log_rmse: float
    per_probe_psnr_db: np.ndarray
    seconds: dict
    parameters: dict
    bake_report: dict = field(repr=False)
    throughput: dict = field(default_factory=dict)
    border: dict = field(default_factory=dict)
    sanitize_report: SanitizeReport | None = None
    #: the lattice found in a set without a grid description (ProbeSet.with_detected_lattice), or None
    lattice_detected: dict | None = None
    report_paths: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict, repr=False)


def archive_path(out) -> Path:
    """``out`` as a Path, checked to be an archive name (``.pwa``); InputError otherwise."""
    out = Path(out)
    if out.suffix != ARCHIVE_SUFFIX:
        raise InputError(f"{out}: archives end in {ARCHIVE_SUFFIX}")
    return out


def load_probes(source, *, sanitize: bool = False, validate: bool = True):
    """A probe set, checked: ``(ProbeSet, SanitizeReport or None)``.

    ``source`` is a path (``.zarr`` kept lazy; an uncompressed ``.npz``
    memory-mapped, unless ``sanitize``, which repairs in memory) or a
    :class:`ProbeSet`. ``sanitize=True`` repairs instead of rejecting, in
    place on the set (see :func:`probewarp.baker.probeset.validate`), and
    returns the report; ``validate=False`` skips the check of a set already
    checked. Raises :class:`~probewarp.baker.probeset.ProbeSetError` (an
    InputError) or FileNotFoundError.
    """
    if isinstance(source, ProbeSet):
        probes = source
        if sanitize:
            return probes, probes.validate(sanitize=True)
        if validate:
            probes.validate()
        return probes, None
    try:
        probes = ProbeSet.load(source, validate=validate and not sanitize, lazy=None if sanitize else True)
    except InputError:
        raise
    except ValueError as e:      # a path of no probe-set kind
        raise InputError(str(e)) from None
    srep = probes.validate(name=str(source), sanitize=True) if sanitize else None
    return probes, srep


def _phase_seconds(pages_history: list[list[dict]]) -> dict:
    """Seconds per learner stage, summed over pages (histories hold running totals)."""
    phases = {}
    for hist in pages_history:
        prev = 0.0
        for h in hist:
            phases[h["stage"]] = phases.get(h["stage"], 0.0) + h["seconds"] - prev
            prev = h["seconds"]
    return phases


def _sha1(*arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _fingerprint(positions, faces, tasks, params: dict, meta: dict, seed: int, halo: float) -> dict:
    """What identifies a bake for its checkpoint: the parameters, the archive
    metadata, the plan and the input (its positions, shape, dtype and a few
    probes' texels)."""
    P = positions.shape[0]
    probe = sorted({0, P // 2, P - 1}) if P else []
    return {"format_version": VERSION, "seed": int(seed), "halo": float(halo),
            "params": {k: v for k, v in params.items()}, "meta": meta,
            "input": {"n_probes": int(P), "faces_shape": list(map(int, np.shape(faces))),
                      "faces_dtype": str(np.dtype(faces.dtype)), "positions_sha1": _sha1(positions),
                      "faces_sample_sha1": _sha1(np.asarray(faces[np.asarray(probe, np.int64)]))},
            "plan_sha1": _sha1(*[np.concatenate([t.ids, [-1], t.halo]) for t in tasks])}


def _check_codec_params(n_prototypes, n_taps, R: int, params: dict, source=None) -> None:
    """Everything about M, N and Rp that would otherwise fail inside a page (after the
    checkpoint folder exists): InputError naming the parameter (and the input when known)."""
    where = f"{source}: " if source else ""
    M, N = int(n_prototypes), int(n_taps)
    if M < 1:
        raise InputError(f"{where}n_prototypes {M}: must be at least 1")
    if not 1 <= N <= 16:
        raise InputError(f"{where}n_taps {N}: must be in 1..16")
    if N > M:
        raise InputError(f"{where}n_taps {N}: more than n_prototypes {M} (a probe blends N distinct prototypes)")
    if params.get("prototype_res") is not None and int(params["prototype_res"]) < 1:
        raise InputError(f"{where}prototype_res {params['prototype_res']}: must be at least 1")
    try:
        ProbeCodec(**params)._resolutions(R)
    except InputError as e:
        raise InputError(f"{where}{e}") from None


def bake_arrays(positions, faces, out, *, grid: Grid | None = None, n_prototypes=config.DEFAULT_PROTOTYPES,
                n_taps=config.DEFAULT_TAPS, prototype_res=None, page_probes=config.DEFAULT_PAGE_PROBES, seed=0, halo=DEFAULT_HALO, progress=None, score=True,
                score_positions=None, score_reference=None, engine="threads", threads=None, workers=None,
                scheduler=None, source=None, checkpoint=True, fresh=False, **codec_kw) -> BakeResult:
    """Bake, write the archive atomically, score the written file.

    Parameters
    ----------
    positions : (P, 3) float
    faces : (P, 6, R, R, 3) float16/float32, or a lazy array indexable by
        probe lists and slices (:class:`~probewarp.baker.probeset.LazyFaces`,
        a memory map); read page by page (bake) and chunk by chunk (score),
        never whole
    out : path of the archive (written to a temporary name, then renamed)
    grid : the probes' :class:`~probewarp.format.grid.Grid` (dense or sparse)
        or None (scattered)
    halo : probe spacings of neighbouring probes each page is fitted with
        (:func:`.bake.plan_pages`)
    score : bool, decode the written archive and score it (else NaN scores)
    score_positions, score_reference : (Q, 3), (Q, 6, R, R, 3), optional
        Where to score and against what (default ``positions``, ``faces``),
        e.g. held-out probes.
    engine, threads, workers, scheduler : where pages run
        (:func:`.engines.run_pages`): ``"threads"`` (``threads`` pages at
        once, default all cores) or ``"dask"`` (a local cluster of
        ``workers`` processes, or the cluster at ``scheduler``)
    source : the path ``faces`` was read from, so Dask workers can read it
        themselves (else each task carries its probes)
    checkpoint : persist finished pages in ``OUT.partial/`` and resume from
        it (:mod:`.checkpoint`); ``fresh`` discards an existing one
    progress : callable(page, n_pages, stage, info) or None: ``stage`` is
        ``"page"`` after each page (``info``: probes_done, probes_total,
        probes_per_second, pages_done, resumed), then ``"write"`` and ``"score"``
    **codec_kw : :class:`~probewarp.baker.prototypes.ProbeCodec` parameters
        (``n_iter``, ``domain``, ``warp``, ``fit_radius``, ``texel_format`` ...)

    Returns
    -------
    BakeResult (no report files: see :func:`bake_probeset`)
    """
    out = Path(out)
    positions = np.asarray(positions, np.float64)
    P = int(positions.shape[0])
    R = int(np.shape(faces)[2])
    t0 = time.perf_counter()
    params = dict(n_prototypes=n_prototypes, n_taps=n_taps, prototype_res=prototype_res, **codec_kw)
    _check_codec_params(n_prototypes, n_taps, R, params, source)   # before any page runs or is kept
    if not 1 <= int(page_probes) <= spatialhash.MAX_PAGE_PROBES and P > spatialhash.MAX_PAGE_PROBES:
        raise InputError(f"{source + ': ' if source else ''}page_probes {page_probes}: a page holds at most "
                         f"{spatialhash.MAX_PAGE_PROBES} probes (the hash's and the index's records have "
                         "16 bits for a probe's place in its page)")
    tasks = plan_pages(positions, page_probes, grid, halo)
    fields = page_report_fields(params, R)
    meta = finalize_meta(archive_meta(P, fields, grid), len(tasks))
    n_pages = len(tasks)
    encoded, infos, blobs = {}, {}, {}
    ckpt = None
    if checkpoint:
        made = not checkpoint_dir(out).exists()
        try:
            ckpt = Checkpoint(out, _fingerprint(positions, faces, tasks, params, meta, seed, halo), fresh=fresh)
        except OSError:              # e.g. a full disk: a folder made just now holds nothing to resume
            if made:
                shutil.rmtree(checkpoint_dir(out), ignore_errors=True)
            raise
        for i, (enc, info) in ckpt.finished(n_pages).items():
            encoded[i], infos[i] = enc, info
    resumed = len(encoded)
    todo = [t for t in tasks if t.index not in encoded]
    state = {"probes": sum(infos[i]["stats"]["probes"] for i in infos), "fitted": 0}
    t_run = time.perf_counter()
    if progress is not None and resumed:
        progress(resumed - 1, n_pages, "resumed", {"pages_done": resumed, "probes_done": state["probes"],
                                                   "probes_total": P})

    def on_done(o):
        info = {"history": o.history, "stats": o.stats}
        if ckpt is not None:
            ckpt.save(o.index, o.encoded, o.blob, info)
        else:
            blobs[o.index] = o.blob
        encoded[o.index], infos[o.index] = o.encoded, info
        state["probes"] += o.stats["probes"]
        state["fitted"] += o.stats["probes"]
        if progress is not None:
            dt = max(time.perf_counter() - t_run, 1e-9)
            progress(o.index, n_pages, "page", {"pages_done": len(encoded), "probes_done": state["probes"],
                                                "probes_total": P, "probes_per_second": state["fitted"] / dt,
                                                "resumed": resumed, **o.stats})

    try:
        run = engines.run_pages(todo, positions, faces, params, meta, seed, on_done, engine=engine,
                                threads=threads, workers=workers, scheduler=scheduler,
                                ref=engines.faces_ref(faces, source) if engine == "dask" else None)
        bake_s = time.perf_counter() - t0
        if progress is not None:
            progress(n_pages - 1, n_pages, "write", {})
        pages = [encoded[i] for i in range(n_pages)]
        tet_index = None
        if needs_tet_index(meta):           # scattered: the GPU-ready tetrahedral index (format/tetindex.py)
            tet_index = build_index(positions, page_records([t.ids for t in tasks], P))
        size = write_encoded(out, meta, pages, ckpt.blob if ckpt is not None else blobs.__getitem__,
                             tet_index=tet_index)
    except BaseException:
        if ckpt is not None:
            if any(ckpt.page_path(i).exists() for i in range(n_pages)):
                ckpt.release()       # finished pages: the same command resumes from them
            else:
                ckpt.remove()        # nothing to resume: leave nothing behind
        raise
    if ckpt is not None:
        ckpt.remove()
    write_s = time.perf_counter() - t0 - bake_s
    psnr = log_rmse = float("nan")
    per_probe = np.zeros(0)
    decode_s = 0.0
    border = {}
    if score:
        # the published numbers come from decoding the archive as written
        if progress is not None:
            progress(n_pages - 1, n_pages, "score", {})
        t1 = time.perf_counter()
        q = positions if score_positions is None else score_positions
        ref = faces if score_reference is None else score_reference
        acc = Decoder(out).score(q, ref)
        s = acc.result()
        psnr, log_rmse, per_probe = s["psnr_db"], s["log_rmse"], acc.per_probe_psnr
        decode_s = time.perf_counter() - t1
        if score_positions is None and n_pages > 1:
            border = rep.border_stats(page_border_distance(positions, tasks, grid), per_probe)
    histories = [infos[i]["history"] for i in range(n_pages)]
    stats = [infos[i]["stats"] for i in range(n_pages)]
    phases = _phase_seconds(histories)
    phases["read"] = sum(st.get("read_seconds", 0.0) for st in stats)
    phases["encode"] = sum(st.get("encode_seconds", 0.0) for st in stats)
    main_rss = engines.peak_rss_bytes()
    worker_rss = run.get("worker_peak_rss", {})
    run_s = time.perf_counter() - t_run
    throughput = {"probes_per_second": state["fitted"] / max(bake_s - (t_run - t0), 1e-9),
                  "probes_fitted": state["fitted"], "pages_fitted": len(todo), "pages_resumed": resumed,
                  "probes_with_halo": int(sum(st["probes"] + st["halo"] for st in stats)),
                  "peak_rss_bytes": int(main_rss + sum(worker_rss.values())),
                  "peak_rss_main_bytes": int(main_rss), "peak_rss_workers_bytes": worker_rss,
                  "seconds": {"plan": t_run - t0, "pages": bake_s - (t_run - t0), "write": write_s,
                              "score": decode_s, "total": time.perf_counter() - t0},
                  "run_seconds": run_s, **{k: v for k, v in run.items() if k != "worker_peak_rss"}}
    codec = {**ProbeCodec().get_params(), **codec_kw}     # the learner's defaults, from the learner
    params_out = {"prototypes": n_prototypes, "taps": n_taps, "prototype_res": fields["prototype_res"],
                  "page_probes": page_probes, "halo": halo, "seed": seed, "iterations": codec["n_iter"],
                  "domain": codec["domain"], "warp": codec["warp"], "texel_format": fields["texel_format"]}
    bake_report = {"n_pages": n_pages, "seconds": bake_s, "pages": histories, "page_stats": stats, **fields}
    return BakeResult(archive=out, n_probes=P, probe_res=R, prototype_res=int(fields["prototype_res"]),
                      n_pages=n_pages, file_bytes=int(size), bytes_per_probe=size / P, psnr_db=psnr,
                      log_rmse=log_rmse, per_probe_psnr_db=per_probe,
                      seconds={"bake": bake_s, "write": write_s, "decode_check": decode_s, "phases": phases},
                      parameters=params_out, bake_report=bake_report, throughput=throughput, border=border)


def bake_probeset(source, out, *, n_prototypes=config.DEFAULT_PROTOTYPES, n_taps=config.DEFAULT_TAPS,
                  prototype_res=None, page_probes=config.DEFAULT_PAGE_PROBES,
                  n_iter=config.DEFAULT_MAX_ITERATIONS, domain="tonemap", warp=True, fit_radius=True,
                  texel_format=None, coherence=None, seed=0, halo=DEFAULT_HALO, workers=None, scheduler=None, threads=None, fresh=False,
                  checkpoint=True, sanitize=False, validate=True, progress=None, report=True,
                  score=True, **codec_kw) -> BakeResult:
    """Bake a probe set into an archive, score the written file, report.

    Parameters
    ----------
    source : path of a probe set (``.zarr`` read lazily; an uncompressed
        ``.npz`` memory-mapped) or a :class:`~probewarp.baker.probeset.ProbeSet`
    out : path of the archive, ending in ``.pwa``
    n_prototypes : M per page; n_taps : N per probe; prototype_res : Rp
        (default R); page_probes : about K probes per page (one page if K >= P);
        halo : probe spacings of neighbours each page is fitted with
    n_iter, domain, warp, fit_radius, texel_format, coherence, seed : the learner's
        parameters (:class:`~probewarp.baker.prototypes.ProbeCodec`; coherence None: its default); the
        bake is deterministic for a seed, whichever engine runs it; ``**codec_kw``: any
        other ProbeCodec parameter
    workers : run pages on a local Dask cluster of this many processes;
        scheduler : on the Dask cluster at this address; neither: pages in
        ``threads`` threads of this process (default: all cores)
    fresh : discard the finished pages of an earlier, interrupted bake
        (``OUT.partial/``) instead of resuming; checkpoint : keep one
    sanitize : repair the set instead of rejecting it (in place on a
        ProbeSet); the report is ``result.sanitize_report``
    validate : check the set first (pass False for a set just loaded with
        checks, e.g. by :func:`load_probes`)
    progress : callable(page, n_pages, stage, info) or None (see :func:`bake_arrays`)
    report : write ``OUT.report.json``, ``OUT.loss.png``, ``OUT.error.png``
        and ``OUT.border.png`` beside the archive
        (:func:`probewarp.baker.report.report_paths`)
    score : decode the written archive at the probes and score it (needed by
        ``report``)

    Returns
    -------
    BakeResult

    Raises
    ------
    InputError
        A bad name, probe set or parameter, or a checkpoint of another
        bake; nothing is written.

    Notes
    -----
    Memory: the faces are read one page (and its halo) at a time for the
    bake and 4096 probes at a time for the score; ``ProbeSet.faces_array``
    is never called. Peak memory grows with page size times pages in
    flight, not with the number of probes.
    """
    out = archive_path(out)
    if report and not score:
        raise ValueError("report=True needs score=True (the report holds the scores)")
    if workers is not None and scheduler is not None:
        raise InputError("give workers (a local Dask cluster) or scheduler (an existing one), not both")
    if workers is not None and int(workers) < 1:
        raise InputError(f"workers must be >= 1, not {workers}")
    probes, srep = load_probes(source, sanitize=sanitize, validate=validate)
    # a set exported without its grid description but lying on a lattice bakes as that grid
    probes, lattice_detected = probes.with_detected_lattice()
    grid = probes.lattice
    engine = "dask" if (workers is not None or scheduler is not None) else "threads"
    result = bake_arrays(probes.positions, probes.faces, out, grid=grid, n_prototypes=n_prototypes,
                         n_taps=n_taps, prototype_res=prototype_res, page_probes=page_probes, seed=seed,
                         halo=halo, progress=progress, score=score, engine=engine, threads=threads,
                         workers=workers, scheduler=scheduler, source=probes.source, checkpoint=checkpoint,
                         fresh=fresh, n_iter=n_iter, domain=domain, warp=warp, fit_radius=fit_radius,
                         texel_format=texel_format, **({} if coherence is None else {"coherence": coherence}),
                         **codec_kw)
    result.sanitize_report = srep
    result.lattice_detected = lattice_detected
    if report:
        bake_report = result.bake_report
        P = result.n_probes
        summary = {
            "archive": str(out), "input": str(probes.source), "n_probes": P,
            "probe_res": probes.resolution, "psnr_db": result.psnr_db, "log_rmse": result.log_rmse,
            "bytes_per_probe": result.bytes_per_probe, "file_bytes": result.file_bytes,
            "seconds": {"bake": result.seconds["bake"], "decode_check": result.seconds["decode_check"],
                        "phases": result.seconds["phases"]},
            "throughput": result.throughput, "border": result.border,
            "parameters": result.parameters, "lattice_detected": lattice_detected,
            "n_pages": result.n_pages, "page_stats": bake_report["page_stats"],
            "loss_per_iteration": bake_report["pages"]}
        if P <= REPORT_PER_PROBE_MAX:
            summary["per_probe_psnr_db"] = result.per_probe_psnr_db
        else:
            finite = result.per_probe_psnr_db[np.isfinite(result.per_probe_psnr_db)]
            summary["per_probe_psnr_db_percentiles"] = {
                str(q): float(np.percentile(finite, q)) if finite.size else None for q in (1, 5, 25, 50, 75, 95, 99)}
        paths = rep.report_paths(out)
        rep.write_json(paths["json"], summary)
        rep.plot_loss(paths["loss_png"], bake_report["pages"])
        rep.plot_error_map(paths["error_png"], probes.positions, result.per_probe_psnr_db)
        if result.border:
            rep.plot_border(paths["border_png"], result.border)
        else:
            paths.pop("border_png")
        result.summary = summary
        result.report_paths = paths
    return result
