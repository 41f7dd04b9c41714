#version 450
// view_sky.fs -- the analytic sky of capture (common_sky.glsl) behind the
// geometry of a camera view; the pixel's direction follows demo/camera.py.
#include "common_sky.glsl"

uniform mat3 u_rotation;      // camera -> world (columns right, up, back)
uniform vec2 u_tan_half;      // tan(fov/2) * (aspect, 1)

in vec2 v_ndc;
layout(location = 0) out vec4 frag;

void main()
{
    vec3 d = normalize(u_rotation * vec3(v_ndc * u_tan_half, -1.0));
    frag = vec4(sky_radiance(d), 1.0);
}
