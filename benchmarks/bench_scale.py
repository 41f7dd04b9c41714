"""Benchmark: the bake at scale (issue "Millions of probes").

10k, 100k and 1M probes of the interior field (``benchmarks/fields.py``) at
R = 8, baked with N = 4 taps and M = 256 prototypes per page of 16,384
probes, in process (pages in threads) and on a local Dask cluster of 2
processes (``--workers 2``); in the same run, on the same probes,
scikit-learn's ``MiniBatchDictionaryLearning`` with the same number of atoms
and non-zeros (no warp: a floor, not a rival). Targets for the million: at
most 20 minutes and at most 4 GiB peak resident memory.

Every run is a subprocess (so its peak memory is its own):

* probewarp: ``probewarp bake IN.zarr -o OUT.pwa --prototypes 256 --taps 4
  --page-probes 16384 [--workers 2] --fresh``. Scored (the CLI decodes the
  written archive), so wall time includes scoring and the report's plots;
  the report's own phase timings are recorded beside it.
* scikit-learn: this script in ``--sklearn-worker`` mode. The probe array
  (lattice order, z fastest) is split into ``ceil(P / 16384)`` contiguous,
  equal pages (slabs of the grid, not the bake's spatial bricks), each read
  from the zarr store on its own (bounded memory), mapped to the tonemapped
  domain (DESIGN-NOTES §5), fitted with ``MiniBatchDictionaryLearning(
  n_components=256, transform_algorithm='omp', transform_n_nonzero_coefs=4,
  batch_size=256, max_iter=1, random_state=0)`` (one epoch: 64 mini-batch
  steps on a full page, about a bake page's time; ``--sklearn-max-iter``)
  and coded by OMP; decoded probes (``T^-1`` of the reconstruction) are scored with
  the published metric (:class:`probewarp.baker.metrics.QualityAccumulator`)
  against the stored probes. Its "bytes per probe" is an estimate of what
  it would ship (float16 atoms, one byte index plus a float16 weight per
  non-zero), not a file.

Memory is measured here, outside the measured process: psutil samples the
run's process tree every 0.2 s and sums the resident set of the process and
all its descendants (Dask's nanny and worker processes included) — the
authoritative peak. The bake report's own peak (``throughput.peak_rss_bytes``)
is recorded next to it. Shared pages are counted once per process, so the
sum is an upper bound.

A run that fails or passes ``--timeout`` is recorded as such (status, exit
code, the tail of its output) and the benchmark goes on. Probe sets are
generated once and cached under ``--work`` (``field_v<version>_<nx>x<ny>x<nz>_R8_s0.zarr``;
the million takes a few minutes and 1-2 GB of disk).

Run::

    .venv/bin/python benchmarks/bench_scale.py                       # all: hours, on a quiet machine
    .venv/bin/python benchmarks/bench_scale.py --sizes 10k           # a few minutes
    .venv/bin/python benchmarks/bench_scale.py --sizes 10k --engines inproc --skip-sklearn
    .venv/bin/python benchmarks/bench_scale.py --sizes 6x6x6 --out /tmp/r   # a smoke test
    .venv/bin/python benchmarks/bench_scale.py --replot              # plot from the JSON

Writes ``--out``/scale.json (machine facts, versions, git commit, every run)
and scale.png (wall time and peak memory against probe count, log-log).
``--merge`` keeps the runs of an earlier scale.json that this invocation
does not repeat (same size and engine).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

#: Named sizes: grids of about 10k, 100k and 1M probes.
SIZES = {"10k": (22, 22, 21), "100k": (47, 47, 46), "1M": (100, 100, 100)}
ENGINES = ("inproc", "workers2")
#: The issue's targets for the million.
TARGET_PROBES = 1_000_000
TARGET_WALL_S = 20 * 60
TARGET_RSS_BYTES = 4 * 2 ** 30
#: Memory sampling period (s).
SAMPLE_S = 0.2
#: Points kept of each run's memory timeline in the JSON.
TIMELINE_POINTS = 200
#: Characters of a failed run's output kept in the JSON.
TAIL_CHARS = 3000


# --------------------------------------------------------------------- memory
class TreeSampler:
    """Peak resident memory of a process and all its descendants, sampled.

    Call :meth:`start` once the process is running and :meth:`stop` after it
    ended; read ``peak`` (sum over the tree), ``peak_main`` (the process
    alone), ``max_processes`` and ``timeline`` ([(t, bytes), ...]).
    """

    def __init__(self, pid: int, period: float = SAMPLE_S):
        import psutil
        self._psutil = psutil
        self.pid, self.period = pid, period
        self.peak = self.peak_main = 0
        self.max_processes = 0
        self.timeline = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()
        try:
            self._root = psutil.Process(pid)
        except psutil.Error:
            self._root = None

    def sample(self) -> None:
        ps = self._psutil
        if self._root is None:
            return
        try:
            procs = [self._root] + self._root.children(recursive=True)
        except ps.Error:
            return
        total = main = n = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except ps.Error:
                continue
            total += rss
            n += 1
            if p.pid == self.pid:
                main = rss
        if n:
            self.peak = max(self.peak, total)
            self.peak_main = max(self.peak_main, main)
            self.max_processes = max(self.max_processes, n)
            self.timeline.append((round(time.perf_counter() - self._t0, 2), total))

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period)

    def start(self) -> "TreeSampler":
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def descendants(self):
        """psutil handles of the live descendants (to clean up after a kill)."""
        try:
            return self._root.children(recursive=True) if self._root is not None else []
        except self._psutil.Error:
            return []

    def thinned_timeline(self, n: int = TIMELINE_POINTS):
        tl = self.timeline
        if len(tl) <= n:
            return [list(p) for p in tl]
        idx = np.unique(np.linspace(0, len(tl) - 1, n).round().astype(int))
        # keep the peak sample too
        peak_i = int(np.argmax([b for _, b in tl]))
        idx = np.union1d(idx, [peak_i])
        return [list(tl[i]) for i in idx]


def _tail(path: Path, n: int = TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - n))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _kill_tree(proc: subprocess.Popen, sampler: TreeSampler) -> None:
    """End a timed-out run: its process group, then any descendant left."""
    kids = sampler.descendants()
    try:
        os.killpg(proc.pid, signal.SIGTERM)       # the run's own session (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    for k in kids:
        try:
            k.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass


def run_measured(cmd, *, timeout: float, log_dir: Path, env=None) -> dict:
    """Run ``cmd`` as a subprocess, sampling its tree's memory.

    Returns a dict with status ('ok', 'failed', 'timeout'), returncode,
    wall_s, cpu_s (user + system of the waited-for tree), peak_rss_bytes,
    peak_rss_main_bytes, max_processes, rss_timeline and, unless ok, the
    tails of stdout and stderr. Never raises for a failing command.
    """
    import resource
    log_dir.mkdir(parents=True, exist_ok=True)
    out_p, err_p = log_dir / "stdout.txt", log_dir / "stderr.txt"
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rec = {"cmd": [str(c) for c in cmd], "started": _now(), "load_average_before": list(load0)}
    with open(out_p, "wb") as fo, open(err_p, "wb") as fe:
        try:
            proc = subprocess.Popen([str(c) for c in cmd], stdout=fo, stderr=fe, cwd=ROOT, env=env,
                                    start_new_session=True)
        except OSError as e:
            rec.update(status="failed", returncode=None, reason=f"could not start: {e}", wall_s=None)
            return rec
        sampler = TreeSampler(proc.pid).start()
        status = "ok"
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = "timeout"
            _kill_tree(proc, sampler)
        except KeyboardInterrupt:
            _kill_tree(proc, sampler)
            sampler.stop()
            raise
        finally:
            wall = time.perf_counter() - t0
            sampler.stop()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if status == "ok" and proc.returncode != 0:
        status = "failed"
    rec.update(status=status, returncode=proc.returncode, wall_s=wall,
               cpu_s=(ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
               peak_rss_bytes=int(sampler.peak), peak_rss_main_bytes=int(sampler.peak_main),
               max_processes=sampler.max_processes, load_average_after=list(os.getloadavg()),
               rss_timeline=sampler.thinned_timeline(), logs=str(log_dir))
    if status == "timeout":
        rec["reason"] = f"killed after {timeout:.0f} s"
    if status != "ok":
        rec["stdout_tail"] = _tail(out_p)
        rec["stderr_tail"] = _tail(err_p)
    return rec


# ---------------------------------------------------------------------- facts
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version(dist: str):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict:
    import psutil
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_count": os.cpu_count(), "cpus_usable": affinity,
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_total_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("probewarp", "numpy", "numba", "zarr", "scikit-learn", "dask",
                                              "distributed", "psutil", "scipy")},
        "load_average_start": list(os.getloadavg()),
    }


def git_facts() -> dict:
    def git(*a):
        try:
            r = subprocess.run(["git", "--no-optional-locks", *a], cwd=ROOT, capture_output=True, text=True,
                               timeout=30)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


# ------------------------------------------------------------------ probe sets
def parse_size(s: str):
    """'10k' / '100k' / '1M' or 'NXxNYxNZ' -> (name, (nx, ny, nz))."""
    if s in SIZES:
        return s, SIZES[s]
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", s)
    if not m:
        raise argparse.ArgumentTypeError(f"size {s!r}: one of {', '.join(SIZES)} or NXxNYxNZ")
    shape = tuple(int(v) for v in m.groups())
    if min(shape) < 1:
        raise argparse.ArgumentTypeError(f"size {s!r}: every axis needs a probe")
    return s, shape


def field_store(work: Path, shape, res: int, seed: int = 0) -> tuple[Path, dict]:
    """The cached zarr set of the interior field on ``shape`` (generated if missing)."""
    import fields
    from probewarp.baker.probeset import ProbeSet
    path = work / f"field_v{fields.FIELD_VERSION}_{'x'.join(map(str, shape))}_R{res}_s{seed}.zarr"
    info = {"path": str(path), "grid_shape": list(shape), "n_probes": int(np.prod(shape)), "res": res,
            "seed": seed, "field_version": fields.FIELD_VERSION}
    if path.exists():
        try:
            ps = ProbeSet.load(path, validate=False)
            if tuple(ps.grid_shape or ()) == tuple(shape) and ps.resolution == res:
                info.update(generated=False)
                return path, info
        except Exception:  # noqa: BLE001 - a broken cache is regenerated
            pass
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done, total):
        now = time.perf_counter()
        if now - last[0] > 10 or done == total:
            last[0] = now
            print(f"  field {path.name}: {done}/{total} probes, {now - t0:.0f} s", flush=True)
    fields.write_field_zarr(path, shape, res, seed=seed, progress=progress)
    info.update(generated=True, seconds=time.perf_counter() - t0,
                store_bytes=sum(f.stat().st_size for f in path.rglob("*") if f.is_file()))
    return path, info


# --------------------------------------------------------------------- engines
def probewarp_exe():
    exe = Path(sys.executable).with_name("probewarp")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "probewarp.cli.main"]


def bake_flags() -> set:
    """The ``--flags`` the installed ``probewarp bake`` accepts."""
    try:
        r = subprocess.run(probewarp_exe() + ["bake", "--help"], capture_output=True, text=True, timeout=120,
                           cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(re.findall(r"(--[a-z][a-z-]*)", r.stdout))


def bake_command(engine: str, store: Path, out: Path, args, flags: set):
    cmd = probewarp_exe() + ["bake", str(store), "-o", str(out), "--prototypes", str(args.prototypes),
                             "--taps", str(args.taps), "--page-probes", str(args.page_probes)]
    if "--fresh" in flags:
        cmd.append("--fresh")
    if engine == "workers2":
        cmd += ["--workers", "2"]
    return cmd


def _clean_nan(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean_nan(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean_nan(v) for v in o]
    return o


def _report_numbers(report_path: Path) -> dict | None:
    """What the bake's report says: quality, size and its own throughput block."""
    try:
        rep = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return None
    keep = {k: rep.get(k) for k in ("n_probes", "psnr_db", "log_rmse", "bytes_per_probe", "file_bytes",
                                    "n_pages") if k in rep}
    if "throughput" in rep:
        keep["throughput"] = rep["throughput"]
    if "seconds" in rep:
        keep["seconds"] = rep["seconds"]
    return _clean_nan(keep)


