"""Benchmark: probewarp against every baseline on the built-in scene.

Captures the built-in scene on a 32 x 8 x 32 grid at R = 16 (8,192 probes;
cached under out/bench/), then runs ``probewarp.baselines.compare.compare`` with
M = 256, N = 4 in one process: same probes, same metric, every method's
bytes counted. Writes benchmarks/results/compare_builtin.json (with machine
facts and timings) and compare_builtin.png (rate-distortion).

    .venv/bin/python benchmarks/bench_bake.py            # ~15 min on 2 cores
    .venv/bin/python benchmarks/bench_bake.py --n 16 4 16  # a quick look

Run it on a quiet machine: the 'seconds' of the probewarp row is the bake
time the README quotes.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from probewarp.baselines import compare as cmp
from probewarp.capture.builtin import builtin_probes
from probewarp.baker.report import write_json

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", nargs=3, type=int, default=(32, 8, 32))
    ap.add_argument("--res", type=int, default=16)
    ap.add_argument("--prototypes", type=int, default=256)
    ap.add_argument("--taps", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--name", default="compare_builtin")
    args = ap.parse_args()

    cache = Path("out/bench") / f"builtin_{'x'.join(map(str, args.n))}_R{args.res}.npz"
    t0 = time.perf_counter()
    fresh = not cache.exists()
    probes = builtin_probes(args.n, args.res, cache=cache, seed=0)
    if fresh:
        print(f"captured {cache} in {time.perf_counter() - t0:.1f} s", flush=True)
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
