"""The memory layout of the networks' activations while they train.

A network that supports it (the student :class:`~mksgn.train.student.MKSGN`, each stream of
the teacher :class:`~mksgn.train.teacher.GCNStream`) has an ``activation_format``: its
``(B, C, F, V)`` activations are made contiguous in that format where they enter, and every
block keeps it (convolutions, element-wise ops, and :class:`~mksgn.train.blocks.JointMix`,
which multiplies a channels-last map without a copy). The parameters keep their layout, so
checkpoints, optimiser states and DistributedDataParallel see no difference.

On the CPU the trainer runs its training steps channels-last: oneDNN's temporal convolutions
alone run 2-3x faster in that layout, a whole ``tiny`` step about 1.1x (``python -m bench train``
measures both layouts taking turns in one run). Validation, test and every later stage use the default
layout, so a checkpoint scores the same in training as when it is loaded again; the two
layouts round convolutions differently (as do different CPUs and thread counts), so one
seed's trained weights are not bit-identical between them. On CUDA nothing changes (not
measured).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

TRAINING_FORMAT: dict[str, torch.memory_format] = {"cpu": torch.channels_last}
"""The activation layout of training steps per device type (others: ``torch.contiguous_format``)."""


def training_format(device: torch.device) -> torch.memory_format:
    """The layout training steps on ``device`` use (:data:`TRAINING_FORMAT`)."""
    return TRAINING_FORMAT.get(device.type, torch.contiguous_format)


def in_format(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """``x`` (a ``(B, C, F, V)`` map) contiguous in ``memory_format``; the default layout
    (``torch.contiguous_format``) leaves ``x`` as it is, its arithmetic unchanged."""
    if memory_format == torch.contiguous_format:
        return x
    return x.contiguous(memory_format=memory_format)


@contextmanager
def activation_format(networks: Iterable[nn.Module], memory_format: torch.memory_format) -> Iterator[None]:
    """Run every module with an ``activation_format`` in ``networks`` in ``memory_format``, then restore it.

    A network's ``frozen`` networks (those a training objective runs without training them, such
    as the teacher a student distils from) follow it.
    """
    nets = [n for net in networks for n in (net, *getattr(net, "frozen", ()))]
    modules = [m for net in nets for m in net.modules() if hasattr(m, "activation_format")]
    before = [m.activation_format for m in modules]
    for m in modules:
        m.activation_format = memory_format
    try:
        yield
    finally:
        for m, fmt in zip(modules, before, strict=True):
            m.activation_format = fmt
