"""Size of the archive's spatial hash section (format version 2), per probe.

For dense grids of the built-in benchmark's shape family (and a sparse one)
it builds the hash exactly as ``write_archive`` does (``build_hash``, lz4
level 9) and reports its bytes per probe: the overhead version 2 adds to
every probewarp archive's bytes per probe. Deterministic, no timing.
Writes ``benchmarks/results/hash.json``.

    .venv/bin/python benchmarks/bench_hash.py      # a few seconds
"""
from __future__ import annotations

import json
from pathlib import Path

import lz4.frame
import numpy as np

from probewarp.format.archive import Page, build_hash
from probewarp.baker.probeset import ProbeSet

RESULTS = Path(__file__).resolve().parent / "results"


def hash_bytes(shape, keep=None, page_probes=16384):
    lo, hi = (-18.0, 0.6, -18.0), (18.0, 5.4, 18.0)
    pos = ProbeSet.grid(lo, hi, shape).astype(np.float64)
    if keep is not None:
        pos = pos[np.random.default_rng(0).random(len(pos)) < keep]
    meta = {"grid": {"shape": list(shape), "lo": list(lo), "hi": list(hi), "dense": keep is None}}
    pages = [Page(None, None, None, np.arange(a, min(a + page_probes, len(pos))), pos[a:a + page_probes], None, None)
             for a in range(0, len(pos), page_probes)]
    table, max_probe = build_hash(meta, pages)
    comp = len(lz4.frame.compress(table.astype("<u4").tobytes(), compression_level=9))
    return {"grid": list(shape), "dense": keep is None, "n_probes": int(len(pos)),
            "capacity": int(table.shape[0]), "max_probe": int(max_probe),
            "raw_bytes": int(table.nbytes), "bytes": comp, "bytes_per_probe": comp / len(pos)}


def main():
    rows = [hash_bytes((16, 4, 16)), hash_bytes((32, 8, 32)), hash_bytes((64, 8, 64)),
            hash_bytes((32, 8, 32), keep=0.5)]
    for r in rows:
        print(f"{'x'.join(map(str, r['grid']))} {'dense' if r['dense'] else 'sparse'}: {r['n_probes']} probes, "
              f"capacity {r['capacity']}, max probe {r['max_probe']}, {r['bytes']} bytes "
              f"= {r['bytes_per_probe']:.2f} B/probe")
    RESULTS.mkdir(exist_ok=True)
    out = {"command": ".venv/bin/python benchmarks/bench_hash.py", "rows": rows}
    (RESULTS / "hash.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS / 'hash.json'}")


if __name__ == "__main__":
    main()
