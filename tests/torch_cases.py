"""Shared pieces of the fastopt.torch tests: the torch.optim configurations
compared step by step, a small model with a branch some steps skip (so some
grads are None on some steps) and a param no step reaches, and a loop."""

from __future__ import annotations

import copy

import torch

CASES = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "maximize": True}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 1e-3, "weight_decay": 1e-3, "initial_accumulator_value": 0.1}),
    ("RMSprop", {"lr": 1e-3}),
    ("RMSprop", {"lr": 1e-3, "momentum": 0.5, "centered": True, "weight_decay": 1e-3}),
    ("Adadelta", {"lr": 0.5, "weight_decay": 1e-3}),
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-3}),
    ("Adam", {"lr": 1e-2, "weight_decay": 1e-2, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
    ("Adamax", {"lr": 1e-2, "weight_decay": 1e-3}),
    ("NAdam", {"lr": 1e-2, "weight_decay": 1e-2, "decoupled_weight_decay": True}),
    ("NAdam", {"lr": 1e-2, "momentum_decay": 0.006}),
    ("RAdam", {"lr": 1e-2, "weight_decay": 1e-3, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 1e-2}),
]


def case_id(case) -> str:
    name, kwargs = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


class Net(torch.nn.Module):
    """Three layers, a side branch used on every third step only (its grads
    are None on the others) and a param that never gets a gradient."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.a = torch.nn.Linear(6, 16, dtype=dtype)
        self.b = torch.nn.Linear(16, 16, dtype=dtype)
        self.c = torch.nn.Linear(16, 3, dtype=dtype)
        self.side = torch.nn.Linear(6, 3, bias=False, dtype=dtype)
        self.unused = torch.nn.Parameter(torch.randn(5, dtype=dtype))

    def forward(self, x, t=0):
        out = self.c(torch.tanh(self.b(torch.tanh(self.a(x)))))
        if t % 3 == 0:
            out = out + self.side(x)
        return out


def make_pair(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = Net(dtype)
    return model, copy.deepcopy(model)


def batch(t, dtype=torch.float32):
    g = torch.Generator().manual_seed(1000 + t)
    return torch.randn(32, 6, generator=g, dtype=dtype), torch.randn(32, 3, generator=g, dtype=dtype)


def train_step(model, opt, t, set_to_none=True, dtype=torch.float32):
    """model.zero_grad() (torch's default: set_to_none) / backward / step."""
    model.zero_grad(set_to_none=set_to_none)
    x, y = batch(t, dtype)
    loss = torch.nn.functional.mse_loss(model(x, t), y)
    # A maximizing optimizer gets the negated loss (so that both still descend).
    (-loss if opt.param_groups[0].get("maximize") else loss).backward()
    opt.step()
    return loss.item()


def assert_same_params(a, b, rtol=1e-5, atol=1e-6, msg=""):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=rtol, atol=atol,
                                   msg=lambda m, name=name: f"{msg} {name}: {m}")
