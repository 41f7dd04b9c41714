#version 450
// decode_cubemap.cs -- decode the probewarp field into cubemaps at positions.
//
// The "decode into a cubemap at a position" pass (image-based lighting for a
// host renderer; `probewarp decode --backend gl`): layer q of the output
// cube-map array receives the radiance decoded at positions[q], texel
// (face, t, s) looking along its centre direction (DESIGN-NOTES §1).
//
// Dispatch (ceil(R / LOCAL_SIZE), ceil(R / LOCAL_SIZE), 6 * count) after
// code_at.cs has written the merged code of every position to binding 1
// (same positions, same order): each invocation warps and samples only the
// distinct prototypes of its position.
// CODE_PER_TEXEL 1 instead calls pw_decode in every invocation (hash lookups,
// 8-corner stencil and 8 N warps per texel): the cost a renderer pays when
// every pixel decodes at its own position (surfaces), kept for benchmarks.
//
//   SSBO PW_BINDING_POSITIONS     PwPosition positions[] (pw_layout.glsl)
//   SSBO PW_BINDING_CODE_RECORDS  PwCodeRecord records[]: code_at.cs output
//                                 (CODE_PER_TEXEL 0)
//   image unit 0       layout(OUT_FORMAT) writeonly imageCubeArray u_out,
//                      layer u_first_layer + q
//   uniforms           u_res (R), u_count, u_lod (prototype mip level)
// Alpha is the coverage of pw_decode (0: no probe resident around q).

#ifndef LOCAL_SIZE
#define LOCAL_SIZE 8
#endif
#ifndef OUT_FORMAT
#define OUT_FORMAT rgba32f
#endif
#ifndef CODE_PER_TEXEL
#define CODE_PER_TEXEL 0
#endif

#include "common_probewarp.glsl"
#include "common_cubemap.glsl"

layout(local_size_x = LOCAL_SIZE, local_size_y = LOCAL_SIZE) in;
layout(std430, binding = PW_BINDING_POSITIONS) readonly buffer Positions { PwPosition positions[]; };
layout(OUT_FORMAT, binding = 0) writeonly uniform imageCubeArray u_out;

uniform int u_res;
uniform int u_count;
uniform int u_first_layer;
uniform float u_lod;

layout(std430, binding = PW_BINDING_CODE_RECORDS) readonly buffer Codes { PwCodeRecord records[]; };

void main()
{
    int q = int(gl_WorkGroupID.z) / 6;
    int face = int(gl_WorkGroupID.z) % 6;
    vec3 x = positions[q].xyz;
    ivec2 st = ivec2(gl_GlobalInvocationID.xy);
#if CODE_PER_TEXEL
    if (st.x >= u_res || st.y >= u_res || q >= u_count)
        return;
    vec3 d = pw_texel_direction(face, vec2(st), u_res);
    imageStore(u_out, ivec3(st, 6 * (u_first_layer + q) + face), pw_decode(x, d, u_lod));
#else
    if (st.x >= u_res || st.y >= u_res || q >= u_count)
        return;
    vec3 d = pw_texel_direction(face, vec2(st), u_res);
    int n = records[q].n;
    vec3 y = vec3(0.0);
    for (int i = 0; i < n; ++i)
        y += pw_blend_term(records[q].entries[i].layer, records[q].entries[i].weight, x, d, u_lod);
    imageStore(u_out, ivec3(st, 6 * (u_first_layer + q) + face), vec4(pw_from_domain(y), n > 0 ? 1.0 : 0.0));
#endif
}
