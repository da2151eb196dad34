"""Skeleton data: layouts, datasets, readers and writer, transforms, the built-in dataset, ``mksgn-data``."""
