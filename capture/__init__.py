"""probewarp.capture: render HDR probe sets from the built-in scene or OBJ/glTF meshes (extra: capture).

The one import guard of the ``capture`` extra (``pip install 'probewarp[capture]'``:
trimesh and pillow): importing this package without them raises
:class:`MissingExtraError`, a :class:`~probewarp.format.errors.RuntimeFailure`
(command line exit code 4) that is also an :class:`ImportError`, whose message
says what to install. Only presence is checked here (cheaply, without
importing them); the modules import trimesh and PIL where they use them.
"""
import importlib.resources as _resources
from importlib.util import find_spec as _find_spec

from probewarp.format.errors import RuntimeFailure

#: module -> distribution of what the capture extra brings.
EXTRA_MODULES = {"trimesh": "trimesh", "PIL": "pillow"}
INSTALL_HINT = "pip install 'probewarp[capture]'"


class MissingExtraError(RuntimeFailure, ImportError):
    """An optional extra is not installed; the message names it and the pip command."""


def _missing() -> list[str]:
    out = []
    for mod, dist in EXTRA_MODULES.items():
        try:
            found = _find_spec(mod) is not None
        except (ImportError, ValueError):   # a broken or half-removed install counts as missing
            found = False
        if not found:
            out.append(dist)
    return out


_absent = _missing()
if _absent:
    raise MissingExtraError(f"probe capture needs {', '.join(_absent)}, not installed here: {INSTALL_HINT}")

#: The capture room's GLSL (package data of probewarp.capture); their
#: ``#include "common_cubemap.glsl"`` resolves in probewarp.shaders.
SHADER_ROOT = _resources.files(__name__) / "shaders"
