"""Run every benchmark in turn (make bench). Each writes JSON + PNG under benchmarks/results/."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for script in ("bench_capture.py", "bench_bake.py", "bench_runtime.py", "bench_hash.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True)