def run_probewarp(engine, size_name, shape, store, args, flags) -> dict:
    P = int(np.prod(shape))
    rec = {"size": size_name, "grid_shape": list(shape), "n_probes": P, "engine": engine}
    if engine == "workers2" and "--workers" not in flags:
        rec.update(status="skipped", reason="this probewarp bake has no --workers option")
        return rec
    run_dir = Path(args.work) / "runs" / f"{size_name}_{engine}"
    shutil.rmtree(run_dir, ignore_errors=True)          # no resumed pages, no stale report
    run_dir.mkdir(parents=True)
    out = run_dir / "bake.pwa"
    rec.update(run_measured(bake_command(engine, store, out, args, flags), timeout=args.timeout,
                            log_dir=run_dir))
    if rec["status"] == "timeout":
        rec["partial"] = _partial_progress(out, P, rec.get("wall_s"))
    rep = _report_numbers(out.with_suffix(".report.json")) if rec["status"] == "ok" else None
    if rec["status"] == "ok" and rep is None:
        rec.update(status="failed", reason="the bake wrote no readable report")
    _finish(rec, P)
    if rep is not None:
        rec["report"] = rep
        rec["psnr_db"] = rep.get("psnr_db")
        rec["bytes_per_probe"] = rep.get("bytes_per_probe")
        tp = rep.get("throughput") or {}
        rec["report_probes_per_s"] = tp.get("probes_per_second")
        rec["report_peak_rss_bytes"] = tp.get("peak_rss_bytes")
        if not args.keep_archives:
            out.unlink(missing_ok=True)
    return rec


