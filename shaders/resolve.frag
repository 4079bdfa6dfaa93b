#version 330 core
// Resolve: the accumulated (sum of w * rgb, sum of w) divided through. Pixels whose weight sum
// is at most weight_eps (no tile reached them) give 0, the rule of tiles.Stitcher.
// Tile values are sRGB-coded bytes. An sRGB target (e.g. an OpenXR swapchain offering only
// SRGB8_ALPHA8) is written with GL_FRAMEBUFFER_SRGB on, which encodes what the shader writes:
// so the shader decodes first and the stored bytes are the stitched bytes.

uniform sampler2D accumulated;
uniform float weight_eps;
uniform int srgb_target;

in vec2 uv;
out vec4 colour;

vec3 srgb_to_linear(vec3 c) {
    return mix(c / 12.92, pow((c + 0.055) / 1.055, vec3(2.4)), step(vec3(0.04045), c));
}

void main() {
    vec4 sum = texelFetch(accumulated, ivec2(gl_FragCoord.xy), 0);
    vec3 rgb = sum.a > weight_eps ? sum.rgb / sum.a : vec3(0.0);
    colour = vec4(srgb_target != 0 ? srgb_to_linear(rgb) : rgb, 1.0);
}
