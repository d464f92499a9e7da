"""Benchmark results as text tables, markdown, JSON and a PNG plot.

The text report is short by default: one summary row per optimizer and
size, and one legend line per column. ``verbose`` adds every contender with
its spread, the run's notes and the cold-start and device extras. The
markdown report (what ``bench/results/`` records) also lists the project's
speed targets.
"""

from __future__ import annotations

import json
import math
from os import PathLike
from pathlib import Path
from typing import Any

from .targets import check_cold_targets, check_size_targets, torch_reference

ORDER = ("numpy_naive", "numpy_out", "torch_single", "torch_foreach", "torch_fused", "bnb_8bit", "copy",
         "fastopt_serial", "fastopt_full_states", "fastopt", "roofline")
"""Row order of contenders in the tables."""

Table = tuple[list[str], list[list[str]]]


def fmt_time(seconds: float) -> str:
    """``1.23 us``, ``45.6 ms``, ... (3 significant digits)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    raise AssertionError


def fmt_size(n: int) -> str:
    """``1e3``, ``5e7``, ``2^20``, or the plain integer when not a round power."""
    exp = int(math.floor(math.log10(n))) if n > 0 else 0
    mant = n / 10**exp
    if mant == int(mant) and exp >= 3:
        return f"{mant:g}e{exp}"
    if n >= 1024 and n & (n - 1) == 0:
        return f"2^{n.bit_length() - 1}"
    return f"{n:,}"


def _x(value: float) -> str:
    return f"{value:.3g}x"


# Summary columns: key -> (header, legend). A column whose cells are all "n/a" is left out.
_COLUMNS = {
    "time": ("time/step", "fastopt's opt.step(), median of {rounds} interleaved rounds"),
    "gbps": ("GB/s", "bytes the update must move (reads + writes of param, grad, state) per second"),
    "limit": ("% limit", "roofline twin's time / fastopt's; the twin moves the same bytes with no math. Can pass "
                         "100% when the arrays fit in cache"),
    "naive": ("x NumPy", "times faster than NumPy as tutorials write it (median of per-round ratios)"),
    "out": ("x out=", "times faster than NumPy with preallocated out= buffers"),
    "torch": ("x torch", "times faster than torch.optim's fused step, else its fastest mode (in brackets); "
                         "n/a: not in torch"),
    "copy": ("x copy", "times faster than a device-to-device copy of the same bytes"),
    "full": ("x full st.", "times faster than fastopt with states of the params' dtype (what the low-precision "
                           "states gain)"),
    "bnb": ("x bnb", "times faster than bitsandbytes' 8-bit Adam/AdamW on the CPU"),
    "serial": ("x serial", "the shipped step vs fastopt's serial loop forced (>1: the parallel loop pays)"),
}
_DEFAULT_COLUMNS = ("time", "gbps", "limit", "naive", "torch", "full", "bnb", "copy")
_VERBOSE_COLUMNS = ("time", "gbps", "limit", "naive", "out", "torch", "full", "bnb", "copy", "serial")


def _cell(entry: dict, key: str) -> str:
    c, s = entry["contenders"], entry["speedup"]
    if key == "time":
        return fmt_time(c["fastopt"]["median_s"])
    if key == "gbps":
        return f"{c['fastopt']['gbps']:.3g}"
    if key == "limit":
        return f"{c['fastopt']['pct_roofline']['median']:.0f}%"
    if key == "torch":
        ref = torch_reference(entry)
        return f"{_x(s[ref]['median'])} ({ref.removeprefix('torch_')})" if ref else "n/a"
    name = {"naive": "numpy_naive", "out": "numpy_out", "copy": "copy", "serial": "fastopt_serial",
            "full": "fastopt_full_states", "bnb": "bnb_8bit"}[key]
    return _x(s[name]["median"]) if name in s else "n/a"


def _columns(result: dict, verbose: bool) -> list[str]:
    keys = _VERBOSE_COLUMNS if verbose else _DEFAULT_COLUMNS
    return [k for k in keys if any(_cell(e, k) != "n/a" for e in result["results"])]


def summary_rows(result: dict, verbose: bool = False) -> Table:
    """One row per optimizer and size: fastopt's time, bandwidth, % of the
    limit, and its speed-up over each baseline (medians of paired ratios)."""
    keys = _columns(result, verbose)
    headers = ["optimizer", "size"] + [_COLUMNS[k][0] for k in keys]
    rows = [[e["optimizer"], fmt_size(e["size"])] + [_cell(e, k) for k in keys] for e in result["results"]]
    return headers, rows


def legend_lines(result: dict, verbose: bool = False) -> list[str]:
    """One line per summary column saying what it measures."""
    keys = _columns(result, verbose)
    width = max(len(_COLUMNS[k][0]) for k in keys)
    rounds = result["settings"]["rounds"]
    return [f"{_COLUMNS[k][0]:<{width}}  {_COLUMNS[k][1].format(rounds=rounds)}" for k in keys]


def detail_rows(result: dict, optimizer: str) -> Table:
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


def target_rows(result: dict) -> Table:
    """Each applicable speed target, its measured value and whether it is met."""
    headers = ["optimizer", "size", "target", "measured", "against", "met"]
    rows = []
    for t in check_size_targets(result):
        op = "<=" if t["quantity"].endswith("_max") else ">="
        rows.append([t["optimizer"], fmt_size(t["size"]), f"{t['quantity']} {op} {t['threshold']:g}",
                     f"{t['value']:.3g}", t["against"], "yes" if t["met"] else "no"])
    for t in check_cold_targets(result.get("cold_start") or {}):
        rows.append(["-", "-", f"{t['quantity']} <= {t['threshold']:g}", f"{t['value']:.3g}", "-",
                     "yes" if t["met"] else "no"])
    return headers, rows


def cold_rows(cold: dict) -> Table:
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


def overhead_rows(extras: dict) -> Table | None:
    """The GPU's host overhead per step, if measured."""
    over = extras.get("host_overhead")
    if not over:
        return None
    rows = [[label, f"{v['sync_each_us']:.1f} us", f"{v['queued_us']:.1f} us"]
            for label, v in over["per_step"].items()]
    return ["contender", "synchronised each step", "queued"], rows


