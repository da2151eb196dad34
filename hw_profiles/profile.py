"""Hardware profiles: what one operation costs on a target, with units and sources.

A profile is a TOML file. Every number is a table with its ``value``, its ``unit`` and its
``source`` (paper, table, page), and an ``evidence`` grade saying what kind of number it is::

    [profile]
    name = "loihi"
    description = "Intel Loihi (14 nm), per-operation energies"
    kind = "neuromorphic"            # neuromorphic | reference | ann
    scope = "per_term"               # per_term: terms add up; all_in: synaptic_op includes everything;
                                     # arithmetic: only synaptic and graded ops (the 45 nm convention)

    [energy.synaptic_op]             # one binary spike delivered to one synapse (an AC)
    value = 23.6
    unit = "pJ"
    source = "Davies et al. 2018, IEEE Micro 38(1):82-99, Table 2"
    evidence = "simulated"           # measured | simulated | derived | estimate

Sections and keys (anything else is an error naming the file and the key):

``energy``
    ``synaptic_op`` (a spike times one non-zero synapse), ``graded_op`` (a real-valued input
    times one non-zero synapse: the encoding layer's MAC on a spiking target), ``mac`` (one
    multiply-accumulate of the dense ANN baseline), ``neuron_update`` (one neuron, one time
    step), ``spike`` (one spike sent, within its tile), ``spike_hop`` (one more tile a spike
    crosses; kept for reference: hop counts depend on the placement, which mksgn does not
    model, so the estimator does not charge it and says so). Units ``fJ``, ``pJ``, ``nJ``,
    ``uJ``, ``mJ``, ``J``.
``power``
    ``static``: drawn whatever the activity (``uW``, ``mW``, ``W``); charged as static power x
    time per step x steps when ``time.step`` is given too.
``time``
    ``step``: wall time of one time step (``ns``, ``us``, ``ms``, ``s``).
``limits``
    ``core_neurons``, ``core_fan_in``, ``core_synapses`` (``count``), ``core_synapse_memory``
    (``bit``, ``byte``, ``KiB``), ``chip_cores`` (``count``).
``features``
    What the target can do, not a number: ``weight_sharing`` (a synapse list stored once per core
    serves many neurons, as a convolution's kernel: the resource map then counts shared weights
    once per core, :mod:`mksgn.hw_profiles.resources`) and ``graded_spikes`` (a spike carries an
    integer payload: graded populations, such as a relay, exist only there). Each is a table::

        [features.graded_spikes]
        value = true
        source = "Intel, 'Taking neuromorphic computing to the next level with Loihi 2', 2021"
        evidence = "documented"      # documented | demonstrated | estimate | not_applicable

    ``documented``: the maker's description of the chip; ``demonstrated``: shown running on the
    chip (a toolchain or paper that uses it); ``estimate``: inferred; ``not_applicable``: the
    profile has no spiking hardware (``value`` must then be ``false``). A profile without the
    section states nothing: the resource map counts weights per instance and flags nothing.

A missing unit or source, a unit that does not fit the quantity, a negative or non-finite
value or an unknown key raises :class:`ProfileError`. Built-in profiles live beside this
module; :func:`load_profile` takes a built-in name or the path of any TOML file.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mksgn.errors import MksgnError

ENERGY_UNITS = {"fJ": 1e-15, "pJ": 1e-12, "nJ": 1e-9, "uJ": 1e-6, "mJ": 1e-3, "J": 1.0}
POWER_UNITS = {"uW": 1e-6, "mW": 1e-3, "W": 1.0}
TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
COUNT_UNITS = {"count": 1.0}
MEMORY_UNITS = {"bit": 1.0, "byte": 8.0, "KiB": 8.0 * 1024}
SCHEMA: dict[str, dict[str, dict[str, float]]] = {
    "energy": dict.fromkeys(("synaptic_op", "graded_op", "mac", "neuron_update", "spike", "spike_hop"),
                            ENERGY_UNITS),
    "power": {"static": POWER_UNITS},
    "time": {"step": TIME_UNITS},
    "limits": {"core_neurons": COUNT_UNITS, "core_fan_in": COUNT_UNITS, "core_synapses": COUNT_UNITS,
               "core_synapse_memory": MEMORY_UNITS, "chip_cores": COUNT_UNITS},
}
"""Section -> key -> the units it accepts (unit -> factor to J, W, s, count or bit)."""
KINDS = ("neuromorphic", "reference", "ann")
SCOPES = ("per_term", "all_in", "arithmetic")
EVIDENCE = ("measured", "simulated", "derived", "estimate")
QUANTITY_KEYS = {"value", "unit", "source", "evidence", "note"}
PROFILE_KEYS = {"name", "description", "kind", "scope"}
FEATURES = ("weight_sharing", "graded_spikes")
FEATURE_EVIDENCE = ("documented", "demonstrated", "estimate", "not_applicable")
FEATURE_KEYS = {"value", "source", "evidence", "note"}


class ProfileError(MksgnError, ValueError):
    """A profile that cannot be used; names the file and the key."""


@dataclass(frozen=True)
class Quantity:
    """One number of a profile, in its own unit and in SI (J, W, s, count, bit)."""

    value: float
    unit: str
    source: str
    evidence: str
    si: float
    note: str = ""


@dataclass(frozen=True)
class Feature:
    """One capability of a profile: whether it has it, and on what evidence."""

    value: bool
    source: str
    evidence: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "evidence": self.evidence,
                **({"note": self.note} if self.note else {})}


@dataclass
class Profile:
    """A parsed, validated hardware profile."""

    name: str
    description: str
    kind: str
    scope: str
    path: str
    quantities: dict[str, dict[str, Quantity]] = field(default_factory=dict)
    features: dict[str, Feature] = field(default_factory=dict)

    def supports(self, feature: str) -> bool | None:
        """Whether the target has ``feature``; ``None`` when the profile does not say or it does not apply."""
        f = self.features.get(feature)
        return None if f is None or f.evidence == "not_applicable" else f.value

    def get(self, section: str, key: str) -> Quantity | None:
        """The quantity ``section.key``, or ``None`` if the profile does not define it."""
        return self.quantities.get(section, {}).get(key)

    def si(self, section: str, key: str) -> float | None:
        q = self.get(section, key)
        return None if q is None else q.si

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "kind": self.kind, "scope": self.scope,
                "path": self.path,
                "quantities": {s: {k: {"value": q.value, "unit": q.unit, "source": q.source,
                                       "evidence": q.evidence, **({"note": q.note} if q.note else {})}
                                   for k, q in keys.items()} for s, keys in self.quantities.items()},
                "features": {k: f.to_dict() for k, f in self.features.items()}}


def _table(where: str, spec: Any, allowed: set[str], required: tuple[str, ...]) -> None:
    """Check that ``spec`` is a table with the ``required`` keys and no key outside ``allowed``."""
    if not isinstance(spec, dict):
        raise ProfileError(f"{where}: expected a table with {', '.join(required[:-1])} and {required[-1]}")
    unknown = set(spec) - allowed
    if unknown:
        raise ProfileError(f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: {sorted(allowed)})")
    for key in required:
        if key not in spec:
            raise ProfileError(f"{where}: missing {key!r}")


def _sourced(where: str, spec: dict[str, Any], grades: tuple[str, ...], what: str) -> tuple[str, str]:
    """The table's ``source`` (``what``: where it should point) and ``evidence`` (one of ``grades``)."""
    if not isinstance(spec["source"], str) or not spec["source"].strip():
        raise ProfileError(f"{where}.source: say where {what}")
    if spec["evidence"] not in grades:
        raise ProfileError(f"{where}.evidence: {spec['evidence']!r} is not one of {grades}")
    return spec["source"].strip(), spec["evidence"]


