#version 450
// field_view.fs -- a camera view of the decoded probewarp field.
//
// Every pixel shows the radiance decoded at the camera position u_position
// (DESIGN-NOTES §4) in the pixel's view direction, from the merged code that
// code_at.cs wrote to binding 0 for that position. Output: linear radiance,
// alpha = coverage (0: no probe resident around the camera), or with
// PW_VIEW_TONEMAP the §5 tonemap T(v) = (v / (1 + v))^(1/2.2), for 8-bit frames.

#ifndef PW_VIEW_TONEMAP
#define PW_VIEW_TONEMAP 0
#endif

#include "common_probewarp.glsl"

layout(std430, binding = 0) readonly buffer CodeIn { int in_n; ivec2 in_entry[]; };

uniform vec3 u_position;
uniform mat3 u_rotation;      // camera -> world (columns right, up, back)
uniform vec2 u_tan_half;      // tan(fov/2) * (aspect, 1)
uniform float u_lod;

in vec2 v_ndc;
out vec4 f_color;

void main()
{
    vec3 d = normalize(u_rotation * vec3(v_ndc * u_tan_half, -1.0));
    PwCode code;
    code.n = min(in_n, PW_MAX_CODE);
    for (int i = 0; i < code.n; ++i) {
        code.layer[i] = in_entry[i].x;
        code.w[i] = intBitsToFloat(in_entry[i].y);
    }
    vec4 v = pw_radiance(code, u_position, d, u_lod);
#if PW_VIEW_TONEMAP
    vec3 m = max(v.rgb, vec3(0.0));
    v.rgb = pow(m / (1.0 + m), vec3(1.0 / 2.2));
#endif
    f_color = v;
}
