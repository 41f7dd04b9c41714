#version 450
// overlay.fs -- the flythrough window's text overlay (an RGBA8 texture the
// size of the window, drawn with alpha blending).
layout(binding = 0) uniform sampler2D u_text;
layout(location = 0) out vec4 frag;

void main()
{
    frag = texelFetch(u_text, ivec2(gl_FragCoord.xy), 0);
}
