"""Determinism: the same input and seed give the same archive bytes in separate
processes (the command line), in process with threads, and resumed after a
kill (tests/test_scale.py); another seed gives other bytes (so the check can
fail). Dask and memory-mapped inputs: tests/test_scale.py."""
import subprocess
import sys

from test_scale import KW, probe_set


def _cli_bake(src, out, seed):
    r = subprocess.run([sys.executable, "-m", "probewarp.cli.main", "bake", str(src), "-o", str(out),
                        "--prototypes", str(KW["n_prototypes"]), "--taps", str(KW["n_taps"]),
                        "--page-probes", str(KW["page_probes"]), "--iterations", str(KW["n_iter"]),
                        "--seed", str(seed)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def test_same_input_and_seed_give_the_same_bytes_across_processes_and_threads(tmp_path):
    from probewarp.baker.pipeline import bake_probeset
    src = tmp_path / "p.npz"
    probe_set().save(src)
    a = _cli_bake(src, tmp_path / "a.pwa", KW["seed"])
    b = _cli_bake(src, tmp_path / "b.pwa", KW["seed"])
    assert a == b, "two runs of the same command"
    bake_probeset(src, tmp_path / "t.pwa", **KW, threads=2, report=False)
    assert (tmp_path / "t.pwa").read_bytes() == a, "in process, two threads"
    assert _cli_bake(src, tmp_path / "c.pwa", KW["seed"] + 1) != a, "another seed"