def _quantity(where: str, spec: Any, units: dict[str, float]) -> Quantity:
    _table(where, spec, QUANTITY_KEYS, ("value", "unit", "source", "evidence"))
    value, unit = spec["value"], spec["unit"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ProfileError(f"{where}.value: expected a finite number, got {value!r}")
    if value < 0:
        raise ProfileError(f"{where}.value: a cost or limit cannot be negative ({value})")
    if unit not in units:
        raise ProfileError(f"{where}.unit: {unit!r} is not a unit of this quantity (use one of {list(units)})")
    source, evidence = _sourced(where, spec, EVIDENCE, "the number comes from (paper, table, page)")
    return Quantity(float(value), unit, source, evidence, float(value) * units[unit], str(spec.get("note", "")))


def _feature(where: str, spec: Any) -> Feature:
    _table(where, spec, FEATURE_KEYS, ("value", "source", "evidence"))
    if not isinstance(spec["value"], bool):
        raise ProfileError(f"{where}.value: expected true or false, got {spec['value']!r}")
    source, evidence = _sourced(where, spec, FEATURE_EVIDENCE, "this comes from (paper, document, section)")
    if evidence == "not_applicable" and spec["value"]:
        raise ProfileError(f"{where}.value: a feature that does not apply cannot be true")
    return Feature(spec["value"], source, evidence, str(spec.get("note", "")))


def _features(path: str, body: Any) -> dict[str, Feature]:
    if not isinstance(body, dict):
        raise ProfileError(f"{path}: [features] must be a table")
    for key in body:
        if key not in FEATURES:
            raise ProfileError(f"{path}: features.{key}: unknown feature (allowed: {', '.join(FEATURES)})")
    return {key: _feature(f"{path}: features.{key}", spec) for key, spec in body.items()}


def parse_profile(data: dict[str, Any], path: str) -> Profile:
    """Validate a profile's parsed TOML ``data`` (``path`` names it in errors)."""
    meta = data.get("profile")
    if not isinstance(meta, dict):
        raise ProfileError(f"{path}: missing the [profile] table (name, description, kind, scope)")
    unknown = set(meta) - PROFILE_KEYS
    if unknown:
        raise ProfileError(f"{path}: profile.{sorted(unknown)[0]}: unknown key (allowed: {sorted(PROFILE_KEYS)})")
    for key in ("name", "description", "kind"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise ProfileError(f"{path}: profile.{key}: missing or not a string")
    if meta["kind"] not in KINDS:
        raise ProfileError(f"{path}: profile.kind: {meta['kind']!r} is not one of {KINDS}")
    scope = meta.get("scope", "per_term")
    if scope not in SCOPES:
        raise ProfileError(f"{path}: profile.scope: {scope!r} is not one of {SCOPES}")
    profile = Profile(meta["name"], meta["description"], meta["kind"], scope, path)
    for section, body in data.items():
        if section == "profile":
            continue
        if section == "features":
            profile.features = _features(path, body)
            continue
        if section not in SCHEMA:
            raise ProfileError(f"{path}: unknown section [{section}] (allowed: profile, features, {', '.join(SCHEMA)})")
        if not isinstance(body, dict):
            raise ProfileError(f"{path}: [{section}] must be a table")
        for key, spec in body.items():
            if key not in SCHEMA[section]:
                raise ProfileError(f"{path}: {section}.{key}: unknown key (allowed: {', '.join(SCHEMA[section])})")
            profile.quantities.setdefault(section, {})[key] = _quantity(f"{path}: {section}.{key}", spec,
                                                                        SCHEMA[section][key])
    if profile.kind == "ann" and profile.get("energy", "mac") is None:
        raise ProfileError(f"{path}: energy.mac: an ANN profile needs the cost of a MAC")
    if profile.kind != "ann" and profile.get("energy", "synaptic_op") is None:
        raise ProfileError(f"{path}: energy.synaptic_op: a {profile.kind} profile needs the cost of a synaptic op")
    return profile


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with mksgn."""
    files = resources.files("mksgn.hw_profiles")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name, or any profile file by path."""
    text: str
    where = str(name_or_path)
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists() or "/" in where:
        if not candidate.is_file():
            raise ProfileError(f"{where}: no such profile file")
        try:
            text = candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"{where}: cannot read ({exc})") from exc
    else:
        names = builtin_profiles()
        if where not in names:
            raise ProfileError(f"unknown profile {where!r}; built-in profiles: {', '.join(names)} "
                               f"(or pass the path of a .toml file)")
        text = resources.files("mksgn.hw_profiles").joinpath(f"{where}.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{where}: not valid TOML ({exc})") from exc
    return parse_profile(data, where)
