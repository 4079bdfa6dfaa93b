// Shared by the demo scene's shaders: one sun, a sky/ground hemisphere, distance fog,
// a filmic curve and the sRGB encoding of the eye buffers (RGBA8 holding sRGB bytes).

uniform vec3 sun_direction;   // unit vector towards the sun
uniform vec3 sun_colour;
uniform vec3 sky_colour;
uniform vec3 horizon_colour;
uniform vec3 ground_colour;
uniform float fog_density;

vec3 linear_to_srgb(vec3 c) {
    c = clamp(c, 0.0, 1.0);
    return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(vec3(0.0031308), c));
}

vec3 filmic(vec3 x) {  // Narkowicz's ACES fit
    return clamp((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0);
}

vec3 sky(vec3 direction) {
    float up = direction.y;
    vec3 base = up > 0.0 ? mix(horizon_colour, sky_colour, pow(up, 0.5)) : mix(horizon_colour, ground_colour, pow(-up, 0.4));
    float sun = max(dot(direction, sun_direction), 0.0);
    return base + sun_colour * (0.35 * pow(sun, 24.0) + 4.0 * pow(sun, 900.0));
}
