#version 450
// shadow.vs -- depth-only pass of the sun's orthographic shadow map
// (probewarp.capture.shadow). u_light_clip maps world to clip space of the
// map; capture.fs reads it back through the matching [0,1] matrix.
layout(location = 0) in vec3 in_position;

uniform mat4 u_light_clip;

void main()
{
    gl_Position = u_light_clip * vec4(in_position, 1.0);
}
