#version 450
// capture_sky.vs -- one triangle over the whole capture target, at the far
// plane (z_ndc = 1): with depth func <= it fills only texels no geometry
// covered (the target's depth is cleared to 1).
void main()
{
    vec2 p = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    gl_Position = vec4(p, 1.0, 1.0);
}
