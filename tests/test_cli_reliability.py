"""The command line under bad input, crafted input, failing disks and kills.

- **Bad input, every command** (``BAD``): missing, unreadable and mistyped
  files, probe sets of the wrong shapes and dtypes, NaN / Inf / duplicate
  positions, parameters that cannot work (N > M, M > P, an Rp or decode R
  that does not fit, zero counts). Each case: the documented exit code (3),
  one line on stderr naming the file (and probe and field where there is
  one), no traceback, nothing written (the output folder stays empty, the
  inputs untouched). Cases ``tests/test_cli.py`` already has (NaN decode
  positions, a corrupted archive, negative radiance, ``--sanitize`` without
  ``-o``, a non-``.pwa`` bake output, ``info`` of a missing file) are not
  repeated.
- **Unwritable output folders and full disks**, every command that writes:
  exit 4, ``OUT: cannot write (...)``, nothing left (no output, no
  temporaries, no checkpoint). The disk fills for real in a subprocess (a
  file-size limit, ``RLIMIT_FSIZE``: writes fail with EFBIG wherever they
  happen) and, in-process, ``fsync`` reports ENOSPC (what a full disk
  reports for delayed allocation). ``/dev/full`` does not apply: every
  output has a required suffix and is written to a temporary beside it,
  then renamed.
- **Crafted input stays in its box**: ``import FOLDER --csv`` refuses names
  with a path (``../``, absolute, ``sub/x``) and symbolic links that lead
  out of FOLDER, naming the CSV line and the name.
- **Killed captures**: ``capture ... -o X.npz`` / ``X.zarr`` killed with
  SIGKILL at several points never leave an X that loads, temporaries are
  clearly named and do not load as probe sets, and a rerun gives the bytes
  (npz) or probes (zarr) of an uninterrupted run; the same capture twice
  gives the same bytes.
"""
from __future__ import annotations

import errno
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from probewarp.baker.probeset import ProbeSet
from probewarp.cli.main import main
from test_prototypes import _field

CLI = [sys.executable, "-m", "probewarp.cli.main"]
#: A tiny bake, compare and demo: seconds each.
BAKE = ["--prototypes", "4", "--taps", "2", "--iterations", "1"]
CMP = BAKE + ["--no-heldout", "--no-super-resolution"]
DEMO = ["--n", "2", "2", "2", "--res", "4", "--prototypes", "4", "--taps", "2", "--iterations", "1",
        "--page-probes", "8", "--no-compare", "--no-fly"]
CAP = ["--n", "2", "2", "2", "--res", "4", "--supersample", "1"]
FLY = ["--headless", "--frames", "2", "--size", "32", "18", "--no-video"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------
# inputs: one folder of good and bad files, shared by every case (never modified)
# ---------------------------------------------------------------------------

def _write_set(path, positions, faces):
    np.savez(path, positions=positions, faces=faces)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from probewarp.baker.hdrio import write_exr
    from probewarp.baker.panorama import cube_to_cross
    d = tmp_path_factory.mktemp("inputs")
    g, faces = _field(R=4, n=3)                                   # 27 probes, R = 4
    pos = g.astype(np.float32)
    ProbeSet(positions=pos, faces=faces, grid_shape=(3, 3, 3), lo=g[0], hi=g[-1]).save(d / "good.npz")
    _write_set(d / "rank.npz", pos, faces[:, 0])                  # faces (P, R, R, 3)
    _write_set(d / "faces6.npz", pos, faces[..., :2])              # faces (P, 6, R, R, 2)
    _write_set(d / "int.npz", pos, (faces * 100).astype(np.int32))
    _write_set(d / "pos2.npz", pos[:, :2], faces)                  # positions (P, 2)
    f = faces.copy()
    f[5, 1, 2, 3, 0] = np.nan
    _write_set(d / "nan.npz", pos, f)
    f = faces.copy()
    f[6, 2, 0, 0, 1] = np.inf
    _write_set(d / "inf.npz", pos, f)
    p = pos.copy()
    p[7] = p[2]
    _write_set(d / "dup.npz", p, faces)
    p = pos.copy()
    p[8, 1] = np.inf
    _write_set(d / "infpos.npz", p, faces)
    _write_set(d / "few.npz", pos[:3], faces[:3])                  # 3 probes < 4 prototypes
    np.savez(d / "nofaces.npz", positions=pos)
    (d / "garbage.npz").write_bytes(b"not a zip archive")
    (d / "garbage.pwa").write_bytes(b"PWARCH but not really")
    (d / "folder.npz").mkdir()                                     # a folder where a file goes
    (d / "folder.pwa").mkdir()
    (d / "plain_dir").mkdir()
    (d / "a_file").write_text("a file where a folder goes\n")
    assert main(["bake", str(d / "good.npz"), "-o", str(d / "arch.pwa"), "--no-score"] + BAKE) == 0
    np.save(d / "q.npy", np.array([[0.1, 0.2, 0.3], [0.5, -0.5, 0.0]]))
    np.save(d / "q2.npy", np.zeros((3, 2)))
    np.save(d / "qstr.npy", np.array([["a", "b", "c"]]))
    # an image folder: 3 cube-cross EXRs and their CSV; and broken variants of the CSV
    img = d / "img"
    img.mkdir()
    for i in range(3):
        write_exr(img / f"p{i}.exr", cube_to_cross(faces[i]))
    (img / "positions.csv").write_text("name,x,y,z\np0,0,0,0\np1,0,0,1\np2,0,1,0\n")
    (d / "dup.csv").write_text("name,x,y,z\np0,0,0,0\np1,0,0,1\np2,0,0,0\n")
    (d / "nan.csv").write_text("name,x,y,z\np0,0,0,0\np1,0,nan,1\np2,0,1,0\n")
    nimg = d / "nanimg"
    nimg.mkdir()
    for i in range(2):
        c = faces[i].copy()
        if i == 1:
            c[3, 1, 1, 2] = np.nan
        write_exr(nimg / f"p{i}.exr", cube_to_cross(c))
    (d / "nanimg.csv").write_text("p0,0,0,0\np1,1,0,0\n")
    (d / "bad.obj").write_text("this is no mesh\n")
    (d / "broken_path.json").write_text('{"frames": 3, "keys": [')
    return d


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in sorted(d.rglob("*"))}


