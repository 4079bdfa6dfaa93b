#version 330 core
// Overlay panel: premultiplied-alpha RGBA image, row 0 at the top.

uniform sampler2D panel;

in vec2 uv;
out vec4 colour;

void main() {
    colour = texture(panel, uv);
}
