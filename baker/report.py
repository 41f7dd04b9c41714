"""Bake reports: the JSON beside an archive and its plots (loss curve,
per-probe error over the grid). Writes files; never prints."""
from __future__ import annotations

import json
from probewarp.format.atomic import atomic_path
from pathlib import Path

import numpy as np


def report_paths(archive) -> dict:
    """Where the report files of ``archive`` go: ``{json, loss_png, error_png}``."""
    a = Path(archive)
    stem = a.with_suffix("")
    return {"json": Path(f"{stem}.report.json"), "loss_png": Path(f"{stem}.loss.png"),
            "error_png": Path(f"{stem}.error.png")}


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
