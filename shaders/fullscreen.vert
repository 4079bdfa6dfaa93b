#version 330 core
// One triangle covering the viewport (draw 3 vertices with no attributes); uv runs 0..1 over
// the viewport with v = 0 at the bottom, the GL way.

out vec2 uv;

void main() {
    vec2 corner = vec2((gl_VertexID << 1) & 2, gl_VertexID & 2);  // (0,0) (2,0) (0,2)
    uv = corner;
    gl_Position = vec4(2.0 * corner - 1.0, 0.0, 1.0);
}
