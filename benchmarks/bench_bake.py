"""Benchmark: probewarp against every baseline on one scene.

Builds a scene of ``benchmarks/scenes.py`` (the built-in town by default, or
the procedural interior) on a 32 x 4 x 32 grid at R = 16 (4,096 probes;
cached under out/bench/), then runs ``probewarp.baselines.compare.compare``
with the default bake (M and pages of :mod:`probewarp.baker.config`, N = 4)
in one process: same probes, same metric, every method's bytes counted.
Writes benchmarks/results/NAME.json (with machine facts and timings) and
NAME.png (rate-distortion).

    .venv/bin/python benchmarks/bench_bake.py                        # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_bake.py --scene interior --name compare_interior
    .venv/bin/python benchmarks/bench_bake.py --n 16 4 16            # a quick look

Run it on a quiet machine: the 'seconds' of the probewarp row is the bake
time the README quotes.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from probewarp.baselines import compare as cmp
from probewarp.baker import config
from probewarp.baker.report import write_json

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scenes import scene_probes  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="town", help="town (the built-in scene) or interior (benchmarks/scenes.py)")
    ap.add_argument("--n", nargs=3, type=int, default=(32, 4, 32))
    ap.add_argument("--res", type=int, default=16)
    ap.add_argument("--prototypes", type=int, default=config.DEFAULT_PROTOTYPES)
    ap.add_argument("--taps", type=int, default=config.DEFAULT_TAPS)
    ap.add_argument("--iterations", type=int, default=config.DEFAULT_MAX_ITERATIONS)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--name", default="compare_builtin")
    args = ap.parse_args()

    t0 = time.perf_counter()
    probes = scene_probes(args.scene, args.n, args.res, "out/bench")
    print(f"{args.scene}: {probes.n_probes} probes at R = {args.res} in {time.perf_counter() - t0:.1f} s", flush=True)
    faces = probes.faces_array(np.float32)
    t0 = time.perf_counter()
    result = cmp.compare(probes.positions, faces, grid=probes.lattice,
                         n_prototypes=args.prototypes, n_taps=args.taps, n_iter=args.iterations,
                         progress=lambda name: print(f"[{time.perf_counter() - t0:7.1f} s] {name}", flush=True))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "load_average_after": os.getloadavg(), "platform": platform.platform()}
    result["command"] = "python benchmarks/bench_bake.py " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in vars(args).items()
        if k not in ("out", "name"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{args.name}.json", result)
    cmp.plot_rate_distortion(out / f"{args.name}.png", result)
    print(cmp.format_table(result))


if __name__ == "__main__":
    main()
