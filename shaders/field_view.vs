#version 450
// field_view.vs -- a full-screen triangle (no vertex buffer: draw 3 vertices).

out vec2 v_ndc;

void main()
{
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2)) * 2.0 - 1.0;
    v_ndc = p;
    gl_Position = vec4(p, 0.0, 1.0);
}
