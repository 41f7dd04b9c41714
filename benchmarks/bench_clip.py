"""What the brightest-input clip of the decoders changes (docs/FORMAT.md ``radiance_max``).

On the flythrough's archives (16 x 4 x 16 probes at R = 16 baked as ``make
demo`` bakes them; made by ``bench_flythrough.py``, or here if missing), the
CPU decoder with the clip and with the old rule (``T^-1`` clipped at ``1 -
1e-7`` only), at 64 positions between probes and at every probe: the share of
decoded texels above the brightest input texel, the mean decoded radiance
against the probes' mean, and the PSNR at the probes.

    .venv/bin/python benchmarks/bench_clip.py      # -> benchmarks/results/clip.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import provenance  # noqa: E402  (benchmarks/provenance.py)

import numpy as np  # noqa: E402



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=["town", "interior"])
    ap.add_argument("--work", default="out/bench")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    import scenes
    from probewarp.baker.decoder import Decoder
    from probewarp.baker.pipeline import bake_probeset
    from probewarp.demo import job
    from probewarp.format import constants
    work = Path(args.work)
    rows = []
    for name in args.scenes:
        probes = scenes.scene_probes(name, (16, 4, 16), 16, work)
        archive = work / f"fly_{name}.pwa"
        if not archive.exists():
            bake_probeset(probes, archive, n_prototypes=job.PROTOTYPES, page_probes=job.PAGE_PROBES, n_taps=4,
                          seed=0, validate=False)
        pos = np.asarray(probes.positions, np.float64)
        faces = np.asarray(probes.faces, np.float32)
        rng = np.random.default_rng(0)
        q = pos[rng.choice(len(pos), 64)] + rng.normal(0, 0.05, (64, 3))
        dec = Decoder(archive)
        row = {"scene": name, "radiance_max": float(dec.meta["radiance_max"]), "input_mean": float(faces.mean())}
        for rule, y_max in (("clip", dec.y_max), ("old", constants.TONEMAP_Y_MAX)):
            dec.y_max = y_max
            d = dec.decode(q)
            row[rule] = {"decoded_max": float(d.max()),
                         "share_above_input_max": float((d > row["radiance_max"]).mean()),
                         "mean_radiance": float(d.mean()),
                         "psnr_at_probes_db": dec.score(pos, faces).result()["psnr_db"]}
        rows.append(row)
        print(f"{name}: old rule {100 * row['old']['share_above_input_max']:.3f} % of texels above the "
              f"brightest input, mean radiance x{row['old']['mean_radiance'] / row['input_mean']:.0f}; clip: "
              f"x{row['clip']['mean_radiance'] / row['input_mean']:.2f}; PSNR "
              f"{row['old']['psnr_at_probes_db']:.4f} -> {row['clip']['psnr_at_probes_db']:.4f} dB", flush=True)
    provenance.write(args.out, "clip", "clip", args, rows=rows)


if __name__ == "__main__":
    main()
