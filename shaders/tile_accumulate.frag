#version 330 core
// Tile accumulation, fragment stage: the tile's pixel weighted by its feather ramp, written
// as (rgb * w, w) into a float target with additive blending (ONE, ONE). The weights are
// those of tiles.feather: a ramp across the 2 * overlap band shared with a neighbour,
// sampled at pixel centres, 1 at image borders; the product of the two axes. A tile of scale
// s (tiles.foveate) lies in the top-left corner of its layer at 1/s size and is sampled
// bilinearly at the pixel centres tiles.upscale_tile uses.

uniform sampler2DArray tiles;  // one layer per tile, row 0 = the tile's top row
uniform ivec2 eye_size;
uniform int overlap;
uniform int cosine_ramp;      // 0: linear ramp, 1: cosine ramp
uniform ivec2 level_overlap;  // overlap of the scale-2 and scale-4 tiles, in their own px

flat in int v_layer;
flat in int v_scale;
flat in ivec2 v_origin;
flat in ivec4 v_neighbours;

out vec4 accumulated;

const float PI = 3.14159265358979;

float ramp(float u) {
    return cosine_ramp != 0 ? 0.5 - 0.5 * cos(PI * u) : u;
}

float axis_weight(int pos, int length, int rise, int fall) {
    float weight = 1.0;
    int band = 2 * overlap;
    if (band > 0) {
        if (rise != 0 && pos < band) weight *= ramp((float(pos) + 0.5) / float(band));
        if (fall != 0 && pos >= length - band) weight *= ramp((float(length - 1 - pos) + 0.5) / float(band));
    }
    return weight;
}

void main() {
    ivec2 pixel = ivec2(gl_FragCoord.xy);
    ivec2 local = ivec2(pixel.x, eye_size.y - 1 - pixel.y) - v_origin;
    ivec2 length = textureSize(tiles, 0).xy;
    float weight = axis_weight(local.x, length.x, v_neighbours.x, v_neighbours.y)
                 * axis_weight(local.y, length.y, v_neighbours.z, v_neighbours.w);
    vec3 rgb;
    if (v_scale == 1) {
        rgb = texelFetch(tiles, ivec3(local, v_layer), 0).rgb;
    } else {
        float inner = float(v_scale == 2 ? level_overlap.x : level_overlap.y);
        vec2 source = (vec2(local) + 0.5 - float(overlap)) / float(v_scale) - 0.5 + inner;  // in the small tile's px
        rgb = texture(tiles, vec3((source + 0.5) / vec2(length), float(v_layer))).rgb;
    }
    accumulated = vec4(rgb * weight, weight);
}
