"""The runtime under pressure: the smallest legal budget and a camera that
teleports every frame, GPU memory asked of GL, a released or lost context,
two streamers on one context.

The fallback checked is the documented one (runtime/streamer.py): corners on
pages that are not resident are dropped and the others renormalised, no
corner gives coverage 0; the CPU reference decoder emulates it with
``resident=``.
"""
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from probewarp.baker.decoder import Decoder
from probewarp.baker.metrics import tonemap
from synth import make_archive

from tolerances import PARITY_TOL as TOL   # tonemapped

GRID = (16, 2, 16)
LO, HI = (-16.0, 0.0, -16.0), (16.0, 2.0, 16.0)


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    d = tmp_path_factory.mktemp("pressure")
    a, _, _ = make_archive(d / "a.pwa", GRID, LO, HI, page_probes=16, M=6, N=3, Rp=4, seed=5)
    b, _, _ = make_archive(d / "b.pwa", (6, 3, 5), (0.0, 0.0, 0.0), (5.0, 2.0, 4.0), page_probes=8, M=5, N=2,
                           Rp=4, seed=6)
    return a, b


def test_teleporting_camera_on_the_smallest_budget(gl, field):
    """200 frames, each at a random place (inside the grid, near it and far
    outside), 8 slots (the least legal), one upload a frame: GL's own sizes
    never change and equal the budget, residency never exceeds the slots,
    every decode is the CPU decoder restricted to the resident pages."""
    from probewarp.runtime.streamer import Streamer
    from streaming import streamed_frames
    path, _ = field
    cpu = Decoder(path)
    rng = np.random.default_rng(0)
    lo, hi = np.array(LO), np.array(HI)
    with Streamer(gl, path, page_slots=8, uploads_per_frame=1) as s:
        assert s.page_slots == 8 and s.n_pages >= 16
        budget = s.budget_bytes
        assert s.queried_gpu_bytes() == budget, "the budget is what GL holds"
        uncovered = 0
        xs = lo - 8 + rng.random((200, 3)) * (hi - lo + 16)
        for x, st, resident, got in streamed_frames(s, xs, R=4):
            assert st["uploaded"] <= 1 and resident.sum() <= 8
            assert s.queried_gpu_bytes() == budget
            assert np.all(np.isfinite(got))
            want = cpu.decode(x[None], resident=resident)[0]
            assert float(np.abs(tonemap(got[..., :3]) - tonemap(want)).max()) <= TOL
            covered = bool(np.isin(s.corner_pages(x), np.flatnonzero(resident)).any())
            assert np.all(got[..., 3] == (1.0 if covered else 0.0))
            uncovered += not covered
        assert s.stats["evicted"] > 20 and uncovered > 0, "the test must force evictions and misses"
        thread = s._thread
    assert not thread.is_alive()
    assert not any(t.name.startswith("probewarp-streamer") for t in threading.enumerate())


def test_queried_gpu_bytes_of_block_formats(gl, tmp_path):
    """GL's compressed image sizes agree with the budget for BC6H as well."""
    from probewarp.runtime.streamer import Streamer
    path, _, _ = make_archive(tmp_path / "bc.pwa", (4, 2, 4), (0, 0, 0), (3, 1, 3), page_probes=8, M=4, N=2,
                              Rp=8, seed=1, fmt="bc6h")
    with Streamer(gl, path, page_slots=4) as s:
        assert s.fmt == "bc6h"
        assert s.queried_gpu_bytes() == s.budget_bytes


