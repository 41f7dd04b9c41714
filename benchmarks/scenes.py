"""The benchmark scenes, cached under a work folder.

- ``town``: the built-in scene (``probewarp.capture.builtin``, captured on
  llvmpipe): an outdoor street, pillars, a pergola, sky and sun.
- ``interior``: the procedural interior of :mod:`fields` (two rooms, a lamp,
  a window; ray cast in numpy/numba): nearly everything within a few metres,
  so parallax between neighbouring probes is strong.

Defaults must hold on both: every benchmark that chooses a default measures it
on each scene.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

SCENES = ("town", "interior")


def scene_probes(name: str, n, res: int, work):
    """The probe set of scene ``name`` on an ``n`` = (nx, ny, nz) grid at R = ``res``."""
    from probewarp.baker.probeset import ProbeSet
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    tag = "x".join(map(str, n))
    if name == "town":
        from probewarp.capture.builtin import builtin_probes
        return builtin_probes(tuple(n), res, cache=work / f"town_{tag}_R{res}.npz", seed=0)
    if name == "interior":
        import fields
        path = work / f"interior_{tag}_R{res}.npz"
        if not path.exists():
            fields.field_probes(tuple(n), res, seed=0).save(path)
        return ProbeSet.load(path)
    raise SystemExit(f"unknown scene {name!r} (one of {', '.join(SCENES)})")
