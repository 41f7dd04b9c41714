"""Benchmark: the rate-distortion curve that chooses the default bake.

For every scene (``benchmarks/scenes.py``: the built-in town and the
procedural interior) and every *family* of stored prototypes (texel format
x prototype resolution Rp = k R), bake the same probes with several M and
record bytes per probe (the archive file, hash included) and PSNR (decoding
the written file, DESIGN-NOTES §5). Families:

- ``rgba16f`` (8 bytes a texel), ``bc6h`` (1 byte, HDR-native, either
  domain), ``bc7`` (1 byte, tonemapped domain), each at Rp = R and Rp = 2R;
  ``FORMAT-nowarp``: the no-warp dictionary with the same texels.

The choice: for each scene, each family's PSNR at equal bytes (its curve
interpolated, in log bytes, at a few budgets inside every family's range),
averaged over budgets and scenes; the family with the highest average is
the default, and M stays the user's knob (the README's table gives the
curve). A family only wins if it is best on every scene or, failing that, on
average: the JSON says which.

    .venv/bin/python benchmarks/bench_rd.py                    # ~25 min on 2 cores
    .venv/bin/python benchmarks/bench_rd.py --scenes town --m 64 256
    # the default against the baselines at every rate (README "Rate-distortion"):
    .venv/bin/python benchmarks/bench_rd.py --res 16 --m 16 32 64 128 256 512 \
        --families bc6h:1 bc6h-nowarp:1 --baselines --name rd16

Writes benchmarks/results/NAME.json and NAME.png (``--name``, default rd).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import provenance  # noqa: E402  (benchmarks/provenance.py)
from scenes import SCENES, scene_probes  # noqa: E402

FAMILIES = [("rgba16f", 1), ("bc6h", 1), ("bc7", 1), ("rgba16f", 2), ("bc6h", 2), ("bc7", 2)]


def family_name(fmt, k):
    base, _, tail = fmt.partition("-")
    return f"{base}, Rp={'R' if k == 1 else f'{k}R'}" + (", no warp" if tail == "nowarp" else "")


def baseline_rows(faces):
    """The baselines the default must beat at every rate: PCA (K = 4..64) and
    spherical harmonics (orders 2, 4, 6 on linear radiance as users fit them;
    order 6 on tonemapped values too), payload bytes and PSNR (DESIGN-NOTES §5)."""
    import probewarp.baselines as B
    from probewarp.baker.metrics import evaluate
    rows = []
    ests = [("PCA", B.PCA(n_components=K)) for K in (4, 8, 16, 32, 64)]
    ests += [("spherical harmonics", B.SphericalHarmonics(order=o, domain="linear")) for o in (2, 4, 6)]
    ests += [("spherical harmonics", B.SphericalHarmonics(order=6, domain="tonemap"))]
    for family, est in ests:
        rec = est.fit_reconstruct(faces)
        rows.append({"method": est.name, "family": family, "bytes_per_probe": float(est.bytes_per_probe(faces.shape[0])),
                     "psnr_db": evaluate(faces, rec)["psnr_db"]})
    return rows


def dominance(runs, baselines, fmt, k):
    """For every baseline point, the default family's PSNR at the same bytes
    (its curve interpolated in log bytes) minus the baseline's; ``None``
    outside the family's measured range."""
    out = []
    for b in baselines:
        rs = [r for r in runs if r["scene"] == b["scene"] and (r["format"], r["k"]) == (fmt, k)]
        p = psnr_at([r["bytes_per_probe"] for r in rs], [r["psnr_db"] for r in rs], b["bytes_per_probe"]) \
            if len(rs) >= 2 else float("nan")
        out.append({"scene": b["scene"], "method": b["method"], "bytes_per_probe": b["bytes_per_probe"],
                    "margin_db": None if not np.isfinite(p) else p - b["psnr_db"]})
    return out


def psnr_at(bytes_, psnr, budget):
    """A family's PSNR at ``budget`` bytes/probe: its curve interpolated in log bytes (NaN outside)."""
    order = np.argsort(bytes_)
    b, p = np.log(np.asarray(bytes_)[order]), np.asarray(psnr)[order]
    lb = np.log(budget)
    if lb < b[0] - 1e-9 or lb > b[-1] + 1e-9:
        return float("nan")
    return float(np.interp(lb, b, p))


