"""Camera maths of the flythrough, in plain numpy (no window toolkit needed).

Conventions (OpenGL): a camera's ``rotation`` is camera-to-world, its columns
are the camera's right, up and back axes; it looks along ``-rotation[:, 2]``.
Pixel ``(i, j)`` of a ``w x h`` frame (``j = 0`` the bottom row, as GL reads
it) has its centre at NDC ``((i + 0.5) / w * 2 - 1, (j + 0.5) / h * 2 - 1)``
and its ray direction is ``rotation @ normalize((ndc_x * tan(fov/2) * w / h,
ndc_y * tan(fov/2), -1))`` -- exactly what the demo's shaders compute from
``gl_FragCoord``, so :func:`pixel_rays` is their oracle.

A camera path (``probewarp demo --path path.json``) is JSON::

    {"frames": 48,                       # frames rendered along the keys
     "fov_y": 60,                        # degrees (optional)
     "keys": [{"position": [x, y, z], "target": [x, y, z]}, ...]}

positions and targets are interpolated by a uniform
Catmull-Rom spline through the keys (at least two), evenly in the key
parameter. :func:`default_path` makes one through a grid's box.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probewarp.format.errors import InputError

#: World up (the probe sets' +y, DESIGN-NOTES §1).
UP = np.array([0.0, 1.0, 0.0])


@dataclass
class Camera:
    """A pinhole camera: ``position`` (3,), ``rotation`` (3, 3) camera-to-world,
    ``fov_y`` in degrees, near and far planes for the raster pass."""

    position: np.ndarray
    rotation: np.ndarray
    fov_y: float = 60.0
    near: float = 0.05
    far: float = 1000.0

    @classmethod
    def look_at(cls, position, target, fov_y: float = 60.0, **kw) -> "Camera":
        p = np.asarray(position, np.float64).reshape(3)
        f = np.asarray(target, np.float64).reshape(3) - p
        n = np.linalg.norm(f)
        f = np.array([0.0, 0.0, -1.0]) if n < 1e-12 else f / n
        r = np.cross(f, UP)
        if np.linalg.norm(r) < 1e-9:             # looking straight up or down
            r = np.cross(f, np.array([0.0, 0.0, -1.0]))
        r /= np.linalg.norm(r)
        u = np.cross(r, f)
        return cls(p, np.stack([r, u, -f], axis=1), float(fov_y), **kw)

    @property
    def forward(self) -> np.ndarray:
        return -self.rotation[:, 2]

    @property
    def right(self) -> np.ndarray:
        return self.rotation[:, 0]

    @property
    def up(self) -> np.ndarray:
        return self.rotation[:, 1]

    def tan_half(self, aspect: float) -> tuple[float, float]:
        t = math.tan(math.radians(self.fov_y) / 2)
        return t * aspect, t

    def view_matrix(self) -> np.ndarray:
        """(4, 4) world -> camera."""
        m = np.eye(4)
        m[:3, :3] = self.rotation.T
        m[:3, 3] = -self.rotation.T @ self.position
        return m

    def projection_matrix(self, aspect: float) -> np.ndarray:
        """(4, 4) OpenGL perspective (camera -> clip), depth -1..1."""
        tx, ty = self.tan_half(aspect)
        n, f = self.near, self.far
        m = np.zeros((4, 4))
        m[0, 0], m[1, 1] = 1.0 / tx, 1.0 / ty
        m[2, 2], m[2, 3] = -(f + n) / (f - n), -2.0 * f * n / (f - n)
        m[3, 2] = -1.0
        return m

    def view_projection(self, aspect: float) -> np.ndarray:
        return self.projection_matrix(aspect) @ self.view_matrix()


def pixel_rays(camera: Camera, width: int, height: int) -> np.ndarray:
    """(height, width, 3) unit world directions of the pixel centres, row 0 the
    bottom row (the order ``glReadPixels`` returns)."""
    tx, ty = camera.tan_half(width / height)
    x = ((np.arange(width) + 0.5) / width * 2 - 1) * tx
    y = ((np.arange(height) + 0.5) / height * 2 - 1) * ty
    d = np.stack(np.broadcast_arrays(x[None, :], y[:, None], -np.ones((1, 1))), axis=-1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return d @ camera.rotation.T


def ray_sphere(origin, dirs, centre, radius):
    """First hit of rays ``origin + t dirs`` (unit ``dirs`` (..., 3)) with a
    sphere: (t (...), hit mask (...)); ``t`` is where the ray enters (inf on a
    miss or behind the origin). The numpy twin of ``sphere_hit`` in
    ``demo/shaders/objects.fs``."""
    oc = np.asarray(origin, np.float64) - np.asarray(centre, np.float64)
    b = dirs @ oc
    c = oc @ oc - radius * radius
    disc = b * b - c
    hit = disc >= 0
    t = -b - np.sqrt(np.maximum(disc, 0))
    hit &= t > 0
    return np.where(hit, t, np.inf), hit


def reflect(d, n):
    """GLSL ``reflect``: ``d - 2 (n . d) n``."""
    return d - 2 * np.sum(n * d, axis=-1, keepdims=True) * n


# ---------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------

def _catmull_rom(keys: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Uniform Catmull-Rom through ``keys`` (K, 3) at parameters ``t`` in [0, K-1]."""
    K = keys.shape[0]
    if K == 1:
        return np.repeat(keys, t.size, axis=0)
    ext = np.concatenate([2 * keys[:1] - keys[1:2], keys, 2 * keys[-1:] - keys[-2:-1]])
    i = np.clip(np.floor(t).astype(int), 0, K - 2)
    u = (t - i)[:, None]
    p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
    return 0.5 * (2 * p1 + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                  + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3)


