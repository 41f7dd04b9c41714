"""Bake reports: the JSON beside an archive and its plots (loss curve,
per-probe error over the grid). Writes files; never prints."""
from __future__ import annotations

import json
from probewarp.format.atomic import atomic_path
from pathlib import Path

import numpy as np


def report_paths(archive) -> dict:
    """Where the report files of ``archive`` go: ``{json, loss_png, error_png, border_png}``."""
    a = Path(archive)
    stem = a.with_suffix("")
    return {"json": Path(f"{stem}.report.json"), "loss_png": Path(f"{stem}.loss.png"),
            "error_png": Path(f"{stem}.error.png"), "border_png": Path(f"{stem}.border.png")}


def write_json(path, data: dict) -> None:
    """Atomic JSON write (numpy scalars and arrays converted)."""
    def conv(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=conv))


def plot_loss(path, pages_history: list[list[dict]]) -> None:
    """PSNR of the training loss after every phase, one line per page."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for p, hist in enumerate(pages_history):
        pts = [h for h in hist if "psnr_db" in h]
        ax.plot(range(len(pts)), [h["psnr_db"] for h in pts], marker="o", ms=3,
                label=f"page {p}" if len(pages_history) <= 8 else None)
        if p == 0:
            ax.set_xticks(range(len(pts)))
            ax.set_xticklabels([f"{h['stage'][:5]}{h['iteration']}" for h in pts], rotation=60, fontsize=7)
    ax.set_ylabel("PSNR of the loss (dB)")
    ax.set_title("bake convergence")
    ax.grid(alpha=0.3)
    if len(pages_history) <= 8:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_error_map(path, positions: np.ndarray, psnr: np.ndarray) -> None:
    """Per-probe PSNR seen from above (x, z), averaged over y."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=110)
    finite = np.where(np.isfinite(psnr), psnr, np.nan)
    keys, inv = np.unique(np.round(positions[:, [0, 2]], 6), axis=0, return_inverse=True)
    mean = np.bincount(inv.ravel(), weights=np.nan_to_num(finite, nan=0.0)) / np.maximum(
        np.bincount(inv.ravel(), weights=np.isfinite(finite)), 1)
    sc = ax.scatter(keys[:, 0], keys[:, 1], c=mean, s=12, cmap="viridis", marker="s")
    fig.colorbar(sc, ax=ax, label="PSNR (dB), mean over y")
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    ax.set_aspect("equal")
    ax.set_title("per-probe error")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


#: Probes whose nearest probe of another page is at most this many probe
#: spacings away form a page's border band (the layer at a brick face is 1).
BORDER_BAND = 1.5
#: Probes at least this far from any other page are interior.
BORDER_INTERIOR = 3.0


def _psnr_of_mean(psnr: np.ndarray) -> float:
    """PSNR of the mean per-probe MSE (peak 1, DESIGN-NOTES §5), inf if exact."""
    if psnr.size == 0:
        return float("nan")
    mse = float(np.mean(np.where(np.isfinite(psnr), 10.0 ** (-psnr / 10.0), 0.0)))
    return float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf")


def border_stats(distance: np.ndarray, psnr: np.ndarray) -> dict:
    """Error against the distance to the nearest page border.

    ``distance`` (P,) in probe spacings to the nearest probe of another page
    (:func:`probewarp.baker.bake.page_border_distance`, inf in one-page
    bakes), ``psnr`` (P,) per-probe PSNR. Returns the band's and the
    interior's PSNR (of their mean MSE), ``gap_db`` = interior - band (the
    seam cost: positive when border probes are worse) and per-distance bins.
    """
    distance = np.asarray(distance, np.float64)
    psnr = np.asarray(psnr, np.float64)
    band = distance <= BORDER_BAND
    interior = distance >= BORDER_INTERIOR
    edges = [0.0, 1.5, 2.5, 3.5, 4.5, np.inf]
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (distance > lo) & (distance <= hi) if lo > 0 else distance <= hi
        if sel.any():
            bins.append({"distance_lo": lo, "distance_hi": hi if np.isfinite(hi) else None,
                         "n_probes": int(sel.sum()), "psnr_db": _psnr_of_mean(psnr[sel])})
    out = {"band_spacings": BORDER_BAND, "interior_spacings": BORDER_INTERIOR,
           "n_band": int(band.sum()), "n_interior": int(interior.sum()),
           "band_psnr_db": _psnr_of_mean(psnr[band]), "interior_psnr_db": _psnr_of_mean(psnr[interior]),
           "bins": bins}
    out["gap_db"] = (out["interior_psnr_db"] - out["band_psnr_db"]) if band.any() and interior.any() else None
    return out


def plot_border(path, stats: dict) -> None:
    """PSNR against the distance to the nearest page border (bins of :func:`border_stats`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
    bins = stats["bins"]
    if bins:
        labels = [f"{b['distance_lo']:.1f}-{b['distance_hi']:.1f}" if b["distance_hi"] is not None
                  else f">{b['distance_lo']:.1f}" for b in bins]
        ax.bar(range(len(bins)), [b["psnr_db"] for b in bins], color="#4c72b0")
        for i, b in enumerate(bins):
            ax.text(i, b["psnr_db"], f"{b['n_probes']}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(bins)))
        ax.set_xticklabels(labels, fontsize=8)
        lo = min(b["psnr_db"] for b in bins)
        hi = max(b["psnr_db"] for b in bins)
        ax.set_ylim(lo - 1.0, hi + 0.5)
    gap = stats.get("gap_db")
    ax.set_title("error vs distance to a page border" + (f" (gap {gap:+.2f} dB)" if gap is not None else ""),
                 fontsize=9)
    ax.set_xlabel("distance to the nearest probe of another page (probe spacings)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
