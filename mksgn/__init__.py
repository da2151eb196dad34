"""mksgn: train, export, quantise, deploy and measure MK-SGN spiking skeleton models.

The pipeline is laid out by subpackage:

- :mod:`mksgn.core` -- NIR semantics, neuron steps, Loihi arithmetic, the synapse graph, its
  kinds, fixed-point records and the emulator (no SNN framework);
- :mod:`mksgn.data` -- skeleton layouts, datasets, readers, transforms, the built-in dataset;
- :mod:`mksgn.train` -- the student and teacher, training;
- :mod:`mksgn.convert` -- NIR export and fixed-point quantisation;
- :mod:`mksgn.deploy` -- Lava and spike parity;
- :mod:`mksgn.hw_profiles` -- hardware profiles and the energy estimator.
"""

__version__ = "0.1.0"
