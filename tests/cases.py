"""Optimizer x option combinations shared by the correctness tests."""

from __future__ import annotations

CASES: dict[str, list[dict]] = {
    "sgd": [
        dict(lr=0.05),
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, momentum=0.9, dampening=0.3),
        dict(lr=0.05, momentum=0.9, nesterov=True),
        dict(lr=0.05, weight_decay=0.1, maximize=True),
        dict(lr=0.05, momentum=0.8, weight_decay=0.01, maximize=True, nesterov=True),
    ],
    "adagrad": [
        dict(),
        dict(lr=0.05, lr_decay=0.01, weight_decay=0.1),
        dict(initial_accumulator_value=0.1, maximize=True, eps=1e-6),
    ],
    "rmsprop": [
        dict(),
        dict(momentum=0.9),
        dict(centered=True),
        dict(centered=True, momentum=0.5, weight_decay=0.05),
        dict(alpha=0.9, maximize=True, eps=1e-6),
    ],
    "adadelta": [
        dict(),
        dict(rho=0.5, weight_decay=0.1, maximize=True),
        dict(lr=0.5, eps=1e-4),
    ],
    "adam": [
        dict(),
        dict(lr=1e-2, amsgrad=True),
        dict(lr=1e-2, weight_decay=0.1),
        dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05, amsgrad=True, maximize=True),
    ],
    "adamw": [
        dict(),
        dict(lr=1e-2, amsgrad=True, weight_decay=0.1),
        dict(lr=1e-2, betas=(0.5, 0.9), maximize=True, eps=1e-6),
    ],
    "adamax": [
        dict(),
        dict(lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1),
        dict(eps=1e-3, maximize=True),
        dict(lr=5e-3, betas=(0.5, 0.9), weight_decay=0.05, maximize=True),
    ],
    "nadam": [
        dict(),
        dict(lr=1e-2, momentum_decay=0.01, weight_decay=0.1),
        dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        dict(lr=5e-3, betas=(0.8, 0.99), eps=1e-6, momentum_decay=0.0),
    ],
    "radam": [
        dict(),  # rho_t > 5 from step 6: both phases run
        dict(lr=1e-2, weight_decay=0.1),
        dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        dict(lr=1e-2, betas=(0.9, 0.5), eps=1e-6),  # rho_inf < 5: never adapts
        dict(lr=1e-2, eps=0.0),
    ],
    "lion": [
        dict(),
        dict(lr=1e-3, weight_decay=0.1),
        dict(lr=1e-3, betas=(0.95, 0.98), maximize=True),
        dict(lr=3e-4, betas=(0.0, 0.9), weight_decay=1.0, maximize=True),
    ],
    "lamb": [
        dict(),
        dict(lr=1e-2, weight_decay=0.1),
        dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-4, bias_correction=False, maximize=True),
    ],
}

ALL = [(name, h) for name, cases in CASES.items() for h in cases]


def case_id(case) -> str:
    name, h = case
    return name + ("-" + "-".join(f"{k}={v}" for k, v in h.items()) if h else "-defaults")
