"""The analytic HDR sky of probe capture (:class:`Sky`): sun, zenith/horizon
gradient and ground.

Its GLSL twin is ``capture/shaders/common_sky.glsl`` (same formulas; the
uniforms come from :meth:`Sky._uniforms`), used by :mod:`probewarp.capture.capturer`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


def _vec3(v) -> tuple:
    a = np.asarray(v, np.float64).reshape(3)
    return tuple(float(x) for x in a)


@dataclass(frozen=True)
class Sky:
    """Analytic HDR sky with a sun; all radiances linear RGB.

    Parameters
    ----------
    sun_elevation_deg, sun_azimuth_deg : float
        Sun direction ``(cos e sin a, sin e, cos e cos a)`` (y up; azimuth
        from +z towards +x).
    sun_radius_deg : float
        Angular radius of the drawn disc (much larger than the real 0.27
        degrees so that it survives R = 8 capture).
    sun_radiance : (3,)
        Radiance of the disc.
    sun_irradiance : (3,)
        Irradiance the sun delivers to a surface facing it (direct light);
        independent of the disc (see the module Notes).
    glow_radiance : (3,), glow_width_deg : float
        Glow around the sun, ``glow * exp(-angle / width)``.
    horizon, zenith : (3,)
        Sky radiance at the horizon and straight up; in between
        ``mix(horizon, zenith, d.y ** zenith_exponent)``.
    zenith_exponent : float
    ground_albedo : float
        Of the world below the horizon: the dome below the horizon shows
        ``ground_albedo * (E_sky + E_sun)/pi`` and the ambient term of
        downward normals is the same.
    """
    sun_elevation_deg: float = 35.0
    sun_azimuth_deg: float = 40.0
    sun_radius_deg: float = 2.5
    sun_radiance: tuple = (420.0, 380.0, 320.0)
    sun_irradiance: tuple = (24.0, 22.0, 19.0)
    glow_radiance: tuple = (6.0, 4.5, 3.0)
    glow_width_deg: float = 10.0
    horizon: tuple = (2.4, 2.6, 2.8)
    zenith: tuple = (0.55, 1.0, 2.4)
    zenith_exponent: float = 0.5
    ground_albedo: float = 0.25

    #: Below the horizon the dome fades to the ground colour over this much
    #: of ``d.y`` (``SKY_GROUND_BLEND`` in ``shaders/common_sky.glsl``).
    GROUND_BLEND = 0.1
    #: Width of the disc's soft edge, degrees.
    SUN_EDGE_DEG = 0.25

    @property
    def sun_direction(self) -> np.ndarray:
        """``(3,)`` float64 unit vector towards the sun."""
        e, a = np.radians(self.sun_elevation_deg), np.radians(self.sun_azimuth_deg)
        return np.array([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)])

    def radiance(self, dirs, sun: bool = True, ground=None) -> np.ndarray:
        """Sky radiance along directions (numpy twin of GLSL ``sky_radiance``).

        Parameters
        ----------
        dirs : (..., 3) float, nonzero (normalised here)
        sun : bool
            Include the disc (the ambient integral leaves it out: the disc's
            light is ``sun_irradiance``).

        Returns
        -------
        (..., 3) float64
        """
        d = np.asarray(dirs, np.float64)
        d = d / np.linalg.norm(d, axis=-1, keepdims=True)
        h = d[..., 1:2]
        hor, zen = np.array(self.horizon), np.array(self.zenith)
        gnd = self.ambient[1] if ground is None else np.asarray(ground)
        up = hor + (zen - hor) * np.maximum(h, 0.0) ** self.zenith_exponent
        down = hor + (gnd - hor) * np.minimum(1.0, -h / self.GROUND_BLEND)
        out = np.where(h >= 0.0, up, down)
        ang = np.arccos(np.clip(d @ self.sun_direction, -1.0, 1.0))[..., None]
        above = np.clip(1.0 + h / self.GROUND_BLEND, 0.0, 1.0)
        out = out + np.array(self.glow_radiance) * np.exp(-ang / np.radians(self.glow_width_deg)) * above
        if sun:
            disc = np.clip((np.radians(self.sun_radius_deg) - ang) / np.radians(self.SUN_EDGE_DEG)
                           + 0.5, 0.0, 1.0)
            out = out + np.array(self.sun_radiance) * disc
        return out

    @cached_property
    def ambient(self) -> tuple:
        """``(sky, ground)``: (3,) float64 each, the ambient radiance factors.

        ``sky`` is the cosine-weighted mean radiance of the upper hemisphere
        without the disc (what an upward-facing white surface reflects of the
        sky), ``ground = ground_albedo * (sky + E_sun max(sun.y, 0) / pi)``.
        """
        n = 256
        th = (np.arange(n) + 0.5) / n * (np.pi / 2)        # polar angle from +y
        ph = (np.arange(2 * n) + 0.5) / (2 * n) * (2 * np.pi)
        T, Ph = np.meshgrid(th, ph, indexing="ij")
        d = np.stack([np.sin(T) * np.cos(Ph), np.cos(T), np.sin(T) * np.sin(Ph)], -1)
        w = np.cos(T) * np.sin(T)                          # cos * dA
        L = self.radiance(d, sun=False, ground=np.zeros(3))
        sky = (L * w[..., None]).sum((0, 1)) / w.sum()
        sun_y = max(float(self.sun_direction[1]), 0.0)
        ground = self.ground_albedo * (sky + np.array(self.sun_irradiance) * sun_y / np.pi)
        return sky, ground

    def _uniforms(self) -> dict:
        sky, ground = self.ambient
        return {
            "u_sky_horizon": _vec3(self.horizon), "u_sky_zenith": _vec3(self.zenith),
            "u_sky_exponent": float(self.zenith_exponent), "u_sky_ground": _vec3(ground),
            "u_sun_dir": _vec3(self.sun_direction), "u_sun_radiance": _vec3(self.sun_radiance),
            "u_sun_radius": float(np.radians(self.sun_radius_deg)),
            "u_sun_edge": float(np.radians(self.SUN_EDGE_DEG)),
            "u_glow_radiance": _vec3(self.glow_radiance),
            "u_glow_width": float(np.radians(self.glow_width_deg)),
            "u_sun_diffuse": _vec3(np.array(self.sun_irradiance) / np.pi),
            "u_ambient_sky": _vec3(sky), "u_ambient_ground": _vec3(ground),
        }
