#version 330 core
// Reprojection: each pixel of the target view shows the source view's stylised image (the other
// eye, or the previous frame) where the source sees the same surface, blended over the target's
// own at alpha = weight; elsewhere (a disocclusion, or outside the source's view) the fragment is
// discarded and the target keeps its own stylised pixel, unless fill_reach > 0: then a pixel
// within fill_reach of a seen one along its row takes the farther side's (the background's)
// strokes, mirrored about that neighbour (vrstyle.reproject.fill_disocclusions).
// The rule is vrstyle.reproject.correspondence's: unproject the target's depth, project into the
// source, and accept when the source's depth there agrees within a relative tolerance. Depths
// are window depths (0 near, 1 far) in GL orientation. The source holds sRGB-coded bytes, or
// (srgb_source) is an sRGB texture whose samples come decoded; an sRGB target encodes on write.

uniform sampler2D source_image;
uniform sampler2D source_depth;
uniform sampler2D target_depth;
uniform mat4 target_to_world;   // inverse(projection * view) of the target eye
uniform mat4 world_to_source;   // projection * view of the source eye
uniform mat4 source_view;       // world-to-eye of the source eye
uniform vec2 source_projection; // (P[2][2], P[2][3]) of the source's projection, row-major
uniform vec2 eye_size;          // both eyes' images: the bottom-left of their textures
uniform float tolerance;
uniform float edge_slack;  // pixels past the first and last pixel centres still inside (EDGE_SLACK)
uniform int srgb_source;
uniform int srgb_target;
uniform float weight;
uniform int fill_reach;

in vec2 uv;
out vec4 colour;

vec3 srgb_to_linear(vec3 c) {
    return mix(c / 12.92, pow((c + 0.055) / 1.055, vec3(2.4)), step(vec3(0.04045), c));
}

vec3 linear_to_srgb(vec3 c) {
    return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(vec3(0.0031308), c));
}

// Catmull-Rom over 4 x 4 texels (vrstyle.reproject.sample with cubic=True): sharper than the
// bilinear filter, so strokes carried from frame to frame blur less. Edges repeat.
vec4 weights(float t) {
    float t2 = t * t, t3 = t2 * t;
    return 0.5 * vec4(-t3 + 2.0 * t2 - t, 3.0 * t3 - 5.0 * t2 + 2.0, -3.0 * t3 + 4.0 * t2 + t, t3 - t2);
}

vec3 catmull_rom(vec2 at) {
    vec2 position = at - 0.5;
    ivec2 first = ivec2(floor(position));
    vec4 wx = weights(position.x - float(first.x)), wy = weights(position.y - float(first.y));
    ivec2 last = ivec2(eye_size) - 1;
    vec3 sum = vec3(0.0);
    for (int j = 0; j < 4; ++j) {
        for (int i = 0; i < 4; ++i) {
            ivec2 texel = clamp(first + ivec2(i - 1, j - 1), ivec2(0), last);
            sum += wx[i] * wy[j] * texelFetch(source_image, texel, 0).rgb;
        }
    }
    return clamp(sum, 0.0, 1.0);
}

// Where the source sees the target's pixel: false for a disocclusion or outside the source's view.
bool source_at(ivec2 pixel, out vec2 at) {
    at = vec2(0.0);
    float depth = texelFetch(target_depth, pixel, 0).r;
    vec4 world = target_to_world * vec4((vec2(pixel) + 0.5) / eye_size * 2.0 - 1.0, depth * 2.0 - 1.0, 1.0);
    world /= world.w;
    vec4 clip = world_to_source * world;
    float distance = -(source_view * world).z;
    if (clip.w <= 0.0 || distance <= 0.0) return false;
    at = (clip.xy / clip.w * 0.5 + 0.5) * eye_size;  // source pixels, GL orientation
    if (any(lessThan(at, vec2(0.5 - edge_slack))) || any(greaterThan(at, eye_size - 0.5 + edge_slack))) return false;
    float there = texelFetch(source_depth, ivec2(floor(at)), 0).r;
    float seen = source_projection.y / ((there * 2.0 - 1.0) + source_projection.x);
    return abs(seen - distance) <= tolerance * max(distance, 1e-6);
}

void main() {
    ivec2 pixel = ivec2(gl_FragCoord.xy);
    vec2 at;
    if (!source_at(pixel, at)) {
        float background = -1.0;  // the chosen neighbour's depth; the right side wins a tie
        for (int side = -1; side <= 1; side += 2) {
            for (int k = 1; k <= fill_reach; ++k) {
                ivec2 neighbour = pixel + ivec2(side * k, 0);
                if (neighbour.x < 0 || neighbour.x >= int(eye_size.x)) break;
                vec2 there;
                if (source_at(neighbour, there)) {
                    float depth = texelFetch(target_depth, neighbour, 0).r;
                    if (depth >= background) {
                        background = depth;
                        at = there + vec2(float(side * k), 0.0);
                    }
                    break;
                }
            }
        }
        if (background < 0.0) discard;
    }
    vec3 rgb = catmull_rom(at);
    if (srgb_source != srgb_target) rgb = srgb_target != 0 ? srgb_to_linear(rgb) : linear_to_srgb(rgb);
    colour = vec4(rgb, weight);
}
