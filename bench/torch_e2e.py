"""End-to-end CPU training steps of real torch models: torch.optim.AdamW
(single-tensor, foreach, fused) against fastopt.torch.AdamW.

Each contender trains its own copy of the model (same initial weights, same
batches) with its usual loop::

    opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()

The contenders run interleaved (a few steps each, round after round), and
every number is a median over rounds: the time of ``opt.step()`` (for
fastopt it includes copying gradients that backward() allocated after a
``zero_grad(set_to_none=True)``), the time of the whole training step
(zero_grad + forward + backward + step) and the optimizer's share of it.
``fastopt (views)`` is fastopt with ``zero_grad(set_to_none=False)``: the
gradients stay views of the flat buffer and the step copies nothing.

Models: ``mlp`` (784-1024-1024-10, 6 tensors, 1.9M params, batch 128),
``many`` (100 Linear(32, 32) layers: 200 tensors, 106k params, batch 64),
``transformer`` (nn.TransformerEncoder, 6 layers, d_model 512, 8 heads,
feed-forward 2048, plus a 512x512 head: 19.2M params in 76 tensors;
batch 8 x 32 tokens).

Usage::

    OMP_WAIT_POLICY=PASSIVE python bench/torch_e2e.py [--quick] [--models mlp,many,transformer]
                                                      [--markdown bench/results/torch-e2e.md]

(The script sets ``OMP_WAIT_POLICY=PASSIVE`` itself when it is not set:
torch's and numba's OpenMP pools must not spin against each other.)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fastopt  # noqa: E402
import fastopt.torch as ft  # noqa: E402

LR = 1e-3


def mlp() -> tuple[torch.nn.Module, callable]:
    model = torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10))

    def data(t: int):
        g = torch.Generator().manual_seed(t)
        return torch.randn(128, 784, generator=g), torch.randint(0, 10, (128,), generator=g)

    return model, data


def many() -> tuple[torch.nn.Module, callable]:
    layers = []
    for _ in range(100):
        layers += [torch.nn.Linear(32, 32), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers)

    def data(t: int):
        g = torch.Generator().manual_seed(t)
        return torch.randn(64, 32, generator=g), torch.randint(0, 32, (64,), generator=g)

    return model, data


class Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(512, 8, dim_feedforward=2048, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
        self.head = torch.nn.Linear(512, 512)

    def forward(self, x):
        return self.head(self.encoder(x)).mean(dim=1)


def transformer() -> tuple[torch.nn.Module, callable]:
    def data(t: int):
        g = torch.Generator().manual_seed(t)
        return torch.randn(8, 32, 512, generator=g), torch.randint(0, 512, (8,), generator=g)

    return Encoder(), data


MODELS = {"mlp": mlp, "many": many, "transformer": transformer}

CONTENDERS = {
    "torch single": lambda params: torch.optim.AdamW(params, lr=LR, foreach=False),
    "torch foreach": lambda params: torch.optim.AdamW(params, lr=LR, foreach=True),
    "torch fused": lambda params: torch.optim.AdamW(params, lr=LR, fused=True),
    "fastopt": lambda params: ft.AdamW(params, lr=LR),
    "fastopt (views)": lambda params: ft.AdamW(params, lr=LR),
}


class Runner:
    """One contender: its model copy, optimizer and timings."""

    def __init__(self, name: str, model: torch.nn.Module, data) -> None:
        self.name, self.model, self.data = name, model, data
        self.opt = CONTENDERS[name](model.parameters())
        self.set_to_none = name != "fastopt (views)"
        self.step_times: list[float] = []
        self.total_times: list[float] = []
        self.t = 0
        self.loss = float("nan")

    def run(self, steps: int, record: bool = True) -> None:
        for _ in range(steps):
            x, y = self.data(self.t)
            self.t += 1
            t0 = time.perf_counter()
            self.opt.zero_grad(set_to_none=self.set_to_none)
            loss = torch.nn.functional.cross_entropy(self.model(x), y)
            loss.backward()
            t1 = time.perf_counter()
            self.opt.step()
            t2 = time.perf_counter()
            if record:
                self.step_times.append(t2 - t1)
                self.total_times.append(t2 - t0)
            self.loss = loss.item()


def measure(model_name: str, rounds: int, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model, data = MODELS[model_name]()
    runners = [Runner(name, copy.deepcopy(model), data) for name in CONTENDERS]
    for r in runners:
        r.run(warmup, record=False)  # compile kernels, allocate state
    for _ in range(rounds):
        for r in runners:
            r.run(steps)
    params = sum(p.numel() for p in model.parameters())
    tensors = len(list(model.parameters()))
    fused = next(r for r in runners if r.name == "torch fused")
    rows = []
    for r in runners:
        step = statistics.median(r.step_times)
        total = statistics.median(r.total_times)
        rows.append({"contender": r.name, "step_s": step, "total_s": total, "share": step / total,
                     "step_vs_fused": statistics.median(fused.step_times) / step,
                     "total_vs_fused": statistics.median(fused.total_times) / total, "final_loss": r.loss})
    return {"model": model_name, "params": params, "tensors": tensors, "rounds": rounds, "steps_per_round": steps,
            "rows": rows}


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"


def markdown(results: list[dict], command: str) -> str:
    lines = ["# End-to-end CPU training steps: torch.optim.AdamW vs fastopt.torch.AdamW", "",
             f"Command: `{command}`  ", f"Machine: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs; torch {torch.__version__} ({torch.get_num_threads()} threads), "
             f"fastopt {fastopt.__version__} ({fastopt.get_num_threads()} threads), "
             f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}.  ",
             f"Taken {time.strftime('%Y-%m-%d')} on a shared, busy machine: a short run; re-take on a quiet "
             "machine for final numbers.", "",
             "Medians over interleaved rounds. *step*: `opt.step()`; *train step*: zero_grad + forward + backward "
             "+ step; *share*: step / train step; *x fused*: torch fused's median time / this one's (> 1: "
             "faster). `fastopt` runs torch's default loop (`zero_grad()` sets grads to None, so its step "
             "copies the new gradients into the flat buffer); `fastopt (views)` calls "
             "`zero_grad(set_to_none=False)` and copies nothing.", ""]
    for res in results:
        lines += [f"## {res['model']}: {res['params'] / 1e6:.3g}M params in {res['tensors']} tensors "
                  f"({res['rounds']} rounds x {res['steps_per_round']} steps)", "",
                  "| contender | step | x fused (step) | train step | x fused (train step) | share |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for row in res["rows"]:
            lines.append(f"| {row['contender']} | {fmt_time(row['step_s'])} | {row['step_vs_fused']:.2f}x | "
                         f"{fmt_time(row['total_s'])} | {row['total_vs_fused']:.2f}x | {100 * row['share']:.1f}% |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,many,transformer")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--markdown", type=Path, help="write the table here (and a .json beside it)")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = set(names) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {sorted(MODELS)}")
    results = []
    for name in names:
        big = name == "transformer"
        rounds, steps, warmup = (2, 1, 1) if args.quick else ((5, 2, 2) if big else (15, 10, 5))
        t0 = time.perf_counter()
        res = measure(name, rounds, steps, warmup)
        results.append(res)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    command = "python bench/torch_e2e.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(results, command.strip())
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
        args.markdown.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
