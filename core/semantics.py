"""What a NIR graph does not state about its neurons: the step, the reset, the spike, the floor.

NIR gives each neuron an ODE and ``v_reset``; how a framework discretised and reset it is not in
the file, and neither is ``dt``. The same file run with another framework's conventions gives
other spikes. mksgn states them in a :class:`Semantics` record, stores it in the graph's
metadata (``metadata["dt"]``, ``metadata["neuron_semantics"]``) whenever it writes a graph, and
reads it back, so that every later command runs the graph the same way. A graph that states
none runs with NIR's own reading (:data:`PRESETS` ``"nir"``) at :data:`~mksgn.core.timestep.DEFAULT_DT`,
and a :class:`SemanticsWarning` names what was assumed.

The neuron of a step (``x`` its input, ``a, b, c`` its forward-Euler coefficients, ``theta``
its threshold; current-based neurons first update ``i``, see ``current``)::

    v_t = a v'_{t-1} + b x_t + c                           (reset "zero": 0 the step after a spike;
                                                            "subtract-next": minus theta s_{t-1})
    s_t = [v_t > theta]  or  [v_t >= theta]                 (threshold ">" or ">=")
          or max(floor(v_t / theta), 0) if spikes = "multi" (a whole number of spikes per step)
    v'_t = v_reset where s_t > 0                            (reset "to-v-reset": NIR's; Lava's at 0)
           v_t - theta s_t                                  (reset "subtract": at once, then decayed)
           v_t                                              (reset "zero", "subtract-next": next step)
    v'_t = max(v'_t, v_min)                                 (a membrane floor, if any)

Fields
------
reset
    ``"to-v-reset"`` (NIR, Lava, snnTorch ``Leaky`` with ``reset_mechanism="zero"``),
    ``"zero"`` (snnTorch ``Synaptic``/``RSynaptic`` ``"zero"``: the whole membrane of the step
    after a spike is zero, that step's input is lost), ``"subtract"`` (sinabs: ``v - theta`` at
    the spike), ``"subtract-next"`` (snnTorch ``"subtract"``: ``theta`` is taken from the next
    step's membrane, after its decay).
threshold
    ``">"`` (NIR, Lava, snnTorch, norse) or ``">="`` (sinabs).
spikes
    ``"single"`` (0 or 1) or ``"multi"`` (sinabs ``MultiSpike``: ``floor(v / theta)`` spikes).
v_min
    A floor under the membrane after the reset (sinabs ``min_v_mem``), or ``None``.
recurrent_initial
    What the edge that closes a cycle delivers at ``t = 0``: ``"zero"`` (mksgn's executor) or
    ``"bias"``: the chain after the cycle's neuron computed on zero spikes (snnTorch's
    ``RLeaky``/``RSynaptic``, where ``W s_{-1} + b = b``).
current_input
    For current-based neurons (``i_t = a_syn i_{t-1} + b_syn x_t``, then ``v_t`` from ``i_t``):
    ``"integrated"`` (NIR: ``b_syn = w_in dt / tau_syn`` in forward Euler) or ``"jump"`` (norse:
    the input jumps into the current, ``b_syn = w_in``).
discretisation
    ``"forward-euler"`` (``a = 1 - dt/tau``, ``b = r dt/tau``: NIR's usual reading, snnTorch,
    norse) or ``"exponential"`` (``a = exp(-dt/tau)``, ``b = r (1 - a)``: sinabs' ``LIF``); stored
    as ``metadata["discretisation"]``.
by_type
    Overrides of the neuron fields for one NIR node type (``"LIF"``), or for neurons of that type
    on a cycle (``"recurrent LIF"``, which wins): snnTorch's ``Leaky`` and ``RLeaky`` are both
    LIF nodes but reset differently with ``reset_mechanism="zero"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mksgn.core import timestep
from mksgn.core.fields import FieldError
from mksgn.errors import MksgnError, MksgnWarning

METADATA_KEY = "neuron_semantics"
"""Graph metadata entry holding the :class:`Semantics` record (JSON)."""

RESETS = ("to-v-reset", "zero", "subtract", "subtract-next")
THRESHOLDS = (">", ">=")
SPIKES = ("single", "multi")
RECURRENT_INITIAL = ("zero", "bias")
CURRENT_INPUTS = ("integrated", "jump")
NEURON_TYPES = ("LIF", "IF", "LI", "I", "CubaLIF", "CubaLI")
"""NIR node types ``by_type`` may name (alone, or as ``"recurrent <type>"``)."""
RECURRENT_PREFIX = "recurrent "

_CHOICES: dict[str, tuple[str, ...]] = {"reset": RESETS, "threshold": THRESHOLDS, "spikes": SPIKES,
                                        "recurrent_initial": RECURRENT_INITIAL, "current_input": CURRENT_INPUTS,
                                        "discretisation": timestep.DISCRETISATIONS}
_NODE_FIELDS = ("reset", "threshold", "spikes", "v_min", "current_input")
"""The fields ``by_type`` may override (``recurrent_initial`` belongs to edges, ``dt`` and the
discretisation to the graph)."""


class SemanticsError(MksgnError, ValueError):
    """Semantics that are unknown or malformed; names the field or the preset."""


class SemanticsWarning(MksgnWarning):
    """Something a result depends on was not stated and a default was assumed (named in the message)."""


@dataclass(frozen=True)
class NeuronRule:
    """The semantics of one neuron node (:meth:`Semantics.for_type`)."""

    reset: str = "to-v-reset"
    threshold: str = ">"
    spikes: str = "single"
    v_min: float | None = None
    current_input: str = "integrated"

    @property
    def spike_rule_is_lavas(self) -> bool:
        """Whether a stock Lava LIF spikes and resets this way (reset to 0 is checked apart: ``v_reset``)."""
        return (self.reset, self.threshold, self.spikes, self.v_min) == ("to-v-reset", ">", "single", None)


@dataclass(frozen=True)
class Semantics:
    """How a graph's neurons step beyond what NIR states (the fields: module docstring).

    ``dt`` is ``None`` when nothing states it; :meth:`resolve` then assumes
    :data:`~mksgn.core.timestep.DEFAULT_DT` and warns. ``preset`` names where the record came from.
    """

    dt: float | None = None
    reset: str = "to-v-reset"
    threshold: str = ">"
    spikes: str = "single"
    v_min: float | None = None
    recurrent_initial: str = "zero"
    current_input: str = "integrated"
    discretisation: str = "forward-euler"
    by_type: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    preset: str = "nir"

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise SemanticsError(f"neuron semantics: {name} {getattr(self, name)!r} is not one of {list(choices)}")
        _check_number("v_min", self.v_min, allow_none=True)
        if self.dt is not None:
            _check_number("dt", self.dt, positive=True)
        if not isinstance(self.by_type, Mapping):
            raise SemanticsError(f"neuron semantics: by_type must map a node type to overrides, got {self.by_type!r}")
        for key, overrides in self.by_type.items():
            if key.removeprefix(RECURRENT_PREFIX) not in NEURON_TYPES:
                raise SemanticsError(f"neuron semantics: by_type names {key!r}, not a neuron type {list(NEURON_TYPES)} "
                                     f"(or '{RECURRENT_PREFIX}<type>')")
            if not isinstance(overrides, Mapping) or not set(overrides) <= set(_NODE_FIELDS):
                raise SemanticsError(f"neuron semantics: by_type[{key!r}] must override only {list(_NODE_FIELDS)}, "
                                     f"got {overrides!r}")
            self.for_type(key.removeprefix(RECURRENT_PREFIX), key.startswith(RECURRENT_PREFIX))  # checks the values

    def for_type(self, node_type: str, recurrent: bool = False) -> NeuronRule:
        """The rule of a neuron node of NIR type ``node_type`` (``by_type`` applied; ``recurrent``: the node
        lies on a cycle, and ``"recurrent <type>"`` overrides apply on top)."""
        fields = {name: getattr(self, name) for name in _NODE_FIELDS}
        keys = [node_type] + ([RECURRENT_PREFIX + node_type] if recurrent else [])
        for key in keys:
            fields.update(self.by_type.get(key, {}))
        rule = NeuronRule(**fields)
        where = f"by_type[{keys[-1]!r}]"
        for name, choices in _CHOICES.items():
            if name in _NODE_FIELDS and getattr(rule, name) not in choices:
                raise SemanticsError(f"neuron semantics: {where} {name} {getattr(rule, name)!r} is not one of "
                                     f"{list(choices)}")
        _check_number(f"{where} v_min", rule.v_min, allow_none=True)
        return rule

    def to_metadata(self) -> dict[str, Any]:
        """The graph metadata entries that state these semantics (``dt`` only if known)."""
        record = {name: getattr(self, name) for name in ("preset", *_CHOICES, "v_min") if name != "discretisation"}
        record["by_type"] = {k: dict(v) for k, v in self.by_type.items()}
        return {**({"dt": float(self.dt)} if self.dt is not None else {}), "discretisation": self.discretisation,
                METADATA_KEY: json.dumps(record)}

    def describe(self) -> str:
        """One line for reports (``preset``, ``dt`` and every field)."""
        extra = f"; by type {json.dumps({k: dict(v) for k, v in self.by_type.items()})}" if self.by_type else ""
        dt = "unstated" if self.dt is None else f"{self.dt:g}"
        return (f"{self.preset}: dt={dt} ({self.discretisation}), reset {self.reset}, spike if v {self.threshold} "
                f"threshold, {self.spikes} spike, v_min {self.v_min}, back edges start at {self.recurrent_initial}, "
                f"current input {self.current_input}{extra}")


def _check_number(name: str, value: Any, *, allow_none: bool = False, positive: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        raise SemanticsError(f"neuron semantics: {name} must be a finite number{' > 0' if positive else ''}, "
                             f"got {value!r}")


_SNNTORCH_ZERO = {"CubaLIF": {"reset": "zero"}, "recurrent LIF": {"reset": "zero"},
                  "recurrent CubaLIF": {"reset": "zero"}}

PRESETS: Mapping[str, Semantics] = {
    "nir": Semantics(preset="nir"),
    "snntorch": Semantics(dt=1e-4, reset="subtract-next", recurrent_initial="bias", preset="snntorch"),
    "snntorch-zero": Semantics(dt=1e-4, recurrent_initial="bias", by_type=_SNNTORCH_ZERO, preset="snntorch-zero"),
    "sinabs": Semantics(dt=1.0, discretisation="exponential", reset="subtract", threshold=">=", spikes="multi",
                        preset="sinabs"),
    "sinabs-from-model": Semantics(dt=1.0, discretisation="exponential", reset="subtract", threshold=">=",
                                   spikes="multi", by_type={"IF": {"v_min": -1.0}}, preset="sinabs-from-model"),
    "sinabs-single": Semantics(dt=1.0, discretisation="exponential", threshold=">=", preset="sinabs-single"),
    "norse": Semantics(dt=1e-6, current_input="jump", preset="norse"),
}
"""Named semantics of the producers (``dt``: what their files need):

