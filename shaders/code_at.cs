#version 450
// code_at.cs -- the merged code of the field at each of a list of positions,
// for passes that decode many directions at one position (decode_cubemap.cs:
// a cubemap per position; field_view.fs: a camera at x). Building the code
// (8 hash lookups, the stencil, merging) once per position instead of once
// per texel or work group is what makes those passes cheap.
//
// One invocation per position: pw_code_at(positions[q].xyz) + pw_code_merge
// (common_probewarp.glsl), written to binding 1 as record q of
// PW_CODE_STRIDE ints: { n, 0, then n pairs (layer, floatBitsToInt(weight)) }.
//   binding 0  vec4 positions[]      binding 1  int codes[]
// Dispatch ceil(u_count / 64) groups.

#include "common_probewarp.glsl"


layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Positions { vec4 positions[]; };
layout(std430, binding = 1) writeonly buffer Codes { int codes[]; };

uniform int u_count;

void main()
{
    int q = int(gl_GlobalInvocationID.x);
    if (q >= u_count)
        return;
    PwCode code = pw_code_at(positions[q].xyz);
    pw_code_merge(code);
    int base = q * PW_CODE_STRIDE;
    codes[base] = code.n;
    codes[base + 1] = 0;
    for (int i = 0; i < code.n; ++i) {
        codes[base + 2 + 2 * i] = code.layer[i];
        codes[base + 3 + 2 * i] = floatBitsToInt(code.w[i]);
    }
}
