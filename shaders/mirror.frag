#version 330 core
// Mirror display: both eyes side by side, one eye, or a red-cyan anaglyph, scaled into the
// viewport; optionally the tile grid drawn over each eye (core edges as lines, overlap bands
// shaded, tiles that fell back to an older or raw tile tinted red).

uniform sampler2D left_eye;
uniform sampler2D right_eye;
uniform int mode;             // 0 side by side, 1 left eye, 2 right eye, 3 anaglyph
uniform int show_grid;
uniform ivec2 eye_size;       // (width, height), px
uniform ivec2 core_size;
uniform ivec2 grid_shape;     // (cols, rows)
uniform int overlap;
uniform sampler2D tile_state; // (cols, rows * 2) texels, eye 0 rows first: 1 fell back, 1/3 and 2/3 foveated at 1/2 and 1/4

in vec2 uv;
out vec4 colour;

vec3 grid_overlay(vec3 rgb, vec2 eye_uv, int eye) {
    vec2 pixel = vec2(eye_uv.x, 1.0 - eye_uv.y) * vec2(eye_size);   // image px, row 0 at the top
    vec2 cell = pixel / vec2(core_size);
    ivec2 tile = clamp(ivec2(cell), ivec2(0), grid_shape - 1);
    float state = texelFetch(tile_state, ivec2(tile.x, tile.y + eye * grid_shape.y), 0).r;
    if (state > 0.9)
        rgb = mix(rgb, vec3(1.0, 0.1, 0.1), 0.35);
    else if (state > 0.2)
        rgb = mix(rgb, vec3(0.2, 0.5, 1.0), state > 0.5 ? 0.35 : 0.18);
    vec2 to_edge = abs(pixel - round(cell) * vec2(core_size));             // px to the nearest core edge
    bvec2 inside = bvec2(round(cell.x) > 0.0 && round(cell.x) < float(grid_shape.x),
                         round(cell.y) > 0.0 && round(cell.y) < float(grid_shape.y));
    vec2 px_per_screen = fwidth(pixel);
    bool band = (inside.x && to_edge.x < float(overlap)) || (inside.y && to_edge.y < float(overlap));
    bool line = (inside.x && to_edge.x < px_per_screen.x) || (inside.y && to_edge.y < px_per_screen.y);
    if (band) rgb = mix(rgb, vec3(1.0, 0.85, 0.2), 0.25);
    if (line) rgb = vec3(1.0, 0.85, 0.2);
    return rgb;
}

vec3 eye_colour(int eye, vec2 eye_uv) {
    vec3 rgb = eye == 0 ? texture(left_eye, eye_uv).rgb : texture(right_eye, eye_uv).rgb;
    return show_grid != 0 ? grid_overlay(rgb, eye_uv, eye) : rgb;
}

void main() {
    vec3 rgb;
    if (mode == 0) {
        int eye = uv.x < 0.5 ? 0 : 1;
        rgb = eye_colour(eye, vec2(fract(uv.x * 2.0), uv.y));
    } else if (mode == 3) {
        vec3 left = eye_colour(0, uv), right = eye_colour(1, uv);
        rgb = vec3(left.r, right.g, right.b);
    } else {
        rgb = eye_colour(mode - 1, uv);
    }
    colour = vec4(rgb, 1.0);
}
