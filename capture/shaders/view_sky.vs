#version 450
// view_sky.vs -- one triangle over the viewport at the far plane (z_ndc = 1):
// with depth func <= it fills only pixels no geometry covered.
out vec2 v_ndc;

void main()
{
    vec2 p = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    v_ndc = p;
    gl_Position = vec4(p, 1.0, 1.0);
}
