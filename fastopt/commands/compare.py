"""``fastopt compare``: the same MLP, from the same seed, trained with every
optimizer (and, with ``--state-dtypes``, with each optimizer state storage)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..progress import ProgressBar
from ._training import (
    add_common_arguments,
    available_presets,
    check_positive,
    divergence_warning,
    make_optimizer,
    preset_lr,
    preset_name,
    run_setup,
    state_dtype_names,
    train,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--optimizers", default=None,
                        help="comma-separated optimizers to compare (default: every one, plus SGD with momentum)")
    parser.add_argument("--lr-scale", type=float, default=1.0, metavar="X",
                        help="multiply every optimizer's preset learning rate by X (default 1)")
    parser.add_argument("--state-dtypes", default=None, metavar="LIST",
                        help="comma-separated optimizer state storages, each optimizer trained once with each: "
                             "float32, float64, bfloat16, int8 (8-bit block floats; a flat buffer under 4096 "
                             "elements keeps float32 state, so int8 needs --dataset digits). Default: one run per "
                             "optimizer with the params' dtype")


def _hyper_text(optimizer: Any) -> str:
    group, defaults = optimizer.param_groups[0], type(optimizer).spec.defaults
    parts = [f"lr={group['lr']:g}"]
    parts += [f"{k}={group[k]:g}" for k in ("momentum", "weight_decay") if k in group and group[k] != defaults[k]]
    return " ".join(parts)


def _runs(names: list[str], dtypes: list, sizes: tuple, lr_scale: float, explicit: bool) -> tuple[list, list]:
    """The ``(optimizer, state dtype)`` pairs to train, checked before any
    training: a pair the optimizer does not support raises ValueError when
    the optimizers were named, and is skipped with a note when they were not."""
    from ..nn import MLP

    runs, notes = [], []
    probe = MLP(sizes, seed=0).params
    for name in names:
        for dtype in dtypes:
            if dtype is not None:
                try:
                    make_optimizer(name, probe, lr=lr_scale * preset_lr(name), state_dtype=dtype)
                except ValueError as exc:
                    if explicit:
                        raise ValueError(f"--state-dtypes {dtype} with {name}: {exc}") from None
                    notes.append(f"{name} with {dtype} states skipped: {exc}")
                    continue
            runs.append((name, dtype))
    return runs, notes


def _stored_text(optimizer: Any, n_params: int) -> tuple[str, str]:
    """``(storage, "storage B/param")`` of what `optimizer` allocated."""
    from ..benchmark.accuracy import state_summary

    storage, per_param, _ = state_summary(optimizer, n_params)
    return storage, f"{storage} {per_param:.3g} B"


def run(args: argparse.Namespace) -> int:
    from ..backends.blockfloat import MIN_ELEMENTS
    from ..nn import MLP

    if args.optimizers is None:
        names = list(available_presets())
    else:
        names = [preset_name(n) for n in args.optimizers.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--optimizers must name at least one of {', '.join(available_presets())}")
    check_positive("--lr-scale", args.lr_scale)
    by_dtype = args.state_dtypes is not None
    dtypes: list = state_dtype_names(args.state_dtypes) if by_dtype else [None]
    data, epochs, batch_size = run_setup(args)
    runs, notes = _runs(names, dtypes, data.sizes, args.lr_scale, explicit=args.optimizers is not None)
    print(f"fastopt compare: {'-'.join(map(str, data.sizes))} MLP on {data.name} "
          f"({len(data.y_train)} training samples), batch {batch_size}, {epochs} epochs, seed {args.seed}"
          + (f", state dtypes {', '.join(dtypes)}" if by_dtype else ""))
    bar = ProgressBar(epochs * len(runs), "compare", enabled=False if args.no_progress else None)
    rows, curves, warnings = [], {}, []
    fallback = None
    with bar:
        for name, dtype in runs:
            model = MLP(data.sizes, seed=args.seed)
            optimizer = make_optimizer(name, model.params, lr=args.lr_scale * preset_lr(name), state_dtype=dtype)
            bar.postfix["opt"] = name if dtype is None else f"{name} {dtype}"
            result = train(model, optimizer, data, epochs, batch_size, seed=args.seed, progress=bar)
            bar.update(epochs - len(result.epoch_losses))  # a diverged run stops early
            storage, stored = _stored_text(optimizer, model.n_params)
            if dtype == "int8" and storage not in ("int8", "none"):
                fallback = model.n_params
            rows.append((name, dtype, stored, _hyper_text(optimizer), result))
            label = name if dtype is None else f"{name} {dtype}"
            warning = divergence_warning("compare", label, result, optimizer.param_groups[0]["lr"], "--lr-scale")
            if warning:
                warnings.append(warning)
            curves[f"{label} ({_hyper_text(optimizer)})"] = result.epoch_losses
    for warning in warnings:
        print(warning, file=sys.stderr)
    has_test = data.X_test is not None
    header = f"{'optimizer':<10}"
    header += f" {'state':<9} {'stored as':<16}" if by_dtype else ""
    header += f" {'hyperparameters':<24} {'loss':>8} {'train acc':>9}"
    header += f" {'test acc':>8}" if has_test else ""
    header += f" {'us/step':>8} {'step total':>10} {'step share':>10}"
    print(header)
    for name, dtype, stored, hyper, r in rows:
        line = f"{name:<10}"
        line += f" {dtype:<9} {stored:<16}" if by_dtype else ""
        line += f" {hyper:<24} {r.train_loss:>8.4f} {100 * r.train_acc:>8.1f}%"
        line += f" {100 * r.test_acc:>7.1f}%" if r.test_acc is not None else ""
        line += f" {r.us_per_step:>8.1f} {1e3 * r.step_seconds:>7.1f} ms {100 * r.step_share:>9.0f}%"
        print(line + ("  (diverged)" if r.diverged else ""))
    print(f"({rows[0][4].steps} steps per run; us/step and step total time only optimizer.step(); "
          "step share = its fraction of the training loop"
          + ("; stored as = the state the optimizer allocated, bytes per parameter with block scales)"
             if by_dtype else ")"))
    if fallback is not None:
        print(f"note: int8 states need a buffer of at least {MIN_ELEMENTS} elements; this MLP's parameters are "
              f"one flat buffer of {fallback}, so its state stayed float32 (--dataset digits is large enough)")
    for note in notes:
        print(f"note: {note}")
    if args.plot:
        from ._plot import save_loss_curves

        what = "Every optimizer" if not by_dtype else "Optimizer x state dtype"
        save_loss_curves(args.plot, curves, f"{what} on {data.name} (same model, seed {args.seed})")
        print(f"wrote {args.plot}")
    return 0