def _error_line(stderr: str) -> str:
    """The one line of the message (asserting there is exactly one and no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("probewarp: error: "), stderr
    return lines[0]


def _run(argv, timeout=300, preexec_fn=None, cwd=None):
    return subprocess.run(CLI + argv, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn,
                          cwd=cwd, stdin=subprocess.DEVNULL)


def _fill(argv, i, o):
    return [a.format(i=i, o=o) for a in argv]


# ---------------------------------------------------------------------------
# 1. bad input, every command: exit 3, one line naming the file/probe/field, nothing written
# ---------------------------------------------------------------------------

# (id, argv ({i}: the inputs folder, {o}: an empty output folder), strings the message must hold)
BAD = [
    # capture
    ("capture-scene-missing", ["capture", "{i}/nope.obj", "--lo", "0", "0", "0", "--hi", "1", "1", "1", *CAP,
                               "-o", "{o}/c.npz"], ["nope.obj", "not found"]),
    ("capture-scene-is-folder", ["capture", "{i}/plain_dir", "--lo", "0", "0", "0", "--hi", "1", "1", "1",
                                 *CAP, "-o", "{o}/c.npz"], ["plain_dir", "not a file"]),
    ("capture-scene-unreadable-kind", ["capture", "{i}/garbage.npz", "--lo", "0", "0", "0", "--hi", "1", "1",
                                       "1", *CAP, "-o", "{o}/c.npz"], ["garbage.npz", "scene"]),
    ("capture-scene-no-triangles", ["capture", "{i}/bad.obj", "--lo", "0", "0", "0", "--hi", "1", "1", "1",
                                    *CAP, "-o", "{o}/c.npz"], ["bad.obj", "no triangles"]),
    ("capture-builtin-seed", ["capture", "builtin:abc", *CAP, "-o", "{o}/c.npz"], ["builtin:abc", "seed"]),
    ("capture-res-0", ["capture", "builtin", "--n", "2", "2", "2", "--res", "0", "-o", "{o}/c.npz"], ["--res 0"]),
    ("capture-supersample-0", ["capture", "builtin", "--n", "2", "2", "2", "--res", "4", "--supersample", "0",
                               "-o", "{o}/c.zarr"], ["--supersample 0"]),
    ("capture-n-0", ["capture", "builtin", "--n", "0", "2", "2", "--res", "4", "-o", "{o}/c.npz"], ["--n 0 2 2"]),
    ("capture-lo-not-finite", ["capture", "builtin", *CAP, "--lo", "nan", "0", "0", "--hi", "1", "1", "1",
                               "-o", "{o}/c.npz"], ["--lo"]),
    ("capture-lo-equals-hi", ["capture", "builtin", *CAP, "--lo", "0", "0", "0", "--hi", "0", "1", "1",
                              "-o", "{o}/c.npz"], ["--lo/--hi", "x"]),
    ("capture-output-suffix", ["capture", "builtin", *CAP, "-o", "{o}/c.txt"], ["c.txt"]),
    ("capture-output-under-a-file", ["capture", "builtin", *CAP, "-o", "{i}/a_file/c.npz"],
     ["a_file", "not a folder"]),
    ("capture-output-is-a-folder", ["capture", "builtin", *CAP, "-o", "{i}/folder.npz"],
     ["folder.npz", "is a folder"]),
    # import
    ("import-folder-missing", ["import", "{i}/nope", "--csv", "{i}/img/positions.csv", "-o", "{o}/p.npz"],
     ["nope", "not found"]),
    ("import-csv-missing", ["import", "{i}/img", "--csv", "{i}/nope.csv", "-o", "{o}/p.npz"],
     ["nope.csv", "not found"]),
    ("import-csv-is-folder", ["import", "{i}/img", "--csv", "{i}/plain_dir", "-o", "{o}/p.npz"],
     ["plain_dir", "positions CSV", "folder"]),
    ("import-folder-is-file", ["import", "{i}/a_file", "--csv", "{i}/img/positions.csv", "-o", "{o}/p.npz"],
     ["a_file", "image folder"]),
    ("import-res-0", ["import", "{i}/img", "--csv", "{i}/img/positions.csv", "--res", "0", "-o", "{o}/p.npz"],
     ["--res 0"]),
    ("import-res-negative", ["import", "{i}/img", "--csv", "{i}/img/positions.csv", "--res", "-4",
                             "-o", "{o}/p.npz"], ["--res -4"]),
    ("import-output-suffix", ["import", "{i}/img", "--csv", "{i}/img/positions.csv", "-o", "{o}/p.exr"],
     ["p.exr", ".npz or .zarr"]),
    ("import-duplicate-positions", ["import", "{i}/img", "--csv", "{i}/dup.csv", "--res", "4",
                                    "-o", "{o}/p.npz"], ["dup.csv", "probe 2", "positions", "duplicate"]),
    ("import-position-not-finite", ["import", "{i}/img", "--csv", "{i}/nan.csv", "--res", "4",
                                    "-o", "{o}/p.npz"], ["nan.csv:3", "'p1'", "y"]),
    ("import-nan-radiance", ["import", "{i}/nanimg", "--csv", "{i}/nanimg.csv", "--res", "4",
                             "-o", "{o}/p.zarr"], ["nanimg.csv:2", "probe 1", "faces", "NaN"]),
    # export
    ("export-input-missing", ["export", "{i}/nope.npz", "-o", "{o}/e"], ["nope.npz", "no such file"]),
    ("export-input-is-folder", ["export", "{i}/plain_dir", "-o", "{o}/e"], ["plain_dir", "folder"]),
    ("export-wrong-rank", ["export", "{i}/rank.npz", "-o", "{o}/e"], ["rank.npz", "faces", "shape"]),
    ("export-inf-radiance", ["export", "{i}/inf.npz", "-o", "{o}/e"], ["inf.npz", "probe 6", "faces", "Inf"]),
    ("export-output-is-a-file", ["export", "{i}/good.npz", "-o", "{i}/a_file"], ["a_file", "not a folder"]),
    # bake
    ("bake-input-missing", ["bake", "{i}/nope.npz", "-o", "{o}/a.pwa", *BAKE], ["nope.npz", "no such file"]),
    ("bake-input-is-folder", ["bake", "{i}/plain_dir", "-o", "{o}/a.pwa", *BAKE], ["plain_dir", "folder"]),
    ("bake-npz-is-folder", ["bake", "{i}/folder.npz", "-o", "{o}/a.pwa", *BAKE], ["folder.npz", "is a folder"]),
    ("bake-not-a-zip", ["bake", "{i}/garbage.npz", "-o", "{o}/a.pwa", *BAKE], ["garbage.npz", "not a readable"]),
    ("bake-no-faces", ["bake", "{i}/nofaces.npz", "-o", "{o}/a.pwa", *BAKE], ["nofaces.npz", "faces", "missing"]),
    ("bake-faces-rank-4", ["bake", "{i}/rank.npz", "-o", "{o}/a.pwa", *BAKE], ["rank.npz", "faces", "shape"]),
    ("bake-faces-2-channels", ["bake", "{i}/faces6.npz", "-o", "{o}/a.pwa", *BAKE], ["faces6.npz", "faces"]),
    ("bake-faces-integer", ["bake", "{i}/int.npz", "-o", "{o}/a.pwa", *BAKE], ["int.npz", "faces", "int32"]),
    ("bake-positions-P-2", ["bake", "{i}/pos2.npz", "-o", "{o}/a.pwa", *BAKE], ["pos2.npz", "positions", "(P, 3)"]),
    ("bake-nan-radiance", ["bake", "{i}/nan.npz", "-o", "{o}/a.pwa", *BAKE], ["nan.npz", "probe 5", "faces", "NaN"]),
    ("bake-inf-radiance", ["bake", "{i}/inf.npz", "-o", "{o}/a.pwa", *BAKE], ["inf.npz", "probe 6", "faces", "Inf"]),
    ("bake-duplicate-positions", ["bake", "{i}/dup.npz", "-o", "{o}/a.pwa", *BAKE],
     ["dup.npz", "probe 7", "positions", "duplicate of probe 2"]),
    ("bake-position-not-finite", ["bake", "{i}/infpos.npz", "-o", "{o}/a.pwa", *BAKE],
     ["infpos.npz", "probe 8", "positions"]),
    ("bake-fewer-probes-than-prototypes", ["bake", "{i}/few.npz", "-o", "{o}/a.pwa", *BAKE],
     ["few.npz", "--prototypes 4", "3 probes"]),
    ("bake-taps-over-prototypes", ["bake", "{i}/good.npz", "-o", "{o}/a.pwa", "--prototypes", "4", "--taps", "5"],
     ["--taps 5", "--prototypes 4"]),
    ("bake-taps-0", ["bake", "{i}/good.npz", "-o", "{o}/a.pwa", "--prototypes", "4", "--taps", "0"], ["--taps 0"]),
    ("bake-prototypes-0", ["bake", "{i}/good.npz", "-o", "{o}/a.pwa", "--prototypes", "0", "--taps", "1"],
     ["--prototypes 0"]),
    ("bake-prototype-res-not-a-multiple", ["bake", "{i}/good.npz", "-o", "{o}/a.pwa", *BAKE,
                                           "--prototype-res", "6"], ["good.npz", "--prototype-res 6", "R = 4"]),
    ("bake-halo-negative", ["bake", "{i}/good.npz", "-o", "{o}/a.pwa", *BAKE, "--halo", "-1"], ["--halo -1"]),
    ("bake-output-is-a-folder", ["bake", "{i}/good.npz", "-o", "{i}/folder.pwa", *BAKE],
     ["folder.pwa", "is a folder"]),
    # decode
    ("decode-archive-missing", ["decode", "{i}/nope.pwa", "--at", "{i}/q.npy", "-o", "{o}/d.npz"],
     ["nope.pwa", "no such file"]),
    ("decode-archive-is-folder", ["decode", "{i}/folder.pwa", "--at", "{i}/q.npy", "-o", "{o}/d.npz"],
     ["folder.pwa", "not a file"]),
    ("decode-archive-is-a-probe-set", ["decode", "{i}/good.npz", "--at", "{i}/q.npy", "-o", "{o}/d.npz"],
     ["good.npz", "magic"]),
    ("decode-archive-garbage", ["decode", "{i}/garbage.pwa", "--at", "{i}/q.npy", "-o", "{o}/d.npz"],
     ["garbage.pwa"]),
    ("decode-positions-missing", ["decode", "{i}/arch.pwa", "--at", "{i}/nope.npy", "-o", "{o}/d.npz"],
     ["nope.npy"]),
    ("decode-positions-is-folder", ["decode", "{i}/arch.pwa", "--at", "{i}/plain_dir", "-o", "{o}/d.npz"],
     ["plain_dir", "cannot read positions"]),
    ("decode-positions-Q-2", ["decode", "{i}/arch.pwa", "--at", "{i}/q2.npy", "-o", "{o}/d.npz"],
     ["q2.npy", "positions", "(3, 2)"]),
    ("decode-positions-strings", ["decode", "{i}/arch.pwa", "--at", "{i}/qstr.npy", "-o", "{o}/d.npz"],
     ["qstr.npy", "positions", "numeric"]),
    ("decode-positions-npz", ["decode", "{i}/arch.pwa", "--at", "{i}/good.npz", "-o", "{o}/d.npz"],
     ["good.npz", "positions"]),
    ("decode-res-not-dividing", ["decode", "{i}/arch.pwa", "--at", "{i}/q.npy", "-o", "{o}/d.npz", "--res", "3"],
     ["--res 3", "prototype resolution 4"]),
    ("decode-res-0", ["decode", "{i}/arch.pwa", "--at", "{i}/q.npy", "-o", "{o}/d.npz", "--res", "0"], ["--res 0"]),
    ("decode-res-negative", ["decode", "{i}/arch.pwa", "--at", "{i}/q.npy", "-o", "{o}/d.npz", "--res", "-2"],
     ["--res -2"]),
    ("decode-output-suffix", ["decode", "{i}/arch.pwa", "--at", "{i}/q.npy", "-o", "{o}/d.txt"], ["d.txt"]),
    # compare
    ("compare-input-missing", ["compare", "{i}/nope.npz", *CMP, "--out", "{o}/c"], ["nope.npz"]),
    ("compare-nan-radiance", ["compare", "{i}/nan.npz", *CMP, "--out", "{o}/c"], ["nan.npz", "probe 5", "faces"]),
    ("compare-faces-integer", ["compare", "{i}/int.npz", *CMP, "--out", "{o}/c"], ["int.npz", "faces"]),
    ("compare-fewer-probes-than-prototypes", ["compare", "{i}/few.npz", *CMP, "--out", "{o}/c"],
     ["few.npz", "--prototypes 4"]),
    ("compare-taps-over-prototypes", ["compare", "{i}/good.npz", "--prototypes", "2", "--taps", "4",
                                      "--out", "{o}/c"], ["--taps 4", "--prototypes 2"]),
    ("compare-prototype-res-not-a-multiple", ["compare", "{i}/good.npz", *CMP, "--prototype-res", "6",
                                              "--out", "{o}/c"], ["--prototype-res 6"]),
    ("compare-out-under-a-file", ["compare", "{i}/good.npz", *CMP, "--out", "{i}/a_file/c"],
     ["a_file", "not a folder"]),
    # demo
    ("demo-res-0", ["demo", "--out", "{o}/d", *DEMO, "--res", "0"], ["--res 0"]),
    ("demo-n-0", ["demo", "--out", "{o}/d", *DEMO, "--n", "2", "0", "2"], ["--n 2 0 2"]),
    ("demo-taps-over-prototypes", ["demo", "--out", "{o}/d", *DEMO, "--taps", "5"], ["--taps 5", "--prototypes 4"]),
    ("demo-fewer-probes-than-prototypes", ["demo", "--out", "{o}/d", *DEMO, "--prototypes", "9"],
     ["--prototypes 9", "8 probes"]),
    ("demo-out-is-a-file", ["demo", "--out", "{i}/a_file", *DEMO], ["a_file", "not a folder"]),
    ("demo-frames-0", ["demo", "{i}/arch.pwa", *FLY, "--frames", "0", "--fly-out", "{o}/f"], ["--frames 0"]),
    ("demo-size-0", ["demo", "{i}/arch.pwa", *FLY, "--size", "0", "18", "--fly-out", "{o}/f"], ["--size 0 18"]),
    ("demo-page-slots-0", ["demo", "{i}/arch.pwa", *FLY, "--page-slots", "0", "--fly-out", "{o}/f"],
     ["--page-slots 0"]),
    ("demo-archive-missing", ["demo", "{i}/nope.pwa", *FLY, "--fly-out", "{o}/f"], ["nope.pwa", "no such file"]),
    ("demo-archive-is-folder", ["demo", "{i}/folder.pwa", *FLY, "--fly-out", "{o}/f"], ["folder.pwa", "not a file"]),
    ("demo-archive-garbage", ["demo", "{i}/garbage.pwa", *FLY, "--fly-out", "{o}/f"], ["garbage.pwa"]),
    ("demo-path-broken", ["demo", "{i}/arch.pwa", *FLY, "--path", "{i}/broken_path.json", "--fly-out", "{o}/f"],
     ["broken_path.json"]),
    ("demo-probes-nan", ["demo", "{i}/arch.pwa", *FLY, "--probes", "{i}/nan.npz", "--fly-out", "{o}/f"],
     ["nan.npz", "probe 5", "faces"]),
    ("demo-fly-out-is-a-file", ["demo", "{i}/arch.pwa", *FLY, "--fly-out", "{i}/a_file"], ["a_file"]),
    # validate
    ("validate-faces-rank-4", ["validate", "{i}/rank.npz"], ["rank.npz", "faces"]),
    ("validate-faces-integer", ["validate", "{i}/int.npz"], ["int.npz", "faces", "int32"]),
    ("validate-positions-P-2", ["validate", "{i}/pos2.npz"], ["pos2.npz", "positions"]),
    ("validate-inf-radiance", ["validate", "{i}/inf.npz"], ["inf.npz", "probe 6", "faces"]),
    ("validate-duplicate-positions", ["validate", "{i}/dup.npz"], ["dup.npz", "probe 7", "positions"]),
    ("validate-position-not-finite", ["validate", "{i}/infpos.npz"], ["infpos.npz", "probe 8", "positions"]),
    ("validate-no-faces", ["validate", "{i}/nofaces.npz"], ["nofaces.npz", "faces"]),
    ("validate-not-a-zip", ["validate", "{i}/garbage.npz"], ["garbage.npz"]),
    ("validate-folder", ["validate", "{i}/plain_dir"], ["plain_dir", "folder"]),
    ("validate-npz-is-folder", ["validate", "{i}/folder.npz"], ["folder.npz", "is a folder"]),
    ("validate-archive-is-folder", ["validate", "{i}/folder.pwa"], ["folder.pwa", "not a file"]),
    ("validate-archive-garbage", ["validate", "{i}/garbage.pwa"], ["garbage.pwa"]),
    ("validate-output-without-sanitize", ["validate", "{i}/nan.npz", "-o", "{o}/v.npz"], ["-o", "--sanitize"]),
    ("validate-sanitize-output-suffix", ["validate", "{i}/nan.npz", "--sanitize", "-o", "{o}/v.txt"], ["v.txt"]),
    ("validate-sanitize-structure", ["validate", "{i}/rank.npz", "--sanitize", "-o", "{o}/v.npz"],
     ["rank.npz", "faces"]),
    # info
    ("info-faces-rank-4", ["info", "{i}/rank.npz"], ["rank.npz", "faces"]),
    ("info-folder", ["info", "{i}/plain_dir"], ["plain_dir", "folder"]),
    ("info-archive-garbage", ["info", "{i}/garbage.pwa"], ["garbage.pwa"]),
]


@pytest.mark.parametrize("argv, needles", [pytest.param(a, n, id=i) for i, a, n in BAD])
def test_bad_input_exits_3_names_it_and_writes_nothing(inputs, tmp_path, argv, needles):
    out = tmp_path / "out"
    out.mkdir()
    before = _snapshot(inputs)
    r = _run(_fill(argv, inputs, out))
    assert r.returncode == 3, (r.returncode, r.stderr)
    line = _error_line(r.stderr)
    for n in needles:
        assert n in line, (n, line)
    assert list(out.iterdir()) == [], "bad input wrote something"
    assert _snapshot(inputs) == before, "bad input changed the inputs"


@pytest.mark.skipif(IS_ROOT, reason="running as root: permission bits do not stop reads (the folder-as-file "
                                    "cases cover unreadable inputs)")
@pytest.mark.parametrize("cmd", [["bake", "{f}", "-o", "{o}/a.pwa", *BAKE], ["validate", "{f}"], ["info", "{f}"],
                                 ["export", "{f}", "-o", "{o}/e"], ["compare", "{f}", *CMP, "--out", "{o}/c"]],
                         ids=["bake", "validate", "info", "export", "compare"])
def test_an_unreadable_probe_set_exits_3(inputs, tmp_path, cmd):
    f = tmp_path / "locked.npz"
    f.write_bytes((inputs / "good.npz").read_bytes())
    f.chmod(0)
    out = tmp_path / "out"
    out.mkdir()
    try:
        r = _run([a.format(f=f, o=out) for a in cmd])
    finally:
        f.chmod(0o644)
    assert r.returncode == 3, r.stderr
    assert "locked.npz" in _error_line(r.stderr)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("cmd", [["bake", "{f}", "-o", "{o}/a.pwa", *BAKE], ["validate", "{f}"], ["info", "{f}"],
                                 ["export", "{f}", "-o", "{o}/e"], ["compare", "{f}", *CMP, "--out", "{o}/c"],
                                 ["decode", "{i}/arch.pwa", "--at", "{f}", "-o", "{o}/d.npz"],
                                 ["decode", "{f}", "--at", "{i}/q.npy", "-o", "{o}/d.npz"]],
                         ids=["bake", "validate", "info", "export", "compare", "decode-positions", "decode-archive"])
def test_a_file_that_refuses_to_open_exits_3(inputs, tmp_path, cmd, monkeypatch, capsys):
    """In-process, also as root: opening the input raises PermissionError (what chmod 000
    does to everyone else)."""
    import builtins
    import io
    f = tmp_path / ("locked.npy" if "--at" in cmd and cmd[cmd.index("--at") + 1] == "{f}" else
                    "locked.pwa" if cmd[:2] == ["decode", "{f}"] else "locked.npz")
    src = {"locked.npy": "q.npy", "locked.pwa": "arch.pwa", "locked.npz": "good.npz"}[f.name]
    f.write_bytes((inputs / src).read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    real_open, real_io_open = builtins.open, io.open

    def guarded(opener):
        def _open(file, *a, **k):
            if isinstance(file, (str, os.PathLike)) and Path(file).name == f.name:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
            return opener(file, *a, **k)
        return _open
    monkeypatch.setattr(builtins, "open", guarded(real_open))
    monkeypatch.setattr(io, "open", guarded(real_io_open))
    rc = main([a.format(f=f, o=out, i=inputs) for a in cmd])
    err = capsys.readouterr().err
    assert rc == 3, err
    line = _error_line(err)
    assert f.name in line and "ermission denied" in line, line
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------
# 2. unwritable output folders and full disks: exit 4, the output named, nothing left
# ---------------------------------------------------------------------------

#: Every command that writes, with its output under {o}.
WRITERS = [
    ("capture-npz", ["capture", "builtin", *CAP, "-o", "{o}/sub/c.npz"], "{o}/sub/c.npz"),
    ("capture-zarr", ["capture", "builtin", *CAP, "-o", "{o}/sub/c.zarr"], "{o}/sub/c.zarr"),
    ("import", ["import", "{i}/img", "--csv", "{i}/img/positions.csv", "--res", "4", "-o", "{o}/sub/p.npz"],
     "{o}/sub/p.npz"),
    ("export", ["export", "{i}/good.npz", "-o", "{o}/sub/e"], "{o}/sub/e"),
    ("bake", ["bake", "{i}/good.npz", "-o", "{o}/sub/a.pwa", *BAKE], "{o}/sub/a.pwa"),
    ("decode", ["decode", "{i}/arch.pwa", "--at", "{i}/q.npy", "-o", "{o}/sub/d.npz"], "{o}/sub/d.npz"),
    ("compare", ["compare", "{i}/good.npz", *CMP, "--out", "{o}/sub/c"], "{o}/sub/c"),
    ("validate-sanitize", ["validate", "{i}/nan.npz", "--sanitize", "-o", "{o}/sub/v.npz"], "{o}/sub/v.npz"),
    ("demo", ["demo", "--out", "{o}/sub/d", *DEMO], "{o}/sub/d"),
]


@pytest.fixture
def unwritable(tmp_path):
    """A folder that refuses new files: a read-only folder, or (as root, whom permission
    bits do not stop) a sysfs folder, which refuses everyone."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    for cand in (d, Path("/sys")):
        probe = cand / f".write-test-{os.getpid()}"
        try:
            fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError:
            yield cand
            d.chmod(0o755)
            return
        os.close(fd)
        os.unlink(probe)
    d.chmod(0o755)
    pytest.skip("no folder here refuses new files (root without a read-only sysfs)")


