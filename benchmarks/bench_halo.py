"""Benchmark: the seam at page borders against the halo width, on two scenes.

Each page is fitted on its own probes plus a halo of neighbouring probes
(``--halo``, in probe spacings). This bakes the same probes with several
halos and records, from the written archive: the PSNR of the border band
(probes whose nearest probe of another page is at most 1.5 spacings away)
and of the interior (at least 3 spacings), their gap, the overall PSNR,
bytes per probe and the bake time. The band and the interior differ in
content too (probes at brick faces are not a random sample), so the same
probes are also baked as one page (no borders, as many prototypes in all)
and scored with the same distances: the **seam** is the paged gap minus
that one-page gap. The default halo is the smallest whose seam stays
within 0.3 dB on every scene.

Scenes: the built-in town (captured, R = 8) and the procedural interior of
``benchmarks/fields.py`` (strong parallax). Pages are smaller than the
default (``--page-probes``, with M scaled to keep probes per prototype) so
that every page has both a band and an interior.

    .venv/bin/python benchmarks/bench_halo.py                 # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_halo.py --halos 0 1 --scenes interior

Writes benchmarks/results/halo.json and halo.png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import provenance  # noqa: E402  (benchmarks/provenance.py)
from scenes import SCENES, scene_probes  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=list(SCENES))
    ap.add_argument("--halos", nargs="+", type=float, default=[0, 1, 2])
    ap.add_argument("--n", nargs=3, type=int, default=(32, 4, 32), help="probe grid per scene")
    ap.add_argument("--res", type=int, default=8)
    ap.add_argument("--page-probes", type=int, default=1024)
    ap.add_argument("--prototypes", type=int, default=32, help="M per page (default keeps 32 probes per prototype)")
    ap.add_argument("--taps", type=int, default=4)
    ap.add_argument("--work", default="out/bench_halo")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()

    from probewarp.baker.pipeline import bake_probeset
    from probewarp.baker.report import write_json
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    from probewarp.baker import report as rep
    from probewarp.baker.bake import page_border_distance, plan_pages
    for scene in args.scenes:
        probes = scene_probes(scene, args.n, args.res, work)
        # the content's own band-vs-interior difference: one page (no borders at all)
        # with as many prototypes as the paged bakes have in all, scored with the
        # paged plan's distances; the seam is what paging adds to it
        n_pages = len(plan_pages(probes.positions, args.page_probes, probes.lattice, 0))
        one = bake_probeset(probes, work / f"{scene}_one.pwa", n_prototypes=args.prototypes * n_pages,
                            n_taps=args.taps, page_probes=10 ** 9, report=False, fresh=True)
        dist = page_border_distance(probes.positions, plan_pages(probes.positions, args.page_probes,
                                                                 probes.lattice, 0), probes.lattice)
        content = rep.border_stats(dist, one.per_probe_psnr_db)
        print(f"{scene:9s} one page (M={args.prototypes * n_pages}): PSNR {one.psnr_db:.2f} dB, "
              f"content gap {content['gap_db']:+.2f} dB", flush=True)
        runs.append({"scene": scene, "halo": None, "one_page": True, "psnr_db": one.psnr_db,
                     "gap_db": content["gap_db"], "band_psnr_db": content["band_psnr_db"],
                     "interior_psnr_db": content["interior_psnr_db"], "bytes_per_probe": one.bytes_per_probe})
        for halo in args.halos:
            t0 = time.perf_counter()
            r = bake_probeset(probes, work / f"{scene}_h{halo:g}.pwa", n_prototypes=args.prototypes,
                              n_taps=args.taps, page_probes=args.page_probes, halo=halo, report=False,
                              fresh=True)
            b = r.border
            run = {"scene": scene, "halo": halo, "n_probes": r.n_probes, "n_pages": r.n_pages,
                   "psnr_db": r.psnr_db, "band_psnr_db": b["band_psnr_db"],
                   "interior_psnr_db": b["interior_psnr_db"], "gap_db": b["gap_db"], "n_band": b["n_band"],
                   "n_interior": b["n_interior"], "bytes_per_probe": r.bytes_per_probe,
                   "seconds": time.perf_counter() - t0,
                   "probes_with_halo": r.throughput["probes_with_halo"], "bins": b["bins"],
                   "content_gap_db": content["gap_db"], "seam_db": b["gap_db"] - content["gap_db"]}
            runs.append(run)
            print(f"{scene:9s} halo {halo:g}: PSNR {r.psnr_db:.2f} dB, band {b['band_psnr_db']:.2f}, "
                  f"interior {b['interior_psnr_db']:.2f}, gap {b['gap_db']:+.2f} dB, "
                  f"seam {run['seam_db']:+.2f} dB, "
                  f"{r.bytes_per_probe:.1f} B/probe, {run['seconds']:.0f} s", flush=True)
    result = {**provenance.header("halo", args), "bound_db": 0.3, "runs": runs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "halo.json", result)
    plot(out / "halo.png", runs)
    print(f"wrote {out / 'halo.json'} and {out / 'halo.png'}")


def plot(path, runs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=110)
    for scene in sorted({r["scene"] for r in runs}):
        rs = [r for r in runs if r["scene"] == scene and r.get("halo") is not None]
        h = [r["halo"] for r in rs]
        axes[0].plot(h, [r["seam_db"] for r in rs], marker="o", label=scene)
        axes[1].plot(h, [r["psnr_db"] for r in rs], marker="o", label=scene)
    axes[0].axhline(0.3, ls="--", color="k", lw=0.8, label="bound 0.3 dB")
    axes[0].axhline(0.0, color="k", lw=0.5)
    axes[0].set(xlabel="halo (probe spacings)", ylabel="seam (dB)",
                title="seam: band-interior gap minus the one-page gap")
    axes[1].set(xlabel="halo (probe spacings)", ylabel="PSNR (dB)", title="overall quality")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
