#version 450
// pw_lookup.cs -- the spatial hash on the GPU, cell by cell.
//
// Utility and test pass for common_probewarp.glsl's hash (twin of
// probewarp.format.spatialhash): for each lattice cell cells[i].xyz it writes
// results[i] = (pw_lattice_key, pw_hash(key), pw_find_record(key), 0).
// Needs the Streamer's hash buffer and uniforms (Streamer.bind).
//   binding 0  ivec4 cells[]     binding 1  uvec4 results[]
// Dispatch ceil(u_count / 64) groups.

#include "common_probewarp.glsl"

layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Cells { ivec4 cells[]; };
layout(std430, binding = 1) writeonly buffer Results { uvec4 results[]; };

uniform int u_count;

void main()
{
    int i = int(gl_GlobalInvocationID.x);
    if (i >= u_count)
        return;
    uint key = pw_lattice_key(cells[i].xyz);
    results[i] = uvec4(key, pw_hash(key), pw_find_record(key), 0u);
}
