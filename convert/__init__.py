"""NIR export of the trained student and Loihi-style fixed-point quantisation."""
