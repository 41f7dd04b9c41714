"""A camera moving through a streamed field, frame by frame: what the runtime
tests that compare every streamed decode with the CPU decoder restricted to
the resident pages share (tests/test_runtime_pressure.py,
test_runtime_scattered.py, test_grid_fill.py)."""
from __future__ import annotations

import numpy as np


def streamed_frames(streamer, positions, R: int = 8):
    """For each position: one ``streamer.update`` (a frame), a copy of the
    residency it left, then a GPU cubemap decode at the position. Yields
    ``(x, update counts, resident (n_pages,) bool, rgba (6, R, R, 4) float32)``;
    the decoder and its target are released when the loop ends or breaks."""
    from probewarp.runtime.cubearray import CubemapArray
    from probewarp.runtime.decode import CubemapDecoder
    dec = CubemapDecoder(streamer, "rgba32f")
    target = CubemapArray(streamer.ctx, R, 1, "rgba32f")
    try:
        for x in np.asarray(positions, np.float64).reshape(-1, 3):
            counts = streamer.update(x)
            resident = streamer.resident.copy()
            dec.decode_into(target, x[None])
            yield x, counts, resident, target.read()[0]
    finally:
        target.release()
        dec.release()