def test_two_streamers_on_one_context_do_not_disturb_each_other(gl, field):
    from probewarp.runtime.cubearray import CubemapArray
    from probewarp.runtime.decode import CubemapDecoder
    from probewarp.runtime.streamer import Streamer
    a_path, b_path = field
    xa = np.array([[0.3, 1.0, -2.0], [5.0, 0.5, 7.0]])
    xb = np.array([[1.0, 1.0, 1.0], [4.0, 1.5, 3.0]])
    target = CubemapArray(gl, 4, 2, "rgba32f")
    try:
        with Streamer(gl, a_path, page_slots=8) as sa:
            da = CubemapDecoder(sa)
            sa.require(xa)
            da.decode_into(target, xa)
            alone = target.read()
            with Streamer(gl, b_path, page_slots=8) as sb:
                db = CubemapDecoder(sb)
                sb.require(xb)
                for _ in range(3):                       # interleaved frames
                    da.decode_into(target, xa)
                    np.testing.assert_array_equal(target.read(), alone)
                    db.decode_into(target, xb)
                    got_b = target.read()[..., :3]
                    want_b = Decoder(b_path).decode(xb)
                    assert float(np.abs(tonemap(got_b) - tonemap(want_b)).max()) <= TOL
                db.release()
            da.decode_into(target, xa)                   # the second one is gone: the first still works
            np.testing.assert_array_equal(target.read(), alone)
            da.release()
    finally:
        target.release()


def _run(code: str) -> subprocess.CompletedProcess:
    here = Path(__file__).resolve().parent
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=here)