def _text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = lambda cells: "  ".join(str(x).ljust(w) for x, w in zip(cells, widths, strict=True)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    line = lambda cells: "| " + " | ".join(str(x) for x in cells) + " |"
    return "\n".join([line(headers), line(["---"] * len(headers))] + [line(r) for r in rows])


def _title_line(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    optimizers = len(s["optimizers"])
    where = m["cpu"] if s["device"] == "cpu" else (m.get("device") or {}).get("gpu", "GPU")
    torch = f", torch {m['torch']} ({m.get('torch_threads')} threads)" if m.get("torch") else ", no torch"
    return (f"fastopt bench: {optimizers} optimizer{'s' * (optimizers != 1)} x {len(s['sizes'])} sizes, "
            f"{s['dtype']}{_states(s)} on {s['device']} ({where}; {m['cores']} cores, "
            f"numba {m['numba_threads']} threads"
            f"{torch})")


def _header_lines(result: dict) -> list[str]:
    m, s = result["machine"], result["settings"]
    return [
        f"machine: {m['cpu']}, {m['cores']} cores; {m['date']}",
        f"software: python {m['python']}, numpy {m['numpy']}, numba {m['numba']} ({m['numba_threads']} threads), "
        f"torch {m.get('torch')} ({m.get('torch_threads')} threads)",
        f"settings: {s['device']} {s['dtype']}{_states(s)}, rounds {s['rounds']} (interleaved; medians of "
        "per-round ratios), "
        f"SERIAL_BELOW={s['serial_below']}{', quick' if s['quick'] else ''}",
        *(f"note: {n}" for n in result.get("notes", [])),
    ]


def _states(settings: dict) -> str:
    state = settings.get("state_dtype")
    return f" params, {state} states" if state and state != settings["dtype"] else ""


def _skip_lines(result: dict) -> list[str]:
    seen: dict[str, list[str]] = {}
    for e in result["results"]:
        for name, why in e["skipped"].items():
            opts = seen.setdefault(f"{name}: {why}", [])
            if e["optimizer"] not in opts:
                opts.append(e["optimizer"])
    lines = [f"not run: {what} ({', '.join(opts)})" for what, opts in seen.items()]
    for name, left in (result.get("left_out") or {}).items():
        lines.append(f"left out: {name} at {', '.join(map(fmt_size, left['sizes']))} ({left['why']})")
    return lines


def _short_notes(result: dict) -> list[str]:
    """What the default report must still say: missing baselines and sizes left out."""
    lines = [f"note: {n}" for n in result.get("notes", []) if "not installed" in n]
    lines += [line for line in _skip_lines(result) if line.startswith("left out")]
    return lines


def _detail_sections(result: dict) -> list[tuple[str, Table]]:
    sections = []
    for opt in dict.fromkeys(e["optimizer"] for e in result["results"]):
        sections.append((f"{opt}: every contender", detail_rows(result, opt)))
    if result.get("cold_start"):
        sections.append(("Cold start", cold_rows(result["cold_start"])))
    overhead = overhead_rows(result.get("extras") or {})
    if overhead:
        n = result["extras"]["host_overhead"]["n"]
        sections.append((f"Host overhead per Adam step at {fmt_size(n)} elements (wall clock)", overhead))
    return sections


def to_text(result: dict, verbose: bool = False) -> str:
    """The report as plain-text tables: the summary and its legend, plus the
    details when ``verbose``."""
    head = [_title_line(result)] + (_header_lines(result) + _skip_lines(result) if verbose else _short_notes(result))
    parts = ["\n".join(head), _text_table(*summary_rows(result, verbose)), "\n".join(legend_lines(result, verbose))]
    if verbose:
        parts += [f"{title}\n{_text_table(*table)}" for title, table in _detail_sections(result)]
    return "\n\n".join(parts) + "\n"


def to_markdown(result: dict) -> str:
    """The whole report as markdown (summary, legend, details, targets)."""
    head = "\n".join(f"- {line}" for line in _header_lines(result) + _skip_lines(result))
    legend = "\n".join(f"- `{line.split('  ', 1)[0]}`: {line.split('  ', 1)[1].strip()}"
                       for line in legend_lines(result, verbose=True))
    parts = ["# fastopt benchmark", head, "## Summary\n\n" + _markdown_table(*summary_rows(result, verbose=True)),
             legend]
    for title, table in _detail_sections(result):
        parts.append(f"## {title}\n\n{_markdown_table(*table)}")
    parts.append(f"## Targets\n\n{_markdown_table(*target_rows(result))}")
    return "\n\n".join(parts) + "\n"


def write_json(result: dict, path: str | PathLike[str]) -> None:
    """Write ``result`` as indented JSON."""
    Path(path).write_text(json.dumps(result, indent=1, default=str) + "\n")


def write_markdown(result: dict, path: str | PathLike[str]) -> None:
    """Write :func:`to_markdown` to ``path``."""
    Path(path).write_text(to_markdown(result))


def plot_figure(result: dict) -> Any:
    """A matplotlib Figure of fastopt's speed-up over each baseline vs buffer
    size, one panel per optimizer, one colour per baseline in every panel, and
    one legend outside the panels."""
    from ..plotting import distinct_colours, require_matplotlib

    figure = require_matplotlib()
    optimizers = list(dict.fromkeys(e["optimizer"] for e in result["results"]))
    present = {name for e in result["results"] for name in e["speedup"]}
    baselines = [n for n in ORDER if n in present and n not in ("fastopt", "roofline")]
    baselines += sorted(present - set(ORDER))
    colours = dict(zip(baselines, distinct_colours(len(baselines)), strict=True))
    cols = min(3, max(1, len(optimizers)))
    rows = max(1, math.ceil(len(optimizers) / cols))
    fig = figure.Figure(figsize=(4.6 * cols, 3.4 * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, opt in zip(axes.flat, optimizers, strict=False):
        entries = [e for e in result["results"] if e["optimizer"] == opt]
        sizes = [e["size"] for e in entries]
        for name in baselines:
            if all(name in e["speedup"] for e in entries):
                ax.plot(sizes, [e["speedup"][name]["median"] for e in entries], "o-", color=colours[name],
                        label=f"over {name}")
        ys = [e["contenders"]["fastopt"]["pct_roofline"]["median"] / 100 for e in entries]
        ax.plot(sizes, ys, "k--", label="fraction of the roofline twin (limit)")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", title=opt, xlabel="elements", ylabel="x (speed-up of fastopt)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(optimizers):]:
        ax.set_visible(False)
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", fontsize=8,
               ncols=min(4, len(handles)))
    m, s = result["machine"], result["settings"]
    where = m["cpu"] if s["device"] == "cpu" else (m.get("device") or {}).get("gpu", "GPU")
    fig.suptitle(f"fastopt's speed-up per step, {s['dtype']}{_states(s)} on {where} ({m['numba_threads']} CPU threads)",
                 fontsize=10)
    return fig


def plot(result: dict, path: str | PathLike[str]) -> None:
    """Write :func:`plot_figure` as a PNG at ``path`` (matplotlib, imported here only)."""
    plot_figure(result).savefig(path, dpi=110)
