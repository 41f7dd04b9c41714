"""The main job end to end on the built-in scene: capture, bake, score, compare, fly.

The ``probewarp demo`` command runs the steps one by one
(:func:`capture_step`, :func:`bake_step`, :func:`compare_step`, then the
flythrough of :mod:`probewarp.demo.headless` or :mod:`probewarp.demo.window`),
printing between them. Everything lands in one folder::

    OUT/probes.npz                       the captured probes
    OUT/probes.pwa                       the archive, with probes.report.json,
                                         probes.loss.png, probes.error.png
    OUT/compare.json, OUT/compare.png    the side-by-side comparison
    OUT/flythrough/                      frames, contact sheet, video, summary.json

The demo bakes at the default rate (M / page = 512 / 4,096 probes, about
200 B/probe at R = 16) in pages of :data:`PAGE_PROBES` probes, so that the
flythrough streams pages and crosses page borders on the small built-in grid.

Writes files; never prints.
"""
from __future__ import annotations

from pathlib import Path

from probewarp.baker import config
from probewarp.baker.pipeline import BakeResult, bake_probeset
from probewarp.baker.probeset import ProbeSet
from probewarp.baselines.compare import compare_probeset
from probewarp.capture.builtin import builtin_probes

#: File names inside the demo folder.
PROBES_NAME = "probes.npz"
ARCHIVE_NAME = "probes.pwa"
FLY_NAME = "flythrough"
#: Probes per page of the demo bake (8 pages on the default 16 x 4 x 16 grid).
PAGE_PROBES = 128
#: Prototypes per page: the default ratio (config.DEFAULT_PROTOTYPES per
#: config.DEFAULT_PAGE_PROBES probes).
PROTOTYPES = 16


def capture_step(out, *, n=(16, 4, 16), res=16, seed=0, progress=None) -> ProbeSet:
    """Capture the built-in scene on an ``n`` grid at ``res`` into OUT/probes.npz
    (always afresh) and return the set read back. ``progress(done, total)``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return builtin_probes(n, res, cache=out / PROBES_NAME, seed=seed, progress=progress, refresh=True)


def bake_step(probes: ProbeSet, out, *, n_prototypes=PROTOTYPES, page_probes=PAGE_PROBES, n_taps=4,
              n_iter=config.DEFAULT_MAX_ITERATIONS, seed=0, progress=None) -> BakeResult:
    """Bake ``probes`` into OUT/probes.pwa with its report and plots
    (:func:`probewarp.baker.pipeline.bake_probeset`; defaults otherwise).
    ``progress(page, n_pages, stage, info)``."""
    return bake_probeset(probes, Path(out) / ARCHIVE_NAME, n_prototypes=n_prototypes, n_taps=n_taps,
                         page_probes=page_probes, n_iter=n_iter, seed=seed, validate=False, progress=progress)


def compare_step(probes: ProbeSet, out, *, n_prototypes=PROTOTYPES, page_probes=PAGE_PROBES, n_taps=4,
                 n_iter=config.DEFAULT_MAX_ITERATIONS, seed=0, progress=None) -> dict:
    """The side-by-side comparison into OUT/compare.json and OUT/compare.png, at
    the demo bake's rate: ``compare`` bakes in its default pages, so its M is
    the demo's ``n_prototypes`` times the demo's pages. ``progress(method_name)``."""
    pages = max(1, -(-probes.n_probes // int(page_probes)))
    per = min(pages, max(1, -(-probes.n_probes // config.DEFAULT_PAGE_PROBES)))
    return compare_probeset(probes, out, progress=progress, n_prototypes=int(n_prototypes) * pages // per,
                            n_taps=n_taps, n_iter=n_iter, seed=seed)
