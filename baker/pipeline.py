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
>>> r = bake_probeset("probes.zarr", "probes.pwa", n_prototypes=256, n_taps=4)
>>> r.psnr_db, r.bytes_per_probe, r.report_paths["json"]
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probewarp.baker import report as rep
from probewarp.baker.bake import archive_meta, bake
from probewarp.baker.decoder import Decoder
from probewarp.baker.probeset import ProbeSet
from probewarp.baker.prototypes import ProbeCodec
from probewarp.format.archive import write_archive
from probewarp.format.errors import InputError
from probewarp.format.grid import Grid

if TYPE_CHECKING:
    from probewarp.baker.probeset import SanitizeReport

#: The suffix every archive carries.
ARCHIVE_SUFFIX = ".pwa"


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
        (seconds per learner stage, summed over pages)
    parameters : dict, the bake's parameters (the report's ``parameters``)
    bake_report : dict, :func:`.bake.bake`'s report (loss per iteration ...)
    sanitize_report : SanitizeReport or None (``sanitize=True`` only)
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
    sanitize_report: SanitizeReport | None = None
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

    ``source`` is a path (``.npz`` read in memory; ``.zarr`` kept lazy) or a
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
    probes = ProbeSet.load(source, validate=validate and not sanitize)
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


def bake_arrays(positions, faces, out, *, grid: Grid | None = None, n_prototypes=256, n_taps=4,
                prototype_res=None, page_probes=16384, seed=0, progress=None, score=True,
                score_positions=None, score_reference=None, **codec_kw) -> BakeResult:
    """Bake, write the archive atomically, score the written file.

    Parameters
    ----------
    positions : (P, 3) float
    faces : (P, 6, R, R, 3) float16/float32, or a lazy array indexable by
        probe lists and slices (:class:`~probewarp.baker.probeset.LazyFaces`);
        read page by page (bake) and chunk by chunk (score), never whole
    out : path of the archive (written to a temporary name, then renamed)
    grid : the probes' :class:`~probewarp.format.grid.Grid` (dense or sparse)
        or None (scattered)
    score : bool, decode the written archive and score it (else NaN scores)
    score_positions, score_reference : (Q, 3), (Q, 6, R, R, 3), optional
        Where to score and against what (default ``positions``, ``faces``),
        e.g. held-out probes.
    **codec_kw : :class:`~probewarp.baker.prototypes.ProbeCodec` parameters
        (``n_iter``, ``domain``, ``warp``, ``fit_radius``, ``texel_format`` ...)

    Returns
    -------
    BakeResult (no report files: see :func:`bake_probeset`)
    """
    out = Path(out)
    P = int(np.shape(positions)[0])
    t0 = time.perf_counter()
    pages, report = bake(positions, faces, n_prototypes=n_prototypes, n_taps=n_taps,
                         prototype_res=prototype_res, page_probes=page_probes, grid=grid, seed=seed,
                         progress=progress, **codec_kw)
    bake_s = time.perf_counter() - t0
    size = write_archive(out, archive_meta(P, report, grid), pages)
    write_s = time.perf_counter() - t0 - bake_s
    psnr = log_rmse = float("nan")
    per_probe = np.zeros(0)
    decode_s = 0.0
    if score:
        # the published numbers come from decoding the archive as written
        t1 = time.perf_counter()
        q = positions if score_positions is None else score_positions
        ref = faces if score_reference is None else score_reference
        acc = Decoder(out).score(q, ref)
        s = acc.result()
        psnr, log_rmse, per_probe = s["psnr_db"], s["log_rmse"], acc.per_probe_psnr
        decode_s = time.perf_counter() - t1
    codec = {**ProbeCodec().get_params(), **codec_kw}     # the learner's defaults, from the learner
    params = {"prototypes": n_prototypes, "taps": n_taps, "prototype_res": report["prototype_res"],
              "page_probes": page_probes, "seed": seed, "iterations": codec["n_iter"],
              "domain": codec["domain"], "warp": codec["warp"], "texel_format": codec["texel_format"]}
    return BakeResult(archive=out, n_probes=P, probe_res=int(report["probe_res"]),
                      prototype_res=int(report["prototype_res"]), n_pages=int(report["n_pages"]),
                      file_bytes=int(size), bytes_per_probe=size / P, psnr_db=psnr, log_rmse=log_rmse,
                      per_probe_psnr_db=per_probe,
                      seconds={"bake": bake_s, "write": write_s, "decode_check": decode_s,
                               "phases": _phase_seconds(report["pages"])},
                      parameters=params, bake_report=report)


