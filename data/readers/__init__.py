"""Readers of skeleton dataset formats; each returns :class:`~mksgn.data.dataset.DatasetSplits`."""
