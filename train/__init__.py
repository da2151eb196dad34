"""The MK-SGN student and teacher, distillation and training."""
