#version 450
// code_at.cs -- the merged code of the field at one position, for passes that
// decode many directions at that position (field_view.fs: a camera at x).
//
// One invocation: pw_code_at(u_position) + pw_code_merge (common_probewarp.glsl)
// written to binding 0 as { int n; then n entries (layer, weight bits) }.

#include "common_probewarp.glsl"

layout(local_size_x = 1) in;
layout(std430, binding = 0) writeonly buffer CodeOut { int out_n; ivec2 out_entry[]; };

uniform vec3 u_position;

void main()
{
    PwCode code = pw_code_at(u_position);
    pw_code_merge(code);
    out_n = code.n;
    for (int i = 0; i < code.n; ++i)
        out_entry[i] = ivec2(code.layer[i], floatBitsToInt(code.w[i]));
}
