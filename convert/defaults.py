"""The defaults of the conversion commands, in a module that imports nothing.

``mksgn-export``, ``mksgn-snap`` and ``mksgn-quantize`` show them in ``--help`` without
loading torch; the services and :mod:`mksgn.convert.quantize` take them from here.
"""

INPUT_BITS = 8
"""Bits of the graded input payloads (the integer an input spike carries on Loihi 2)."""
INPUT_BITS_RANGE = (2, 24)
"""The input widths mksgn quantises to (a graded spike carries at most 24 bits)."""
EXPORT_SAMPLES = 8
"""Test samples an export is validated on, spike for spike."""
SNAP_SAMPLES = 64
"""Training samples snapping calibrates on."""
QUANTIZE_SAMPLES = 64
"""Training samples quantisation calibrates on."""
DEFAULT_OPSET = 17
"""The ONNX opset written by default."""
MIN_OPSET, MAX_OPSET = 13, 20
"""The ONNX opsets accepted (20: the newest the TorchScript-based exporter writes)."""