- ``nir``: NIR's own reading; no ``dt`` (the graph's, else the default, with a warning).
- ``snntorch``: snnTorch 1.0.0 defaults (``reset_mechanism="subtract"``: ``theta`` is taken from
  the next step's membrane, after its decay); its exporter's ``dt`` 1e-4; recurrent layers
  (``RLeaky``, ``RSynaptic``) see their bias at ``t = 0``.
- ``snntorch-zero``: ``reset_mechanism="zero"``: ``Leaky`` resets to zero (NIR's reset), while
  ``Synaptic``, ``RLeaky`` and ``RSynaptic`` zero the whole next membrane.
- ``sinabs``: sinabs 3.1.3 layer defaults: ``MultiSpike``, ``MembraneSubtract``, ``v >= theta``,
  no floor, the exact exponential decay of its ``LIF``, ``dt`` 1.
- ``sinabs-from-model``: as ``sinabs``, with ``sinabs.from_model``'s floor of -1 under ``IAF``.
- ``sinabs-single``: sinabs ``SingleSpike`` with ``MembraneReset`` (to 0).
- ``norse``: norse 1.1.0: the input jumps into the current (gain 1, not ``dt / tau_syn``);
  its files need ``dt`` 1e-6 (it writes ``tau = 1e-3 / tau_inv``).
"""


def same_semantics(a: Semantics, b: Semantics) -> bool:
    """Whether two records run a graph the same way (their ``preset`` names aside)."""
    return dataclasses.replace(a, preset="") == dataclasses.replace(b, preset="")


def _listed(overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def _stored_dt(metadata: Mapping[str, Any], where: str) -> float | None:
    try:
        return timestep.parse_dt(metadata.get("dt"), where)
    except FieldError as exc:
        raise SemanticsError(str(exc)) from exc


def from_metadata(metadata: Mapping[str, Any] | None, where: str = "graph") -> Semantics | None:
    """The semantics a graph's metadata states (``None``: it states none; ``dt`` may be ``None``)."""
    metadata = metadata or {}
    dt = _stored_dt(metadata, where)
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        record = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError) as exc:
        raise SemanticsError(f"{where}: metadata {METADATA_KEY!r} is not a JSON record ({exc})") from exc
    if not isinstance(record, dict):
        raise SemanticsError(f"{where}: metadata {METADATA_KEY!r} must be a record, got {type(record).__name__}")
    known = {"preset", "by_type", "v_min", *_CHOICES} - {"discretisation"}
    unknown = sorted(set(record) - known)
    if unknown:
        raise SemanticsError(f"{where}: metadata {METADATA_KEY!r} has unknown fields {unknown}; known: {sorted(known)}")
    return Semantics(dt=dt, discretisation=_stored_discretisation(metadata, where), **record)


def _stored_discretisation(metadata: Mapping[str, Any], where: str) -> str:
    value = metadata.get("discretisation", timestep.DISCRETISATIONS[0])
    value = value.decode() if isinstance(value, bytes) else str(value)
    if value not in timestep.DISCRETISATIONS:
        raise SemanticsError(f"{where}: metadata discretisation {value!r} is not supported; supported: "
                             f"{list(timestep.DISCRETISATIONS)}")
    return value


def preset(name: str) -> Semantics:
    """A named preset of :data:`PRESETS`; raises :class:`SemanticsError` naming the known ones."""
    if name not in PRESETS:
        raise SemanticsError(f"unknown semantics preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]


OVERRIDABLE = ("reset", "threshold", "spikes", "v_min", "recurrent_initial", "current_input", "discretisation")
"""Fields a command line may set on top of a preset or the graph's semantics."""


def resolve(metadata: Mapping[str, Any] | None, *, dt: float | None = None, preset_name: str | None = None,
            overrides: Mapping[str, Any] | None = None, where: str = "graph", warn: bool = True) -> Semantics:
    """The semantics to run a graph with: preset ``preset_name`` if given, else what its metadata
    states, else NIR's, with ``overrides`` (fields of :data:`OVERRIDABLE`, for every neuron type) on
    top; and ``dt`` if given, else the graph's, else the preset's.

    When none of them gives ``dt``, :data:`~mksgn.core.timestep.DEFAULT_DT` is used and (``warn``)
    a :class:`SemanticsWarning` names it and the semantics assumed: never silently.
    """
    metadata = metadata or {}
    stored = from_metadata(metadata, where)
    chosen = preset(preset_name) if preset_name is not None else (stored or dataclasses.replace(
        PRESETS["nir"], discretisation=_stored_discretisation(metadata, where)))
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise SemanticsError(f"neuron semantics: cannot set {unknown}; settable: {list(OVERRIDABLE)}")
    if overrides:  # a field set here applies to every neuron type: the preset's by_type entries for it go
        by_type = {k: {f: v for f, v in rule.items() if f not in overrides} for k, rule in chosen.by_type.items()}
        chosen = dataclasses.replace(chosen, **overrides, by_type={k: v for k, v in by_type.items() if v},
                                     preset=f"{chosen.preset} with {_listed(overrides)}")
    if dt is not None:
        _check_number("dt", dt, positive=True)
        step = float(dt)
    else:
        step = _stored_dt(metadata, where) or chosen.dt
    if step is None:
        step = timestep.DEFAULT_DT
        if warn:
            warnings.warn(SemanticsWarning(
                f"{where} states no dt (metadata 'dt'): running it at dt={timestep.DEFAULT_DT:g} (snnTorch's export "
                f"convention) with {chosen.preset!r} neuron semantics "
                f"({dataclasses.replace(chosen, dt=step).describe()}); "
                f"give --dt, or --semantics naming the producer ({', '.join(sorted(PRESETS))})"), stacklevel=2)
    return dataclasses.replace(chosen, dt=step)
