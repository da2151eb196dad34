"""Small datasets built in memory for tests."""

from __future__ import annotations

import numpy as np

from mksgn.data.dataset import DatasetSplits, SkeletonDataset


SMALL_TRAINING = [
    "--set", "student.branch_channels=8", "--set", "student.channels=[8, 8]", "--set", "student.strides=[1, 2]",
    "--set", "teacher.channels=[8, 8, 8, 8, 8, 8, 8, 8, 8, 8]", "--set", "data.frames=16",
    "--set", "data.batch_size=16", "--set", "distill.feature_layers=1", "--quiet",
    "--set", "train_teacher.min_steps=0", "--set", "train_student.min_steps=0",  # the epochs as given
]
"""mksgn-train options for a small model that trains in seconds (tests)."""


def assert_usage_error(err: str, prog: str, *needles: str) -> None:
    """A usage error on stderr: the usage line(s), then exactly one ``PROG: error: ...`` line naming ``needles``."""
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("usage:") and "Traceback" not in err, err
    assert lines[-1].startswith(f"{prog}: error:"), err
    assert sum(line.startswith(f"{prog}: error:") for line in lines) == 1, err
    for needle in needles:
        assert needle in lines[-1], err


def synth_small_npz(tmp_path_factory):
    """A small built-in-style dataset (84 samples, 20 frames, seed 1) written by ``mksgn-data synth``."""
    from mksgn.data.data_cli import main as data_main

    path = tmp_path_factory.mktemp("data") / "small.npz"
    assert data_main(["synth", "--out", str(path), "--samples", "84", "--frames", "20", "--seed", "1"]) == 0
    return path


def default_sigint() -> None:
    """``preexec_fn`` for a child that must see Ctrl-C: SIGINT back to its default disposition.

    A shell starts background jobs (``make test &``, some CI runners) with SIGINT ignored, and
    children inherit that; Python then installs no KeyboardInterrupt handler, as a background
    job should not get a terminal's Ctrl-C. Tests that send SIGINT undo it for their child.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def random_dataset(n: int = 6, frames: int = 10, classes: int = 3, seed: int = 0, layout: str = "ntu25",
                   joints: int = 25, source: str = "<test>") -> SkeletonDataset:
    """A dataset with random coordinates, random valid lengths and zero padding."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, 3, frames, joints, 2)).astype(np.float32)
    lengths = rng.integers(frames // 2, frames + 1, size=n)
    for i, k in enumerate(lengths):
        data[i, :, k:] = 0.0
    data[::2, ..., 1] = 0.0  # every other sample has one person only
    labels = np.arange(n) % classes
    return SkeletonDataset(
        data=data, labels=labels.astype(np.int64), lengths=lengths.astype(np.int64),
        class_names=[f"action {k}" for k in range(classes)],
        sample_ids=[f"s{i:03d}" for i in range(n)], layout=layout, source=source,
    )


def random_splits(seed: int = 0, **kwargs) -> DatasetSplits:
    """Train and test random datasets with the same classes."""
    return DatasetSplits(random_dataset(seed=seed, **kwargs), random_dataset(seed=seed + 1, **kwargs), "test-bench")


def lively_tiny_student(seed: int = 0, classes: int = 14):
    """A random ``tiny`` student (non-trivial BatchNorm, calibrated so every population fires)
    and person rows ``(R, 4, 3, 32, 25)`` to run it on."""
    import torch

    from mksgn.data.skeletons import NTU25
    from mksgn.train.calibrate import calibrate_activity, randomise_batchnorm
    from mksgn.train.config import preset
    from mksgn.train.student import MKSGN

    torch.manual_seed(seed)
    cfg = preset("tiny")
    model = MKSGN(cfg.student, NTU25, classes, cfg.data.modalities).eval()
    randomise_batchnorm(model, seed)
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(12, 4, 3, cfg.data.frames, 25, generator=g).cumsum(dim=3) / cfg.data.frames**0.5
    calibrate_activity(model, rows[:6])
    return model, rows[6:]


def save_tiny_student(path, seed: int = 3):
    """Save a lively ``tiny`` student for the built-in dataset as a checkpoint; returns the model."""
    from mksgn.data.builtin import load_dataset
    from mksgn.train.checkpoint import save_checkpoint
    from mksgn.train.config import preset

    splits = load_dataset(None)
    cfg = preset("tiny")
    model, _ = lively_tiny_student(seed=seed, classes=len(splits.train.class_names))
    data = {"class_names": list(splits.train.class_names), "layout": "ntu25", "modalities": list(cfg.data.modalities),
            "frames": cfg.data.frames, "source": splits.train.source, "benchmark": splits.benchmark,
            "path": None, "sha256": None}  # the built-in dataset
    save_checkpoint(path, {"kind": "student", "config": cfg.to_dict(), "data": data, "model": model.state_dict(),
                           "epoch": 1})
    return model


def tiny_graph(seed: int = 0, classes: int = 14):
    """The lively tiny student exported to NIR, and rows to run it on."""
    from mksgn.convert.nir_export import export_student

    model, rows = lively_tiny_student(seed, classes)
    builtin = {"path": None, "sha256": None, "source": "the built-in dataset", "benchmark": "builtin"}
    graph = export_student(model, 32, 25, [f"class {k}" for k in range(classes)], "ntu25", data=builtin)
    return graph, model, rows


def graph_inputs(graph, rows):
    """Per-Input ``(T, R, 3, F, V)`` tensors of an mksgn graph for person rows."""
    from mksgn.core.nir_file import decode_metadata

    meta = decode_metadata(graph.metadata)
    steps = int(meta["time_steps"])
    return {name: rows[:, i].double().unsqueeze(0).expand(steps, *rows[:, i].shape)
            for i, name in enumerate(meta["input"]["inputs"])}


def recurrent_cubalif_graph(rng, n: int, n_in: int):
    """Input -> Linear -> nested {CubaLIF with a recurrent Linear} -> Affine -> Output (dt 1e-4).

    Weights are drawn from ``rng`` (recurrent, input, read-out, in that order).
    """
    import nir

    cuba = nir.CubaLIF(tau_syn=np.full(n, 4e-4), tau_mem=np.full(n, 2e-4), r=np.full(n, 2.0), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.full(n, 1.5))
    inner = nir.NIRGraph(nodes={"input": nir.Input(np.array([n])), "lif": cuba,
                                "rec": nir.Linear(weight=rng.normal(0, 0.4, (n, n))), "output": nir.Output(np.array([n]))},
                         edges=[("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")], type_check=False)
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([n_in])),
                               "fc": nir.Linear(weight=rng.normal(0, 1.5, (n, n_in))),
                               "rnn": inner, "out_fc": nir.Affine(weight=rng.normal(0, 0.5, (3, n)), bias=np.zeros(3)),
                               "output": nir.Output(np.array([3]))},
                        edges=[("input", "fc"), ("fc", "rnn"), ("rnn", "out_fc"), ("out_fc", "output")],
                        metadata={"dt": 1e-4}, type_check=False)
