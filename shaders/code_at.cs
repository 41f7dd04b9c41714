#version 450
// code_at.cs -- the merged code of the field at each of a list of positions,
// for passes that decode many directions at one position (decode_cubemap.cs:
// a cubemap per position; field_view.fs: a camera at x). Building the code
// (8 hash lookups, the stencil, merging) once per position instead of once
// per texel or work group is what makes those passes cheap.
//
// One invocation per position: pw_code_at(positions[q].xyz) + pw_code_merge
// (common_probewarp.glsl), written as records[q], a PwCodeRecord
// (pw_layout.glsl; numpy twin probewarp.format.layout.code_record_dtype):
// n entries used, then n (layer, weight) entries.
//   PW_BINDING_POSITIONS     PwPosition positions[]   (layout.pack_positions)
//   PW_BINDING_CODE_RECORDS  PwCodeRecord records[]
// Dispatch ceil(u_count / 64) groups.

#include "common_probewarp.glsl"


layout(local_size_x = 64) in;
layout(std430, binding = PW_BINDING_POSITIONS) readonly buffer Positions { PwPosition positions[]; };
layout(std430, binding = PW_BINDING_CODE_RECORDS) writeonly buffer Codes { PwCodeRecord records[]; };

uniform int u_count;

void main()
{
    int q = int(gl_GlobalInvocationID.x);
    if (q >= u_count)
        return;
    PwCode code = pw_code_at(positions[q].xyz);
    pw_code_merge(code);
    records[q].n = code.n;
    records[q].reserved = 0;
    for (int i = 0; i < code.n; ++i) {
        records[q].entries[i].layer = code.layer[i];
        records[q].entries[i].weight = code.w[i];
    }
}
