"""Framework-free foundations: NIR semantics, neuron step functions, Loihi arithmetic, the synapse graph."""
