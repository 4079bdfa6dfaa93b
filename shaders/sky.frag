#version 330 core
// Demo scene background: the sky along each pixel's view ray, with drifting clouds.

#include "lighting.glsl"

uniform mat4 inverse_view_projection;  // clip space -> world directions (view without translation)
uniform float time;

in vec2 uv;
out vec4 colour;

float hash(vec2 p) {
    return fract(sin(dot(p, vec2(127.1, 311.7))) * 43758.5453);
}

float noise(vec2 p) {
    vec2 i = floor(p), f = fract(p);
    vec2 u = f * f * (3.0 - 2.0 * f);
    return mix(mix(hash(i), hash(i + vec2(1.0, 0.0)), u.x), mix(hash(i + vec2(0.0, 1.0)), hash(i + vec2(1.0)), u.x), u.y);
}

float clouds(vec2 p) {
    float sum = 0.0, amplitude = 0.5;
    for (int octave = 0; octave < 5; ++octave) {
        sum += amplitude * noise(p);
        p *= 2.03;
        amplitude *= 0.5;
    }
    return sum;
}

void main() {
    vec4 far = inverse_view_projection * vec4(2.0 * uv - 1.0, 1.0, 1.0);
    vec3 direction = normalize(far.xyz / far.w);
    vec3 rgb = sky(direction);
    if (direction.y > 0.0) {
        vec2 plane = direction.xz / (direction.y + 0.15) * 1.5 + vec2(0.02 * time, 0.01 * time);
        float cover = smoothstep(0.45, 0.8, clouds(plane)) * smoothstep(0.0, 0.25, direction.y);
        rgb = mix(rgb, vec3(1.0) * (0.8 + 0.4 * sun_colour.r), cover * 0.85);
    }
    colour = vec4(linear_to_srgb(filmic(rgb)), 1.0);
}
