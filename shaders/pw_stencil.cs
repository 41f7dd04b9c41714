#version 450
// pw_stencil.cs -- which probes a decode blends, position by position.
//
// Utility and test pass for common_probewarp.glsl's pw_find_probes (grid and
// scattered archives alike; CPU twin Decoder.pw_find_probes): for each
// position it writes PW_STENCIL_WORDS uints: n, then slot[K], local[K] and
// floatBitsToUint(w[K]) of the PwStencil, K = PW_CODE_CORNERS (fixed slots;
// unused entries: slot 0xFFFFFFFF, local and weight 0).
// Needs the Streamer's buffers and uniforms (Streamer.bind).
//   binding PW_BINDING_POSITIONS  PwPosition positions[]
//   binding PW_BINDING_CODE_RECORDS  uint stencils[]
// Dispatch ceil(u_count / 64) groups.

#include "common_probewarp.glsl"

#define PW_STENCIL_WORDS (1 + 3 * PW_CODE_CORNERS)

layout(local_size_x = 64) in;
layout(std430, binding = PW_BINDING_POSITIONS) readonly buffer Positions { PwPosition positions[]; };
layout(std430, binding = PW_BINDING_CODE_RECORDS) writeonly buffer Stencils { uint stencils[]; };

uniform int u_count;

void main()
{
    int i = int(gl_GlobalInvocationID.x);
    if (i >= u_count)
        return;
    PwStencil st = pw_find_probes(positions[i].xyz);
    int o = i * PW_STENCIL_WORDS;
    stencils[o] = uint(st.n);
    for (int c = 0; c < PW_CODE_CORNERS; ++c) {
        bool used = st.slot[c] != PW_PAGE_ABSENT;
        stencils[o + 1 + c] = used ? uint(st.slot[c]) : 0xFFFFFFFFu;
        stencils[o + 1 + PW_CODE_CORNERS + c] = used ? uint(st.local[c]) : 0u;
        stencils[o + 1 + 2 * PW_CODE_CORNERS + c] = used ? floatBitsToUint(st.w[c]) : 0u;
    }
}
