"""Benchmark results as text tables, markdown, JSON and a PNG plot.

Text and markdown share the same rows (:func:`summary_rows`,
:func:`detail_rows`, ...); only the rendering differs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .targets import check_cold_targets, check_size_targets, torch_reference

ORDER = ("numpy_naive", "numpy_out", "torch_single", "torch_foreach", "torch_fused",
         "fastopt_serial", "fastopt", "roofline")
"""Row order of contenders in the tables."""


def fmt_time(seconds: float) -> str:
    """``1.23 us``, ``45.6 ms``, ... (3 significant digits)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    raise AssertionError


def fmt_size(n: int) -> str:
    """``1e3``, ``5e7``, or the plain integer when not a round power."""
    exp = int(math.floor(math.log10(n))) if n > 0 else 0
    mant = n / 10**exp
    return f"{mant:g}e{exp}" if mant == int(mant) and exp >= 3 else f"{n:,}"


def _x(value: float) -> str:
    return f"{value:.3g}x"


def summary_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """One row per optimizer and size: fastopt's time, bandwidth, % of the
    limit, and its speed-up over each baseline (medians of paired ratios)."""
    headers = ["optimizer", "size", "fastopt/step", "GB/s", "% limit", "x naive", "x out=", "x torch", "x serial"]
    rows = []
    for e in result["results"]:
        c, s = e["contenders"], e["speedup"]
        ref = torch_reference(e)
        torch_cell = f"{_x(s[ref]['median'])} ({ref.removeprefix('torch_')})" if ref else "n/a"
        rows.append([e["optimizer"], fmt_size(e["size"]), fmt_time(c["fastopt"]["median_s"]),
                     f"{c['fastopt']['gbps']:.3g}", f"{c['fastopt']['pct_roofline']['median']:.0f}%",
                     *(_x(s[k]["median"]) if k in s else "n/a" for k in ("numpy_naive", "numpy_out")),
                     torch_cell, _x(s["fastopt_serial"]["median"])])
    return headers, rows


def detail_rows(result: dict, optimizer: str) -> tuple[list[str], list[list[str]]]:
    """Every contender of one optimizer at every size."""
    headers = ["size", "contender", "time/step", "IQR", "GB/s", "% limit", "fastopt speed-up"]
    rows = []
    for e in result["results"]:
        if e["optimizer"] != optimizer:
            continue
        for name in [n for n in ORDER if n in e["contenders"]] + [n for n in e["contenders"] if n not in ORDER]:
            c = e["contenders"][name]
            up = e["speedup"].get(name)
            rows.append([fmt_size(e["size"]), name, fmt_time(c["median_s"]),
                         f"{fmt_time(c['q1_s'])} - {fmt_time(c['q3_s'])}", f"{c['gbps']:.3g}",
                         f"{c['pct_roofline']['median']:.0f}%",
                         f"{_x(up['median'])} (IQR {up['q1']:.3g}-{up['q3']:.3g})" if up else "-"])
    return headers, rows


