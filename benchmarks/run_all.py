"""Run every benchmark in turn (make bench), each as the README quotes it.

Each writes JSON (+ PNG) under benchmarks/results/. Several hours on 2 cores;
the scale benchmark's million-probe run is left out (``bench_scale.py --help``).
"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ["bench_capture.py"],
    ["bench_bake.py", "--scene", "town", "--name", "compare_builtin"],
    ["bench_bake.py", "--scene", "interior", "--name", "compare_interior"],
    ["bench_levers.py", "--res", "16", "--m", "512", "--no-heldout", "--name", "levers16", "--variants", "before",
     "+held-out stop", "+coherence 0.1", "default", "+coherence 0.5", "no warp, before", "no warp, default"],
    ["bench_levers.py", "--variants", "before", "+centres", "+swaps", "+held-out stop", "+coherence 0.1", "default",
     "+coherence 0.5", "no warp, before", "no warp, default"],
    ["bench_rd.py", "--res", "16", "--m", "16", "32", "64", "128", "256", "512", "--families", "bc6h:1",
     "bc6h-nowarp:1", "--baselines", "--name", "rd16"],
    ["bench_rd.py", "--m", "32", "96", "256", "--families", "rgba16f:1", "bc6h:1", "bc7:1", "bc6h:2"],
    ["bench_depth.py"],
    ["bench_runtime.py", "--learner", "before"],
    ["bench_runtime.py"],
    ["bench_flythrough.py"],
    ["bench_clip.py"],
    ["bench_scattered.py"],
    ["bench_scattered.py", "--keep", "0.5", "--name", "scattered_keep50"],
    ["bench_scattered.py", "--keep", "0.75", "--scenes", "town", "--name", "scattered_keep75"],
    ["bench_hash.py"],
    ["bench_tetindex.py"],
    ["bench_fit.py", "--repeats", "2"],
    ["bench_halo.py"],
    ["bench_scale.py", "--sizes", "10k", "100k", "--skip-sklearn"],
]
for run in RUNS:
    print("==", " ".join(run), flush=True)
    subprocess.run([sys.executable, str(HERE / run[0]), *run[1:]], check=True)
