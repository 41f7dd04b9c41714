#version 450
// view.vs -- the scene seen by a pinhole camera (probewarp.capture.view.SceneView):
// the vertex attributes of capture.vs, projected by one view-projection
// matrix; capture.fs shades them (normals flipped towards v_probe = the eye).

layout(location = 0) in vec3 in_position;
layout(location = 1) in vec3 in_normal;
layout(location = 2) in vec3 in_color;
layout(location = 3) in vec2 in_uv;
layout(location = 4) in float in_layer;

uniform mat4 u_view_proj;     // world -> clip
uniform vec3 u_eye;           // camera position (world)

out vec3 v_world;
out vec3 v_normal;
out vec3 v_color;
out vec2 v_uv;
flat out int v_layer;
flat out vec3 v_probe;

void main()
{
    gl_Position = u_view_proj * vec4(in_position, 1.0);
    v_world = in_position;
    v_normal = in_normal;
    v_color = in_color;
    v_uv = in_uv;
    v_layer = int(in_layer + 0.5);
    v_probe = u_eye;
}
