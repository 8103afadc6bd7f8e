"""Named policies as presets: each expands to ``plugins`` + ``schedulingProfiles``.

``policy: NAME`` in a routing YAML is shorthand for the preset's expansion;
``scorers: {type: weight}`` adjusts the weights of the preset's main
profiles (``TUNABLE``): a new type is added, weight 0 drops one.
"""

from __future__ import annotations

from collections.abc import Mapping


def _ref(name: str, weight: float | None = None) -> dict:
    return {"pluginRef": name} if weight is None else {"pluginRef": name, "weight": weight}


def _one_scorer(policy: str, scorer: str) -> dict:
    return {
        "plugins": [{"type": scorer}, {"type": "max-score"}],
        "schedulingProfiles": [{"name": policy, "plugins": [_ref(scorer, 1.0), _ref("max-score")]}],
    }


def _picker(policy: str) -> dict:
    return {"plugins": [{"type": policy}], "schedulingProfiles": [{"name": policy, "plugins": [_ref(policy)]}]}


def _slo_constrained(policy: str, scorer: str) -> dict:
    """The least ``scorer`` (packed or marginal J or $ per token) among pools
    predicted to meet the SLO, keeping headroom for tight traffic; then
    without the headroom; then the best predicted outcome."""
    return {
        "plugins": [
            {"type": "predicted-slo", "parameters": {"margin": 0.1}},
            {"type": "headroom", "parameters": {"margin": 0.1}},
            {"type": scorer},
            {"type": "prefill-queue"},
            {"type": "slo-violation"},
            {"type": "max-score"},
        ],
        "schedulingProfiles": [
            {"name": policy, "plugins": [_ref("predicted-slo"), _ref("headroom"), _ref(scorer, 1.0),
                                         _ref("prefill-queue", 0.01), _ref("max-score")]},
            {"name": f"{policy}-shared", "plugins": [_ref("predicted-slo"), _ref(scorer, 1.0),
                                                     _ref("prefill-queue", 0.01), _ref("max-score")]},
            {"name": "best-outcome", "plugins": [_ref("slo-violation", 1.0), _ref("max-score")]},
        ],
    }


PRESETS: dict[str, dict] = {
    "efficiency": _one_scorer("efficiency", "efficiency"),
    "cost": _one_scorer("cost", "cost"),
    "slo-efficiency": {
        "plugins": [{"type": "slo"}, {"type": "efficiency"}, {"type": "latency"}, {"type": "max-score"}],
        "schedulingProfiles": [
            {"name": "slo-efficiency", "plugins": [_ref("slo"), _ref("efficiency", 1.0), _ref("max-score")]},
            {"name": "latency", "plugins": [_ref("latency", 1.0), _ref("max-score")]},
        ],
    },
    "latency": _one_scorer("latency", "latency"),
    "least-load": _one_scorer("least-load", "load"),
    "round-robin": _picker("round-robin"),
    "random": _picker("random"),
    "slo-energy": _slo_constrained("slo-energy", "packed-energy"),
    "slo-cost": _slo_constrained("slo-cost", "packed-cost"),
    "slo-marginal-energy": _slo_constrained("slo-marginal-energy", "marginal-energy"),
}
POLICIES: tuple[str, ...] = tuple(PRESETS)
#: What comparisons and the tuner run by default: every preset but ``random`` (a seeded coin, no policy).
COMPARED_POLICIES: tuple[str, ...] = tuple(p for p in POLICIES if p != "random")
DEFAULT_POLICY = "slo-energy"

#: Profiles whose scorer weights ``scorers:`` adjusts (none: the preset ranks without scorers).
TUNABLE: dict[str, tuple[str, ...]] = {
    "slo-efficiency": ("slo-efficiency",),
    "round-robin": (),
    "random": (),
    "slo-energy": ("slo-energy", "slo-energy-shared"),
    "slo-cost": ("slo-cost", "slo-cost-shared"),
    "slo-marginal-energy": ("slo-marginal-energy", "slo-marginal-energy-shared"),
}


def takes_scorers(policy: str) -> bool:
    return bool(TUNABLE.get(policy, (policy,)))


def expand(policy: str, weights: Mapping[str, float] | None = None) -> dict:
    """The preset's ``plugins`` and ``schedulingProfiles`` with ``weights`` applied
    (scorer types; a plugin of that type is added when the preset has none)."""
    doc = PRESETS[policy]
    plugins = [dict(pl) for pl in doc["plugins"]]
    profiles = [{"name": pr["name"], "plugins": [dict(r) for r in pr["plugins"]]} for pr in doc["schedulingProfiles"]]
    if not weights:
        return {"plugins": plugins, "schedulingProfiles": profiles}
    names = {pl.get("name", pl["type"]) for pl in plugins}
    for scorer in weights:
        if scorer not in names:
            plugins.insert(-1, {"type": scorer})
    tunable = TUNABLE.get(policy, (policy,))
    for pr in profiles:
        if pr["name"] not in tunable:
            continue
        refs = pr["plugins"]
        for scorer, w in weights.items():
            ref = next((r for r in refs if r["pluginRef"] == scorer), None)
            if ref is None:
                refs.insert(-1, _ref(scorer, w))
            else:
                ref["weight"] = w
        pr["plugins"] = [r for r in refs if r.get("weight", 1.0) != 0]
    return {"plugins": plugins, "schedulingProfiles": profiles}
