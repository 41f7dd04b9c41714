"""Speed and quality of the learner's fit (``ProbeCodec.fit``), old against new.

One page of the built-in scene at R = 8 (32 x 4 x 32 = 4,096 probes), one
at R = 16 (16 x 4 x 16 = 1,024 probes) and a larger one at R = 8 (32 x 8 x 32
= 8,192 probes, nearer the bake's 16k-probe pages), default parameters
(M = 256, N = 4, Rp = R, 4 iterations), in one run:

- ``legacy``: the learner as of :data:`BASELINE_COMMIT` (its
  ``baker/prototypes.py``, ``kernels.py`` and ``kmeans.py`` read with
  ``git show`` into ``out/bench/legacy/``, imported under other names);
- ``parallel``: today's learner, ``parallel=True`` (numba threads);
- ``serial``: today's learner, ``parallel=False`` (one thread);
- ``threads2``: two ``parallel=False`` fits of the same page at once in two
  Python threads (the page-parallel bake's mode): probes/s counts both.

It reports the median wall seconds of ``--repeats`` fits (each after a
warm-up fit that compiles), probes/s, process CPU seconds, seconds per phase
(from ``history_``), the final-stage PSNR (``history_[-1]``) and the decoded
PSNR of ``reconstruct()``, and the memory of the stored footprints. The
machine is shared: wall times move with its load, so the variants are timed
interleaved, repeat by repeat. Writes ``benchmarks/results/fit.json``.

    .venv/bin/python benchmarks/bench_fit.py               # ~15 minutes on 2 cores
    .venv/bin/python benchmarks/bench_fit.py --repeats 1 --sets r8 --no-legacy
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "out" / "bench"
#: The learner before the speed-up (``git log -1 --format=%h`` when it was measured).
BASELINE_COMMIT = "640656b"
#: The sets: name -> (grid, R).
SETS = {"r8": ((32, 4, 32), 8), "r16": ((16, 4, 16), 16), "r8big": ((32, 8, 32), 8)}
#: Phases of ``history_`` (the time of a stage is its end minus the previous one's).
STAGES = ("init", "code", "prototypes", "geometry", "quantised")


def load_set(name):
    from probewarp.capture.builtin import builtin_probes
    grid, R = SETS[name]
    CACHE.mkdir(parents=True, exist_ok=True)
    ps = builtin_probes(grid, R, cache=CACHE / f"b_{'x'.join(map(str, grid))}_R{R}.npz")
    return np.asarray(ps.positions, np.float64), ps.faces_array(np.float32)


def legacy_codec_class(commit=BASELINE_COMMIT):
    """``ProbeCodec`` of ``commit``, from its own copies of the learner's modules."""
    where = CACHE / "legacy" / commit
    where.mkdir(parents=True, exist_ok=True)
    names = {"kernels": "pw_legacy_kernels", "kmeans": "pw_legacy_kmeans", "prototypes": "pw_legacy_prototypes"}
    for mod, new in names.items():
        src = subprocess.run(["git", "show", f"{commit}:baker/{mod}.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        src = src.replace("from probewarp.baker import kernels as K", f"import {names['kernels']} as K")
        src = src.replace("from probewarp.baker.kmeans import", f"from {names['kmeans']} import")
        path = where / f"{new}.py"
        if not path.exists() or path.read_text() != src:
            path.write_text(src)
    sys.path.insert(0, str(where))
    for new in names.values():
        if new not in sys.modules:
            spec = importlib.util.spec_from_file_location(new, where / f"{new}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[new] = module
            spec.loader.exec_module(module)
    return sys.modules[names["prototypes"]].ProbeCodec


def phases(history):
    out, prev = {s: 0.0 for s in STAGES}, 0.0
    for h in history:
        out[h["stage"]] += h["seconds"] - prev
        prev = h["seconds"]
    return out


def one_fit(cls, x, f, **kw):
    from probewarp.baker.metrics import evaluate
    c = cls(**kw)
    t, cpu = time.perf_counter(), time.process_time()
    c.fit(x, f)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "phases_s": phases(c.history_),
            "psnr_db": c.history_[-1]["psnr_db"], "decoded_psnr_db": evaluate(f, c.reconstruct())["psnr_db"]}


def two_threads(cls, x, f, **kw):
    res = [None, None]
    t, cpu = time.perf_counter(), time.process_time()
    th = [threading.Thread(target=lambda j=j: res.__setitem__(j, one_fit(cls, x, f, **kw))) for j in range(2)]
    for a in th:
        a.start()
    for a in th:
        a.join()
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "phases_s": res[0]["phases_s"], "psnr_db": res[0]["psnr_db"],
            "decoded_psnr_db": res[0]["decoded_psnr_db"], "fits": 2}


def summarise(runs, P):
    med = lambda k: float(np.median([r[k] for r in runs]))
    fits = runs[0].get("fits", 1)
    return {"wall_s": med("wall_s"), "cpu_s": med("cpu_s"), "probes_per_s": fits * P / med("wall_s"),
            "cpu_ms_per_probe": 1e3 * med("cpu_s") / (fits * P),
            "phases_s": {s: float(np.median([r["phases_s"][s] for r in runs])) for s in STAGES},
            "psnr_db": runs[0]["psnr_db"], "decoded_psnr_db": runs[0]["decoded_psnr_db"],
            "wall_s_all": [r["wall_s"] for r in runs]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sets", default="r8,r16,r8big")
    ap.add_argument("--no-legacy", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "fit.json"))
    args = ap.parse_args(argv)

    from probewarp.baker.prototypes import ProbeCodec
    variants = {"parallel": (ProbeCodec, dict(parallel=True), one_fit),
                "serial": (ProbeCodec, dict(parallel=False), one_fit),
                "threads2": (ProbeCodec, dict(parallel=False), two_threads)}
    if not args.no_legacy:
        variants = {"legacy": (legacy_codec_class(), {}, one_fit), **variants}
    head = subprocess.run(["git", "log", "-1", "--format=%h"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = {"command": " ".join([".venv/bin/python benchmarks/bench_fit.py"] + list(argv or sys.argv[1:])),
           "baseline_commit": BASELINE_COMMIT, "head_commit": head, "cpu_count": os.cpu_count(),
           "numba_threads": int(__import__("numba").config.NUMBA_NUM_THREADS),
           "note": "shared machine: wall times move with its load; variants interleaved per repeat",
           "sets": {}}
    for name in args.sets.split(","):
        x, f = load_set(name)
        P, R = f.shape[0], f.shape[2]
        print(f"== {name}: {P} probes at R = {R}", flush=True)
        for v, (cls, kw, how) in variants.items():        # warm-up: compile (or load) every kernel
            cls(n_prototypes=16, n_iter=1, **kw).fit(x[:256], f[:256])
        runs = {v: [] for v in variants}
        for rep in range(args.repeats):
            for v, (cls, kw, how) in variants.items():
                r = how(cls, x, f, **kw)
                runs[v].append(r)
                print(f"  {v:>9} rep {rep}: {r['wall_s']:6.1f} s wall, {r['cpu_s']:6.1f} s cpu, "
                      f"{r.get('fits', 1) * P / r['wall_s']:7.1f} probes/s, PSNR {r['psnr_db']:.4f} "
                      f"(decoded {r['decoded_psnr_db']:.4f})", flush=True)
        N, T = 4, 6 * R * R
        out["sets"][name] = {"grid": list(SETS[name][0]), "R": R, "n_probes": P,
                             "taps_bytes_per_probe": 6 * N * T,
                             "variants": {v: summarise(runs[v], P) for v in variants}}
        if "legacy" in runs:
            s = out["sets"][name]["variants"]
            for v in ("parallel", "serial", "threads2"):
                s[v]["speedup_vs_legacy"] = s[v]["probes_per_s"] / s["legacy"]["probes_per_s"]
                s[v]["psnr_change_db"] = s[v]["psnr_db"] - s["legacy"]["psnr_db"]
    RESULTS.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
