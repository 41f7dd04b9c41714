"""The flythrough on two scenes: decoded lighting against ground truth, the
nearest probe and SH order 2 blended trilinearly, along the default path.

For each scene (the built-in town, captured; the procedural interior of
``fields.py``, ray cast), 16 x 4 x 16 probes at R = 16 are baked as ``make
demo`` bakes them (M = 16 per page of 128 probes: the default rate, 8-9
pages to stream), then ``probewarp.demo.headless.run_headless`` renders the
default camera path (72 frames, 640 x 360) with every lighting source and
scores each against the ground truth at the same positions (the capture
renderer for the town, the field's ray caster for the interior). The town
draws its geometry; the interior (no raster scene) shows the decoded
environment behind the objects. The interior's path leaves the grid by only
0.15 m above its top (the ceiling is 0.25 m above the grid).

Writes ``benchmarks/results/flythrough.json`` and the contact sheets
``flythrough_town.png``, ``flythrough_interior.png``. About 10 minutes on 2 cores.

    .venv/bin/python benchmarks/bench_flythrough.py
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import provenance  # noqa: E402  (benchmarks/provenance.py)

import numpy as np  # noqa: E402

from probewarp.baker.report import write_json  # noqa: E402


class FieldTruth:
    """Ground truth of the procedural interior: ``fields.Field.render`` at the positions."""

    def __init__(self, field, r):
        self.field, self.r, self.last = field, int(r), None

    def cubemaps(self, positions, r=None):
        faces = self.field.render(np.asarray(positions, np.float64), int(r or self.r))
        if r is None or int(r) == self.r:
            self.last = faces
        return faces


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=["town", "interior"])
    ap.add_argument("--frames", type=int, default=72)
    ap.add_argument("--size", nargs=2, type=int, default=(640, 360))
    ap.add_argument("--work", default="out/bench")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    import scenes
    from probewarp.baker.pipeline import bake_probeset
    from probewarp.demo import job
    from probewarp.demo.camera import default_path
    from probewarp.demo.headless import run_headless
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in args.scenes:
        probes = scenes.scene_probes(name, (16, 4, 16), 16, work)
        archive = work / f"fly_{name}.pwa"
        t0 = time.perf_counter()
        r = bake_probeset(probes, archive, n_prototypes=job.PROTOTYPES, page_probes=job.PAGE_PROBES, n_taps=4,
                          seed=0, validate=False)
        bake_s = time.perf_counter() - t0
        lo, hi = np.asarray(probes.lo), np.asarray(probes.hi)
        if name == "town":
            from probewarp.capture.scene import Scene
            kw = {"scene": Scene.builtin(seed=0)}
            path = default_path(lo, hi, args.frames)
        else:
            import fields
            kw = {"truth": FieldTruth(fields.Field(seed=0), probes.resolution)}
            path = default_path(lo, hi, args.frames, exit_height=0.15)
        t0 = time.perf_counter()
        s = run_headless(archive, work / f"fly_{name}", path=path, probes=probes, size=args.size, video=False, **kw)
        s["seconds"] = time.perf_counter() - t0
        s["bake"] = {"psnr_db": r.psnr_db, "bytes_per_probe": r.bytes_per_probe, "n_pages": r.n_pages,
                     "seconds": bake_s}
        shutil.copy(work / f"fly_{name}" / "contact_sheet.png", out / f"flythrough_{name}.png")
        rows[name] = s
        print(f"{name}: bake {r.psnr_db:.2f} dB {r.bytes_per_probe:.1f} B/probe {r.n_pages} pages; "
              f"frame {s['frame_ms']['median']:.0f} ms (p99 {s['frame_ms']['p99']:.0f})", flush=True)
        for k, v in s["psnr_probe_db"].items():
            print(f"   {k:8s} probes {v:6.2f} dB  objects {s['psnr_objects_db'][k]:6.2f} dB  popping mean "
                  f"{s['popping'][k]['mean']:.4f} p95 {s['popping'][k]['p95']:.4f} max {s['popping'][k]['max']:.4f}",
                  flush=True)
    write_json(out / "flythrough.json", {
        **provenance.header("flythrough", args), "scenes": rows})
    print(f"wrote {out / 'flythrough.json'}")


if __name__ == "__main__":
    main()
