"""The main job end to end on the built-in scene: capture, bake, score, compare.

:func:`run_demo` runs the three steps and returns a :class:`DemoResult`;
the ``probewarp demo`` command calls the steps one by one
(:func:`capture_step`, :func:`bake_step`, :func:`compare_step`) to print
between them. Everything lands in one folder::

    OUT/probes.npz                       the captured probes
    OUT/probes.pwa                       the archive, with probes.report.json,
                                         probes.loss.png, probes.error.png
    OUT/compare.json, OUT/compare.png    the side-by-side comparison

Writes files; never prints.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from probewarp.baker.pipeline import BakeResult, bake_probeset
from probewarp.baker.probeset import ProbeSet
from probewarp.baselines.compare import compare_probeset
from probewarp.capture.builtin import builtin_probes

#: File names inside the demo folder.
PROBES_NAME = "probes.npz"
ARCHIVE_NAME = "probes.pwa"


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote and measured.

    Attributes
    ----------
    out : Path, the folder; probes_path : Path of the captured set
    n_probes, probe_res : int; capture_seconds : float
    bake : BakeResult of OUT/probes.pwa
    compare : dict of :func:`probewarp.baselines.compare.compare` or None (skipped)
    """
    out: Path
    probes_path: Path
    n_probes: int
    probe_res: int
    capture_seconds: float
    bake: BakeResult
    compare: dict | None


def capture_step(out, *, n=(16, 4, 16), res=16, seed=0, progress=None) -> ProbeSet:
    """Capture the built-in scene on an ``n`` grid at ``res`` into OUT/probes.npz
    (always afresh) and return the set read back. ``progress(done, total)``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return builtin_probes(n, res, cache=out / PROBES_NAME, seed=seed, progress=progress, refresh=True)


def bake_step(probes: ProbeSet, out, *, n_prototypes=64, n_taps=4, n_iter=3, seed=0,
              progress=None) -> BakeResult:
    """Bake ``probes`` into OUT/probes.pwa with its report and plots
    (:func:`probewarp.baker.pipeline.bake_probeset`; defaults otherwise).
    ``progress(page, n_pages, stage, info)``."""
    return bake_probeset(probes, Path(out) / ARCHIVE_NAME, n_prototypes=n_prototypes, n_taps=n_taps,
                         n_iter=n_iter, seed=seed, validate=False, progress=progress)


def compare_step(probes: ProbeSet, out, *, n_prototypes=64, n_taps=4, n_iter=3, seed=0,
                 progress=None) -> dict:
    """The side-by-side comparison into OUT/compare.json and OUT/compare.png.
    ``progress(method_name)``."""
    return compare_probeset(probes, out, progress=progress, n_prototypes=n_prototypes, n_taps=n_taps,
                            n_iter=n_iter, seed=seed)


def run_demo(out="out/demo", *, n=(16, 4, 16), res=16, n_prototypes=64, n_taps=4, n_iter=3, seed=0,
             compare=True, capture_progress=None, bake_progress=None, compare_progress=None) -> DemoResult:
    """Capture, bake and (``compare=True``) compare on the built-in scene.

    Parameters
    ----------
    out : folder to write to (created)
    n : (3,) int probe grid; res : probe resolution R
    n_prototypes, n_taps, n_iter, seed : the bake's M, N, iterations and seed
    capture_progress, bake_progress, compare_progress : the steps' callbacks

    Returns
    -------
    DemoResult
    """
    out = Path(out)
    t0 = time.perf_counter()
    probes = capture_step(out, n=n, res=res, seed=seed, progress=capture_progress)
    capture_s = time.perf_counter() - t0
    kw = dict(n_prototypes=n_prototypes, n_taps=n_taps, n_iter=n_iter, seed=seed)
    baked = bake_step(probes, out, progress=bake_progress, **kw)
    cmp = compare_step(probes, out, progress=compare_progress, **kw) if compare else None
    return DemoResult(out=out, probes_path=out / PROBES_NAME, n_probes=probes.n_probes,
                      probe_res=probes.resolution, capture_seconds=capture_s, bake=baked, compare=cmp)