def test_a_released_context_is_a_clear_error_and_shutdown_stays_clean(field):
    """In a fresh process (the context is destroyed): update, bind and decode
    raise ContextLost naming the call; close still joins the loader thread."""
    path, _ = field
    r = _run(f"""
        import os, threading
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
        import numpy as np
        from probewarp.runtime.context import ContextLost, create_context
        from probewarp.runtime.decode import CubemapDecoder
        from probewarp.runtime.cubearray import CubemapArray
        from probewarp.runtime.streamer import Streamer
        ctx = create_context()
        s = Streamer(ctx, {str(path)!r}, page_slots=8)
        s.update(np.zeros(3), wait=True)
        dec = CubemapDecoder(s)
        t = CubemapArray(ctx, 4, 1, "rgba32f")
        ctx.release()
        for name, f in (("update", lambda: s.update(np.ones(3))), ("bind", lambda: s.bind()),
                        ("decode", lambda: dec.decode_into(t, np.zeros((1, 3))))):
            try:
                f()
                print(name, "NO ERROR")
            except ContextLost as e:
                print(name, "ContextLost", "released" in str(e))
        s.close()
        print("threads", sum(th.name.startswith("probewarp-streamer") for th in threading.enumerate()))
    """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    for name in ("update", "bind", "decode"):
        assert f"{name} ContextLost True" in lines, r.stdout
    assert "threads 0" in lines


def test_a_driver_reset_is_a_clear_error(gl, field, monkeypatch):
    from probewarp.runtime import context
    from probewarp.runtime.streamer import Streamer
    path, _ = field
    with Streamer(gl, path, page_slots=8) as s:
        monkeypatch.setattr(context, "_reset_status", lambda: 0x8253)
        with pytest.raises(context.ContextLost, match="GL_GUILTY_CONTEXT_RESET"):
            s.update(np.zeros(3))
        monkeypatch.undo()
        s.update(np.zeros(3), wait=True)                 # no reset: works again
        assert s.resident.any()


@pytest.mark.parametrize("bad", ["page", "probe", "max_probe"])
def test_hash_records_that_would_index_out_of_range_are_refused(gl, field, monkeypatch, bad):
    """Indices the shader follows (hash -> page slot -> codes) are checked
    against the page table before anything reaches a buffer."""
    from probewarp.format import spatialhash
    from probewarp.format.archive import ArchiveReader
    from probewarp.format.errors import InputError
    from probewarp.runtime.streamer import Streamer
    path, _ = field
    real = ArchiveReader.hash

    def crafted(self):
        table, mp = real(self)
        table = table.copy()
        k = int(np.flatnonzero(table[:, 0] != spatialhash.EMPTY)[0])
        if bad == "page":
            table[k, 1] = np.uint32(self.n_pages << spatialhash.PAGE_SHIFT)
        elif bad == "probe":
            table[k, 1] = np.uint32(int(self.table["n_probes"][0]))       # page 0, one past its last probe
        else:
            mp = table.shape[0] + 1
        return table, mp
    monkeypatch.setattr(ArchiveReader, "hash", crafted)
    with pytest.raises(InputError, match=r"a\.pwa: field hash"):
        Streamer(gl, path, page_slots=8)
    assert not any(t.name.startswith("probewarp-streamer") for t in threading.enumerate())


def test_a_page_whose_codes_do_not_fit_is_failed_not_uploaded(gl, field, monkeypatch):
    from probewarp.format.archive import ArchiveReader
    from probewarp.runtime.streamer import Streamer
    path, _ = field
    real = ArchiveReader.page_stored

    def crafted(self, i):
        f = dict(real(self, i))
        if i == 0:
            f["indices"] = np.asarray(f["indices"]).copy()
            f["indices"][0, 0] = int(self.table["n_prototypes"][0])      # one past the page's prototypes
        return f
    monkeypatch.setattr(ArchiveReader, "page_stored", crafted)
    with Streamer(gl, path, page_slots=8) as s:
        pos = Decoder(path).positions
        s.require(pos[:40])
        assert 0 in s.failed and "field indices" in s.failed[0] and not s.resident[0]
        assert s.resident.sum() >= 1 and s.alive


def test_a_page_table_claiming_huge_pages_allocates_nothing(gl, field, monkeypatch):
    """A page table entry claiming 2^31 probes must not size a GPU buffer."""
    from probewarp.format.archive import ArchiveReader
    from probewarp.format.errors import InputError
    from probewarp.runtime.streamer import Streamer
    path, _ = field
    real_init = ArchiveReader.__init__

    def crafted(self, p):
        real_init(self, p)
        self.table = self.table.copy()
        self.table["n_probes"][0] = 2 ** 31
    monkeypatch.setattr(ArchiveReader, "__init__", crafted)
    with pytest.raises(InputError, match="field n_probes"):
        Streamer(gl, path, page_slots=8)


def test_the_streamer_survives_mutated_archives(gl, field, tmp_path):
    """60 archives whose page payloads (and hash) were mutated before
    compression, every CRC recomputed so the checks behind them are reached
    (fuzz/targets.py's archive_inflated mutator; byte changes and cuts): the streamer either refuses
    the file at open with an InputError naming it, or streams it with the
    bad pages failed and left out; its loader thread never dies and every
    decode is finite."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fuzz.targets import deflate_archive, inflate_archive
    from probewarp.format.errors import InputError
    from probewarp.runtime.cubearray import CubemapArray
    from probewarp.runtime.decode import CubemapDecoder
    from probewarp.runtime.streamer import Streamer
    path, _ = field
    base = bytearray(inflate_archive(path.read_bytes()))
    head = 4096                      # leave the header, metadata and table alone: mutate what follows
    rng = np.random.default_rng(7)
    pos = Decoder(path).positions
    x = pos[::7]                                     # every page
    refused = streamed = failed = 0
    target = CubemapArray(gl, 4, len(x), "rgba32f")
    try:
        for k in range(60):
            data = bytearray(base)
            for _ in range(int(rng.integers(1, 8))):
                i = int(rng.integers(min(head, len(data) - 1), len(data)))
                if rng.random() < 0.3:                   # a cut: later blobs shift under their records
                    del data[i:i + int(rng.integers(1, 64))]
                else:
                    data[i] = int(rng.integers(0, 256))
            f = tmp_path / f"m{k}.pwa"
            f.write_bytes(deflate_archive(bytes(data)))
            try:
                s = Streamer(gl, f, page_slots=16)
            except InputError as e:
                assert f.name in str(e)
                refused += 1
                continue
            with s:
                for p in range(0, len(x), 2):
                    s.require(x[p:p + 2])
                assert s.alive
                dec = CubemapDecoder(s)
                try:
                    dec.decode_into(target, x)
                    assert np.all(np.isfinite(target.read()))
                finally:
                    dec.release()
                failed += len(s.failed)
                streamed += 1
    finally:
        target.release()
    assert streamed > 0 and failed > 0, (refused, streamed, failed)
    assert not any(t.name.startswith("probewarp-streamer") for t in threading.enumerate())