@pytest.mark.parametrize("argv, target", [pytest.param(a, t, id=i) for i, a, t in WRITERS])
def test_an_unwritable_output_folder_exits_4_before_any_work(inputs, unwritable, argv, target):
    before = set(os.listdir(unwritable))
    argv = [a.replace("{o}/sub", "{o}") for a in argv]
    target = target.replace("{o}/sub", "{o}").format(o=unwritable)
    r = _run(_fill(argv, inputs, unwritable))
    assert r.returncode == 4, r.stderr
    line = _error_line(r.stderr)
    assert target in line and "cannot write" in line, line
    assert set(os.listdir(unwritable)) == before


def _file_size_limit(nbytes: int):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return pre


@pytest.mark.parametrize("argv, target", [pytest.param(a, t, id=i) for i, a, t in WRITERS])
def test_a_full_disk_exits_4_and_leaves_nothing(inputs, tmp_path, argv, target):
    """Every file larger than 256 bytes fails to write (RLIMIT_FSIZE, in a subprocess):
    the disk fills wherever the command writes (probe sets, zarr chunks, EXRs, archive,
    checkpoint pages, reports, plots)."""
    out = tmp_path / "out"
    out.mkdir()
    r = _run(_fill(argv, inputs, out), preexec_fn=_file_size_limit(256))
    assert r.returncode == 4, r.stderr
    line = _error_line(r.stderr)
    assert target.format(o=out) in line or target.format(o=out).rsplit("/", 1)[0] in line, line
    assert "cannot write" in line and "too large" in line, line
    assert sorted(p.name for p in out.rglob("*")) == [], "a failed write left files behind"


