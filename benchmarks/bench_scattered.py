"""Probes anywhere: decoding between probes of scattered sets, held out.

For each scene (the built-in town, captured; the procedural interior of
``fields.py``, ray cast) and each kind of set —

- ``jitter``: a 16 x 4 x 16 grid over the scene's probe box, every probe
  moved by up to a quarter spacing per axis (a scattered set);
- ``subset``: the plain grid —

a random quarter of the probes is kept (the training set) and the other
three quarters are decoded (held out), the way the issue measured a real
scene. Rows: probewarp baked on the kept probes (M = 32, N = 4: the default
rate of M per probe) and decoded at the held-out positions, against blending
the uncompressed kept probes with the same interpolation rule (the
decoder's own stencil: the tetrahedral rule, or the sparse grid's fill;
linear radiance, no warp; the grid rows also give ``neighbour_blend``,
``compare``'s held-out baseline). The subset is decoded twice: as the sparse grid lattice
detection finds (the grid rule) and forced scattered (the tetrahedral rule).
PSNR of DESIGN-NOTES §5 over the held-out probes, decoded by the CPU
reference decoder and by the GL runtime (the streamer and GLSL
``pw_find_probes``; skipped with ``--no-gl``); the archive's bytes per kept
probe include its index (the spatial hash, or the tetrahedral index of
scattered sets), also given alone.

    .venv/bin/python benchmarks/bench_scattered.py      # -> benchmarks/results/scattered.json
    .venv/bin/python benchmarks/bench_scattered.py --keep 0.5 --name scattered_keep50
    .venv/bin/python benchmarks/bench_scattered.py --keep 0.75 --scenes town --name scattered_keep75
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

import numpy as np  # noqa: E402


N_GRID = (16, 4, 16)
R = 16


def scene_render(name):
    """positions (n, 3) -> faces (n, 6, R, R, 3) at R = 16, and the scene's probe box."""
    if name == "town":
        from probewarp.capture.capturer import Capturer
        from probewarp.capture.scene import Scene
        scene = Scene.builtin(seed=0)
        lo, hi = scene.builtin_grid()
        cap = Capturer(scene, R, 4)
        return (lambda p: cap.render(np.asarray(p, np.float64))), np.asarray(lo), np.asarray(hi)
    import fields
    f = fields.Field(seed=0)
    return (lambda p: f.render(p, R)), fields.GRID_LO.copy(), fields.GRID_HI.copy()


def psnr(ref, test):
    from probewarp.baker.metrics import per_probe_mse, psnr_from_mse
    return psnr_from_mse(per_probe_mse(ref, test))


def same_rule_blend(dec, train_pos, train_faces, query):
    """The uncompressed training probes blended with the archive's own
    interpolation rule (the decoder's stencil), in linear radiance."""
    from scipy.spatial import cKDTree
    d, row = cKDTree(train_pos).query(dec.positions)      # archive probe id -> training row
    assert d.max() < 1e-3
    ids, w = dec.pw_find_probes(query)
    return np.einsum("qk,qk...->q...", w, train_faces[row[ids]].astype(np.float64)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=["town", "interior"])
    ap.add_argument("--keep", type=float, default=0.25, help="fraction of probes kept for the bake")
    ap.add_argument("--prototypes", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--name", default="scattered", help="results file NAME.json (default scattered)")
    ap.add_argument("--no-gl", action="store_true", help="skip the GL runtime's decode")
    args = ap.parse_args()
    from probewarp.format.archive import ArchiveReader
    ctx = None
    if not args.no_gl:
        from probewarp.runtime.context import create_context
        from probewarp.runtime.decode import decode_gl
        ctx = create_context()
    from probewarp.baker.decoder import Decoder
    from probewarp.baker.pipeline import bake_arrays
    from probewarp.baker.probeset import ProbeSet
    from probewarp.baselines.neighbour import neighbour_blend
    from probewarp.format.grid import Grid
    rows = []
    for name in args.scenes:
        render, lo, hi = scene_render(name)
        grid_pos = ProbeSet.grid(lo, hi, N_GRID).astype(np.float64)
        step = (hi - lo) / (np.array(N_GRID) - 1)
        rng = np.random.default_rng(args.seed)
        jit = grid_pos + rng.uniform(-0.25, 0.25, grid_pos.shape) * step
        jit = np.clip(jit, lo, hi)
        t0 = time.perf_counter()
        sets = {"jitter": (jit, render(jit)), "subset": (grid_pos, render(grid_pos))}
        print(f"{name}: rendered {2 * len(grid_pos)} probes in {time.perf_counter() - t0:.1f} s", flush=True)
        for kind, (pos, faces) in sets.items():
            keep = np.zeros(len(pos), bool)
            keep[rng.choice(len(pos), int(round(args.keep * len(pos))), replace=False)] = True
            tp, tf, qp, qf = pos[keep], faces[keep], pos[~keep], faces[~keep]
            rules = ["tetrahedral"]
            detected = Grid.detect(tp)
            if detected is not None:
                rules.insert(0, "grid (detected)")
            for rule in rules:
                grid = detected if rule.startswith("grid") else None
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    r = bake_arrays(tp, tf, Path(tmp) / "t.pwa", grid=grid, n_prototypes=args.prototypes,
                                    n_taps=4, page_probes=4096, seed=args.seed, score=False)
                    bake_s = time.perf_counter() - t0
                    dec = Decoder(Path(tmp) / "t.pwa")
                    got = dec.decode(qp)
                    interp = dec.meta["interpolation"]
                    with ArchiveReader(Path(tmp) / "t.pwa") as ar:
                        summ = ar.summary()
                    index = summ["tetra_index"] or summ["hash"]
                    gl = decode_gl(Path(tmp) / "t.pwa", qp, ctx=ctx) if ctx is not None else None
                # the uncompressed kept probes blended by the archive's own rule (the
                # decoder's stencil: the sparse grid's fill, or the tetrahedral rule)
                base = same_rule_blend(dec, tp, tf, qp)
                if grid is not None:
                    row_extra = {"neighbour_blend_psnr_db":
                                 psnr(qf, neighbour_blend(tp, tf, grid.shape, grid.lo, grid.hi, qp))}
                else:
                    row_extra = {}
                row = {"scene": name, "set": kind, "rule": rule, "interpolation": interp,
                       "kept": int(keep.sum()), "held_out": int((~keep).sum()),
                       "probewarp_psnr_db": psnr(qf, got), "neighbours_psnr_db": psnr(qf, base),
                       "bytes_per_probe_kept": r.bytes_per_probe,
                       "index_bytes_per_probe_kept": index["bytes"] / int(keep.sum()), "bake_seconds": bake_s,
                       **row_extra}
                if gl is not None:
                    row["probewarp_gl_psnr_db"] = psnr(qf, gl)
                rows.append(row)
                print(f"  {kind:7s} {rule:16s} probewarp {row['probewarp_psnr_db']:6.2f} dB "
                      f"(GL {row.get('probewarp_gl_psnr_db', float('nan')):6.2f})   uncompressed "
                      f"neighbours {row['neighbours_psnr_db']:6.2f} dB   ({row['kept']} kept, "
                      f"{row['bytes_per_probe_kept']:.0f} B/probe, {bake_s:.0f} s)", flush=True)
    provenance.write(args.out, args.name, "scattered", args, rows=rows)


if __name__ == "__main__":
    main()
