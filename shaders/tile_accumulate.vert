#version 330 core
// Tile accumulation, vertex stage: one instance per returned tile (core + overlap band),
// a 4-vertex strip covering the tile's rectangle of the eye. Pixels outside the eye are
// clipped by the viewport, so tiles that overhang the image need no special case.
// Eye images are stored the GL way (row 0 at the bottom); tile and grid coordinates are
// image coordinates (row 0 at the top), as in the tiles library.

layout(location = 0) in int tile_layer;  // layer of the tile array: eye * tiles_per_eye + tile
layout(location = 1) in int tile_scale;  // 1, or 2 / 4: a foveated tile, upscaled from its layer's corner

uniform ivec2 eye_size;       // (width, height), px
uniform ivec2 core_size;      // tile core (width, height), px
uniform ivec2 grid_shape;     // (cols, rows)
uniform int overlap;          // band returned beyond the core on each side, px
uniform int tiles_per_eye;

flat out int v_layer;
flat out int v_scale;
flat out ivec2 v_origin;      // top-left of the returned tile in image px
flat out ivec4 v_neighbours;  // (left, right, top, bottom): 1 where a neighbouring tile blends in

void main() {
    int tile = tile_layer % tiles_per_eye;
    int row = tile / grid_shape.x;
    int col = tile % grid_shape.x;
    ivec2 out_size = core_size + 2 * overlap;
    v_layer = tile_layer;
    v_scale = tile_scale;
    v_origin = ivec2(col, row) * core_size - overlap;
    v_neighbours = ivec4(col > 0, col < grid_shape.x - 1, row > 0, row < grid_shape.y - 1);
    ivec2 corner = ivec2(gl_VertexID & 1, gl_VertexID >> 1);
    vec2 pixel = vec2(v_origin + corner * out_size);
    gl_Position = vec4(2.0 * pixel.x / float(eye_size.x) - 1.0,
                       1.0 - 2.0 * pixel.y / float(eye_size.y), 0.0, 1.0);
}
