#version 450
// fullscreen.vs -- a full-screen triangle (no vertex buffer: draw 3 vertices);
// v_ndc at a pixel centre is exactly that centre in NDC (probewarp.demo.camera).

out vec2 v_ndc;

void main()
{
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2)) * 2.0 - 1.0;
    v_ndc = p;
    gl_Position = vec4(p, 0.0, 1.0);
}
