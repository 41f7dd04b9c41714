"""The command line: exit codes, messages, and nothing written on bad input."""
import json

import numpy as np
import pytest

from probewarp.baker.probeset import ProbeSet
from probewarp.cli.main import main
from test_prototypes import _field


@pytest.fixture(scope="module")
def probe_file(tmp_path_factory):
    g, faces = _field(R=4, n=4)
    p = tmp_path_factory.mktemp("cli") / "probes.npz"
    ProbeSet(positions=g.astype(np.float32), faces=faces, grid_shape=(4, 4, 4), lo=g[0], hi=g[-1]).save(p)
    return p


def test_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    assert "exit codes" in capsys.readouterr().out
    assert main(["bake", "--help"]) == 0
    assert main(["no-such-command"]) == 2
    assert main(["bake"]) == 2


def test_bake_decode_info_validate(probe_file, tmp_path, capsys):
    out = tmp_path / "a.pwa"
    assert main(["bake", str(probe_file), "-o", str(out), "--prototypes", "6", "--taps", "2",
                 "--prototype-res", "4", "--iterations", "1"]) == 0
    rep = json.loads((tmp_path / "a.report.json").read_text())
    assert rep["n_probes"] == 64 and rep["psnr_db"] > 25 and rep["bytes_per_probe"] == out.stat().st_size / 64
    assert (tmp_path / "a.loss.png").stat().st_size > 0 and (tmp_path / "a.error.png").stat().st_size > 0
    q = tmp_path / "q.npy"
    np.save(q, np.array([[0.1, 0.2, 0.3], [5.0, 5.0, 5.0]]))
    assert main(["decode", str(out), "--at", str(q), "-o", str(tmp_path / "d.npz"), "--res", "2"]) == 0
    d = ProbeSet.load(tmp_path / "d.npz")
    assert d.faces.shape == (2, 6, 2, 2, 3) and np.isfinite(d.faces).all()
    assert main(["info", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    assert main(["info", str(probe_file), "--json"]) == 0


def test_bad_inputs_exit_3_and_write_nothing(probe_file, tmp_path, capsys):
    # positions with NaN
    q = tmp_path / "q.npy"
    np.save(q, np.array([[0.0, np.nan, 0.0]]))
    arch = tmp_path / "a.pwa"
    assert main(["bake", str(probe_file), "-o", str(arch), "--prototypes", "4", "--taps", "2",
                 "--prototype-res", "4", "--iterations", "1"]) == 0
    assert main(["decode", str(arch), "--at", str(q), "-o", str(tmp_path / "d.npz")]) == 3
    assert "position 0" in capsys.readouterr().err
    assert not (tmp_path / "d.npz").exists()
    # a corrupted archive
    raw = bytearray(arch.read_bytes())
    raw[-5] ^= 0xFF
    bad = tmp_path / "bad.pwa"
    bad.write_bytes(bytes(raw))
    assert main(["validate", str(bad)]) == 3
    assert "checksum" in capsys.readouterr().err
    # a probe set with negative radiance: rejected, then repaired with a report
    p = ProbeSet.load(probe_file)
    faces = np.array(p.faces)
    faces[3, 2, 1, 1, 0] = -1.0
    neg = tmp_path / "neg.npz"
    np.savez(neg, positions=p.positions, faces=faces)
    assert main(["bake", str(neg), "-o", str(tmp_path / "n.pwa")]) == 3
    err = capsys.readouterr().err
    assert "neg.npz" in err and "probe 3" in err
    assert not (tmp_path / "n.pwa").exists()
    assert main(["validate", str(neg), "--sanitize"]) == 3        # needs -o
    fixed = tmp_path / "fixed.npz"
    assert main(["validate", str(neg), "--sanitize", "-o", str(fixed)]) == 0
    assert ProbeSet.load(fixed).faces.min() >= 0
    assert main(["bake", str(probe_file), "-o", str(tmp_path / "x.bin")]) == 3
    assert main(["info", str(tmp_path / "missing.npz")]) == 3


def test_decode_backend_gl_matches_cpu(probe_file, tmp_path, gl):
    """`probewarp decode --backend gl` (own EGL context, so in a subprocess) gives
    the CPU reference decode within the parity tolerance of test_runtime_decode."""
    import subprocess
    import sys
    from probewarp.baker.metrics import tonemap
    from tolerances import PARITY_TOL
    out = tmp_path / "a.pwa"
    assert main(["bake", str(probe_file), "-o", str(out), "--prototypes", "6", "--taps", "2",
                 "--prototype-res", "4", "--iterations", "1"]) == 0
    q = tmp_path / "q.npy"
    np.save(q, np.array([[0.1, 0.2, 0.3], [5.0, 5.0, 5.0], [-0.4, 0.9, 0.5]]))
    assert main(["decode", str(out), "--at", str(q), "-o", str(tmp_path / "cpu.npz")]) == 0
    code = ("import sys; from probewarp.cli.main import main; "
            f"sys.exit(main(['decode', {str(out)!r}, '--at', {str(q)!r}, '-o', {str(tmp_path / 'gl.npz')!r}, "
            "'--backend', 'gl']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cpu = ProbeSet.load(tmp_path / "cpu.npz").faces
    gpu = ProbeSet.load(tmp_path / "gl.npz").faces
    assert gpu.shape == cpu.shape
    assert float(np.abs(tonemap(gpu) - tonemap(cpu)).max()) <= PARITY_TOL


def test_sparse_grid_bakes_and_reports_its_hash(tmp_path, capsys):
    """A sparse grid (probes on some lattice points) bakes through the CLI and
    `info` shows the spatial hash; decoding at an empty lattice point blends the
    neighbours that exist."""
    from probewarp.baker.decoder import Decoder
    g, faces = _field(R=4, n=4)
    keep = np.random.default_rng(0).random(len(g)) < 0.6
    p = tmp_path / "sparse.npz"
    ProbeSet(positions=g[keep].astype(np.float32), faces=faces[keep], grid_shape=(4, 4, 4),
             lo=g[0], hi=g[-1]).save(p)
    out = tmp_path / "s.pwa"
    assert main(["bake", str(p), "-o", str(out), "--prototypes", "6", "--taps", "2",
                 "--prototype-res", "4", "--iterations", "1"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["grid"]["dense"] is False and info["hash"]["capacity"] >= 2 * keep.sum()
    assert main(["validate", str(out)]) == 0
    dec = Decoder(out)
    hole = g[np.flatnonzero(~keep)[0]]
    ids, w = dec.pw_find_probes(hole[None])
    assert np.isclose(w.sum(), 1.0) and np.all(np.isin(ids[0][w[0] > 0], np.arange(keep.sum())))


def test_progress_bar_is_drawn_on_a_terminal_and_not_on_a_pipe(tmp_path, in_terminal):
    """`probewarp export` shows tqdm's bar when stderr is a terminal (run under a
    pty: tqdm disables itself on pipes, so capsys would see nothing either
    way) and draws nothing when stderr is a pipe."""
    import subprocess
    import sys
    rng = np.random.default_rng(0)
    src = tmp_path / "s.npz"
    ProbeSet(positions=rng.random((5, 3)).astype(np.float32),
             faces=rng.random((5, 6, 4, 4, 3)).astype(np.float32)).save(src)
    cmd = [sys.executable, "-m", "probewarp.cli.main", "export", str(src), "-o"]
    rc, shown = in_terminal(cmd + [str(tmp_path / "tty")])
    assert rc == 0, shown
    assert "export probes" in shown and "100%" in shown and "5/5" in shown, shown
    piped = subprocess.run(cmd + [str(tmp_path / "pipe")], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert "export probes" not in piped.stderr and "%" not in piped.stderr, piped.stderr


@pytest.mark.parametrize("argv", [["capture", "builtin", "--n", "2", "2", "2", "-o", "{tmp}/c.npz"],
                                  ["demo", "--out", "{tmp}/demo"]])
def test_capture_without_its_extra_says_what_to_install(tmp_path, argv):
    """With trimesh not importable, `capture` and `demo` exit 4 with the pip
    command of the extra and write nothing (one import guard: capture/__init__.py)."""
    import subprocess
    import sys
    argv = [a.format(tmp=tmp_path) for a in argv]
    code = ("import sys; sys.modules['trimesh'] = None; from probewarp.cli.main import main; "
            f"sys.exit(main({argv!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 4, r.stderr
    assert "trimesh" in r.stderr and "pip install 'probewarp[capture]'" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
