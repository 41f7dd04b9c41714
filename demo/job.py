"""The main job end to end on the built-in scene: capture, bake, score, compare.

The ``probewarp demo`` command runs the three steps one by one
(:func:`capture_step`, :func:`bake_step`, :func:`compare_step`), printing
between them. Everything lands in one folder::

    OUT/probes.npz                       the captured probes
    OUT/probes.pwa                       the archive, with probes.report.json,
                                         probes.loss.png, probes.error.png
    OUT/compare.json, OUT/compare.png    the side-by-side comparison

Writes files; never prints.
"""
from __future__ import annotations

from pathlib import Path

from probewarp.baker.pipeline import BakeResult, bake_probeset
from probewarp.baker.probeset import ProbeSet
from probewarp.baselines.compare import compare_probeset
from probewarp.capture.builtin import builtin_probes

#: File names inside the demo folder.
PROBES_NAME = "probes.npz"
ARCHIVE_NAME = "probes.pwa"


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