def _partial_progress(out: Path, P: int, wall_s) -> dict | None:
    """What a bake killed at ``--timeout`` had finished, from its checkpoint
    (``OUT.partial/``): pages and probes done, their measured rate and the
    wall time the whole set would take at that rate (an extrapolation,
    labelled as such; it leaves out the final write and the score)."""
    from probewarp.baker.checkpoint import Checkpoint, checkpoint_dir
    ck = checkpoint_dir(out)
    if not ck.exists():
        return None
    import json as _json
    try:
        n_pages = len(list(ck.glob("page-*.pwp")))
        fingerprint = _json.loads((ck / "bake.json").read_text())
        total_pages = int(fingerprint["meta"]["n_pages"])
        done = Checkpoint.__new__(Checkpoint)
        done.dir = ck
        pages = done.finished(total_pages)
    except (OSError, ValueError, KeyError):
        return None
    probes = sum(int(info["stats"]["probes"]) for _, info in pages.values())
    fit_s = sum(float(info["stats"]["fit_seconds"]) for _, info in pages.values())
    rate = probes / wall_s if wall_s and probes else None
    return {"pages_done": n_pages, "pages_total": total_pages, "probes_done": probes,
            "probes_per_s_measured": rate, "page_fit_seconds_sum": fit_s,
            "wall_s_extrapolated": P / rate if rate else None,
            "note": "killed at --timeout; the rate is probes finished over the run's wall time so far "
                    "(start-up included), the extrapolation assumes it stays flat"}


