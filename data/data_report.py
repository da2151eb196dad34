"""What ``mksgn-data inspect`` shows: counts per class, shapes, value ranges, a PNG strip."""

from __future__ import annotations

import os

import numpy as np

from mksgn.atomic import atomic_open
from mksgn.data.dataset import DatasetSplits, SkeletonDataset
from mksgn.data.transforms import missing_joints

STRIP_FRAMES = 8
"""Frames drawn in a sample's PNG strip."""

PERSON_COLOURS = ("tab:blue", "tab:red")


def summarise(splits: DatasetSplits, source: str) -> dict:
    """A JSON-ready summary of ``splits``: per split shapes, lengths, ranges, class counts.

    Per split also ``missing_joints`` (see :func:`~mksgn.data.transforms.missing_joints`):
    ``joint_frames`` (missing joints of present persons in valid frames),
    ``joint_frames_fraction`` (of all joints of present persons in valid frames),
    ``samples`` and ``samples_fraction`` (samples with any missing joint). Value ranges are
    over the present joints only; ``confidence`` says whether the split has one.
    """
    out: dict = {
        "source": source,
        "benchmark": splits.benchmark,
        "layout": splits.train.layout,
        "num_classes": splits.train.num_classes,
        "class_names": list(splits.train.class_names),
        "splits": {},
    }
    for name in ("train", "test"):
        ds: SkeletonDataset = getattr(splits, name)
        n, c, f, v, m = ds.data.shape
        valid = np.arange(f)[None, :] < ds.lengths[:, None]  # (N, F)
        coords = ds.data.transpose(0, 2, 1, 3, 4)[valid]  # (frames, C, V, M)
        present = np.abs(coords).max(axis=(1, 2)) > 0  # (frames, M)
        persons = np.abs(ds.data).reshape(n, -1, m).max(axis=1) > 0
        missing = missing_joints(ds.data, ds.lengths, ds.confidence)  # (N, F, V, M)
        shown = present[:, None, :] & ~missing[valid]  # (frames, V, M)
        ranges = {}
        for axis, label in enumerate("xyz"[:c]):
            vals = coords[:, axis][shown]
            ranges[label] = [float(vals.min()), float(vals.max())] if vals.size else [0.0, 0.0]
        out["splits"][name] = {
            "samples": n,
            "shape": [n, c, f, v, m],
            "frames_valid": {"min": int(ds.lengths.min()), "mean": float(ds.lengths.mean()), "max": int(ds.lengths.max())},
            "two_person_samples": int(persons[:, 1:].any(axis=1).sum()) if m > 1 else 0,
            "value_range": ranges,
            "missing_joints": _missing_summary(missing, int(present.sum()) * v),
            "confidence": ds.confidence is not None,
            "class_counts": ds.class_counts().tolist(),
        }
    return out


def _missing_summary(missing: np.ndarray, joint_frames: int) -> dict:
    """Counts and fractions of missing joints ``(N, F, V, M)`` among ``joint_frames``."""
    count = int(missing.sum())
    samples = int(missing.reshape(missing.shape[0], -1).any(axis=1).sum())
    return {
        "joint_frames": count,
        "joint_frames_fraction": count / joint_frames if joint_frames else 0.0,
        "samples": samples,
        "samples_fraction": samples / missing.shape[0] if missing.shape[0] else 0.0,
    }


def format_summary(summary: dict) -> str:
    """The summary as a terminal table."""
    lines = [
        f"dataset: {summary['source']}  (benchmark {summary['benchmark']}, layout {summary['layout']}, "
        f"{summary['num_classes']} classes)"
    ]
    for name, s in summary["splits"].items():
        fr = s["frames_valid"]
        rng = ", ".join(f"{k} [{lo:.3f}, {hi:.3f}]" for k, (lo, hi) in s["value_range"].items())
        lines.append(
            f"  {name}: {s['samples']} samples, shape (N, C, F, V, M) = {tuple(s['shape'])}, valid frames "
            f"{fr['min']}..{fr['max']} (mean {fr['mean']:.1f}), two persons in {s['two_person_samples']}"
            + (", a confidence per joint" if s.get("confidence") else "")
        )
        lines.append(f"    value range: {rng}")
        gone = s.get("missing_joints")
        if gone is not None:
            lines.append(
                f"    missing joints: {gone['joint_frames']} joint-frames of present persons "
                f"({100 * gone['joint_frames_fraction']:.2f} %), in {gone['samples']} samples "
                f"({100 * gone['samples_fraction']:.1f} %)"
            )
    width = max(len(c) for c in summary["class_names"])
    lines.append(f"  {'class':<{width}}  {'train':>6}  {'test':>6}")
    train = summary["splits"]["train"]["class_counts"]
    test = summary["splits"]["test"]["class_counts"]
    for k, cname in enumerate(summary["class_names"]):
        lines.append(f"  {cname:<{width}}  {train[k]:>6}  {test[k]:>6}")
    return "\n".join(lines)


def plot_sample_strip(ds: SkeletonDataset, index: int, path: str | os.PathLike[str], frames: int = STRIP_FRAMES) -> None:
    """Draw sample ``index`` as a strip of front views (x right, y up) over its valid frames.

    Written atomically as PNG. Bones of person 0 in blue, person 1 in red; missing joints
    (see :func:`~mksgn.data.transforms.missing_joints`) and their bones are not drawn.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not 0 <= index < len(ds):
        raise IndexError(f"sample {index} outside 0..{len(ds) - 1}")
    layout = ds.skeleton
    seq = ds.data[index]  # (C, F, V, M)
    length = int(ds.lengths[index])
    picks = np.unique(np.linspace(0, length - 1, min(frames, length)).round().astype(int))
    present = np.abs(seq).max(axis=(0, 2)) > 0  # (F, M)
    conf = None if ds.confidence is None else ds.confidence[index:index + 1]
    shown = ~missing_joints(seq[None], ds.lengths[index:index + 1], conf)[0]  # (F, V, M)
    pts = seq[:2, :length][:, (present[:length, None, :] & shown[:length])]
    lo, hi = (pts.min(axis=1), pts.max(axis=1)) if pts.size else (np.zeros(2), np.ones(2))
    pad = 0.05 * float((hi - lo).max() or 1.0)
    fig = Figure(figsize=(1.6 * len(picks), 2.6), dpi=100)
    FigureCanvasAgg(fig)
    for col, t in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), col + 1)
        for m in range(seq.shape[3]):
            if not present[t, m]:
                continue
            xy, here = seq[:2, t, :, m], shown[t, :, m]
            for child, parent in layout.edges:
                if here[child] and here[parent]:
                    ax.plot(xy[0, [child, parent]], xy[1, [child, parent]], color=PERSON_COLOURS[m % 2], lw=1.2)
            ax.scatter(xy[0, here], xy[1, here], s=3, color="k")
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"t={t}", fontsize=8)
    label = ds.class_names[int(ds.labels[index])]
    fig.suptitle(f"{ds.sample_ids[index]}: {label} ({length} frames, front view x-y)", fontsize=9)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")
