"""mksgn: train, export, quantise, deploy and measure MK-SGN spiking skeleton models.

The pipeline is laid out by subpackage:

- :mod:`mksgn.data` -- skeleton layouts, datasets, readers, transforms, the built-in dataset;
- :mod:`mksgn.train` -- the student and teacher, training;
- :mod:`mksgn.convert` -- NIR export and fixed-point quantisation;
- :mod:`mksgn.deploy` -- Lava, the batched emulator and spike parity;
- :mod:`mksgn.hw_profiles` -- hardware profiles and the energy estimator.
"""

__version__ = "0.1.0"
