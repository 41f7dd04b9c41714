#version 450
// sample_cubearray.cs -- read a cube-map array at a list of queries.
//
// Utility and test pass: results[i] = texture(u_cubes, vec4(dir_i, layer_i))
// (or textureLod at u_lod with USE_LOD 1), for checking the GPU against the
// CPU convention (baker/cubemap.py sample_cube, tests/naive.py) and for
// decode parity tests.
//
// Buffers (std430, one vec4 = 16 bytes per entry, numpy (n, 4) float32):
//   binding 0  queries[i]: QUERY_TEXEL 0: (x, y, z, layer), any nonzero
//                          direction (need not be normalised);
//                          QUERY_TEXEL 1: (face, s, t, layer) in texel units
//                          of the sampled level, texel k's centre at k,
//                          turned into a direction by pw_texel_direction
//                          (common_cubemap.glsl, DESIGN-NOTES §1).
//   binding 1  results[i]: the filtered RGBA value.
// Texture: layout(binding = CUBE_BINDING) samplerCubeArray, e.g.
// probewarp.runtime.cubearray.CubemapArray.bind(CUBE_BINDING). Layer l is cubemap l
// of the array (depth 6 * l + face), as uploaded by CubemapArray.upload.
// Uniforms: u_count (number of queries), u_lod (level, USE_LOD 1 only).
// Dispatch ceil(u_count / LOCAL_SIZE) groups.

#ifndef LOCAL_SIZE
#define LOCAL_SIZE 64
#endif
#ifndef USE_LOD
#define USE_LOD 0       // 0: texture() (base level in compute), 1: textureLod(u_lod)
#endif
#ifndef QUERY_TEXEL
#define QUERY_TEXEL 0   // 0: queries are directions, 1: (face, s, t) texel coordinates
#endif
#ifndef CUBE_BINDING
#define CUBE_BINDING 0
#endif

#include "common_cubemap.glsl"

layout(local_size_x = LOCAL_SIZE) in;

layout(binding = CUBE_BINDING) uniform samplerCubeArray u_cubes;

layout(std430, binding = 0) readonly buffer Queries { vec4 queries[]; };
layout(std430, binding = 1) writeonly buffer Results { vec4 results[]; };

uniform uint u_count;
uniform float u_lod;

void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= u_count)
        return;
    vec4 q = queries[i];
#if USE_LOD
    float lod = u_lod;
#else
    float lod = 0.0;
#endif
#if QUERY_TEXEL
    int R = textureSize(u_cubes, int(lod)).x;
    vec3 dir = pw_texel_direction(int(q.x), q.yz, R);
#else
    vec3 dir = q.xyz;
#endif
#if USE_LOD
    results[i] = textureLod(u_cubes, vec4(dir, q.w), lod);
#else
    results[i] = texture(u_cubes, vec4(dir, q.w));
#endif
}
