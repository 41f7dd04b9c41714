#version 450
// sh_decode.cs -- decode a regular grid of SH light probes into cubemaps at
// query positions: the spherical-harmonics baseline (baker/baselines.py
// SphericalHarmonics) as a GL decoder, for per-texel cost comparisons.
//
// Output: u_out, an rgba32f cube-map array (probewarp.runtime.cubearray.CubemapArray
// bound with glBindImageTexture(0, tex, 0, GL_TRUE, 0, GL_WRITE_ONLY,
// GL_RGBA32F)). Query q's cubemap is layer q: texel (face, t, s) is written at
// ivec3(s, t, 6 * q + face) with RGB = linear radiance, A = 1. The direction
// of every texel is its centre per DESIGN-NOTES §1 (pw_texel_direction,
// common_cubemap.glsl).
//
// Buffers (std430):
//   binding 0  coeffs[]: (P, PW_SH_COUNT, 3) float32, tightly packed, probe p's
//              coefficient k channel c at (p * PW_SH_COUNT + k) * 3 + c, in
//              real_sh_basis order (sh_eval.glsl) and in the fit domain;
//              probe p = (i * ny + j) * nz + k (DESIGN-NOTES §2, z fastest).
//   binding 1  queries[]: (Q, 4) float32, xyz = world position, w unused.
// Uniforms:
//   u_lo, u_step (vec3): grid point (i, j, k) is at u_lo + (i, j, k) * u_step
//       (u_step any positive value, e.g. 1, on axes with one point);
//   u_shape (ivec3): (nx, ny, nz) >= 1;
//   u_R (int): face size.
// Dispatch: (ceil(R / LOCAL_SIZE), ceil(R / LOCAL_SIZE), 6 * Q) groups; group
// z = 6 * q + face, so one work group never spans two queries.
//
// Interpolation (trilinear over the 8 surrounding grid probes, per axis):
//   u = clamp((x - lo) / step, 0, shape - 1)       queries outside take the border
//   i0 = min(floor(u), max(shape - 2, 0)),  i1 = min(i0 + 1, shape - 1),  f = u - i0
// The coefficients are blended (linear in them), then evaluated; the value
// then goes through the baseline's domain mapping:
//   PW_SH_DOMAIN_TONEMAP 0 ('linear'): as is, not clamped at 0 (the baseline
//       does not clamp; SH rings negative);
//   PW_SH_DOMAIN_TONEMAP 1 ('tonemap'): baker/metrics.py inverse_tonemap:
//       u = clamp(y, 0, PW_TONEMAP_Y_MAX)^PW_TONEMAP_GAMMA;  v = u / (1 - u).
// CPU twin: blend the coefficients, then SphericalHarmonics.decode
// (real_sh_basis at the texel centres, then _inverse).
//
// Two ways of blending (PW_SH_GATHER_PER_TEXEL):
//   1: every invocation blends the 8 probes' coefficients itself (8 x 3 x
//      PW_SH_COUNT loads a texel): what a deferred renderer shading surfaces
//      at different positions pays.
//   0: the work group blends them once into shared memory (all its texels
//      share one query), barrier, then each invocation only evaluates the
//      basis and dots it with the shared coefficients.

#ifndef LOCAL_SIZE
#define LOCAL_SIZE 8                // work group is LOCAL_SIZE x LOCAL_SIZE texels
#endif
#ifndef PW_SH_GATHER_PER_TEXEL
#define PW_SH_GATHER_PER_TEXEL 1    // 1: blend per invocation, 0: once per work group
#endif
#ifndef PW_SH_DOMAIN_TONEMAP
#define PW_SH_DOMAIN_TONEMAP 0      // 0: 'linear', 1: 'tonemap' (inverse tonemap after)
#endif
// PW_TONEMAP_GAMMA, PW_TONEMAP_Y_MAX: format/constants.py, through the
// generated pw_layout.glsl (probewarp.format.layout; Python may override them).
#include "pw_layout.glsl"

#include "common_cubemap.glsl"
#include "sh_eval.glsl"

layout(local_size_x = LOCAL_SIZE, local_size_y = LOCAL_SIZE) in;

