#version 330 core
// Demo scene surfaces: a procedural texture (sRGB texture array, decoded on sampling) lit by
// the sun (Blinn-Phong) and the sky hemisphere, with a rim light and fog towards the horizon.

#include "lighting.glsl"

uniform sampler2DArray albedo_maps;
uniform int albedo_layer;
uniform vec2 uv_scale;
uniform vec3 tint;
uniform float shininess;
uniform float specular;
uniform vec3 eye_position;

in vec3 world_position;
in vec3 world_normal;
in vec2 uv;

out vec4 colour;

void main() {
    vec3 n = normalize(world_normal);
    vec3 to_eye = world_position - eye_position;
    float distance = length(to_eye);
    vec3 v = -to_eye / distance;
    vec3 albedo = texture(albedo_maps, vec3(uv * uv_scale, float(albedo_layer))).rgb * tint;
    float diffuse = max(dot(n, sun_direction), 0.0);
    float highlight = diffuse > 0.0 ? specular * pow(max(dot(n, normalize(sun_direction + v)), 0.0), shininess) : 0.0;
    vec3 ambient = mix(ground_colour, sky_colour, 0.5 + 0.5 * n.y);
    float rim = pow(1.0 - max(dot(n, v), 0.0), 3.0);
    vec3 lit = albedo * (ambient + sun_colour * diffuse) + sun_colour * highlight + 0.25 * rim * horizon_colour;
    float fog = 1.0 - exp(-fog_density * distance);
    lit = mix(lit, sky(-v), fog);
    colour = vec4(linear_to_srgb(filmic(lit)), 1.0);
}
