"""The project's speed targets, checked against benchmark results.

Each target is a ratio measured in one interleaved run (or, for cold start, a
time measured in fresh processes). Where torch has no fused implementation of
an optimizer, "torch fused" means torch's fastest implementation in that run.
"""

from __future__ import annotations

TORCH_NAMES = ("torch_fused", "torch_foreach", "torch_single")

SIZE_TARGETS = {
    1_000: [("speedup_torch", 5.0), ("step_us_max", 5.0)],
    1_000_000: [("speedup_torch", 1.5), ("speedup_naive", 8.0)],
    50_000_000: [("speedup_torch", 1.0), ("pct_roofline", 95.0)],
}
"""Size -> (quantity, threshold); "_max" quantities must stay below, the others above."""

COLD_TARGETS = {"import_s": 0.5, "first_step_warm_cache_s": 0.5, "compile_all_s": 15.0}
"""Cold-start quantity -> upper bound in seconds."""


def torch_reference(entry: dict) -> str | None:
    """The torch contender fastopt is held to: fused if torch has it, else the
    fastest torch implementation measured."""
    c = entry["contenders"]
    if "torch_fused" in c:
        return "torch_fused"
    present = [n for n in TORCH_NAMES if n in c]
    return min(present, key=lambda n: c[n]["median_s"]) if present else None


def _quantity(entry: dict, what: str) -> tuple[float | None, str | None]:
    c = entry["contenders"]
    if what == "speedup_torch":
        ref = torch_reference(entry)
        return (entry["speedup"][ref]["median"], ref) if ref else (None, None)
    if what == "speedup_naive":
        return (entry["speedup"]["numpy_naive"]["median"], "numpy_naive") if "numpy_naive" in c else (None, None)
    if what == "step_us_max":
        return c["fastopt"]["median_s"] * 1e6, "fastopt"
    if what == "pct_roofline":
        return c["fastopt"]["pct_roofline"]["median"], "roofline"
    raise ValueError(what)


def check_size_targets(result: dict) -> list[dict]:
    """One record per applicable target: optimizer, size, quantity, value,
    threshold, against, met."""
    out = []
    for entry in result["results"]:
        for what, threshold in SIZE_TARGETS.get(entry["size"], []):
            value, against = _quantity(entry, what)
            if value is None:
                continue
            met = value <= threshold if what.endswith("_max") else value >= threshold
            out.append(dict(optimizer=entry["optimizer"], size=entry["size"], quantity=what, value=value,
                            threshold=threshold, against=against, met=bool(met)))
    return out


def check_cold_targets(cold: dict) -> list[dict]:
    """One record per cold-start target present in ``cold``."""
    return [dict(quantity=k, value=cold[k], threshold=limit, met=bool(cold[k] <= limit))
            for k, limit in COLD_TARGETS.items() if cold.get(k) is not None]
