"""Energy per sample of a loaded NIR model on hardware profiles, from a real run: the service behind
``mksgn-energy``.

:func:`estimate` runs test samples of a dataset (stratified by class) through the emulator (or Lava) on a
model loaded once (:func:`mksgn.deploy.run.load_model`), counts what the run did
(:mod:`mksgn.hw_profiles.counts`), prices it on every profile
(:mod:`mksgn.hw_profiles.estimator`), maps the graph to cores
(:mod:`mksgn.hw_profiles.resources`) and compares with the dense ANN baseline
(:func:`ann_baseline`: the teacher, or any GCN given as ONNX).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mksgn.convert.graph_inputs import InputSpec
from mksgn.deploy.run import LoadedModel
from mksgn.errors import MksgnError
from mksgn.hw_profiles.counts import ANNCounts, SNNCounts
from mksgn.hw_profiles.profile import Profile

BASELINE_PROFILE = "cmos45nm"
"""The ANN baseline is priced on this profile (the paper's convention); every SNN profile is compared with it."""


class EnergyError(MksgnError, ValueError):
    """Options that cannot work together; names the option."""


@dataclass
class EnergyResult:
    """The estimate: counts, the ANN baseline and one entry per profile (:meth:`to_dict`: ``energy.json``)."""

    model: str
    tag: str
    counts: SNNCounts
    rows_per_sample: float
    ann: ANNCounts | None
    baseline_profile: str
    profiles: dict[str, dict[str, Any]]
    """Profile name -> the profile, its SNN and ANN energy, resources, ``comparison`` (the SNN on this profile vs
    the ANN on the baseline profile: :func:`~mksgn.hw_profiles.estimator.compare`) and ``reduction_vs_baseline``
    (its ``reduction``: ``None`` when the comparison is incomplete)."""
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record."""
        return {"model": self.model, "tag": self.tag, "counts": self.counts.to_dict(),
                "rows_per_sample": self.rows_per_sample, "ann": self.ann.to_dict() if self.ann else None,
                "baseline_profile": self.baseline_profile, "profiles": self.profiles, "accuracy": self.accuracy}


def load_profiles(profiles: Sequence[str | Path | Profile] = ()) -> list[Profile]:
    """Profiles by name, file or as they are; every built-in profile when none is given."""
    from mksgn.hw_profiles.profile import builtin_profiles, load_profile

    return [p if isinstance(p, Profile) else load_profile(p) for p in (profiles or builtin_profiles())]


def ann_baseline(spec: InputSpec | None, teacher: Path | None = None, teacher_config: str | None = None,
                 onnx: Path | None = None) -> ANNCounts | None:
    """Dense MAC counts of the ANN baseline (a teacher checkpoint, an untrained teacher config, or ONNX).

    Parameters
    ----------
    spec
        The SNN's :class:`~mksgn.convert.graph_inputs.InputSpec` (layout and joints of a teacher);
        ``None`` for a graph not written by ``mksgn-export`` (then only ``onnx`` can be a baseline).
    teacher, teacher_config, onnx
        At most one: a teacher checkpoint, a config name (``tiny``, ``ntu``) or an ONNX file.

    Returns
    -------
    ANNCounts or None
        ``None`` when no baseline is given.
    """
    from mksgn.hw_profiles.counts import onnx_counts, teacher_counts

    if onnx is not None:
        if not Path(onnx).is_file():
            raise EnergyError(f"{onnx}: no such ONNX file")
        return onnx_counts(onnx)
    if teacher is None and teacher_config is None:
        return None
    if spec is None:
        raise EnergyError("--teacher and --teacher-config count a skeleton teacher: they need a graph written by "
                          "mksgn-export; give any ANN baseline as --onnx")
    from mksgn.train.checkpoint import load_checkpoint
    from mksgn.train.config import Config, preset
    from mksgn.train.run import build_teacher

    if teacher is not None:
        record = load_checkpoint(teacher, kind="teacher")
        model = build_teacher(Config.from_dict(record["config"], str(teacher)), record["data"])
        model.load_state_dict(record["model"])
        frames = int(record["data"]["frames"])
    else:
        cfg = preset(teacher_config)
        data = {"layout": spec.layout, "class_names": list(spec.class_names), "modalities": list(cfg.data.modalities),
                "coords": spec.coords}
        model = build_teacher(cfg, data)
        frames = cfg.data.frames
    return teacher_counts(model.eval(), frames, spec.joints)


def _priced(counts: SNNCounts, ann: ANNCounts | None, profiles: list[Profile], layers,
            rows_per_sample: float) -> dict[str, dict[str, Any]]:
    """One JSON-ready entry per profile: SNN and ANN energy, resources, reduction vs the baseline profile."""
    from mksgn.core import loihi
    from mksgn.hw_profiles.estimator import ann_energy, compare, snn_energy
    from mksgn.hw_profiles.profile import load_profile
    from mksgn.hw_profiles.resources import resource_map

    baseline = None
    if ann is not None:
        base = next((p for p in profiles if p.name == BASELINE_PROFILE), None) or load_profile(BASELINE_PROFILE)
        baseline = ann_energy(ann, rows_per_sample, base)
    out = {}
    for p in profiles:
        snn = snn_energy(counts, p)
        ann_e = ann_energy(ann, rows_per_sample, p) if ann is not None else None
        entry = p.to_dict()
        comparison = compare(p.name, snn.to_dict() if snn else None, BASELINE_PROFILE,
                             baseline.to_dict() if baseline else None)
        entry.update({"snn": snn.to_dict() if snn else None, "ann": ann_e.to_dict() if ann_e else None,
                      "resources": resource_map(layers, p, loihi.WEIGHT_BITS).to_dict() if p.kind != "ann" else None,
                      "comparison": comparison,
                      "reduction_vs_baseline": comparison["reduction"] if comparison else None})
        out[p.name] = entry
    return out


def estimate(loaded: LoadedModel, dataset, limit: int = 32, backend: str = "emulator",
             profiles: Sequence[str | Path | Profile] = (), teacher: Path | None = None,
             teacher_config: str | None = None, onnx: Path | None = None, progress: bool = True,
             device: str = "cpu") -> EnergyResult:
    """Run, count, price: the energy per sample of ``loaded`` on every profile.

    Parameters
    ----------
    loaded
        The model, read and fused once (:func:`~mksgn.deploy.run.load_model`); its tag is the
        arithmetic counted (``fixed_pt``: quantised weights, a weight rounded to zero is no synapse).
    dataset
        The samples to run (a test split), or :class:`~mksgn.convert.graph_inputs.ArrayInputs` for any graph.
    limit
        Samples to measure on.
    backend
        ``emulator`` or ``lava``.
    profiles
        Profile names, files or :class:`Profile` objects (default: every built-in profile).
    teacher, teacher_config, onnx
        The ANN baseline (:func:`ann_baseline`), or none.
    progress
        Show a progress bar.
    device
        Where the emulator computes (``auto``, ``cpu``, ``cuda``; the counts are the same).
    """
    from mksgn.core.emulator import Emulator
    from mksgn.deploy.run import run
    from mksgn.hw_profiles.counts import snn_counts
    from mksgn.hw_profiles.resources import graph_resources

    chosen = load_profiles(profiles)  # bad profiles fail before the run
    record = run(loaded, dataset, backend, loaded.tag, "aligned", limit, 16, device, progress=progress)
    counts = snn_counts(loaded.sg, record.to_dict())
    emulator = Emulator(loaded.sg, loaded.tag)  # its latency, fan-outs and weights for the resource map
    counts.latency = emulator.latency
    from mksgn.convert.graph_inputs import ArrayInputs

    spec = None if isinstance(dataset, ArrayInputs) else loaded.input_spec()
    ann = ann_baseline(spec, teacher, teacher_config, onnx)
    rows_per_sample = counts.person_rows / max(counts.samples, 1)
    layers = graph_resources(loaded.sg, loaded.tag, emulator)
    return EnergyResult(str(loaded.path), loaded.tag, counts, rows_per_sample, ann, BASELINE_PROFILE,
                        _priced(counts, ann, chosen, layers, rows_per_sample), record.accuracy)