@dataclass
class CameraPath:
    """Cameras along a path: ``positions`` (F, 3), ``targets`` (F, 3), ``fov_y``."""

    positions: np.ndarray
    targets: np.ndarray
    fov_y: float = 60.0

    def __len__(self) -> int:
        return self.positions.shape[0]

    def camera(self, i: int, **kw) -> Camera:
        return Camera.look_at(self.positions[i], self.targets[i], self.fov_y, **kw)

    @classmethod
    def from_keys(cls, positions, targets, frames: int, fov_y: float = 60.0) -> "CameraPath":
        p = np.asarray(positions, np.float64).reshape(-1, 3)
        q = np.asarray(targets, np.float64).reshape(-1, 3)
        frames = int(frames)
        t = np.linspace(0, p.shape[0] - 1, frames) if frames > 1 else np.zeros(1)
        return cls(_catmull_rom(p, t), _catmull_rom(q, t), float(fov_y))

    def to_json(self) -> dict:
        return {"frames": len(self), "fov_y": self.fov_y,
                "keys": [{"position": [float(v) for v in p], "target": [float(v) for v in q]}
                         for p, q in zip(self.positions, self.targets)]}


def load_path(path) -> CameraPath:
    """Read a camera path file (module docstring); errors name the file and field."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such camera path file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable JSON camera path ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or len(doc["keys"]) < 2:
        raise InputError(f"{path}: field keys: a list of at least 2 {{position, target}} objects is needed")
    pos, tgt = [], []
    for k, key in enumerate(doc["keys"]):
        for name, out in (("position", pos), ("target", tgt)):
            v = key.get(name) if isinstance(key, dict) else None
            try:
                a = np.asarray(v, np.float64).reshape(3)
            except (TypeError, ValueError):
                raise InputError(f"{path}: keys[{k}].{name}: 3 numbers needed, got {v!r}") from None
            if not np.all(np.isfinite(a)):
                raise InputError(f"{path}: keys[{k}].{name}: not finite ({v!r})")
            out.append(a)
    frames = doc.get("frames", 4 * len(pos))
    fov = doc.get("fov_y", 60.0)
    if not isinstance(frames, int) or not 1 <= frames <= 100_000:
        raise InputError(f"{path}: field frames: an integer in [1, 100000], got {frames!r}")
    if not isinstance(fov, (int, float)) or not 1.0 <= float(fov) <= 170.0:
        raise InputError(f"{path}: field fov_y: degrees in [1, 170], got {fov!r}")
    return CameraPath.from_keys(pos, tgt, frames, float(fov))


def default_path(lo, hi, frames: int = 72, fov_y: float = 60.0, exit_height: float | None = None) -> CameraPath:
    """A slow pass through a grid's box ``lo..hi``: across the middle of the box
    along x at mid height (so it crosses the page borders of a paged bake:
    bricks split the longest axes first), drifting a little in z, then up and
    out through the top of the box (it leaves the grid once, into the free
    sky over the probes). The camera looks ahead along the path and a little
    down. Dense on purpose: about 12 frames per grid cell along x for a 16
    probe wide grid at the default 72 frames, so that frame-to-frame changes
    of smooth lighting are small and a pop shows as a pop. ``exit_height``:
    how far above the box's top the path ends (default: half the box's height,
    at least 5 % of its largest side)."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    c, ext = (lo + hi) / 2, (hi - lo)
    y = lo[1] + 0.55 * ext[1]
    top = hi[1] + (max(0.5 * ext[1], 0.05 * max(ext[0], ext[2])) if exit_height is None else float(exit_height))
    xs = c[0] + ext[0] * np.array([-0.30, -0.10, 0.10, 0.22, 0.30])
    ys = np.array([y, y, y, 0.5 * (y + top), top])
    zs = c[2] + ext[2] * np.array([-0.06, -0.02, 0.02, 0.04, 0.05])
    pos = np.stack([xs, ys, zs], axis=1)
    look = 0.25 * ext[0]
    tgt = pos + np.array([look, -0.05 * look, 0.02 * look])
    return CameraPath.from_keys(pos, tgt, frames, fov_y)
