"""The backends and arithmetic tags a graph runs on, in a module that imports nothing.

- ``emulator``: the batched Lava emulator (:mod:`mksgn.core.emulator`), fixed or floating point;
- ``reference``: the reference NIR executor in float64, on the float graph (no tag: it has
  one arithmetic);
- ``lava``: Lava itself (:mod:`mksgn.deploy.lava_builder`), ``fixed_pt`` or ``floating_pt``.

``fixed_pt`` needs a quantised graph (``mksgn-quantize``).
"""

BACKENDS = ("emulator", "reference", "lava")
TAGS = ("fixed_pt", "floating_pt")
