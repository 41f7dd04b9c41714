#version 450
// shadow.fs -- depth only: the shadow map keeps the fixed-function depth.
void main()
{
}
