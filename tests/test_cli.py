"""The command line: exit codes, messages, and nothing written on bad input."""
import json

import numpy as np
import pytest

from probewarp.baker.probeset import ProbeSet
from probewarp.demo.cli import main
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
