#version 450
// environment.fs -- a lighting cubemap seen from the camera (the environment
// view of the flythrough for sources other than the decoded field, which
// FieldView draws): layer u_layer of u_env in the pixel's direction.
layout(binding = 0) uniform samplerCubeArray u_env;
uniform mat3 u_rotation;
uniform vec2 u_tan_half;
uniform int u_layer;

in vec2 v_ndc;
layout(location = 0) out vec4 frag;

void main()
{
    vec3 d = normalize(u_rotation * vec3(v_ndc * u_tan_half, -1.0));
    frag = vec4(textureLod(u_env, vec4(d, float(u_layer)), 0.0).rgb, 1.0);
}
