"""Side-by-side comparison (DESIGN-NOTES §6): one run, same probes, same
metric, every method's bytes counted.

Rows: probewarp (defaults; and with BC7 texels), a compact operating point,
its ablations (no warp = the learned dictionary with the same M, N, loss and
domain; one fixed radius; linear blend domain with IRLS; the other
prototype resolution), spherical harmonics (orders 2, 4, 6; fitted on
linear radiance as users do, and order 6 also on tonemapped values), PCA
(dense K), k-means VQ. Held-out test: bake on the even half of a
checkerboard of the grid, decode at the odd half, against blending the
uncompressed known neighbours.

probewarp's bytes are the archive file's size (everything that ships);
baselines count their payload (:mod:`probewarp.baselines`).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import probewarp.baselines as B
from probewarp.baker.metrics import QualityAccumulator
from probewarp.baker import config
from probewarp.baker.pipeline import bake_arrays
from probewarp.baker.report import write_json


def _score(ref, test) -> dict:
    acc = QualityAccumulator()
    for a in range(0, ref.shape[0], 4096):
        acc.update(ref[a:a + 4096], test[a:a + 4096])
    return acc.result()


def _probewarp(positions, faces, grid, tmp, name, query=None, query_ref=None, **kw):
    """One probewarp row: :func:`probewarp.baker.pipeline.bake_arrays` into ``tmp``
    with the default pages (bake, write, score the written file at ``query``
    against ``query_ref``)."""
    r = bake_arrays(positions, faces, Path(tmp) / f"{abs(hash(name))}.pwa", grid=grid,
                    page_probes=config.DEFAULT_PAGE_PROBES, score_positions=query, score_reference=query_ref,
                    **kw)
    return {"method": name, "family": "probewarp", "bytes_per_probe": r.bytes_per_probe,
            "psnr_db": r.psnr_db, "log_rmse": r.log_rmse, "seconds": r.seconds["bake"] + r.seconds["write"],
            "params": {k: v for k, v in kw.items() if k != "progress"},
            "prototype_res": r.prototype_res}


def _baseline(est, faces, family):
    t0 = time.perf_counter()
    rec = est.fit_reconstruct(faces)
    secs = time.perf_counter() - t0
    s = _score(faces, rec)
    return {"method": est.name, "family": family, "bytes_per_probe": float(est.bytes_per_probe(faces.shape[0])),
            "psnr_db": s["psnr_db"], "log_rmse": s["log_rmse"], "seconds": secs}


def compare(positions, faces, *, grid=None, n_prototypes=config.DEFAULT_PROTOTYPES, n_taps=config.DEFAULT_TAPS,
            prototype_res=None, n_iter=config.DEFAULT_MAX_ITERATIONS,
            seed=0, pca_components=(4, 8, 16, 32, 64), heldout=True, super_resolution=True,
            progress=None) -> dict:
    """Run every method on the same probes.

    Parameters
    ----------
    positions : (P, 3) float
    faces : (P, 6, R, R, 3) float linear radiance
    grid : :class:`~probewarp.format.grid.Grid` (dense) or None; the held-out test needs one
    super_resolution : bool
        Include the Rp = 2R ablation (the slowest row) when Rp defaults to R.
    progress : callable(str) or None, called before each method

    Returns
    -------
    dict with ``rows`` (list of dicts: method, family, bytes_per_probe,
    psnr_db, log_rmse, seconds) and ``heldout`` (list of such rows, or None).
    """
    positions = np.asarray(positions, np.float64)
    faces = np.asarray(faces, np.float32)
    R = faces.shape[2]
    say = progress or (lambda s: None)
    common = dict(n_prototypes=n_prototypes, n_taps=n_taps, n_iter=n_iter, seed=seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="probewarp-compare-") as tmp:
        compact_fmt = "bc7" if (R // 2) % 4 == 0 and R >= 8 else "rgba8"
        plan = [
            ("probewarp", dict(prototype_res=prototype_res)),
            ("probewarp, bc7 texels", dict(prototype_res=prototype_res, texel_format="bc7"))
            if (prototype_res or R) % 4 == 0 and config.DEFAULT_TEXEL_FORMAT != "bc7" else None,
            ("probewarp, rgba16f texels", dict(prototype_res=prototype_res, texel_format="rgba16f"))
            if config.DEFAULT_TEXEL_FORMAT != "rgba16f" else None,
            (f"probewarp compact ({compact_fmt}, Rp = {max(2, R // 2)})",
             dict(prototype_res=max(2, R // 2), texel_format=compact_fmt)),
            ("ablation: no warp (learned dictionary)", dict(prototype_res=prototype_res, warp=False)),
            ("ablation: one fixed radius", dict(prototype_res=prototype_res, fit_radius=False)),
            ("ablation: linear blend domain (IRLS)", dict(prototype_res=prototype_res, domain="linear")),
            (f"ablation: Rp = R = {R}", dict(prototype_res=R)) if (prototype_res or R) != R else
            (f"ablation: Rp = 2R = {2 * R}", dict(prototype_res=2 * R)) if super_resolution else None,
        ]
        plan = [p for p in plan if p is not None]
        for name, kw in plan:
            say(name)
            rows.append(_probewarp(positions, faces, grid, tmp, name, **common, **kw))
        for order in (2, 4, 6):
            say(f"SH order {order}")
            rows.append(_baseline(B.SphericalHarmonics(order=order, domain="linear"), faces, "spherical harmonics"))
        say("SH order 6 (tonemap)")
        rows.append(_baseline(B.SphericalHarmonics(order=6, domain="tonemap"), faces, "spherical harmonics"))
        for K in pca_components:
            if K < positions.shape[0]:
                say(f"PCA K={K}")
                rows.append(_baseline(B.PCA(n_components=K), faces, "PCA"))
        say("k-means VQ")
        rows.append(_baseline(B.VectorQuantizer(n_clusters=min(n_prototypes, positions.shape[0]), seed=seed),
                              faces, "k-means VQ"))

        held = None
        if heldout and grid is not None:
            train, test = grid.checkerboard()
            say("held-out: probewarp")
            pw = _probewarp(positions[train], faces[train], grid.with_dense(False), tmp,
                            "probewarp (baked on the other half)",
                            query=positions[test], query_ref=faces[test],
                            **dict(common, n_prototypes=min(n_prototypes, train.size)), prototype_res=prototype_res)
            pw["bytes_per_probe"] = None
            say("held-out: neighbour blend")
            t0 = time.perf_counter()
            nb = B.neighbour_blend(positions[train], faces[train], grid.shape, grid.lo, grid.hi, positions[test])
            s = _score(faces[test], nb)
            held = [pw, {"method": "blend of uncompressed neighbours", "family": "neighbour blend",
                         "bytes_per_probe": None, "psnr_db": s["psnr_db"], "log_rmse": s["log_rmse"],
                         "seconds": time.perf_counter() - t0}]
    return {"n_probes": int(positions.shape[0]), "probe_res": int(R), "n_prototypes": n_prototypes,
            "n_taps": n_taps, "rows": rows, "heldout": held}


def compare_probeset(probes, out, *, progress=None, **kw) -> dict:
    """:func:`compare` on a :class:`~probewarp.baker.probeset.ProbeSet`, written
    to ``out/compare.json`` and the rate-distortion plot ``out/compare.png``.

    The held-out test and the SH grids need a full grid: a sparse grid
    compares as a scattered set. ``kw``: :func:`compare`'s parameters.
    Returns the result dict (with ``input``, the set's source).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = probes.lattice if probes.grid_dense else None
    result = compare(probes.positions, probes.faces_array(np.float32), grid=grid, progress=progress, **kw)
    result["input"] = str(probes.source)
    write_json(out / "compare.json", result)
    plot_rate_distortion(out / "compare.png", result)
    return result


def format_table(result: dict) -> str:
    """The comparison as a fixed-width text table."""
    lines = [f"{result['n_probes']} probes at R={result['probe_res']}, M={result['n_prototypes']}, "
             f"N={result['n_taps']}; PSNR on tonemapped values (DESIGN-NOTES §5)", ""]
    head = f"{'method':<48} {'bytes/probe':>11} {'PSNR dB':>8} {'log-RMSE':>9} {'seconds':>8}"
    lines += [head, "-" * len(head)]
    for r in result["rows"]:
        lines.append(f"{r['method']:<48} {r['bytes_per_probe']:>11.1f} {r['psnr_db']:>8.2f} "
                     f"{r['log_rmse']:>9.4f} {r['seconds']:>8.1f}")
    if result.get("heldout"):
        lines += ["", "held-out positions (bake on one half of a checkerboard, decode at the other):", head,
                  "-" * len(head)]
        for r in result["heldout"]:
            lines.append(f"{r['method']:<48} {'-':>11} {r['psnr_db']:>8.2f} {r['log_rmse']:>9.4f} "
                         f"{r['seconds']:>8.1f}")
    return "\n".join(lines)


def plot_rate_distortion(path, result: dict) -> None:
    """Bytes per probe (log) against PSNR, one marker style per family."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    markers = {"probewarp": "o", "spherical harmonics": "s", "PCA": "^", "k-means VQ": "D"}
    fams = {}
    for r in result["rows"]:
        fams.setdefault(r["family"], []).append(r)
    for fam, rs in fams.items():
        rs = sorted(rs, key=lambda r: r["bytes_per_probe"])
        ax.plot([r["bytes_per_probe"] for r in rs], [r["psnr_db"] for r in rs], markers.get(fam, "x"),
                ls="-" if fam in ("PCA",) else "none", label=fam, ms=6)
        for r in rs:
            ax.annotate(r["method"].replace("ablation: ", ""), (r["bytes_per_probe"], r["psnr_db"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per probe (everything that ships)")
    ax.set_ylabel("PSNR (dB), tonemapped")
    ax.set_title(f"rate-distortion, {result['n_probes']} probes at R={result['probe_res']}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
