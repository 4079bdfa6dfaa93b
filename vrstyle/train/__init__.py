"""Training students from the teachers: data, losses, calibration, distillation, evaluation."""
