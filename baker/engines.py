"""Where a bake's pages run: threads in this process, or a Dask cluster.

:func:`run_pages` fits page tasks (:class:`.bake.PageTask`) and hands each
finished :class:`.bake.PageOutput` to ``on_done`` in the calling thread, in
completion order (the pipeline checkpoints it and forgets it, so memory
holds the pages in flight, never the whole bake):

- ``engine="threads"`` (the default): a thread pool of ``threads`` pages at
  once (default: all cores) in this process. The learner's kernels release
  the GIL; with more than one thread each page runs the serial kernels,
  with one thread the parallel ones.
- ``engine="dask"``: ``workers`` processes of a ``LocalCluster`` started
  here, or an existing cluster at ``scheduler`` (``tcp://host:8786``).
  Workers read the probes themselves when the set is a file on a path
  every worker sees (a ``.zarr`` store or an uncompressed ``.npz``);
  otherwise each task carries its page's probes. At most two tasks per
  worker are in flight. Needs the ``dask`` extra, installed at the same
  version on every machine of the cluster.

Every page is a pure function of its inputs (:func:`.bake.fit_page`), so
the archive is byte-identical whichever engine ran it.
"""
from __future__ import annotations

import functools
import os
import resource
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from probewarp.baker.bake import PageTask, fit_page, read_fit_faces
from probewarp.format.errors import InputError


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux ``ru_maxrss`` is in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass(frozen=True)
class FacesRef:
    """A probe set's faces by path, for workers to open themselves (picklable)."""
    path: str
    repair_fp16: bool | None = None

    def open(self):
        return _open_faces(self.path, self.repair_fp16)


@functools.lru_cache(maxsize=4)
def _open_faces(path: str, repair_fp16):
    from probewarp.baker.probeset import ProbeSet
    faces = ProbeSet.load(path, lazy=True, validate=False).faces
    if repair_fp16 is not None and hasattr(faces, "with_repair"):
        faces = faces.with_repair(repair_fp16)
    return faces


def faces_ref(faces, source) -> FacesRef | None:
    """A :class:`FacesRef` for ``faces`` when workers can reopen it from
    ``source`` (a zarr store, or a memory-mapped ``.npz``), else None."""
    from probewarp.baker.lazyfaces import LazyFaces
    if source is None or not os.path.exists(str(source)):
        return None
    if isinstance(faces, LazyFaces) and faces.index is None:
        return FacesRef(os.path.abspath(str(source)), faces.repair_fp16)
    if isinstance(faces, np.memmap):
        return FacesRef(os.path.abspath(str(source)))
    return None


@dataclass(frozen=True)
class PageBlock:
    """A page's probes already read (``task.fit_ids`` order), shipped with its task."""
    faces: np.ndarray


def run_task(task: PageTask, positions_fit, faces, params: dict, meta: dict, seed: int, parallel: bool):
    """One page, where it runs: read its probes (``faces`` is a FacesRef, an
    array indexable by probe lists, or the page's block already read), fit,
    encode (``faces`` may also be a :class:`PageBlock`). Adds ``read_seconds`` and the process's ``peak_rss`` to the stats."""
    t0 = time.perf_counter()
    if isinstance(faces, FacesRef):
        block = read_fit_faces(faces.open(), task.fit_ids)
    elif isinstance(faces, PageBlock):
        block = faces.faces
    else:
        block = read_fit_faces(faces, task.fit_ids)
    read_s = time.perf_counter() - t0
    out = fit_page(task, positions_fit, block, params, meta, seed, parallel)
    out.stats["read_seconds"] = read_s
    out.stats["peak_rss"] = peak_rss_bytes()
    out.stats["pid"] = os.getpid()
    return out


def default_threads() -> int:
    """Pages at once in this process: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_pages(tasks, positions, faces, params: dict, meta: dict, seed: int, on_done, *,
              engine: str = "threads", threads: int | None = None, workers: int | None = None,
              scheduler: str | None = None, ref: FacesRef | None = None) -> dict:
    """Fit ``tasks``; ``on_done(PageOutput)`` for each, in this thread.

    ``positions`` (P, 3) and ``faces`` (P, 6, R, R, 3) array-like are the
    whole set (read per page); ``ref`` lets Dask workers read the faces
    themselves. Returns facts about the run: engine, workers and their peak
    resident memory.
    """
    tasks = list(tasks)
    if engine == "threads":
        return _run_threads(tasks, positions, faces, params, meta, seed, on_done,
                            threads or default_threads())
    if engine == "dask":
        return _run_dask(tasks, positions, faces, params, meta, seed, on_done, workers, scheduler, ref)
    raise InputError(f"engine must be 'threads' or 'dask', not {engine!r}")


def _run_threads(tasks, positions, faces, params, meta, seed, on_done, threads):
    n = max(1, min(int(threads), len(tasks))) if tasks else 1
    parallel = n == 1
    info = {"engine": "threads", "threads": n, "worker_peak_rss": {}}
    if n == 1:
        for t in tasks:
            ids = t.fit_ids
            on_done(run_task(t, positions[ids], faces, params, meta, seed, parallel))
        return info
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="probewarp-page") as pool:
        pending = set()
        queue = list(tasks)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * n:     # read-ahead bounded: two pages per thread
                    t = queue.pop(0)
                    pending.add(pool.submit(run_task, t, positions[t.fit_ids], faces, params, meta, seed,
                                            parallel))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    on_done(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return info


def _run_dask(tasks, positions, faces, params, meta, seed, on_done, workers, scheduler, ref):
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as e:
        raise InputError("a Dask bake (--workers / --scheduler) needs the dask extra: "
                         "pip install 'probewarp[dask]'") from e
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as e:
            raise InputError(f"{scheduler}: cannot reach a Dask scheduler there ({e})") from e
    else:
        n = int(workers or default_threads())
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or int(workers or 1))
        window = 2 * n_workers
        queue = list(tasks)
        ac = as_completed()

        def submit(t):
            src = ref if ref is not None else PageBlock(read_fit_faces(faces, t.fit_ids))
            fut = client.submit(run_task, t, positions[t.fit_ids], src, params, meta, seed, False,
                                pure=False, key=f"probewarp-page-{t.index}-{os.getpid()}-{time.monotonic_ns()}")
            ac.add(fut)

        for _ in range(min(window, len(queue))):
            submit(queue.pop(0))
        for fut in ac:
            out = fut.result()
            fut.release()
            on_done(out)
            if queue:
                submit(queue.pop(0))
        peaks = client.run(peak_rss_bytes)
        return {"engine": "dask", "workers": n_workers, "scheduler": scheduler or "local",
                "worker_peak_rss": {str(k): int(v) for k, v in peaks.items()}}
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
