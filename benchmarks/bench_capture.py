"""Probe-capture throughput on the builtin scene (probewarp.capture.capturer).

Measures warm capture throughput (probes per second, median of repeats) at
R = 8 and R = 16 with the default supersample (4) and batch size, then the
time for 100,000 probes at R = 8: measured directly when the extrapolation
says it takes under five minutes (``--no-full`` skips it), extrapolated
otherwise. Writes ``benchmarks/results/capture.json`` and ``capture.png``.

Run::

    .venv/bin/python benchmarks/bench_capture.py            # ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_capture.py --no-full  # ~1 min
    .venv/bin/python benchmarks/bench_capture.py --replot   # plot from the JSON

Wall time depends on what else runs on the machine (llvmpipe uses every
core): the JSON records the load average before and after, and CPU time
(all threads of this process) next to wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from probewarp.capture.capturer import Capturer, grid_positions
from probewarp.runtime.context import create_context
from probewarp.capture.scene import Scene

RESULTS = Path(__file__).resolve().parent / "results"
FULL_PROBES = 100_000
FULL_LIMIT_S = 300.0


def _grid(n_probes: int) -> np.ndarray:
    """At least ``n_probes`` positions on a grid in the builtin's plaza, first n."""
    lo, hi = Scene.builtin_grid()
    side = int(np.ceil((n_probes / 6) ** (1 / 3)))
    n = (2 * side + 1, side + 1, 3 * side + 1)
    while np.prod(n) < n_probes:
        n = (n[0] + 1, n[1], n[2] + 1)
    return grid_positions(lo, hi, n)[:n_probes]


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def measure(ctx, scene, R, supersample, n_probes, repeats):
    """Warm throughput: one capturer, a warm-up pass, then ``repeats`` timed renders."""
    pos = _grid(n_probes)
    with Capturer(scene, R, supersample, ctx=ctx) as cap:
        batch = cap.default_batch()
        cap.render(pos[:min(len(pos), batch)])             # warm-up: JIT, target allocation
        walls, cpus = [], []
        for _ in range(repeats):
            faces, wall, cpu = _timed(lambda: cap.render(pos))
            walls.append(wall)
            cpus.append(cpu)
        assert np.isfinite(faces).all()
    med = statistics.median(walls)
    return {"R": R, "supersample": supersample, "probes": n_probes, "batch": batch,
            "passes": -(-n_probes // batch), "wall_s": walls, "cpu_s": cpus,
            "median_wall_s": med, "probes_per_s": n_probes / med,
            "probes_per_cpu_s": n_probes / statistics.median(cpus)}


def full_run(ctx, scene, R, supersample):
    pos = _grid(FULL_PROBES)
    with Capturer(scene, R, supersample, ctx=ctx) as cap:
        cap.render(pos[:cap.default_batch()])
        marks = []
        t0 = time.perf_counter()
        faces, wall, cpu = _timed(lambda: cap.render(
            pos, progress=lambda done, total: marks.append((done, time.perf_counter() - t0))))
    assert faces.shape == (FULL_PROBES, 6, R, R, 3) and np.isfinite(faces).all()
    return {"R": R, "supersample": supersample, "probes": FULL_PROBES, "wall_s": wall, "cpu_s": cpu,
            "probes_per_s": FULL_PROBES / wall, "progress": marks}


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    runs = result["runs"]
    xs = np.arange(len(runs))
    a.bar(xs, [r["probes_per_s"] for r in runs], color="#4a7ab5", width=0.6, label="median")
    for x, r in zip(xs, runs):
        a.scatter([x] * len(r["wall_s"]), [r["probes"] / w for w in r["wall_s"]], color="k", s=12,
                  zorder=3, label="repeats" if x == 0 else None)
        a.text(x, r["probes_per_s"], f"{r['probes_per_s']:.0f}", ha="center", va="bottom")
    a.set_xticks(xs, [f"R={r['R']}\n(x{r['supersample']} ss, batch {r['batch']})" for r in runs])
    a.set_ylabel("probes / s (wall, warm)")
    a.set_title("capture throughput, builtin scene")
    a.legend()
    r8 = next(r for r in runs if r["R"] == 8)
    n = np.array([1e3, FULL_PROBES])
    b.plot(n, n / r8["probes_per_s"], "--", color="#4a7ab5", label="extrapolated from R=8 median")
    full = result.get("full")
    if full:
        p = np.array(full["progress"])
        b.plot(p[:, 0], p[:, 1], "-", color="#c0504d", label="measured, 100k probes")
    for sec, label in ((60, "1 min"), (300, "5 min")):
        b.axhline(sec, color="0.7", lw=0.8)
        b.text(1e3, sec, label, color="0.5", va="bottom", fontsize=8)
    b.set_xlabel("probes captured (R=8)")
    b.set_ylabel("wall seconds")
    b.set_title(f"100,000 probes at R=8: {result['time_100k_R8_s']:.0f} s "
                f"({'measured' if full else 'extrapolated'})")
    b.legend()
    m = result["machine"]
    load = m.get("load_avg_before", [float("nan")])[0]
    fig.suptitle(f"{m['renderer']} on {m['cpus']} cores (load average {load:.1f} before the run: "
                 f"other jobs shared the cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--supersample", type=int, default=4)
    ap.add_argument("--no-full", action="store_true", help="never run the 100k capture")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--replot", action="store_true", help="only redraw the plot from the JSON")
    args = ap.parse_args(argv)
    if args.replot:
        plot(json.loads((args.out / "capture.json").read_text()), args.out / "capture.png")
        return 0

    ctx = create_context()
    scene = Scene.builtin(seed=0)
    machine = {"renderer": ctx.info["GL_RENDERER"], "gl": ctx.info["GL_VERSION"],
               "cpus": os.cpu_count(), "python": platform.python_version(),
               "load_avg_before": os.getloadavg()}
    runs = []
    for R in (8, 16):
        with Capturer(scene, R, args.supersample, ctx=ctx) as probe_cap:
            batch = probe_cap.default_batch()
        n = 2 * batch                     # two full passes
        r = measure(ctx, scene, R, args.supersample, n, args.repeats)
        print(f"R={R:3d} ss={args.supersample} batch={r['batch']:5d}: {r['probes']} probes, "
              f"median {r['median_wall_s']:.2f} s wall -> {r['probes_per_s']:.0f} probes/s "
              f"({r['probes_per_cpu_s']:.0f} per CPU-s)", flush=True)
        runs.append(r)
    r8 = runs[0]
    extrap = FULL_PROBES / r8["probes_per_s"]
    result = {"scene": {"name": "builtin", "seed": 0, "triangles": scene.n_triangles},
              "machine": machine, "runs": runs, "extrapolated_100k_R8_s": extrap}
    if extrap < FULL_LIMIT_S and not args.no_full:
        print(f"100k probes at R=8: extrapolated {extrap:.0f} s, measuring ...", flush=True)
        full = full_run(ctx, scene, 8, args.supersample)
        full["progress"] = [(int(d), round(t, 3)) for d, t in full["progress"]]
        result["full"] = full
        result["time_100k_R8_s"] = full["wall_s"]
        print(f"100k probes at R=8: {full['wall_s']:.1f} s wall, {full['cpu_s']:.1f} s CPU "
              f"({full['probes_per_s']:.0f} probes/s)")
    else:
        result["time_100k_R8_s"] = extrap
        print(f"100k probes at R=8: {extrap:.0f} s (extrapolated)")
    machine["load_avg_after"] = os.getloadavg()
    ctx.release()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "capture.json").write_text(json.dumps(result, indent=1))
    plot(result, args.out / "capture.png")
    print(f"wrote {args.out / 'capture.json'} and {args.out / 'capture.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
