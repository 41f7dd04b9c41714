"""The tetrahedral index of scattered sets: its size, its loop bound and its cost.

For three kinds of scattered set (a jittered 32 x 8 x 32 grid, a random 30 %
of a 48 x 12 x 48 grid -- cospherical points, qhull's hard case -- and
uniform random points; about 8,000 probes each) and cell densities of 1 to
16 probes per cell, rows give the index's bytes per probe raw (what the GPU
holds) and after lz4 (what the archive stores), the longest cell list (the
GLSL loop bound) and the mean, the build time, the CPU twin's time per query
(``format.tetindex.lookup``) and the GLSL ``pw_find_probes`` time per
position (``pw_stencil.cs`` on whatever GL the machine has; llvmpipe here),
beside the grid hash's on the dense 32 x 8 x 32 grid in the same run. The
default cell density (``baker.tetra.PROBES_PER_CELL``) is chosen from these
rows. One larger set (random, 65,536 probes) times the build at the default.

    .venv/bin/python benchmarks/bench_tetindex.py     # -> benchmarks/results/tetindex.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import provenance  # noqa: E402  (benchmarks/provenance.py)

import lz4.frame  # noqa: E402
import numpy as np  # noqa: E402

from probewarp.baker.tetra import PROBES_PER_CELL, build_index, index_for_pages  # noqa: E402
from probewarp.format import tetindex  # noqa: E402
from probewarp.format.archive import Page, write_archive  # noqa: E402


def lattice(shape):
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"),
                    -1).reshape(-1, 3)


def sets(rng):
    g = lattice((32, 8, 32))
    sub = lattice((48, 12, 48)) * (32 / 48)
    return {"jitter": g + rng.uniform(-0.25, 0.25, g.shape),
            "subset": sub[rng.random(len(sub)) < 0.3],
            "random": rng.uniform(0, 1, (8192, 3)) * [32, 8, 32]}


def tiny_archive(path, pos, grid_shape=None, page_probes=256):
    """An archive whose only purpose is its index (or hash): 2 prototypes a page, R = 4."""
    from probewarp.baker.bake import split_pages
    from probewarp.format.grid import Grid
    rng = np.random.default_rng(0)
    P = len(pos)
    grid = Grid(grid_shape, pos.min(0), pos.max(0)) if grid_shape else None
    groups = split_pages(pos, page_probes, grid)
    pages = []
    for g in groups:
        brick = None
        if grid is not None:
            ijk = np.stack(np.unravel_index(g, grid_shape), 1)
            brick = (tuple(int(v) for v in ijk.min(0)), tuple(int(v) for v in ijk.max(0) - ijk.min(0) + 1))
        pages.append(Page(centres=pos[g[:2]], radii=np.array([4.0, np.inf]),
                          prototypes=rng.uniform(0.1, 0.9, (2, 6, 4, 4, 3)).astype(np.float32),
                          probe_ids=np.asarray(g, np.int64), positions=pos[g],
                          indices=np.zeros((len(g), 2), np.int32), weights=np.full((len(g), 2), 0.5, np.float32),
                          brick=brick))
    meta = {"n_probes": P, "probe_res": 4, "prototype_res": 4, "n_taps": 2, "texel_format": "rgba16f",
            "domain": "tonemap"}
    if grid is not None:
        meta.update(grid=grid.to_meta(), interpolation="trilinear")
        write_archive(path, meta, pages)
    else:
        meta["interpolation"] = "tetrahedral"
        write_archive(path, meta, pages, tet_index=index_for_pages(pages, P))


def gl_time(ctx, path, q, repeats):
    """Median seconds of one pw_stencil.cs dispatch over q (all pages resident)."""
    from probewarp.runtime import shaders
    from probewarp.runtime.decode import write_positions
    from probewarp.runtime.streamer import Streamer
    with Streamer(ctx, path, page_slots=64) as s:
        prog = shaders.compute(ctx, "pw_stencil.cs", s.defines)
        pos = write_positions(ctx, None, q)
        out = ctx.buffer(reserve=len(q) * (1 + 3 * s.code_corners) * 4)
        s.bind(prog)
        pos.bind_to_storage_buffer(0)
        out.bind_to_storage_buffer(1)
        prog["u_count"].value = len(q)
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            prog.run(-(-len(q) // 64))
            out.read(size=4)          # waits for the dispatch
            times.append(time.perf_counter() - t0)
        for o in (prog, pos, out):
            o.release()
    return float(np.median(times[1:]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--densities", default="1,2,4,8,16", help="probes per cell to measure")
    ap.add_argument("--queries", type=int, default=4096, help="positions timed per set")
    ap.add_argument("--repeats", type=int, default=5, help="GL dispatches timed (median)")
    ap.add_argument("--no-gl", action="store_true", help="skip the GLSL timings")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    ctx = None
    if not args.no_gl:
        from probewarp.runtime.context import create_context
        ctx = create_context()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        grid_q = None
        for name, pos in sets(rng).items():
            pos = pos.astype(np.float32).astype(np.float64)
            P = len(pos)
            lo, hi = pos.min(0), pos.max(0)
            q = lo + rng.random((args.queries, 3)) * (hi - lo)
            grid_q = q if name == "jitter" else grid_q
            for ppc in [float(v) for v in args.densities.split(",")]:
                t0 = time.perf_counter()
                idx = build_index(pos, np.arange(P), ppc)
                build_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                tetindex.lookup(idx, q)
                cpu_s = time.perf_counter() - t0
                m = idx.meta()
                row = {"set": name, "probes": P, "probes_per_cell": ppc, "mode": idx.mode, "cells": idx.n_cells,
                       "tets_per_probe": idx.n_tets / P, "raw_bytes_per_probe": idx.nbytes / P,
                       "lz4_bytes_per_probe": len(lz4.frame.compress(idx.to_bytes(), compression_level=9)) / P,
                       "max_items": m["max_items"], "mean_items": m["n_items"] / idx.n_cells,
                       "build_s": build_s, "cpu_lookup_us": cpu_s / len(q) * 1e6}
                if ctx is not None and ppc == PROBES_PER_CELL:
                    path = Path(tmp) / f"{name}.pwa"
                    tiny_archive(path, pos)
                    row["gl_find_probes_us"] = gl_time(ctx, path, q, args.repeats) / len(q) * 1e6
                rows.append(row)
                print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        grid_row = {"set": "dense grid (hash)", "probes": 32 * 8 * 32}
        if ctx is not None:
            path = Path(tmp) / "grid.pwa"
            tiny_archive(path, lattice((32, 8, 32)), (32, 8, 32))
            grid_row["gl_find_probes_us"] = gl_time(ctx, path, grid_q, args.repeats) / len(grid_q) * 1e6
        rows.append(grid_row)
        print(grid_row)
        big = rng.uniform(0, 1, (65536, 3)) * [64, 16, 64]
        t0 = time.perf_counter()
        idx = build_index(big, np.arange(len(big)))
        big_row = {"set": "random (large)", "probes": len(big), "probes_per_cell": PROBES_PER_CELL,
                   "build_s": time.perf_counter() - t0, "raw_bytes_per_probe": idx.nbytes / len(big),
                   "max_items": idx.max_items}
        rows.append(big_row)
        print(big_row)
    provenance.write(args.out, "tetindex", "tetindex", args, default_probes_per_cell=PROBES_PER_CELL, rows=rows)


if __name__ == "__main__":
    main()
