#version 450
// objects.fs -- one sphere lit by a probe field, ray-traced on a full-screen
// triangle (probewarp.demo.flythrough): the pixel's ray (probewarp.demo.camera
// convention) is intersected with the sphere (sphere_hit; numpy twin
// probewarp.demo.camera.ray_sphere), misses are discarded, hits write their
// depth so the host's geometry occludes them.
//
// Materials: 0 mirror -- radiance arriving at the centre from the reflected
// direction r: with u_direct, decoded per pixel from the code record
// u_layer of code_at.cs (pw_blend_term, the decoder itself); otherwise the
// lighting cubemap u_env, layer u_layer, at level 0. 1 rough -- the Phong
// lobe prefilter u_rough around r. 2 diffuse -- u_albedo x the irradiance
// prefilter u_irr around the normal (E / pi).
// Output: linear radiance, alpha = 2 + material (an object mask).
#include "common_probewarp.glsl"

layout(std430, binding = PW_BINDING_CODE_RECORDS) readonly buffer Codes { PwCodeRecord records[]; };
layout(binding = 0) uniform samplerCubeArray u_env;
layout(binding = 1) uniform samplerCubeArray u_rough;
layout(binding = 2) uniform samplerCubeArray u_irr;

uniform mat4 u_view_proj;
uniform vec3 u_eye;
uniform mat3 u_rotation;      // camera -> world (columns right, up, back)
uniform vec2 u_tan_half;      // tan(fov/2) * (aspect, 1)
uniform vec3 u_centre;
uniform float u_radius;
uniform int u_material;
uniform int u_layer;
uniform int u_direct;
uniform float u_albedo;

in vec2 v_ndc;
layout(location = 0) out vec4 frag;

// distance along unit d from o to the sphere's near side; < 0 on a miss
float sphere_hit(vec3 o, vec3 d, vec3 c, float r)
{
    vec3 oc = o - c;
    float b = dot(d, oc);
    float disc = b * b - (dot(oc, oc) - r * r);
    if (disc < 0.0)
        return -1.0;
    return -b - sqrt(disc);
}

void main()
{
    vec3 d = normalize(u_rotation * vec3(v_ndc * u_tan_half, -1.0));
    float t = sphere_hit(u_eye, d, u_centre, u_radius);
    if (t <= 0.0)
        discard;
    vec3 p = u_eye + t * d;
    vec3 n = normalize(p - u_centre);
    vec3 r = reflect(d, n);
    vec3 c;
    if (u_material == 0) {
        if (u_direct != 0) {
            int m = min(records[u_layer].n, PW_MAX_CODE);
            vec3 y = vec3(0.0);
            for (int i = 0; i < m; ++i)
                y += pw_blend_term(records[u_layer].entries[i].layer, records[u_layer].entries[i].weight,
                                   u_centre, r, 0.0);
            c = pw_from_domain(y);
        } else {
            c = textureLod(u_env, vec4(r, float(u_layer)), 0.0).rgb;
        }
    } else if (u_material == 1) {
        c = texture(u_rough, vec4(r, float(u_layer))).rgb;
    } else {
        c = u_albedo * texture(u_irr, vec4(n, float(u_layer))).rgb;
    }
    vec4 clip = u_view_proj * vec4(p, 1.0);
    gl_FragDepth = 0.5 * (clip.z / clip.w) + 0.5;
    frag = vec4(c, 2.0 + float(u_material));
}