@pytest.mark.parametrize("argv", [pytest.param(a, id=i) for i, a, _ in WRITERS
                                  if i in ("import", "export", "bake", "decode", "validate-sanitize")])
def test_enospc_at_fsync_exits_4_and_leaves_nothing(inputs, tmp_path, argv, monkeypatch, capsys):
    """In-process: every fsync reports ENOSPC (a full disk with delayed allocation)."""
    out = tmp_path / "out"
    out.mkdir()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    rc = main(_fill(argv, inputs, out))
    err = capsys.readouterr().err
    assert rc == 4, err
    line = _error_line(err)
    assert "No space left on device" in line and str(out / "sub") in line, line
    assert sorted(p.name for p in out.rglob("*")) == []


# ---------------------------------------------------------------------------
# 3. crafted input stays in its box
# ---------------------------------------------------------------------------

@pytest.fixture
def box(inputs, tmp_path):
    """FOLDER (two images) beside an outside folder holding a third image and a subfolder."""
    b, outside = tmp_path / "box", tmp_path / "outside"
    b.mkdir()
    (outside / "sub").mkdir(parents=True)
    for i in range(2):
        (b / f"p{i}.exr").write_bytes((inputs / "img" / f"p{i}.exr").read_bytes())
    (outside / "secret.exr").write_bytes((inputs / "img" / "p2.exr").read_bytes())
    (outside / "sub" / "p.exr").write_bytes((inputs / "img" / "p2.exr").read_bytes())
    return b, outside


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "subfolder-path", "symlink-out", "symlink-by-stem",
                                  "symlinked-subfolder", "symlinked-subfolder-name", "nul"])