def run_sklearn(size_name, shape, store, args) -> dict:
    P = int(np.prod(shape))
    rec = {"size": size_name, "grid_shape": list(shape), "n_probes": P, "engine": "sklearn"}
    run_dir = Path(args.work) / "runs" / f"{size_name}_sklearn"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    result = run_dir / "result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--sklearn-worker", str(store), "--result", str(result),
           "--prototypes", str(args.prototypes), "--taps", str(args.taps), "--page-probes", str(args.page_probes),
           "--sklearn-max-iter", str(args.sklearn_max_iter)]
    rec.update(run_measured(cmd, timeout=args.timeout, log_dir=run_dir))
    res = None
    if rec["status"] == "ok":
        try:
            res = json.loads(result.read_text())
        except (OSError, ValueError):
            rec.update(status="failed", reason="the worker wrote no readable result")
    _finish(rec, P)
    if res is not None:
        rec["worker"] = res
        rec["psnr_db"] = res.get("psnr_db")
        rec["bytes_per_probe"] = res.get("bytes_per_probe_estimate")
    return rec


def _finish(rec: dict, P: int) -> None:
    ok = rec.get("status") == "ok" and rec.get("wall_s")
    rec["probes_per_s"] = P / rec["wall_s"] if ok else None
    if P == TARGET_PROBES and ok:
        rec["targets"] = {"wall_s_max": TARGET_WALL_S, "peak_rss_bytes_max": TARGET_RSS_BYTES,
                          "wall_met": rec["wall_s"] <= TARGET_WALL_S,
                          "rss_met": rec["peak_rss_bytes"] <= TARGET_RSS_BYTES}