def target_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Each applicable speed target, its measured value and whether it is met."""
    headers = ["optimizer", "size", "target", "measured", "against", "met"]
    rows = []
    for t in check_size_targets(result):
        op = "<=" if t["quantity"].endswith("_max") else ">="
        rows.append([t["optimizer"], fmt_size(t["size"]), f"{t['quantity']} {op} {t['threshold']:g}",
                     f"{t['value']:.3g}", t["against"], "yes" if t["met"] else "MISS"])
    for t in check_cold_targets(result.get("cold_start") or {}):
        rows.append(["-", "-", f"{t['quantity']} <= {t['threshold']:g}", f"{t['value']:.3g}", "-",
                     "yes" if t["met"] else "MISS"])
    return headers, rows


def cold_rows(cold: dict) -> tuple[list[str], list[list[str]]]:
    """The cold-start figures."""
    keys = [("import_s", "import fastopt (over bare python)"), ("import_numba_s", "  of which: import numba alone"),
            ("import_numpy_s", "  of which: import numpy alone"),
            ("first_step_cold_cache_s", f"first {cold['probe']} step, empty cache (compiles)"),
            ("first_step_warm_cache_s", f"first {cold['probe']} step, warm cache"),
            ("second_step_s", "second step (n=1000)"),
            ("compile_all_s", f"cold compile, all optimizers ({cold['dtype']})")]
    rows = [[label, fmt_time(cold[k])] for k, label in keys]
    rows += [[f"  {name}", fmt_time(t)] for name, t in cold["compile_each_s"].items()]
    return ["cold start", "seconds"], rows


def _text_table(headers, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = lambda cells: "  ".join(str(x).ljust(w) for x, w in zip(cells, widths, strict=True)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _markdown_table(headers, rows) -> str:
    line = lambda cells: "| " + " | ".join(str(x) for x in cells) + " |"
    return "\n".join([line(headers), line(["---"] * len(headers))] + [line(r) for r in rows])


def _header_lines(result: dict) -> list[str]:
    m, s = result["machine"], result["settings"]
    return [
        f"machine: {m['cpu']}, {m['cores']} cores; {m['date']}",
        f"software: python {m['python']}, numpy {m['numpy']}, numba {m['numba']} ({m['numba_threads']} threads), "
        f"torch {m.get('torch')} ({m.get('torch_threads')} threads)",
        f"settings: {s['device']} {s['dtype']}, rounds {s['rounds']} (interleaved; medians of per-round ratios), "
        f"SERIAL_BELOW={s['serial_below']}{', quick' if s['quick'] else ''}",
        *(f"note: {n}" for n in result.get("notes", [])),
    ]


def _skip_lines(result: dict) -> list[str]:
    seen = {}
    for e in result["results"]:
        for name, why in e["skipped"].items():
            seen.setdefault((e["optimizer"], name), why)
    return [f"skipped {name} for {opt}: {why}" for (opt, name), why in seen.items()]


def _sections(result: dict) -> list[tuple[str, tuple]]:
    sections = [("Summary: fastopt per step, % of the roofline twin, speed-up over each baseline",
                 summary_rows(result))]
    for opt in dict.fromkeys(e["optimizer"] for e in result["results"]):
        sections.append((f"{opt}: every contender", detail_rows(result, opt)))
    if result.get("cold_start"):
        sections.append(("Cold start", cold_rows(result["cold_start"])))
    sections.append(("Targets", target_rows(result)))
    return sections


def to_text(result: dict) -> str:
    """The whole report as plain-text tables."""
    parts = ["\n".join(_header_lines(result) + _skip_lines(result))]
    for title, (headers, rows) in _sections(result):
        parts.append(f"{title}\n{_text_table(headers, rows)}")
    return "\n\n".join(parts) + "\n"


def to_markdown(result: dict) -> str:
    """The whole report as markdown."""
    head = "\n".join(f"- {line}" for line in _header_lines(result) + _skip_lines(result))
    parts = ["# fastopt benchmark", head,
             "Times are medians over interleaved rounds; `% limit` is the roofline twin's time over the "
             "contender's (a kernel with the same memory traffic and no math); speed-ups are medians of "
             "per-round ratios (baseline time / fastopt time)."]
    for title, (headers, rows) in _sections(result):
        parts.append(f"## {title}\n\n{_markdown_table(headers, rows)}")
    return "\n\n".join(parts) + "\n"


def write_json(result: dict, path) -> None:
    """Write ``result`` as indented JSON."""
    Path(path).write_text(json.dumps(result, indent=1, default=str) + "\n")


def write_markdown(result: dict, path) -> None:
    """Write :func:`to_markdown` to ``path``."""
    Path(path).write_text(to_markdown(result))


def plot(result: dict, path) -> None:
    """A PNG of fastopt's speed-up over each baseline vs buffer size, one
    panel per optimizer (matplotlib, imported here only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    optimizers = list(dict.fromkeys(e["optimizer"] for e in result["results"]))
    baselines = [n for n in ORDER if n not in ("fastopt", "roofline")]
    # One colour per baseline in every panel (panels lack different baselines).
    colours = {name: f"C{k}" for k, name in enumerate(baselines)}
    cols = min(3, len(optimizers))
    rows = math.ceil(len(optimizers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, opt in zip(axes.flat, optimizers, strict=False):
        entries = [e for e in result["results"] if e["optimizer"] == opt]
        sizes = [e["size"] for e in entries]
        for name in baselines:
            if all(name in e["speedup"] for e in entries):
                ax.plot(sizes, [e["speedup"][name]["median"] for e in entries], "o-", color=colours[name],
                        label=name)
        ys = [e["contenders"]["fastopt"]["pct_roofline"]["median"] / 100 for e in entries]
        ax.plot(sizes, ys, "k--", label="roofline twin (fastopt / limit)")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", title=opt, xlabel="elements", ylabel="speed-up of fastopt (x)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(optimizers):]:
        ax.set_visible(False)
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower right", fontsize=8)
    m, s = result["machine"], result["settings"]
    fig.suptitle(f"fastopt vs baselines, {s['dtype']} on {m['cpu']} ({m['numba_threads']} threads)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
