"""End-to-end CPU training steps of real torch models: ``torch.optim.AdamW``
(single-tensor, foreach, fused) against ``fastopt.torch.AdamW``
(``fastopt bench --torch-e2e``; ``bench/torch_e2e.py`` records a run).

Each contender trains its own copy of the model (same initial weights, same
batches) with its usual loop::

    opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()

The contenders run interleaved (:func:`.timing.interleaved`: a batch of
steps each, round after round, in a rotating order), and every number is a
median over rounds: the time of ``opt.step()`` (for fastopt it includes
copying the gradients that ``backward()`` allocated after a
``zero_grad(set_to_none=True)``), the time of the whole training step
(zero_grad + forward + backward + step) and the optimizer's share of it;
ratios to torch fused are medians of round-by-round ratios.
``fastopt_views`` is fastopt with ``zero_grad(set_to_none=False)``: the
gradients stay views of the flat buffer and the step copies nothing.

Models (:data:`MODELS`): ``mlp`` (784-1024-1024-10, 6 tensors, 1.9M params,
batch 128), ``many`` (100 ``Linear(32, 32)`` layers: 200 tensors, 106k
params, batch 64), ``transformer`` (``nn.TransformerEncoder``, 6 layers,
d_model 512, 8 heads, feed-forward 2048, plus a 512x512 head: 19.2M params
in 74 tensors; batch 8 x 32 tokens).

Needs torch (the ``fastopt[torch]`` extra); importing this module does not
import it.
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import os
import time
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

from ..progress import ProgressBar
from .machine import machine_info
from .report import _markdown_table, _text_table, fmt_time, write_json
from .runner import _match_threads, quiet_openmp
from .timing import Contender, interleaved, paired_ratio, spread

__all__ = ["MODELS", "CONTENDERS", "parse_models", "require_torch", "run_torch_e2e", "to_text", "to_markdown",
           "write_json", "write_markdown"]

MODELS = ("mlp", "many", "transformer")
"""The models, smallest step first."""

CONTENDERS = {
    "torch_single": "torch.optim.AdamW(foreach=False), zero_grad()",
    "torch_foreach": "torch.optim.AdamW(foreach=True), zero_grad()",
    "torch_fused": "torch.optim.AdamW(fused=True), zero_grad()",
    "fastopt": "fastopt.torch.AdamW, zero_grad() (torch's loop: the step reads backward's new gradients in place)",
    "fastopt_views": "fastopt.torch.AdamW, zero_grad(set_to_none=False) (gradients stay views: no copy)",
}
"""Contender name -> what it runs."""

REFERENCE = "torch_fused"
"""The contender every ratio is taken against."""

LR = 1e-3

FULL = {"rounds": 15, "steps": 10, "warmup": 5}
FULL_LARGE = {"rounds": 5, "steps": 2, "warmup": 2}
QUICK = {"rounds": 2, "steps": 1, "warmup": 1}
"""Rounds, training steps per contender and round, and untimed warm-up steps
(a full run; the transformer's full run; a ``quick`` smoke run). Each
contender also runs three untimed single steps while the timing harness
sizes its batch."""

BATCHES = 8
"""Distinct batches per model, made before timing and cycled (the timed steps
do no data generation)."""

INSTALL_HINT = 'pip install "fastopt[torch]"'


def require_torch(what: str = "--torch-e2e") -> None:
    """Raise ImportError (one line naming the extra) unless torch can be imported.
    Imports nothing."""
    if importlib.util.find_spec("torch") is None:
        raise ImportError(f"{what} needs PyTorch, which is not installed: {INSTALL_HINT}")


def parse_models(models: str | list[str] | None) -> list[str]:
    """Model names from ``None`` (all), a comma list or a list of those."""
    if models is None:
        return list(MODELS)
    if isinstance(models, str):
        models = [models]
    names = [n.strip().lower() for item in models for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    return list(dict.fromkeys(names))


def settings_for(model: str, quick: bool, rounds: int | None = None) -> dict[str, int]:
    """Rounds, steps per round and warm-up steps for ``model``."""
    base = dict(QUICK if quick else (FULL_LARGE if model == "transformer" else FULL))
    if rounds is not None:
        base["rounds"] = rounds
    return base


# -- the models ----------------------------------------------------------------

def build_model(name: str) -> tuple[Any, Callable[[int], tuple[Any, Any]]]:
    """``(model, data)`` for model ``name``; ``data(t)`` is batch ``t`` (inputs, class labels)."""
    import torch

    nn = torch.nn

    def batches(x_shape: tuple, classes: int) -> Callable[[int], tuple[Any, Any]]:
        def data(t: int) -> tuple[Any, Any]:
            g = torch.Generator().manual_seed(t)
            return torch.randn(*x_shape, generator=g), torch.randint(0, classes, (x_shape[0],), generator=g)

        return data

    if name == "mlp":
        model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                              nn.Linear(1024, 10))
        return model, batches((128, 784), 10)
    if name == "many":
        layers: list[Any] = []
        for _ in range(100):
            layers += [nn.Linear(32, 32), nn.Tanh()]
        return nn.Sequential(*layers), batches((64, 32), 32)
    if name == "transformer":
        class Encoder(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                layer = nn.TransformerEncoderLayer(512, 8, dim_feedforward=2048, dropout=0.0, batch_first=True)
                self.encoder = nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
                self.head = nn.Linear(512, 512)

            def forward(self, x: Any) -> Any:
                return self.head(self.encoder(x)).mean(dim=1)

        return Encoder(), batches((8, 32, 512), 512)
    raise ValueError(f"unknown model {name!r}; choose from {list(MODELS)}")


def make_optimizer(contender: str, params: Any) -> Any:
    """Contender ``contender``'s AdamW over ``params``."""
    import torch

    if contender == "torch_single":
        return torch.optim.AdamW(params, lr=LR, foreach=False)
    if contender == "torch_foreach":
        return torch.optim.AdamW(params, lr=LR, foreach=True)
    if contender == "torch_fused":
        return torch.optim.AdamW(params, lr=LR, fused=True)
    from ..torch import OPTIMIZERS

    return OPTIMIZERS["adamw"](params, lr=LR)


class Trainer:
    """One contender's model copy, optimizer and loop. ``run(k)`` does ``k``
    training steps and records the mean ``opt.step()`` time of the call."""

    def __init__(self, name: str, model: Any, batches: list[tuple[Any, Any]]) -> None:
        import torch

        self.name, self.model, self.batches = name, model, batches
        self.opt = make_optimizer(name, model.parameters())
        self.set_to_none = name != "fastopt_views"
        self.loss_fn = torch.nn.functional.cross_entropy
        self.step_times: list[float] = []
        self.t = 0
        self.loss = float("nan")

    def run(self, k: int) -> None:
        if k < 1:
            return
        model, opt, loss_fn, batches = self.model, self.opt, self.loss_fn, self.batches
        stepping = 0.0
        for _ in range(k):
            x, y = batches[self.t % len(batches)]
            self.t += 1
            opt.zero_grad(set_to_none=self.set_to_none)
            loss = loss_fn(model(x), y)
            loss.backward()
            t1 = time.perf_counter()
            opt.step()
            stepping += time.perf_counter() - t1
        self.step_times.append(stepping / k)
        self.loss = float(loss.detach())


def measure_model(name: str, rounds: int, steps: int, warmup: int) -> dict:
    """Time every contender on model ``name`` (see the module docs)."""
    import torch

    torch.manual_seed(0)
    model, data = build_model(name)
    batches = [data(t) for t in range(BATCHES)]
    trainers = [Trainer(c, copy.deepcopy(model), batches) for c in CONTENDERS]
    # Every batch is `steps` training steps: a target duration out of reach, capped by max_batch.
    timed = interleaved([Contender(t.name, t.run, CONTENDERS[t.name]) for t in trainers], rounds, warmup=warmup,
                        target_s=1e6, max_batch=steps)
    done = timed["rounds"]
    totals = timed["times"]
    stepping = {t.name: t.step_times[-done:] for t in trainers}
    contenders = {}
    for t in trainers:
        step, total = spread(stepping[t.name]), spread(totals[t.name])
        contenders[t.name] = {
            "label": CONTENDERS[t.name], "step_s": step["median"], "step_q1_s": step["q1"], "step_q3_s": step["q3"],
            "total_s": total["median"], "total_q1_s": total["q1"], "total_q3_s": total["q3"],
            "share": paired_ratio(stepping[t.name], totals[t.name])["median"],
            "step_vs_fused": paired_ratio(stepping[REFERENCE], stepping[t.name]),
            "total_vs_fused": paired_ratio(totals[REFERENCE], totals[t.name]),
            "final_loss": t.loss,
        }
    params = list(model.parameters())
    result = {"model": name, "params": sum(p.numel() for p in params), "tensors": len(params), "rounds": done,
              "steps_per_round": timed["batch"][REFERENCE], "warmup": warmup, "contenders": contenders}
    del trainers, batches, model
    gc.collect()
    return result


def run_torch_e2e(models: str | list[str] | None = None, quick: bool = False, rounds: int | None = None,
                  progress: bool = True) -> dict:
    """Time full training steps of each model with every contender.

    Parameters
    ----------
    models : str or list of str, optional
        Names from ``mlp``, ``many``, ``transformer`` (comma lists accepted);
        default all.
    quick : bool
        Two rounds of one step each after one warm-up step (a smoke run).
    rounds : int, optional
        Interleaved rounds per model (default 15, the transformer 5; quick 2).
    progress : bool
        Draw a progress bar on stderr.

    Returns
    -------
    dict
        JSON-ready: ``machine``, ``settings``, ``notes`` and ``results`` (one
        entry per model: its size and, per contender, the medians and
        quartiles of ``step_s`` and ``total_s``, ``share`` and the
        ``step_vs_fused``/``total_vs_fused`` spreads of torch fused's time
        over this one's, > 1: faster).
    """
    names = parse_models(models)
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    require_torch("run_torch_e2e")
    with quiet_openmp() as notes:  # before torch's OpenMP pool starts
        import fastopt

        torch_threads = _match_threads()
        results = []
        with ProgressBar(len(names), "torch-e2e", enabled=None if progress else False) as bar:
            for name in names:
                bar.update(0, at=name)
                s = settings_for(name, quick, rounds)
                results.append(measure_model(name, s["rounds"], s["steps"], s["warmup"]))
                bar.update()
        notes.append(f"numba threads {fastopt.get_num_threads()}, torch threads {torch_threads} (set to match)")
        return {
            "schema": "fastopt-torch-e2e/1",
            "machine": machine_info(),
            "settings": {"models": names, "quick": quick, "rounds": rounds, "lr": LR, "reference": REFERENCE,
                         "batches": BATCHES, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
            "notes": notes,
            "results": results,
        }


# -- reports -------------------------------------------------------------------

HEADERS = ["contender", "step", "x fused (step)", "train step", "x fused (train step)", "share"]

LEGEND = [
    ("step", "opt.step(), median over interleaved rounds"),
    ("train step", "zero_grad + forward + backward + step"),
    ("x fused", "torch fused's time / this one's, median of per-round ratios (> 1: faster)"),
    ("share", "step / train step"),
    ("fastopt", "torch's default loop: zero_grad() sets grads to None; the step reads the new gradients "
                "backward made where they lie"),
    ("fastopt_views", "zero_grad(set_to_none=False): the gradients stay views of the flat buffer, backward "
                      "accumulates into them"),
]


def _title(entry: dict) -> str:
    rounds, steps = entry["rounds"], entry["steps_per_round"]
    return (f"{entry['model']}: {entry['params'] / 1e6:.3g}M params in {entry['tensors']} tensors "
            f"({rounds} round{'s' * (rounds != 1)} x {steps} step{'s' * (steps != 1)})")


def model_rows(entry: dict) -> list[list[str]]:
    """One row per contender of one model."""
    rows = []
    for name, c in entry["contenders"].items():
        rows.append([name, fmt_time(c["step_s"]), f"{c['step_vs_fused']['median']:.2f}x", fmt_time(c["total_s"]),
                     f"{c['total_vs_fused']['median']:.2f}x", f"{100 * c['share']:.1f}%"])
    return rows


def _header_lines(result: dict) -> list[str]:
    m, s = result["machine"], result["settings"]
    return [f"machine: {m['cpu']}, {m['cores']} cores; {m['date']}",
            f"software: python {m['python']}, torch {m.get('torch')} ({m.get('torch_threads')} threads), "
            f"numba {m['numba']} ({m['numba_threads']} threads)",
            f"settings: AdamW lr={s['lr']}, OMP_WAIT_POLICY={s['omp_wait_policy']}{', quick' if s['quick'] else ''}",
            *(f"note: {n}" for n in result["notes"])]


def to_text(result: dict) -> str:
    """The report as plain-text tables, one per model, and a legend."""
    parts = ["fastopt bench --torch-e2e: torch.optim.AdamW vs fastopt.torch.AdamW, full CPU training steps",
             "\n".join(_header_lines(result))]
    parts += [f"{_title(e)}\n{_text_table(HEADERS, model_rows(e))}" for e in result["results"]]
    width = max(len(key) for key, _ in LEGEND)
    parts.append("\n".join(f"{key:<{width}}  {text}" for key, text in LEGEND))
    return "\n\n".join(parts) + "\n"


def to_markdown(result: dict) -> str:
    """The report as markdown (what ``bench/results/torch-e2e.md`` records)."""
    parts = ["# End-to-end CPU training steps: torch.optim.AdamW vs fastopt.torch.AdamW",
             "\n".join(f"- {line}" for line in _header_lines(result)),
             "\n".join(f"- *{key}*: {text}" for key, text in LEGEND)]
    parts += [f"## {_title(e)}\n\n{_markdown_table(HEADERS, model_rows(e))}" for e in result["results"]]
    return "\n\n".join(parts) + "\n"


def write_markdown(result: dict, path: str | PathLike[str]) -> None:
    """Write :func:`to_markdown` to ``path``."""
    Path(path).write_text(to_markdown(result))
