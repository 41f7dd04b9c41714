#version 450
// present.fs -- float frames to display values (probewarp.demo.flythrough.Presenter).
// T(v) = (max(v, 0) / (1 + max(v, 0)))^(1 / TONEMAP_GAMMA), DESIGN-NOTES §5.
// u_view: 0 A, 1 B, 2 error |T(A) - T(B)| x u_gain on a heat ramp, 3 split (A | B).
#ifndef TONEMAP_GAMMA
#define TONEMAP_GAMMA 2.2
#endif

layout(binding = 0) uniform sampler2D u_a;
layout(binding = 1) uniform sampler2D u_b;
uniform int u_view;
uniform float u_gain;

layout(location = 0) out vec4 frag;

vec3 tonemap(vec3 v)
{
    vec3 m = max(v, vec3(0.0));
    return pow(m / (1.0 + m), vec3(1.0 / TONEMAP_GAMMA));
}

void main()
{
    ivec2 px = ivec2(gl_FragCoord.xy);
    int w = textureSize(u_a, 0).x;
    vec3 a = tonemap(texelFetch(u_a, px, 0).rgb);
    vec3 b = tonemap(texelFetch(u_b, px, 0).rgb);
    vec3 c = a;
    if (u_view == 1) {
        c = b;
    } else if (u_view == 2) {
        float e = clamp(u_gain * length(a - b) / sqrt(3.0), 0.0, 1.0);
        c = vec3(clamp(3.0 * e, 0.0, 1.0), clamp(3.0 * e - 1.0, 0.0, 1.0), clamp(3.0 * e - 2.0, 0.0, 1.0));
    } else if (u_view == 3) {
        c = px.x < w / 2 ? a : b;
        if (px.x == w / 2)
            c = vec3(1.0);
    }
    frag = vec4(c, 1.0);
}
