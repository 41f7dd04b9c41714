#version 450
// code_at.cs -- the merged code of the field at each of a list of positions,
// for passes that decode many directions at one position (decode_cubemap.cs:
// a cubemap per position; field_view.fs: a camera at x). Building the code
// (8 hash lookups, the stencil, merging) once per position instead of once
// per texel or work group is what makes those passes cheap.
//
// One invocation per position: pw_code_at(positions[q].xyz), merged
// (common_probewarp.glsl), written as records[q], a PwCodeRecord
// (pw_layout.glsl; numpy twin probewarp.format.layout.code_record_dtype):
// n entries used, then n (layer, weight) entries.
//   PW_BINDING_POSITIONS     PwPosition positions[]   (layout.pack_positions)
//   PW_BINDING_CODE_RECORDS  PwCodeRecord records[]
// Dispatch ceil(u_count / 64) groups.

#include "common_probewarp.glsl"


layout(local_size_x = 64) in;
layout(std430, binding = PW_BINDING_POSITIONS) readonly buffer Positions { PwPosition positions[]; };
layout(std430, binding = PW_BINDING_CODE_RECORDS) buffer Codes { PwCodeRecord records[]; };

uniform int u_count;

void main()
{
    int q = int(gl_GlobalInvocationID.x);
    if (q >= u_count)
        return;
    PwCode code = pw_code_at(positions[q].xyz);
    // merge repeated prototypes straight into the record (SSBO memory takes
    // dynamic indices cheaply; pw_code_merge's register arrays compile slowly)
    int n = 0;
    for (int i = 0; i < PW_MAX_CODE; ++i) {
        float w = code.w[i];
        if (!(w > 0.0))
            continue;
        int l = code.layer[i];
        int j = 0;
        while (j < n && records[q].entries[j].layer != l)
            ++j;
        if (j < n) {
            records[q].entries[j].weight += w;
        } else {
            records[q].entries[n].layer = l;
            records[q].entries[n].weight = w;
            ++n;
        }
    }
    records[q].n = n;
    records[q].reserved = 0;
}