def test_import_reads_nothing_outside_its_folder(box, tmp_path, kind):
    b, outside = box
    if kind == "dotdot":
        name = "../outside/secret.exr"
    elif kind == "absolute":
        name = str(outside / "secret.exr")
    elif kind == "subfolder-path":
        (b / "inner").mkdir()
        name = "inner/x.exr"
    elif kind == "symlink-out":
        (b / "link.exr").symlink_to(outside / "secret.exr")
        name = "link.exr"
    elif kind == "symlink-by-stem":
        (b / "link.exr").symlink_to(Path("..") / "outside" / "secret.exr")      # relative link
        name = "link"
    elif kind == "symlinked-subfolder":
        (b / "sub").symlink_to(outside / "sub", target_is_directory=True)
        name = "sub/p.exr"
    elif kind == "symlinked-subfolder-name":
        (b / "sub.exr").symlink_to(outside / "sub", target_is_directory=True)
        name = "sub.exr"
    else:
        name = "p\x002"
    csv = tmp_path / "positions.csv"
    csv.write_text(f"name,x,y,z\np0,0,0,0\np1,0,0,1\n{name},0,1,0\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    r = _run(["import", str(b), "--csv", str(csv), "--res", "4", "-o", str(out / "p.npz")])
    assert r.returncode == 3, r.stderr
    line = _error_line(r.stderr)
    assert f"{csv}:4: probe 2" in line and "image" in line, line
    if kind != "nul":
        assert repr(name) in line or name in line, line
    if kind in ("symlink-out", "symlink-by-stem", "symlinked-subfolder-name"):
        assert "symbolic link" in line and "outside" in line, line
    else:
        assert "not a plain file name" in line, line
    assert list(out.iterdir()) == []


def test_import_follows_a_symlink_that_stays_inside(box, tmp_path):
    """A link to another image of the same folder is fine (the folder path may run through links too)."""
    b, _ = box
    (b / "alias.exr").symlink_to("p0.exr")
    via = tmp_path / "via"
    via.symlink_to(b, target_is_directory=True)
    csv = tmp_path / "positions.csv"
    csv.write_text("alias,0,0,0\np1,0,0,1\np0,1,0,0\n")
    r = _run(["import", str(via), "--csv", str(csv), "--res", "4", "-o", str(tmp_path / "p.npz")])
    assert r.returncode == 0, r.stderr
    ps = ProbeSet.load(tmp_path / "p.npz")
    assert np.array_equal(ps.faces[0], ps.faces[2])


# ---------------------------------------------------------------------------
# 4. killed captures
# ---------------------------------------------------------------------------

#: A capture of a few seconds here: 512 probes at R = 8, supersampled twice.
KILL_CAP = ["capture", "builtin", "--n", "8", "8", "8", "--res", "8", "--supersample", "2"]
TEMP = re.compile(r"^\.k\.tmp-[0-9a-f]{12}\.(npz|zarr)$")


def _zarr_equal(a: Path, b: Path) -> bool:
    pa, pb = ProbeSet.load(a, lazy=False), ProbeSet.load(b, lazy=False)
    return (np.array_equal(pa.positions, pb.positions) and np.array_equal(pa.faces, pb.faces)
            and pa.grid_shape == pb.grid_shape)


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """The uninterrupted captures (npz and zarr) and how long each took."""
    d = tmp_path_factory.mktemp("captured")
    out = {}
    for suffix in ("npz", "zarr"):
        t0 = time.perf_counter()
        r = _run(KILL_CAP + ["-o", str(d / f"ref.{suffix}")])
        assert r.returncode == 0, r.stderr
        out[suffix] = (d / f"ref.{suffix}", time.perf_counter() - t0)
    return out


def test_capture_is_deterministic(captured, tmp_path):
    """The same capture twice: the same npz bytes (numpy writes fixed zip timestamps) and
    the same zarr store, file for file."""
    for suffix in ("npz", "zarr"):
        ref, _ = captured[suffix]
        again = tmp_path / f"again.{suffix}"
        assert _run(KILL_CAP + ["-o", str(again)]).returncode == 0
        if suffix == "npz":
            assert again.read_bytes() == ref.read_bytes()
        else:
            files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
            assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
            assert all((ref / f).read_bytes() == (again / f).read_bytes() for f in files)


@pytest.mark.parametrize("suffix", ["npz", "zarr"])
def test_a_capture_killed_at_any_point_leaves_no_valid_output_and_reruns_to_the_same_result(
        captured, tmp_path, suffix):
    ref, seconds = captured[suffix]
    rng = np.random.default_rng(int(time.time()))
    # early (imports), when the temporary appears, and spread over the run (last: random)
    points = ["start", "temporary", 0.35, 0.65, 0.9, float(rng.uniform(0.1, 1.0))]
    out = tmp_path / f"k.{suffix}"
    for point in points:
        proc = subprocess.Popen(CLI + KILL_CAP + ["-o", str(out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        t0 = time.perf_counter()
        try:
            if point == "start":
                time.sleep(0.2)
            elif point == "temporary":
                while not any(TEMP.match(p.name) for p in tmp_path.iterdir()):
                    if proc.poll() is not None or time.perf_counter() - t0 > 120:
                        break
                    time.sleep(0.005)
            else:
                time.sleep(point * seconds)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        for p in tmp_path.iterdir():
            if p == out:                 # killed after the rename: then it is the whole capture
                assert (out.read_bytes() == ref.read_bytes()) if suffix == "npz" else _zarr_equal(out, ref), point
                continue
            assert TEMP.match(p.name), f"kill at {point}: {p.name} is not a clearly named temporary"
            try:
                ps = ProbeSet.load(p, lazy=False)
            except (ValueError, OSError):
                continue                 # not a probe set: what a temporary should be
            # a temporary that loads must be the complete capture (killed between its last
            # write and the rename), never a partial one
            assert np.array_equal(ps.faces, ProbeSet.load(ref, lazy=False).faces), f"kill at {point}: {p}"
        v = _run(["validate", str(out)])
        assert v.returncode in (0, 3) and "Traceback" not in v.stderr
        if not out.exists():
            assert v.returncode == 3
    r = _run(KILL_CAP + ["-o", str(out)])
    assert r.returncode == 0, r.stderr
    if suffix == "npz":
        assert out.read_bytes() == ref.read_bytes()
    else:
        assert _zarr_equal(out, ref)


def test_a_killed_zarr_capture_leaves_a_temporary_that_is_no_probe_set(captured, tmp_path):
    """The streamed store writes ``positions`` last: the temporary of a capture killed
    mid-way is refused by ``ProbeSet.load`` and by ``probewarp validate`` (exit 3)
    instead of reading its unwritten chunks as black probes."""
    _, seconds = captured["zarr"]
    out = tmp_path / "k.zarr"
    proc = subprocess.Popen(CLI + KILL_CAP + ["-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    t0 = time.perf_counter()
    try:
        while not any(TEMP.match(p.name) for p in tmp_path.iterdir()):
            assert proc.poll() is None and time.perf_counter() - t0 < 120, "the capture ended first"
            time.sleep(0.005)
        time.sleep(0.1 * seconds)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    temps = [p for p in tmp_path.iterdir() if TEMP.match(p.name)]
    assert not out.exists() and len(temps) == 1
    with pytest.raises(ValueError, match="positions"):
        ProbeSet.load(temps[0])
    v = _run(["validate", str(temps[0])])
    assert v.returncode == 3 and "positions" in _error_line(v.stderr)


@pytest.mark.parametrize("kw, field", [(dict(n_prototypes=4, n_taps=5), "n_taps 5"),
                                       (dict(n_prototypes=4, n_taps=0), "n_taps 0"),
                                       (dict(n_prototypes=0, n_taps=1), "n_prototypes 0"),
                                       (dict(n_prototypes=4, n_taps=2, prototype_res=6), "prototype_res 6")])
def test_bake_arrays_refuses_bad_parameters_before_making_a_checkpoint(tmp_path, kw, field):
    """The library call too: M, N and Rp are checked before OUT.partial/ exists (they used
    to fail inside the first page, leaving an empty checkpoint behind)."""
    from probewarp.baker.pipeline import bake_arrays
    from probewarp.format.errors import InputError
    g, faces = _field(R=4, n=3)
    with pytest.raises(InputError, match=field):
        bake_arrays(g, faces, tmp_path / "a.pwa", n_iter=1, score=False, source="probes.npz", **kw)
    assert list(tmp_path.iterdir()) == []