layout(rgba32f, binding = 0) writeonly uniform imageCubeArray u_out;

layout(std430, binding = 0) readonly buffer Coeffs { float coeffs[]; };
layout(std430, binding = 1) readonly buffer Queries { vec4 queries[]; };

uniform vec3 u_lo;
uniform vec3 u_step;
uniform ivec3 u_shape;
uniform int u_R;

const int PW_SH_FLOATS = PW_SH_COUNT * 3;   // floats per probe

// The 8 grid probes around x and their trilinear weights (rule in the header).
// Corner c = 4 cx + 2 cy + cz takes i1 on the axes whose bit is set.
void pw_grid_corners(vec3 x, out int ids[8], out float w[8])
{
    vec3 top = vec3(u_shape - 1);
    vec3 u = clamp((x - u_lo) / u_step, vec3(0.0), top);
    ivec3 i0 = min(ivec3(floor(u)), max(u_shape - 2, ivec3(0)));
    ivec3 i1 = min(i0 + 1, u_shape - 1);
    vec3 f = u - vec3(i0);
    for (int c = 0; c < 8; ++c) {
        bvec3 hi = bvec3((c & 4) != 0, (c & 2) != 0, (c & 1) != 0);
        ivec3 g = mix(i0, i1, hi);
        vec3 a = mix(1.0 - f, f, hi);
        ids[c] = (g.x * u_shape.y + g.y) * u_shape.z + g.z;
        w[c] = a.x * a.y * a.z;
    }
}

// Fit-domain value -> linear radiance (the baseline's _inverse).
vec3 pw_sh_to_radiance(vec3 v)
{
#if PW_SH_DOMAIN_TONEMAP
    vec3 u = pow(clamp(v, 0.0, PW_TONEMAP_Y_MAX), vec3(PW_TONEMAP_GAMMA));
    return u / (1.0 - u);
#else
    return v;
#endif
}

#if !PW_SH_GATHER_PER_TEXEL
shared float s_coeffs[PW_SH_FLOATS];
#endif

void main()
{
    int s = int(gl_GlobalInvocationID.x);
    int t = int(gl_GlobalInvocationID.y);
    int layer_face = int(gl_WorkGroupID.z);      // 6 * q + face
    int q = layer_face / 6;
    int face = layer_face - 6 * q;
    bool inside = s < u_R && t < u_R;

    int ids[8];
    float w[8];
    pw_grid_corners(queries[q].xyz, ids, w);

#if PW_SH_GATHER_PER_TEXEL
    if (!inside)
        return;
    vec3 c[PW_SH_COUNT];
    for (int k = 0; k < PW_SH_COUNT; ++k)
        c[k] = vec3(0.0);
    for (int n = 0; n < 8; ++n) {
        int base = ids[n] * PW_SH_FLOATS;
        for (int k = 0; k < PW_SH_COUNT; ++k)
            c[k] += w[n] * vec3(coeffs[base + 3 * k], coeffs[base + 3 * k + 1],
                                coeffs[base + 3 * k + 2]);
    }
    vec3 v = pw_sh_eval(pw_texel_direction(face, vec2(s, t), u_R), c);
#else
    // Every invocation reaches the barrier (no early return before it).
    for (int i = int(gl_LocalInvocationIndex); i < PW_SH_FLOATS;
         i += LOCAL_SIZE * LOCAL_SIZE) {
        float acc = 0.0;
        for (int n = 0; n < 8; ++n)
            acc += w[n] * coeffs[ids[n] * PW_SH_FLOATS + i];
        s_coeffs[i] = acc;
    }
    memoryBarrierShared();
    barrier();
    if (!inside)
        return;
    float Y[PW_SH_COUNT];
    pw_sh_basis(pw_texel_direction(face, vec2(s, t), u_R), Y);
    vec3 v = vec3(0.0);
    for (int k = 0; k < PW_SH_COUNT; ++k)
        v += Y[k] * vec3(s_coeffs[3 * k], s_coeffs[3 * k + 1], s_coeffs[3 * k + 2]);
#endif
    imageStore(u_out, ivec3(s, t, layer_face), vec4(pw_sh_to_radiance(v), 1.0));
}
