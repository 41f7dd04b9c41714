"""The Streamer: a scripted flight through a field much larger than its budget.

Checked at every frame: GPU memory never grows (all of it is allocated up
front; resident pages never exceed the slots), and what the shader decodes
is exactly the CPU reference decoder restricted to the resident pages (the
documented fallback: missing corners dropped, weights renormalised, coverage
0 with no corner). Also: the render thread never waits on a slow disk, a
corrupt page is reported and treated as absent, and threads stop cleanly.
"""
import threading
import time

import numpy as np
import pytest

from probewarp.baker.decoder import Decoder
from probewarp.baker.metrics import tonemap
from synth import make_archive

from tolerances import PARITY_TOL as TOL   # tonemapped

GRID = (20, 2, 16)
LO, HI = (-20.0, 0.0, -16.0), (20.0, 2.0, 16.0)


@pytest.fixture(scope="module")
def big_field(tmp_path_factory):
    path = tmp_path_factory.mktemp("field") / "big.pwa"
    make_archive(path, GRID, LO, HI, page_probes=16, M=6, N=3, Rp=4, seed=11)
    return path


def flight_path(n=40):
    t = np.linspace(0, 1, n)
    return np.stack([-22 + 44 * t, 1.0 + 0.8 * np.sin(6 * t), 14 * np.cos(3 * t)], axis=1)


def _decode_one(gl, decoder, target, x):
    decoder.decode_into(target, x[None])
    return target.read()[0]


def test_scripted_flight_stays_in_budget_and_matches_fallback_rule(gl, big_field):
    from probewarp.runtime.decode import CubemapDecoder
    from probewarp.runtime.cubearray import CubemapArray
    from probewarp.runtime.streamer import Streamer
    cpu = Decoder(big_field)
    slots = 9
    with Streamer(gl, big_field, page_slots=slots, uploads_per_frame=1) as s:
        assert s.n_pages >= 4 * slots, "the field must be much larger than the budget"
        budget = s.budget_bytes
        layers = [a.layers for a in s.arrays]
        dec = CubemapDecoder(s)
        target = CubemapArray(gl, 4, 1, "rgba32f")
        missing_frames = 0
        try:
            for x in flight_path():
                stats = s.update(x)
                assert stats["uploaded"] <= 1
                resident = s.resident.copy()
                assert resident.sum() <= slots
                assert s.budget_bytes == budget and [a.layers for a in s.arrays] == layers
                got = _decode_one(gl, dec, target, x)
                want = cpu.decode(x[None], resident=resident)[0]
                assert float(np.abs(tonemap(got[..., :3]) - tonemap(want)).max()) <= TOL
                covered = bool(np.isin(s.corner_pages(x), np.flatnonzero(resident)).any())
                assert np.all(got[..., 3] == (1.0 if covered else 0.0))
                missing_frames += stats["missing"] > 0
                # waiting for the pages the decode reads makes it the full decode
                s.update(x, wait=True)
                got = _decode_one(gl, dec, target, x)
                full = cpu.decode(x[None])[0]
                assert float(np.abs(tonemap(got[..., :3]) - tonemap(full)).max()) <= TOL
            assert s.stats["evicted"] > 0, "the flight must have forced evictions"
        finally:
            target.release()
            dec.release()
        thread = s._thread
    assert thread is not None and not thread.is_alive()
    assert not any(t.name.startswith("probewarp-streamer") for t in threading.enumerate())


def test_update_never_waits_on_a_slow_disk(gl, big_field):
    from probewarp.runtime.streamer import Streamer
    gate = threading.Event()
    with Streamer(gl, big_field, page_slots=8) as s:
        real = s.reader.page_stored

        def slow(i):
            gate.wait(10)
            return real(i)
        s.reader.page_stored = slow
        x = np.array([0.0, 1.0, 0.0])
        for _ in range(2000):           # until the loader is stuck on the gate ...
            stats = s.update(x)         # ... update keeps returning without the pages
            assert stats["uploaded"] == 0 and stats["missing"] > 0
            if stats["inflight"] == 1:
                break
            time.sleep(0.005)
        assert stats["inflight"] == 1
        assert s.resident.sum() == 0
        gate.set()
        s.update(x, wait=True)
        assert np.isin(s.corner_pages(x), np.flatnonzero(s.resident)).all()
    assert not s.alive


def test_corrupt_page_is_reported_and_absent(gl, tmp_path):
    from probewarp.format.archive import ArchiveReader
    from probewarp.runtime.streamer import Streamer
    path, _, _ = make_archive(tmp_path / "a.pwa", page_probes=16, seed=2)
    with ArchiveReader(path) as ar:
        off = int(ar.table[1]["offset"]) + int(ar.table[1]["size"]) // 2
    data = bytearray(path.read_bytes())
    data[off] ^= 0xFF
    (tmp_path / "bad.pwa").write_bytes(bytes(data))
    with Streamer(gl, tmp_path / "bad.pwa", page_slots=8) as s:
        s.require(Decoder(path).positions)       # every page: returns once each is resident or failed
        assert list(s.failed) == [1] and "checksum" in s.failed[1]
        assert not s.resident[1] and s.resident[[p for p in range(s.n_pages) if p != 1]].all()


def test_budget_arguments_are_checked(gl, big_field):
    from probewarp.runtime.streamer import Streamer
    with pytest.raises(ValueError, match="at least 8"):
        Streamer(gl, big_field, page_slots=4)
    assert not any(t.name.startswith("probewarp-streamer") for t in threading.enumerate())


_PRODUCERS = ("numba", "scipy", "ispc_texcomp", "trimesh")


def _leaked(code: str) -> list[str]:
    import subprocess
    import sys
    check = (code + "\nimport sys\nbad = [m for m in sys.modules if m.split('.')[0] in "
             f"{_PRODUCERS!r} or m.startswith('probewarp.baker')]\nprint('LEAKED', sorted(bad))\n")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("LEAKED")][-1]
    return eval(line[len("LEAKED "):])


def test_runtime_imports_no_producer_code():
    """Importing the runtime leaves the baker and its heavy dependencies out."""
    assert _leaked("import probewarp.runtime.streamer, probewarp.runtime.decode, "
                   "probewarp.runtime.shaders, probewarp.runtime.context, "
                   "probewarp.runtime.cubearray, probewarp.runtime.resources") == []


@pytest.mark.parametrize("fmt", ["bc7", "bc6h"])
def test_streaming_a_block_format_archive_encodes_nothing(gl, tmp_path, fmt):
    """A Streamer on a bc7/bc6h archive with a mip chain (Rp = 2R) uploads what the
    archive stores: ispc_texcomp (the encoder) and the baker are never imported."""
    path, _, _ = make_archive(tmp_path / "a.pwa", (6, 2, 5), (-5.0, 0.0, -4.0), (5.0, 2.0, 4.0), Rp=16, R=8,
                              fmt=fmt, M=4, N=2, seed=1)
    code = f"""
import numpy as np
from probewarp.runtime.context import create_context
from probewarp.runtime.decode import decode_gl
ctx = create_context()
out = decode_gl({str(path)!r}, np.array([[0.1, 1.0, 0.2]]), ctx=ctx, page_slots=8)
assert out.shape == (1, 6, 8, 8, 3) and np.isfinite(out).all()
from probewarp.runtime.streamer import Streamer
with Streamer(ctx, {str(path)!r}, page_slots=8) as s:
    s.require(np.array([[0.1, 1.0, 0.2]]))
    assert s.levels == 2 and not s.failed, (s.levels, s.failed)
"""
    assert _leaked(code) == []
