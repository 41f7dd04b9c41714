#version 450
// capture.vs -- many probe faces in one draw call (probewarp.capture.capturer).
//
// One instance = one (probe, face) = tile i of a large render target (tile i
// is column i % u_cols, row i / u_cols; face i % 6). The tile index comes in
// the per-instance attribute, so that indirect draws can pick any instance
// through their base instance (probewarp.capture.geometry culls chunks of
// triangles per face that way). GL row 0 is the bottom, which is exactly the
// face's row t = 0, tc = -1 + 1/R: no flips.
// The face's clip coordinates are
//     x = dot(p - probe, U), y = dot(p - probe, V), w = dot(p - probe, MAJOR)
// (so NDC (x/w, y/w) = (sc, tc) of DESIGN-NOTES §1), clipped to the face's
// frustum with gl_ClipDistance[0..3] and then moved into the tile:
//     x' = x * sx + ox * w,  y' = y * sy + oy * w.
#include "common_cubemap.glsl"

layout(location = 0) in vec3 in_position;
layout(location = 1) in vec3 in_normal;
layout(location = 2) in vec3 in_color;
layout(location = 3) in vec2 in_uv;
layout(location = 4) in float in_layer;
layout(location = 5) in vec4 in_probe;    // per instance: probe xyz, tile index in w

uniform int  u_cols;          // tiles per row of the render target
uniform vec2 u_tile_scale;    // tile size / target size, (sx, sy)
uniform vec2 u_depth;         // z_clip = u_depth.x * w + u_depth.y (near..far -> -1..1)

out gl_PerVertex {
    vec4 gl_Position;
    float gl_ClipDistance[4];
};

out vec3 v_world;
out vec3 v_normal;
out vec3 v_color;
out vec2 v_uv;
flat out int v_layer;
flat out vec3 v_probe;

void main()
{
    int tile_index = int(in_probe.w + 0.5);
    int face = tile_index % 6;
    vec3 r = in_position - in_probe.xyz;
    float x = dot(r, PW_U_AXIS[face]);
    float y = dot(r, PW_V_AXIS[face]);
    float w = dot(r, PW_MAJOR[face]);
    gl_ClipDistance[0] = w + x;
    gl_ClipDistance[1] = w - x;
    gl_ClipDistance[2] = w + y;
    gl_ClipDistance[3] = w - y;
    ivec2 tile = ivec2(tile_index % u_cols, tile_index / u_cols);
    vec2 o = -1.0 + (2.0 * vec2(tile) + 1.0) * u_tile_scale;
    gl_Position = vec4(x * u_tile_scale.x + o.x * w,
                       y * u_tile_scale.y + o.y * w,
                       u_depth.x * w + u_depth.y,
                       w);
    v_world = in_position;
    v_normal = in_normal;
    v_color = in_color;
    v_uv = in_uv;
    v_layer = int(in_layer + 0.5);
    v_probe = in_probe.xyz;
}
