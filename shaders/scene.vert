#version 330 core
// Demo scene geometry: positions, normals and texture coordinates to world space and the eye.

layout(location = 0) in vec3 position;
layout(location = 1) in vec3 normal;
layout(location = 2) in vec2 texcoord;

uniform mat4 model;
uniform mat3 normal_matrix;   // inverse transpose of the model's upper 3x3
uniform mat4 view;
uniform mat4 projection;

out vec3 world_position;
out vec3 world_normal;
out vec2 uv;

void main() {
    vec4 world = model * vec4(position, 1.0);
    world_position = world.xyz;
    world_normal = normal_matrix * normal;
    uv = texcoord;
    gl_Position = projection * view * world;
}
