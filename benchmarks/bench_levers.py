"""Benchmark: the optimiser's levers, one at a time, on two scenes.

Every lever of the learner (``probewarp.baker.prototypes``), switched on
in turn from the optimiser of before (radii refit only, no swap moves), on
each scene of ``benchmarks/scenes.py``, baked into a real archive and scored
by the decoder (DESIGN-NOTES §5):

- ``psnr_db`` / ``bytes_per_probe``: all probes baked and decoded;
- ``distinct_per_cell``: distinct prototypes among the 8 corners' codes of a
  grid cell, averaged over cells: what decoding between probes warps and
  samples per position (GLSL ``pw_code_merge`` folds repeats);
- ``iterations``: outer iterations run (the held-out stop ends them early);
- ``heldout_psnr_db``: baked on one half of a checkerboard of the grid
  (as a grid with holes) and decoded at the other half, against
  ``neighbour_psnr_db``, the same corners' uncompressed probes blended.

No-warp rows are the learned dictionary with the same levers, M, N, loss
and domain: the gap the issue asks about.

    .venv/bin/python benchmarks/bench_levers.py                 # ~15 min on 2 cores
    .venv/bin/python benchmarks/bench_levers.py --scenes town --variants before default

    # the default point (R = 16, M = 512: about 200 bytes a probe), README "The optimiser":
    .venv/bin/python benchmarks/bench_levers.py --res 16 --m 512 --no-heldout --name levers16 \
        --variants before "+held-out stop" "+coherence 0.1" default "+coherence 0.5" "no warp, before" "no warp, default"

Writes benchmarks/results/NAME.json (``--name``, default levers).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import provenance  # noqa: E402  (benchmarks/provenance.py)
from scenes import SCENES, scene_probes  # noqa: E402

#: (name, ProbeCodec parameters): each row adds one lever to the row before.
VARIANTS = {
    "before": dict(fit_centres=False, swaps=False, coherence=0.0, n_iter=4, validation=0),
    "+centres": dict(fit_centres=True, swaps=False, coherence=0.0, n_iter=4, validation=0),
    "+swaps": dict(fit_centres=True, swaps=True, coherence=0.0, n_iter=4, validation=0),
    "+held-out stop": dict(fit_centres=True, swaps=True, coherence=0.0),
    "+coherence 0.02": dict(fit_centres=True, swaps=True, coherence=0.02),
    "+coherence 0.05": dict(fit_centres=True, swaps=True, coherence=0.05),
    "+coherence 0.1": dict(fit_centres=True, swaps=True, coherence=0.1),
    "+coherence 0.2": dict(fit_centres=True, swaps=True, coherence=0.2),
    "+coherence 0.3": dict(fit_centres=True, swaps=True, coherence=0.3),
    "+coherence 0.5": dict(fit_centres=True, swaps=True, coherence=0.5),
    "default": dict(),
    "no warp, before": dict(warp=False, swaps=False, coherence=0.0, n_iter=4, validation=0),
    "no warp, default": dict(warp=False),
    "no warp, +coherence 0.2": dict(warp=False, coherence=0.2),
}


def one(probes, kw, M, taps, tmp, heldout=True):
    from probewarp.baker.pipeline import bake_arrays
    from probewarp.baker.metrics import stencil_distinct, QualityAccumulator
    from probewarp.baselines import neighbour_blend
    from probewarp.format.archive import ArchiveReader
    grid = probes.lattice
    faces = probes.faces_array(np.float32)
    x = probes.positions
    t0 = time.perf_counter()
    r = bake_arrays(x, faces, Path(tmp) / "all.pwa", grid=grid, n_prototypes=M, n_taps=taps,
                    page_probes=10 ** 9, fresh=True, **kw)
    secs = time.perf_counter() - t0
    with ArchiveReader(Path(tmp) / "all.pwa") as rd:
        pages = [rd.page(i) for i in range(rd.n_pages)]
    idx = np.zeros((x.shape[0], taps), np.int64)
    w = np.zeros((x.shape[0], taps), np.float32)
    for pg in pages:
        idx[pg.probe_ids] = pg.indices
        w[pg.probe_ids] = pg.weights
    st = grid.stencils(x)
    row = {"psnr_db": r.psnr_db, "bytes_per_probe": r.bytes_per_probe, "seconds": secs,
           "iterations": [int(p.get("iterations", 0)) for p in r.bake_report["page_stats"]],
           "distinct_per_cell": float(stencil_distinct(st, idx, w).mean())}
    if heldout:
        train, test = grid.checkerboard()
        h = bake_arrays(x[train], faces[train], Path(tmp) / "half.pwa", grid=grid.with_dense(False),
                        n_prototypes=min(M, train.size), n_taps=taps, page_probes=10 ** 9, fresh=True,
                        score_positions=x[test], score_reference=faces[test], **kw)
        nb = neighbour_blend(x[train], faces[train], grid.shape, grid.lo, grid.hi, x[test])
        acc = QualityAccumulator()
        acc.update(faces[test], nb)
        row.update(heldout_psnr_db=h.psnr_db, neighbour_psnr_db=acc.result()["psnr_db"])
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=list(SCENES))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"of: {', '.join(VARIANTS)}")
    ap.add_argument("--n", nargs=3, type=int, default=(32, 4, 32), help="probe grid per scene (one page)")
    ap.add_argument("--res", type=int, default=8)
    ap.add_argument("--m", type=int, default=128, help="prototypes")
    ap.add_argument("--taps", type=int, default=4)
    ap.add_argument("--no-heldout", action="store_true")
    ap.add_argument("--name", default="levers", help="results NAME.json")
    ap.add_argument("--work", default="out/bench_rd")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    rows = []
    for scene in args.scenes:
        probes = scene_probes(scene, args.n, args.res, args.work)
        for name in args.variants:
            with tempfile.TemporaryDirectory(prefix="probewarp-levers-") as tmp:
                row = {"scene": scene, "variant": name, "params": VARIANTS[name],
                       **one(probes, VARIANTS[name], args.m, args.taps, tmp, not args.no_heldout)}
            rows.append(row)
            print(f"{scene:9s} {name:18s} {row['psnr_db']:6.2f} dB {row['bytes_per_probe']:6.1f} B/probe "
                  f"{row['distinct_per_cell']:5.2f} distinct/cell  held-out "
                  f"{row.get('heldout_psnr_db', float('nan')):6.2f} (neighbours "
                  f"{row.get('neighbour_psnr_db', float('nan')):6.2f})  {row['seconds']:5.1f} s", flush=True)
    provenance.write(args.out, args.name, "levers", args, rows=rows)


if __name__ == "__main__":
    main()
