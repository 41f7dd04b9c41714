#version 450
// field_view.fs -- a camera view of the decoded probewarp field.
//
// Every pixel shows the radiance decoded at the camera position u_position
// (DESIGN-NOTES §4) in the pixel's view direction, from the merged code that
// code_at.cs wrote to PW_BINDING_CODE_RECORDS for that position (record 0). Output: linear radiance,
// alpha = coverage (0: no probe resident around the camera), or with
// PW_VIEW_TONEMAP the §5 tonemap T(v) = (v / (1 + v))^(1/PW_TONEMAP_GAMMA), for 8-bit frames.

#ifndef PW_VIEW_TONEMAP
#define PW_VIEW_TONEMAP 0
#endif

#include "common_probewarp.glsl"

layout(std430, binding = PW_BINDING_CODE_RECORDS) readonly buffer Codes { PwCodeRecord records[]; };   // code_at.cs output

uniform vec3 u_position;
uniform mat3 u_rotation;      // camera -> world (columns right, up, back)
uniform vec2 u_tan_half;      // tan(fov/2) * (aspect, 1)
uniform float u_lod;

in vec2 v_ndc;
out vec4 f_color;

void main()
{
    vec3 d = normalize(u_rotation * vec3(v_ndc * u_tan_half, -1.0));
    int n = min(records[0].n, PW_MAX_CODE);
    vec3 y = vec3(0.0);
    for (int i = 0; i < n; ++i)
        y += pw_blend_term(records[0].entries[i].layer, records[0].entries[i].weight, u_position, d, u_lod);
    vec4 v = vec4(pw_from_domain(y), n > 0 ? 1.0 : 0.0);
#if PW_VIEW_TONEMAP
    vec3 m = max(v.rgb, vec3(0.0));
    v.rgb = pow(m / (1.0 + m), vec3(1.0 / PW_TONEMAP_GAMMA));
#endif
    f_color = v;
}
