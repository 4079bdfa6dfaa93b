#version 330 core
// A textured rectangle at a pixel position of the viewport (text panels, e.g. statistics).

uniform vec4 rect;            // (x, y, width, height) in viewport px, y from the top
uniform vec2 viewport_size;

out vec2 uv;

void main() {
    vec2 corner = vec2(gl_VertexID & 1, gl_VertexID >> 1);
    uv = corner;
    vec2 pixel = rect.xy + corner * rect.zw;
    gl_Position = vec4(2.0 * pixel.x / viewport_size.x - 1.0, 1.0 - 2.0 * pixel.y / viewport_size.y, 0.0, 1.0);
}
