"""Experiment: depth-aware prototypes (a per-texel radius), prototyped on the CPU.

The warp of DESIGN-NOTES §3 puts every prototype on one sphere (centre,
radius). A depth-aware prototype carries a radius per texel, ``r_m(u)``: a
probe at ``x`` looking along ``d`` sees the point ``c + r(u) u`` with
``u`` the fixed point of ``u = warp(x, c, r(u), d)`` (three iterations from
the sphere's answer, what a shader would afford). This script asks whether
that pays, before the format, the decoder and the shader are touched:

1. fit the default learner (one radius per prototype) on a scene;
2. **plane sweep**: for each prototype texel and each of 9 depth hypotheses
   (0.3x .. 3x its radius), the users (probes whose codes use the prototype)
   look at the hypothesised point; the cost is their residual there (the
   probe minus the other taps' contributions, against this tap's
   contribution); costs are aggregated over 3 x 3 texels and each texel
   takes its cheapest depth where that beats its current one;
3. score both models with the prototypes fixed, then after the same
   least-squares refit of the prototype texels (codes fixed, CG on the
   normal equations, the same for both), in the fit's domain (tonemapped,
   solid-angle weighted: the published metric before quantisation).

The depth map's cost at equal bytes: one byte per prototype texel (8-bit log
depth) adds ``6 Rp^2`` bytes per prototype, the same as a BC6H prototype:
so depth must beat doubling M to pay. The script reports both.

    .venv/bin/python benchmarks/bench_depth.py        # ~5 min on 2 cores

Writes benchmarks/results/depth.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba as nb
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import cg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import provenance  # noqa: E402  (benchmarks/provenance.py)
from scenes import SCENES, scene_probes  # noqa: E402

from probewarp.baker.cubemap import _cube_taps, texel_directions, texel_weights  # noqa: E402

FACTORS = np.geomspace(0.3, 3.0, 9)


@nb.njit(cache=True)
def _warp_depth(ox, oy, oz, dx, dy, dz, r0, depth, has_depth, Rp, iters, tap_i, tap_w):
    """Fixed-point warp against a per-texel radius map; returns the final (sx, sy, sz)."""
    r = r0
    sx = sy = sz = 0.0
    for _ in range(iters + 1):
        b = ox * dx + oy * dy + oz * dz
        q2 = ox * ox + oy * oy + oz * oz - r * r
        disc = b * b - q2
        disc = disc if disc > 0.0 else 0.0
        t = np.sqrt(disc) - b
        sx, sy, sz = ox + t * dx, oy + t * dy, oz + t * dz
        if not has_depth:
            break
        _cube_taps(Rp, sx, sy, sz, tap_i, tap_w)
        r = 0.0
        for q in range(4):
            r += tap_w[q] * depth[tap_i[q]]
    return sx, sy, sz


@nb.njit(cache=True)
def _rows(x, dirs, C, rho, depth, has_depth, Rp, idx, w, iters, cols, vals):
    """Sparse rows of the blend: probe texel (i, t) <- 4 N (prototype texel, weight)."""
    P, N = idx.shape
    T = dirs.shape[0]
    U = 6 * Rp * Rp
    tap_i = np.empty(4, np.int64)
    tap_w = np.empty(4, np.float64)
    for i in range(P):
        for k in range(N):
            m = idx[i, k]
            dm = depth[m]
            for t in range(T):
                base = ((i * T + t) * N + k) * 4
                if w[i, k] == 0.0:
                    for q in range(4):
                        cols[base + q] = m * U
                        vals[base + q] = 0.0
                    continue
                sx, sy, sz = _warp_depth(x[i, 0] - C[m, 0], x[i, 1] - C[m, 1], x[i, 2] - C[m, 2],
                                         dirs[t, 0], dirs[t, 1], dirs[t, 2], rho[m], dm, has_depth, Rp, iters,
                                         tap_i, tap_w)
                _cube_taps(Rp, sx, sy, sz, tap_i, tap_w)
                for q in range(4):
                    cols[base + q] = m * U + tap_i[q]
                    vals[base + q] = w[i, k] * tap_w[q]


def blend_matrix(x, C, rho, depth, Rp, idx, w, R, iters=3):
    P, N = idx.shape
    dirs = texel_directions(R).reshape(-1, 3)
    T = dirs.shape[0]
    cols = np.empty(P * N * T * 4, np.int64)
    vals = np.empty(P * N * T * 4, np.float64)
    d = np.zeros((C.shape[0], 1)) if depth is None else np.ascontiguousarray(depth, np.float64)
    _rows(np.ascontiguousarray(x), np.ascontiguousarray(dirs), C, rho, d, depth is not None, Rp, idx.astype(np.int64),
          w.astype(np.float64), iters, cols, vals)
    rows = np.repeat(np.arange(P * T), N * 4)
    M = C.shape[0]
    return sp.csr_matrix((vals, (rows, cols)), shape=(P * T, M * 6 * Rp * Rp))


@nb.njit(cache=True, parallel=True)
def _sweep(x, C, rho, J, Rp, users_start, users_p, users_w, target, R, factors, udirs, cost):
    """cost[m, u, j]: users' squared residual at prototype texel u seen at depth factors[j] * rho[m]."""
    M = C.shape[0]
    U = udirs.shape[0]
    for m in nb.prange(M):
        ti = np.empty(4, np.int64)
        tw = np.empty(4, np.float64)
        for a in range(users_start[m], users_start[m + 1]):
            i = users_p[a]          # flat (probe, tap) pair
            wk = users_w[a]
            p = i // target.shape[1]
            k = i % target.shape[1]
            for u in range(U):
                for j in range(factors.shape[0]):
                    r = factors[j] * rho[m]
                    px = C[m, 0] + r * udirs[u, 0] - x[p, 0]
                    py = C[m, 1] + r * udirs[u, 1] - x[p, 1]
                    pz = C[m, 2] + r * udirs[u, 2] - x[p, 2]
                    _cube_taps(R, px, py, pz, ti, tw)
                    e = 0.0
                    for c in range(3):
                        v = 0.0
                        for q in range(4):
                            v += tw[q] * target[p, k, ti[q], c]
                        dd = v - wk * J[m, u, c]
                        e += dd * dd
                    cost[m, u, j] += e


