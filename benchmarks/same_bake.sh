#!/usr/bin/env bash
# Same seed, same archive? Bake five small archives with one probewarp and
# compare them with another's: archive bytes, and values decoded on the CPU
# and on GL (llvmpipe) at 40 random positions.
#
#   PROBEWARP=/old/checkout/.venv/bin/probewarp bash benchmarks/same_bake.sh ref DIR
#   bash benchmarks/same_bake.sh check DIR        # with this tree's .venv
#
# `ref` captures a small built-in grid (6 x 2 x 6, R = 8), derives a sparse
# and a scattered set from it, bakes dense rgba16f, bc7, Rp = 2R bc6h, sparse
# and scattered archives and decodes them. `check` re-bakes the same inputs
# into DIR/new and prints IDENTICAL/DIFFER per archive and the largest
# decoded difference per file. Nothing here is timed.
set -euo pipefail
mode=${1:?usage: same_bake.sh ref|check DIR}
dir=${2:?usage: same_bake.sh ref|check DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
PW=${PROBEWARP:-$here/.venv/bin/probewarp}
PY=$(dirname "$PW")/python

bake_all() {   # $1: input folder, cwd: output folder
    local in=$1
    "$PW" bake "$in/grid.npz" -o dense.pwa --prototypes 16 --taps 3 --iterations 2 --page-probes 40 >/dev/null
    "$PW" bake "$in/grid.npz" -o bc7.pwa --prototypes 16 --taps 3 --iterations 1 --format bc7 --page-probes 40 >/dev/null
    "$PW" bake "$in/grid.npz" -o sr.pwa --prototypes 12 --taps 3 --iterations 1 --prototype-res 16 --format bc6h >/dev/null
    "$PW" bake "$in/sparse.npz" -o sparse.pwa --prototypes 12 --taps 3 --iterations 1 --page-probes 30 >/dev/null
    "$PW" bake "$in/scattered.npz" -o scattered.pwa --prototypes 12 --taps 3 --iterations 1 >/dev/null
    for a in dense bc7 sr sparse scattered; do "$PW" decode $a.pwa --at "$in/q.npy" -o dec_$a.npz >/dev/null; done
    for a in dense bc7 sr sparse; do "$PW" decode $a.pwa --at "$in/q.npy" -o decgl_$a.npz --backend gl >/dev/null; done
    sha256sum ./*.pwa > sums.txt
}

case $mode in
ref)
    mkdir -p "$dir" && cd "$dir"
    "$PW" capture builtin --n 6 2 6 --res 8 -o grid.npz >/dev/null
    "$PY" - <<'EOF'
import numpy as np
d = dict(np.load("grid.npz"))
rng = np.random.default_rng(1)
keep = np.sort(rng.choice(len(d["positions"]), 50, replace=False))
s = dict(d); s["positions"] = d["positions"][keep]; s["faces"] = d["faces"][keep]
np.savez("sparse.npz", **s)
jitter = rng.normal(scale=0.05, size=(50, 3)).astype(np.float32)
np.savez("scattered.npz", positions=d["positions"][keep] + jitter, faces=d["faces"][keep])
np.save("q.npy", rng.uniform(d["lo"], d["hi"], size=(40, 3)).astype(np.float32))
EOF
    bake_all "$dir"
    echo "reference archives and decodes in $dir"
    ;;
check)
    cd "$dir" && rm -rf new && mkdir new && cd new
    bake_all "$dir"
    "$PY" - <<'EOF'
import glob
import numpy as np
ref = dict(line.split()[::-1] for line in open("../sums.txt"))
new = dict(line.split()[::-1] for line in open("sums.txt"))
for k in sorted(ref):
    print(f"{k:16s} bytes {'IDENTICAL' if ref[k] == new.get(k) else 'DIFFER'}")
for f in sorted(glob.glob("dec*.npz")):
    a, b = np.load("../" + f), np.load(f)
    key = [k for k in a.files if a[k].ndim >= 4][0]
    print(f"{f:22s} max |decoded diff| {float(np.abs(a[key].astype(np.float64) - b[key]).max()):.3g}")
EOF
    ;;
*) echo "usage: same_bake.sh ref|check DIR" >&2; exit 2 ;;
esac
