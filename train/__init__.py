"""Data, skeleton layouts, the MK-SGN student and teacher, and training."""