def choose(runs, scenes):
    """Score every family by its mean PSNR at equal bytes (see the module notes)."""
    fams = sorted({(r["format"], r["k"]) for r in runs})
    per_scene = {}
    for s in scenes:
        rs = [r for r in runs if r["scene"] == s]
        curves = {f: ([r["bytes_per_probe"] for r in rs if (r["format"], r["k"]) == f],
                      [r["psnr_db"] for r in rs if (r["format"], r["k"]) == f]) for f in fams}
        curves = {f: c for f, c in curves.items() if len(c[0]) >= 2}
        lo = max(min(c[0]) for c in curves.values())
        hi = min(max(c[0]) for c in curves.values())
        # budgets where every family is measured; when the ranges do not overlap, each
        # family is compared where it overlaps the widest-range family
        budgets = np.geomspace(lo, hi, 5) if lo < hi else None
        scores = {}
        for f, (b, p) in curves.items():
            if budgets is not None:
                scores[family_name(*f)] = float(np.nanmean([psnr_at(b, p, x) for x in budgets]))
        per_scene[s] = {"budgets_bytes_per_probe": None if budgets is None else budgets.tolist(),
                        "mean_psnr_db_at_equal_bytes": scores}
    names = {family_name(*f) for f in fams}
    mean = {n: float(np.mean([per_scene[s]["mean_psnr_db_at_equal_bytes"].get(n, np.nan) for s in scenes]))
            for n in names}
    ok = {n: v for n, v in mean.items() if np.isfinite(v)}
    best = max(ok, key=ok.get) if ok else None
    best_everywhere = all(max(per_scene[s]["mean_psnr_db_at_equal_bytes"],
                              key=per_scene[s]["mean_psnr_db_at_equal_bytes"].get) == best for s in scenes
                          if per_scene[s]["mean_psnr_db_at_equal_bytes"])
    return {"per_scene": per_scene, "mean_over_scenes": mean, "best": best,
            "best_on_every_scene": bool(best_everywhere)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=list(SCENES))
    ap.add_argument("--n", nargs=3, type=int, default=(32, 4, 32), help="probe grid per scene (one page)")
    ap.add_argument("--res", type=int, default=8)
    ap.add_argument("--m", nargs="+", type=int, default=[32, 64, 128, 256], help="prototypes per page")
    ap.add_argument("--taps", type=int, default=4)
    ap.add_argument("--families", nargs="+", default=None,
                    help="FORMAT:K pairs (default: rgba16f, bc6h, bc7 at K = 1 and 2)")
    ap.add_argument("--baselines", action="store_true",
                    help="also fit PCA and SH on every scene and check the default family against them")
    ap.add_argument("--name", default="rd", help="results NAME.json and NAME.png")
    ap.add_argument("--work", default="out/bench_rd")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()

    from probewarp.baker.pipeline import bake_probeset
    from probewarp.baker.report import write_json
    fams = FAMILIES if args.families is None else [(f.split(":")[0], int(f.split(":")[1])) for f in args.families]
    work = Path(args.work)
    runs, baselines = [], []
    for scene in args.scenes:
        probes = scene_probes(scene, args.n, args.res, work)
        if args.baselines:
            for b in baseline_rows(probes.faces_array(np.float32)):
                baselines.append({"scene": scene, **b})
                print(f"{scene:9s} {b['method']:24s}: {b['bytes_per_probe']:7.1f} B/probe {b['psnr_db']:6.2f} dB",
                      flush=True)
        for fmt, k in fams:
            for M in args.m:
                t0 = time.perf_counter()
                r = bake_probeset(probes, work / f"{scene}_{fmt}_k{k}_M{M}.pwa", n_prototypes=M,
                                  n_taps=args.taps, prototype_res=k * args.res, texel_format=fmt.split("-")[0],
                                  warp=not fmt.endswith("-nowarp"), page_probes=10 ** 9, report=False, fresh=True)
                run = {"scene": scene, "format": fmt, "k": k, "M": M, "n_probes": r.n_probes,
                       "bytes_per_probe": r.bytes_per_probe, "psnr_db": r.psnr_db, "log_rmse": r.log_rmse,
                       "seconds": time.perf_counter() - t0}
                runs.append(run)
                print(f"{scene:9s} {family_name(fmt, k):16s} M={M:4d}: {r.bytes_per_probe:7.1f} B/probe "
                      f"{r.psnr_db:6.2f} dB  {run['seconds']:5.0f} s", flush=True)
    choice = choose(runs, args.scenes)
    print("mean PSNR at equal bytes:", {k: round(v, 2) for k, v in choice["mean_over_scenes"].items()})
    print("best:", choice["best"], "(on every scene)" if choice["best_on_every_scene"] else "(on average)")
    result = {**provenance.header("rd", args), "runs": runs, "choice": choice}
    if baselines:
        from probewarp.baker import config
        result["baselines"] = baselines
        result["default_family"] = family_name(config.DEFAULT_TEXEL_FORMAT, 1)
        result["dominance"] = dominance(runs, baselines, config.DEFAULT_TEXEL_FORMAT, 1)
        for d in result["dominance"]:
            m = d["margin_db"]
            print(f"{d['scene']:9s} {result['default_family']} vs {d['method']:24s} at {d['bytes_per_probe']:6.1f} "
                  f"B/probe: " + ("outside the measured range" if m is None else f"{m:+.2f} dB"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{args.name}.json", result)
    plot(out / f"{args.name}.png", runs, args.scenes, baselines)
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.png')}")


def plot(path, runs, scenes, baselines=()):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(scenes), figsize=(5 * len(scenes), 3.8), dpi=110, squeeze=False)
    for ax, s in zip(axes[0], scenes):
        for fmt, k in sorted({(r["format"], r["k"]) for r in runs}):
            rs = sorted([r for r in runs if r["scene"] == s and (r["format"], r["k"]) == (fmt, k)],
                        key=lambda r: r["bytes_per_probe"])
            if rs:
                ax.plot([r["bytes_per_probe"] for r in rs], [r["psnr_db"] for r in rs],
                        marker="o" if k == 1 else "s", ls="-" if k == 1 else "--", label=family_name(fmt, k))
        for fam, mk in (("PCA", "^"), ("spherical harmonics", "v")):
            bs = sorted([b for b in baselines if b["scene"] == s and b["family"] == fam and "tonemap" not in b["method"]],
                        key=lambda b: b["bytes_per_probe"])
            if bs:
                ax.plot([b["bytes_per_probe"] for b in bs], [b["psnr_db"] for b in bs], marker=mk, ls=":",
                        color="grey" if fam == "PCA" else "black", label=fam)
        ax.set_xscale("log")
        ax.set(xlabel="bytes per probe (archive, hash included)", ylabel="PSNR (dB)", title=s)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
