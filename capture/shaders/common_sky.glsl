// common_sky.glsl -- the analytic HDR sky of probe capture (capture.fs,
// capture_sky.fs; probewarp.capture.capturer).
//
// sky_radiance() is the GLSL twin of probewarp.capture.sky.Sky.radiance
// (numpy, the oracle of tests/test_capture.py): change both together. Above
// the horizon a gradient from u_sky_horizon to u_sky_zenith, below it a fade
// to u_sky_ground; plus a sun disc with a soft edge and an exponential glow.
//
// Included by stages through probewarp.runtime.shaders; no #version here.

// Below the horizon the dome fades from the horizon colour to the ground
// colour over this much of d.y (Sky.GROUND_BLEND in Python).
#ifndef SKY_GROUND_BLEND
#define SKY_GROUND_BLEND 0.1
#endif

uniform vec3  u_sky_horizon;      // radiance at the horizon
uniform vec3  u_sky_zenith;       // radiance straight up
uniform float u_sky_exponent;     // mix(horizon, zenith, pow(d.y, e)) above the horizon
uniform vec3  u_sky_ground;       // radiance of the dome below the horizon
uniform vec3  u_sun_dir;          // unit, towards the sun
uniform vec3  u_sun_radiance;     // radiance of the disc
uniform float u_sun_radius;       // disc angular radius, radians
uniform float u_sun_edge;         // width of the disc's soft edge, radians
uniform vec3  u_glow_radiance;    // glow radiance next to the disc
uniform float u_glow_width;       // glow falls off as exp(-angle / width), radians

// Radiance of the sky seen along the unit direction d (linear RGB).
vec3 sky_radiance(vec3 d)
{
    float h = d.y;
    vec3 base = (h >= 0.0)
        ? mix(u_sky_horizon, u_sky_zenith, pow(h, u_sky_exponent))
        : mix(u_sky_horizon, u_sky_ground, min(1.0, -h / SKY_GROUND_BLEND));
    float ang = acos(clamp(dot(d, u_sun_dir), -1.0, 1.0));
    float disc = clamp((u_sun_radius - ang) / u_sun_edge + 0.5, 0.0, 1.0);
    float above = clamp(1.0 + h / SKY_GROUND_BLEND, 0.0, 1.0);
    return base + u_glow_radiance * (exp(-ang / u_glow_width) * above) + u_sun_radiance * disc;
}

