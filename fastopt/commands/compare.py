"""``fastopt compare``: the same MLP, from the same seed, trained with every optimizer."""

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
    train,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--optimizers", default=None,
                        help="comma-separated optimizers to compare (default: every one, plus SGD with momentum)")
    parser.add_argument("--lr-scale", type=float, default=1.0, metavar="X",
                        help="multiply every optimizer's preset learning rate by X (default 1)")


def _hyper_text(optimizer: Any) -> str:
    group, defaults = optimizer.param_groups[0], type(optimizer).spec.defaults
    parts = [f"lr={group['lr']:g}"]
    parts += [f"{k}={group[k]:g}" for k in ("momentum", "weight_decay") if k in group and group[k] != defaults[k]]
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from ..nn import MLP

    if args.optimizers is None:
        names = list(available_presets())
    else:
        names = [preset_name(n) for n in args.optimizers.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--optimizers must name at least one of {', '.join(available_presets())}")
    check_positive("--lr-scale", args.lr_scale)
    data, epochs, batch_size = run_setup(args)
    print(f"fastopt compare: {'-'.join(map(str, data.sizes))} MLP on {data.name} "
          f"({len(data.y_train)} training samples), batch {batch_size}, {epochs} epochs, seed {args.seed}")
    bar = ProgressBar(epochs * len(names), "compare", enabled=False if args.no_progress else None)
    rows, curves, warnings = [], {}, []
    with bar:
        for name in names:
            model = MLP(data.sizes, seed=args.seed)
            optimizer = make_optimizer(name, model.params, lr=args.lr_scale * preset_lr(name))
            bar.postfix["opt"] = name
            result = train(model, optimizer, data, epochs, batch_size, seed=args.seed, progress=bar)
            bar.update(epochs - len(result.epoch_losses))  # a diverged run stops early
            rows.append((name, _hyper_text(optimizer), result))
            warning = divergence_warning("compare", name, result, optimizer.param_groups[0]["lr"], "--lr-scale")
            if warning:
                warnings.append(warning)
            curves[f"{name} ({_hyper_text(optimizer)})"] = result.epoch_losses
    for warning in warnings:
        print(warning, file=sys.stderr)
    has_test = data.X_test is not None
    header = f"{'optimizer':<10} {'hyperparameters':<24} {'loss':>8} {'train acc':>9}"
    header += f" {'test acc':>8}" if has_test else ""
    header += f" {'us/step':>8} {'step total':>10} {'step share':>10}"
    print(header)
    for name, hyper, r in rows:
        line = f"{name:<10} {hyper:<24} {r.train_loss:>8.4f} {100 * r.train_acc:>8.1f}%"
        line += f" {100 * r.test_acc:>7.1f}%" if r.test_acc is not None else ""
        line += f" {r.us_per_step:>8.1f} {1e3 * r.step_seconds:>7.1f} ms {100 * r.step_share:>9.0f}%"
        print(line + ("  (diverged)" if r.diverged else ""))
    print(f"({rows[0][2].steps} steps per run; us/step and step total time only optimizer.step(); "
          "step share = its fraction of the training loop)")
    if args.plot:
        from ._plot import save_loss_curves

        save_loss_curves(args.plot, curves, f"Every optimizer on {data.name} (same model, seed {args.seed})")
        print(f"wrote {args.plot}")
    return 0
