"""Readers of skeleton dataset formats; each returns :class:`~mksgn.train.dataset.DatasetSplits`."""
