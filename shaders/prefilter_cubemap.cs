#version 450
// prefilter_cubemap.cs -- image-based-lighting prefilter of decoded cubemaps
// (probewarp.runtime.ibl.Prefilter): output texel (layer, face, t, s) with
// centre direction n receives the lobe-weighted mean of the input layer
//
//     out(n) = sum_l L(l) max(n.l, 0)^p dw(l) / sum_l max(n.l, 0)^p dw(l)
//
// over every texel l of the input (one mip level of it: 6 R_in^2 texels),
// dw the texel's solid angle (DESIGN-NOTES §1). p = 1 is the irradiance of a
// Lambertian surface divided by pi (E / pi: multiply by the albedo); p > 1 a
// Phong lobe around the reflected direction (a rough specular). The numpy
// twin is tests/naive.py naive_prefilter_cube.
//
//   image unit 0   layout(rgba32f) readonly  imageCubeArray u_in   (one level)
//   image unit 1   layout(rgba32f) writeonly imageCubeArray u_out  (level 0)
//   uniforms       u_in_res, u_out_res, u_exponent, u_first_in, u_first_out, u_count
// Dispatch (ceil(R_out / LOCAL_SIZE), ceil(R_out / LOCAL_SIZE), 6 * count).

#ifndef LOCAL_SIZE
#define LOCAL_SIZE 8
#endif

#include "common_cubemap.glsl"

layout(local_size_x = LOCAL_SIZE, local_size_y = LOCAL_SIZE) in;
layout(rgba32f, binding = 0) readonly uniform imageCubeArray u_in;
layout(rgba32f, binding = 1) writeonly uniform imageCubeArray u_out;

uniform int u_in_res;
uniform int u_out_res;
uniform float u_exponent;
uniform int u_first_in;
uniform int u_first_out;
uniform int u_count;

void main()
{
    int q = int(gl_WorkGroupID.z) / 6;
    int face = int(gl_WorkGroupID.z) % 6;
    ivec2 st = ivec2(gl_GlobalInvocationID.xy);
    if (st.x >= u_out_res || st.y >= u_out_res || q >= u_count)
        return;
    vec3 n = pw_texel_direction(face, vec2(st), u_out_res);
    vec3 acc = vec3(0.0);
    float wsum = 0.0;
    for (int f = 0; f < 6; ++f)
        for (int t = 0; t < u_in_res; ++t)
            for (int s = 0; s < u_in_res; ++s) {
                vec3 l = pw_texel_direction(f, vec2(s, t), u_in_res);
                float c = dot(n, l);
                if (c <= 0.0)
                    continue;
                float w = pow(c, u_exponent) * pw_texel_solid_angle(vec2(s, t), u_in_res);
                acc += w * imageLoad(u_in, ivec3(s, t, 6 * (u_first_in + q) + f)).rgb;
                wsum += w;
            }
    imageStore(u_out, ivec3(st, 6 * (u_first_out + q) + face), vec4(acc / max(wsum, 1e-30), 1.0));
}