# ------------------------------------------------------------ sklearn worker
def sklearn_worker(store: Path, result: Path, M: int, N: int, page_probes: int, max_iter: int) -> None:
    """Fit and score the no-warp dictionary page by page (see the module docstring)."""
    import warnings

    import sklearn
    from sklearn.decomposition import MiniBatchDictionaryLearning
    from sklearn.exceptions import ConvergenceWarning

    from probewarp.baker.domain import from_domain, to_domain
    from probewarp.baker.metrics import QualityAccumulator
    from probewarp.baker.probeset import ProbeSet
    from probewarp.format.atomic import atomic_path

    t_all = time.perf_counter()
    ps = ProbeSet.load(store, lazy=True, validate=False)
    P, R = ps.n_probes, ps.resolution
    n_pages = max(1, math.ceil(P / page_probes))
    bounds = np.linspace(0, P, n_pages + 1).round().astype(np.int64)
    acc = QualityAccumulator()
    secs = {"read": 0.0, "fit": 0.0, "transform": 0.0, "score": 0.0}
    pages = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        t = time.perf_counter()
        faces = np.asarray(ps.faces[int(a):int(b)])
        X = to_domain(faces, "tonemap").reshape(len(faces), -1)
        secs["read"] += time.perf_counter() - t
        m = int(min(M, len(X)))
        dl = MiniBatchDictionaryLearning(n_components=m, transform_algorithm="omp",
                                         transform_n_nonzero_coefs=min(N, m), batch_size=256,
                                         max_iter=max_iter, random_state=0)
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:      # one per mini-batch with some solvers
            warnings.simplefilter("always", ConvergenceWarning)
            dl.fit(X)
        secs["fit"] += time.perf_counter() - t
        n_conv = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        t = time.perf_counter()
        codes = dl.transform(X)
        secs["transform"] += time.perf_counter() - t
        t = time.perf_counter()
        rec = from_domain((codes @ dl.components_).reshape(len(X), -1, 3).astype(np.float32), "tonemap", R)
        acc.update(faces, rec)
        secs["score"] += time.perf_counter() - t
        pages.append({"start": int(a), "stop": int(b), "atoms": m, "n_iter": int(getattr(dl, "n_iter_", -1)),
                      "n_steps": int(getattr(dl, "n_steps_", -1)),
                      "nonzeros_mean": float((codes != 0).sum(1).mean()), "convergence_warnings": n_conv})
        del faces, X, codes, rec, dl
    q = acc.result()
    secs["total"] = time.perf_counter() - t_all
    T = 6 * R * R * 3
    atom_bytes = sum(p["atoms"] for p in pages) * T * 2          # float16 atoms
    code_bytes = P * N * 3                                        # u8 index + f16 weight
    out = {"n_probes": P, "res": R, "n_pages": n_pages, "pages": pages, "psnr_db": q["psnr_db"],
           "log_rmse": q["log_rmse"], "seconds": secs, "bytes_per_probe_estimate": (atom_bytes + code_bytes) / P,
           "params": {"n_components": M, "transform_algorithm": "omp", "transform_n_nonzero_coefs": N,
                      "batch_size": 256, "max_iter": max_iter, "random_state": 0, "domain": "tonemap",
                      "partition": "contiguous equal slabs of the lattice order"},
           "sklearn": sklearn.__version__}
    with atomic_path(result) as tmp:
        tmp.write_text(json.dumps(_clean_nan(out), indent=2))