def aggregate(cost, Rp):
    """3 x 3 box filter of a (M, 6 Rp^2, H) cost volume within every face (edges clamped)."""
    M, _, H = cost.shape
    c = cost.reshape(M, 6, Rp, Rp, H)
    p = np.pad(c, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    out = sum(p[:, :, a:a + Rp, b:b + Rp] for a in range(3) for b in range(3))
    return out.reshape(M, 6 * Rp * Rp, H)


def psnr_of(A, J, Y, wt, P):
    r = A @ J - Y
    mse = float(((r ** 2).sum(axis=1) * wt).sum() / P / 3.0)
    return 10 * np.log10(1.0 / mse)


def refit(A, J0, Y, wt, lam=1e-4, iters=20):
    """min ||A J - Y||_W^2 + lam' ||J - J0||^2 by CG on the normal equations, per channel."""
    W = sp.diags(wt)
    H = (A.T @ W @ A).tocsr()
    lam_abs = lam * float(H.diagonal()[H.diagonal() > 0].mean())
    H = H + lam_abs * sp.identity(H.shape[0], format="csr")
    out = np.empty_like(J0)
    for c in range(3):
        b = A.T @ (wt * Y[:, c]) + lam_abs * J0[:, c]
        out[:, c], _ = cg(H, b, x0=J0[:, c], maxiter=iters)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=list(SCENES))
    ap.add_argument("--n", nargs=3, type=int, default=(32, 4, 32))
    ap.add_argument("--res", type=int, default=8)
    ap.add_argument("--m", type=int, default=128)
    ap.add_argument("--taps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2, help="plane sweep + refit rounds")
    ap.add_argument("--work", default="out/bench_rd")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    from probewarp.baker.domain import to_domain
    from probewarp.baker.prototypes import ProbeCodec
    rows = []
    for scene in args.scenes:
        probes = scene_probes(scene, args.n, args.res, args.work)
        x = probes.positions
        faces = probes.faces_array(np.float32)
        R = args.res
        P = x.shape[0]
        cells = probes.lattice.stencils(x)
        row = {"scene": scene}
        for M in (args.m, 2 * args.m):
            t0 = time.perf_counter()
            codec = ProbeCodec(n_prototypes=M, n_taps=args.taps, texel_format="rgba32f").fit(x, faces, cells=cells)
            Y = to_domain(faces, "tonemap").reshape(P * 6 * R * R, 3).astype(np.float64)
            wt = np.tile(texel_weights(R).reshape(-1), P)
            Rp = codec.Rp_
            C, rho = codec.centres_, codec.radii_
            J = codec.prototypes_.reshape(M * 6 * Rp * Rp, 3).astype(np.float64)
            idx, w = codec.indices_, codec.weights_
            A_s = blend_matrix(x, C, rho, None, Rp, idx, w, R)
            J_s = refit(A_s, J, Y, wt)
            row[f"sphere_M{M}"] = psnr_of(A_s, J, Y, wt, P)
            row[f"sphere_refit_M{M}"] = psnr_of(A_s, J_s, Y, wt, P)
            if M != args.m:
                print(f"{scene}: sphere M={M}: {row[f'sphere_refit_M{M}']:.2f} dB", flush=True)
                continue
            # plane sweep: per-tap targets (the probe minus the other taps), then a
            # refit of the texels; ``--rounds`` times, each from the last state
            T = 6 * R * R
            N = args.taps
            flat = idx.reshape(-1)
            use = w.reshape(-1) > 0
            order = np.argsort(np.where(use, flat, M), kind="stable")
            order = order[use[order]]
            starts = np.searchsorted(flat[order], np.arange(M + 1))
            udirs = texel_directions(Rp).reshape(-1, 3)
            depth, Jc, A_c = None, J, A_s
            for rnd in range(args.rounds):
                Yhat = (A_c @ Jc).reshape(P, T, 3)
                tap = np.empty((P, N, T, 3))
                for k in range(N):
                    wk = np.zeros_like(w)
                    wk[:, k] = w[:, k]
                    tap[:, k] = (blend_matrix(x, C, rho, depth, Rp, idx, wk, R) @ Jc).reshape(P, T, 3)
                target = (Y.reshape(P, T, 3) - Yhat)[:, None] + tap            # (P, N, T, 3)
                cost = np.zeros((M, udirs.shape[0], FACTORS.size))
                _sweep(x, C, rho, Jc.reshape(M, -1, 3), Rp, starts, order.astype(np.int64),
                       w.reshape(-1)[order].astype(np.float64), np.ascontiguousarray(target), R, FACTORS, udirs,
                       cost)
                # cost aggregation (stereo's standard smoothing): a 3 x 3 box on
                # every face, then each texel takes its cheapest depth only where
                # that beats its current one
                agg = aggregate(cost, Rp)
                best = np.argmin(agg, axis=2)
                seen = cost.max(axis=2) > 0
                cur = depth if depth is not None else rho[:, None] * np.ones((M, udirs.shape[0]))
                here = np.abs(np.log(FACTORS)[None, None, :] - np.log(cur / rho[:, None])[..., None]).argmin(axis=2)
                better = np.take_along_axis(agg, best[..., None], 2)[..., 0] < \
                    np.take_along_axis(agg, here[..., None], 2)[..., 0]
                depth = np.where(seen & better, FACTORS[best] * rho[:, None], cur)
                A_c = blend_matrix(x, C, rho, depth, Rp, idx, w, R)
                if rnd == 0:
                    row[f"depth_M{M}"] = psnr_of(A_c, Jc, Y, wt, P)
                Jc = refit(A_c, Jc, Y, wt)
                row[f"depth_refit_M{M}_round{rnd + 1}"] = psnr_of(A_c, Jc, Y, wt, P)
            row[f"depth_refit_M{M}"] = row[f"depth_refit_M{M}_round{args.rounds}"]
            row["depth_factor_histogram"] = np.bincount(best[seen].reshape(-1), minlength=FACTORS.size).tolist()
            row["seconds"] = time.perf_counter() - t0
            print(f"{scene}: sphere {row[f'sphere_M{M}']:.2f} -> refit {row[f'sphere_refit_M{M}']:.2f} dB; "
                  f"depth {row[f'depth_M{M}']:.2f} -> refit {row[f'depth_refit_M{M}']:.2f} dB", flush=True)
        rows.append(row)
    provenance.write(args.out, "depth", "depth", args, factors=FACTORS.tolist(), rows=rows)


if __name__ == "__main__":
    main()
