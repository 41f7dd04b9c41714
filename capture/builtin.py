"""The built-in scene's probe grid, captured once and cached.

:func:`builtin_probes` is the one place the demo and the benchmarks get the
built-in scene's probes from: capture a grid over
:meth:`~probewarp.capture.scene.Scene.builtin_grid`, save it to a cache file
atomically (:meth:`~probewarp.baker.probeset.ProbeSet.save`), and return the
set as read back from that file (what a later run will load).
"""
from __future__ import annotations

from pathlib import Path

from probewarp.baker.probeset import ProbeSet
from probewarp.capture.capturer import capture_grid
from probewarp.capture.scene import Scene


def _matches(probes: ProbeSet, n, res: int) -> bool:
    shape = None if probes.grid_shape is None else tuple(int(v) for v in probes.grid_shape)
    return shape == tuple(int(v) for v in n) and probes.resolution == int(res)


def builtin_probes(n=(16, 4, 16), res: int = 16, *, cache=None, seed: int = 0, supersample: int = 4,
                   progress=None, refresh: bool = False) -> ProbeSet:
    """Probes of the built-in scene on an ``n`` grid at resolution ``res``.

    Parameters
    ----------
    n : (3,) int, probes along x, y, z over ``Scene.builtin_grid()``
    res : int, cubemap face resolution R
    cache : path (``.npz`` or ``.zarr``) or None
        Reused when it holds a grid of shape ``n`` at ``res`` (name it by the
        seed too if you vary it: the file does not record the seed);
        otherwise captured and saved there atomically. None: capture, keep in
        memory.
    seed : int, the built-in scene's seed
    supersample : int, rendered at ``res * supersample`` and box-filtered
    progress : callable(done, total) or None, during a capture
    refresh : bool, capture even if the cache is valid

    Returns
    -------
    ProbeSet, ``(P, 6, R, R, 3)`` linear radiance with its grid (loaded from
    ``cache`` when one is given).
    """
    if cache is not None:
        cache = Path(cache)
        if cache.exists() and not refresh:
            probes = ProbeSet.load(cache)
            if _matches(probes, n, res):
                return probes
    scene = Scene.builtin(seed=seed)
    lo, hi = scene.builtin_grid()
    probes = capture_grid(scene, lo, hi, n, res, supersample=supersample, progress=progress)
    if cache is None:
        return probes
    cache.parent.mkdir(parents=True, exist_ok=True)
    probes.save(cache)
    return ProbeSet.load(cache)