def bake_probeset(source, out, *, n_prototypes=256, n_taps=4, prototype_res=None, page_probes=16384,
                  n_iter=4, domain="tonemap", warp=True, fit_radius=True, texel_format="rgba16f",
                  seed=0, sanitize=False, validate=True, progress=None, report=True,
                  score=True) -> BakeResult:
    """Bake a probe set into an archive, score the written file, report.

    Parameters
    ----------
    source : path of a probe set (``.npz``; ``.zarr`` stays lazy) or a
        :class:`~probewarp.baker.probeset.ProbeSet`
    out : path of the archive, ending in ``.pwa``
    n_prototypes : M per page; n_taps : N per probe; prototype_res : Rp
        (default R); page_probes : about K probes per page (one page if K >= P);
    n_iter, domain, warp, fit_radius, texel_format, seed : the learner's
        parameters (:class:`~probewarp.baker.prototypes.ProbeCodec`); the
        bake is deterministic for a seed
    sanitize : repair the set instead of rejecting it (in place on a
        ProbeSet); the report is ``result.sanitize_report``
    validate : check the set first (pass False for a set just loaded with
        checks, e.g. by :func:`load_probes`)
    progress : callable(page, n_pages, stage, info) or None
    report : write ``OUT.report.json``, ``OUT.loss.png`` and ``OUT.error.png``
        beside the archive (:func:`probewarp.baker.report.report_paths`)
    score : decode the written archive at the probes and score it (needed by
        ``report``)

    Returns
    -------
    BakeResult

    Raises
    ------
    InputError
        A bad name, probe set or parameter; nothing is written.

    Notes
    -----
    Memory: the faces are read one page at a time for the bake and 4096
    probes at a time for the score; ``ProbeSet.faces_array`` is never called.
    """
    out = archive_path(out)
    if report and not score:
        raise ValueError("report=True needs score=True (the report holds the scores)")
    probes, srep = load_probes(source, sanitize=sanitize, validate=validate)
    grid = probes.lattice
    result = bake_arrays(probes.positions, probes.faces, out, grid=grid, n_prototypes=n_prototypes,
                         n_taps=n_taps, prototype_res=prototype_res, page_probes=page_probes, seed=seed,
                         progress=progress, score=score, n_iter=n_iter, domain=domain, warp=warp,
                         fit_radius=fit_radius, texel_format=texel_format)
    result.sanitize_report = srep
    if report:
        bake_report = result.bake_report
        summary = {
            "archive": str(out), "input": str(probes.source), "n_probes": result.n_probes,
            "probe_res": probes.resolution, "psnr_db": result.psnr_db, "log_rmse": result.log_rmse,
            "bytes_per_probe": result.bytes_per_probe, "file_bytes": result.file_bytes,
            "seconds": {"bake": result.seconds["bake"], "decode_check": result.seconds["decode_check"],
                        "phases": result.seconds["phases"]},
            "parameters": result.parameters,
            "n_pages": result.n_pages, "loss_per_iteration": bake_report["pages"],
            "per_probe_psnr_db": result.per_probe_psnr_db}
        paths = rep.report_paths(out)
        rep.write_json(paths["json"], summary)
        rep.plot_loss(paths["loss_png"], bake_report["pages"])
        rep.plot_error_map(paths["error_png"], probes.positions, result.per_probe_psnr_db)
        result.summary = summary
        result.report_paths = paths
    return result