# ------------------------------------------------------------------------ plot
def plot(path: Path, data: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 - matplotlib.ticker below
    from probewarp.format.atomic import atomic_path

    runs = data.get("runs", [])
    style = {"inproc": ("C0", "o", "probewarp, in process (threads)"),
             "workers2": ("C1", "s", "probewarp, --workers 2 (Dask)"),
             "sklearn": ("C2", "^", "scikit-learn MiniBatchDictionaryLearning (no warp)")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    panels = [("wall_s", "wall time (s)", TARGET_WALL_S, "1M target: 20 min", 1.0),
              ("peak_rss_bytes", "peak resident memory (GiB)", TARGET_RSS_BYTES, "1M target: 4 GiB", 2 ** 30)]
    for ax, (key, label, target, tlabel, scale) in zip(axes, panels):
        for eng, (col, mk, name) in style.items():
            ok = sorted((r["n_probes"], r[key] / scale) for r in runs
                        if r.get("engine") == eng and r.get("status") == "ok" and r.get(key))
            if ok:
                ax.plot(*zip(*ok), color=col, marker=mk, label=name)
            bad = [(r["n_probes"], r[key] / scale) for r in runs
                   if r.get("engine") == eng and r.get("status") in ("failed", "timeout") and r.get(key)]
            if bad:
                ax.plot(*zip(*bad), color=col, marker="x", ls="none", ms=9,
                        label=f"{eng}: failed / timed out")
        ax.axhline(target / scale, color="0.3", ls="--", lw=1)
        ax.text(0.02, target / scale, tlabel, transform=ax.get_yaxis_transform(), va="bottom", fontsize=8,
                color="0.3")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ns = [r["n_probes"] for r in runs if r.get("n_probes")] or [TARGET_PROBES]
        ax.set_xlim(min(min(ns), 10_000) / 2, max(max(ns), TARGET_PROBES) * 2)
        vals = [r[key] / scale for r in runs if r.get(key)] or [target / scale]
        ax.set_ylim(min(vals) / 2, max(max(vals), target / scale) * 1.6)
        if key == "peak_rss_bytes":
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("probes (R = 8)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    m = data.get("machine", {})
    fig.suptitle(f"bake at scale: M = {data.get('params', {}).get('prototypes')}, "
                 f"N = {data.get('params', {}).get('taps')}, "
                 f"{data.get('params', {}).get('page_probes')} probes a page; {m.get('cpu_count')} CPUs, "
                 f"git {str(data.get('git', {}).get('commit'))[:8]}"
                 f"{' (dirty)' if data.get('git', {}).get('dirty') else ''}, load average at start "
                 f"{(m.get('load_average_start') or [float('nan')])[0]:.1f}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ------------------------------------------------------------------------ main
def _write(path: Path, data: dict) -> None:
    from probewarp.format.atomic import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean_nan(data), indent=2))


def _missing(module: str) -> str | None:
    """None if ``module`` imports, else why not."""
    import importlib.util
    return None if importlib.util.find_spec(module) is not None else f"{module} is not installed"


def _summary_line(r: dict) -> str:
    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"
    return (f"  {r['size']:>8} {r['engine']:>9}: {r['status']:>7}  wall {f(r.get('wall_s'), '8.1f')} s  "
            f"{f(r.get('probes_per_s'), '8.1f')} probes/s  peak {f((r.get('peak_rss_bytes') or 0) / 2**30, '5.2f')}"
            f" GiB  PSNR {f(r.get('psnr_db'), '6.2f')} dB  {f(r.get('bytes_per_probe'), '6.1f')} B/probe"
            + (f"  ({r['reason']})" if r.get("reason") else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring for what is measured and how.")
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in SIZES],
                    help="probe counts: " + ", ".join(f"{k} ({'x'.join(map(str, v))})" for k, v in SIZES.items())
                         + " or NXxNYxNZ (default: all three)")
    ap.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    ap.add_argument("--skip-sklearn", action="store_true", help="no scikit-learn run")
    ap.add_argument("--out", default=str(HERE / "results"), help="where scale.json and scale.png go")
    ap.add_argument("--work", default=str(ROOT / "out" / "bench_scale"),
                    help="probe-set cache and run folders")
    ap.add_argument("--res", type=int, default=8)
    ap.add_argument("--prototypes", type=int, default=256)
    ap.add_argument("--taps", type=int, default=4)
    ap.add_argument("--page-probes", type=int, default=16384)
    ap.add_argument("--sklearn-max-iter", type=int, default=1,
                    help="MiniBatchDictionaryLearning max_iter (epochs) per page (default 1: about 64 mini-batch "
                         "steps on a full page, a bake page's time; its early stopping ends 4 at ~1.5)")
    ap.add_argument("--timeout", type=float, default=5400.0, help="seconds before a run is killed (default 5400)")
    ap.add_argument("--keep-archives", action="store_true", help="keep the written .pwa files")
    ap.add_argument("--merge", action="store_true",
                    help="keep an earlier scale.json's runs of other sizes / engines")
    ap.add_argument("--replot", action="store_true", help="only redraw scale.png from scale.json")
    ap.add_argument("--sklearn-worker", metavar="STORE", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.sklearn_worker:
        sklearn_worker(Path(args.sklearn_worker), Path(args.result), args.prototypes, args.taps,
                       args.page_probes, args.sklearn_max_iter)
        return 0

    out = Path(args.out)
    json_path, png_path = out / "scale.json", out / "scale.png"
    if args.replot:
        plot(png_path, json.loads(json_path.read_text()))
        print(f"wrote {png_path}")
        return 0

    missing = _missing("psutil")
    if missing:
        ap.error(f"{missing}; install the benchmark extra: .venv/bin/pip install -e '.[bench]'")
    no_sklearn = None if args.skip_sklearn else _missing("sklearn")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    flags = bake_flags()
    data = {
        "benchmark": "bench_scale", "created": _now(),
        "command": " ".join([Path(sys.executable).name, "benchmarks/bench_scale.py"] + (argv or sys.argv[1:])),
        "machine": machine_facts(), "git": git_facts(),
        "params": {"res": args.res, "prototypes": args.prototypes, "taps": args.taps,
                   "page_probes": args.page_probes, "sklearn_max_iter": args.sklearn_max_iter,
                   "timeout_s": args.timeout, "sample_period_s": SAMPLE_S, "field": "benchmarks/fields.py seed 0",
                   "bake_flags": sorted(flags)},
        "targets": {"n_probes": TARGET_PROBES, "wall_s_max": TARGET_WALL_S, "peak_rss_bytes_max": TARGET_RSS_BYTES},
        "fields": [], "runs": [],
    }
    engines_run = list(args.engines) + ([] if args.skip_sklearn else ["sklearn"])
    todo = {(name, e) for name, _ in args.sizes for e in engines_run}
    if args.merge and json_path.exists():
        try:
            old = json.loads(json_path.read_text())
            data["runs"] = [r for r in old.get("runs", []) if (r.get("size"), r.get("engine")) not in todo]
            data["fields"] = [f for f in old.get("fields", []) if f.get("size") not in {n for n, _ in args.sizes}]
        except (OSError, ValueError) as e:
            print(f"--merge: ignoring unreadable {json_path} ({e})", flush=True)

    for name, shape in args.sizes:
        P = int(np.prod(shape))
        print(f"{name}: {'x'.join(map(str, shape))} = {P} probes at R = {args.res}", flush=True)
        try:
            store, info = field_store(work, shape, args.res)
        except Exception as e:  # noqa: BLE001 - record and go on with the next size
            data["fields"].append({"size": name, "grid_shape": list(shape), "status": "failed",
                                   "reason": f"{type(e).__name__}: {e}"})
            _write(json_path, data)
            print(f"  field generation failed: {e}", flush=True)
            continue
        info["size"] = name
        data["fields"].append(info)
        jobs = [(e, lambda e=e: run_probewarp(e, name, shape, store, args, flags)) for e in args.engines]
        if no_sklearn:
            jobs.append(("sklearn", lambda: {"size": name, "grid_shape": list(shape), "n_probes": P,
                                             "engine": "sklearn", "status": "skipped", "reason": no_sklearn}))
        elif not args.skip_sklearn:
            jobs.append(("sklearn", lambda: run_sklearn(name, shape, store, args)))
        for eng, job in jobs:
            print(f"  {eng} ...", flush=True)
            try:
                rec = job()
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - the benchmark records and goes on
                rec = {"size": name, "grid_shape": list(shape), "n_probes": P, "engine": eng, "status": "failed",
                       "reason": f"{type(e).__name__}: {e}"}
            data["runs"].append(rec)
            print(_summary_line(rec), flush=True)
            _write(json_path, data)
    data["machine"]["load_average_end"] = list(os.getloadavg())
    data["finished"] = _now()
    _write(json_path, data)
    try:
        plot(png_path, data)
    except Exception as e:  # noqa: BLE001 - the JSON is what matters
        print(f"plot failed: {type(e).__name__}: {e}", flush=True)
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
