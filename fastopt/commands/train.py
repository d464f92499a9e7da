"""``fastopt train``: train the NumPy MLP with one optimizer and schedule."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Any

from ..progress import ProgressBar
from ._training import (
    PRESETS,
    SCHEDULE_NAMES,
    add_common_arguments,
    check_positive,
    divergence_warning,
    make_optimizer,
    make_schedule,
    preset_name,
    run_setup,
    schedule_name,
    steps_per_epoch,
    train,
)

if TYPE_CHECKING:
    from ..nn import MLP
    from ._distributed import DistributedRun
    from ._training import Dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--optimizer", default="adam", metavar="NAME",
                        help=f"optimizer: {', '.join(PRESETS)} (default adam; 'momentum' is SGD with momentum 0.9)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's preset)")
    parser.add_argument("--momentum", type=float, default=None, help="momentum (sgd, rmsprop)")
    parser.add_argument("--weight-decay", type=float, default=None, help="weight decay")
    parser.add_argument("--schedule", default="constant", metavar="{" + ",".join(SCHEDULE_NAMES) + "}",
                        help="learning-rate schedule over the run's steps (default constant)")
    parser.add_argument("--distributed", choices=("ddp", "zero1"), default=None,
                        help="data-parallel over the ranks of mpiexec -n N: each global batch is split between "
                             "them (ddp: allreduce; zero1: optimizer state sharded); needs fastopt[mpi]")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..nn import MLP

    name = preset_name(args.optimizer)
    schedule_name(args.schedule)
    check_positive("--lr", args.lr)
    data, epochs, batch_size = run_setup(args)
    model = MLP(data.sizes, seed=args.seed)
    optimizer = make_optimizer(name, model.params, lr=args.lr, momentum=args.momentum,
                               weight_decay=args.weight_decay)
    dist = None
    if args.distributed:
        from ._distributed import DistributedRun

        dist = DistributedRun(args.distributed, optimizer, model.params)
    with dist.quiet_unless_root() if dist else contextlib.nullcontext():
        return _run(args, data, epochs, batch_size, model, optimizer, dist)


def _run(args: argparse.Namespace, data: Dataset, epochs: int, batch_size: int, model: MLP, optimizer: Any,
         dist: DistributedRun | None) -> int:
    lr = optimizer.param_groups[0]["lr"]
    schedule = make_schedule(args.schedule, lr, epochs * steps_per_epoch(len(data.y_train), batch_size))
    hyper = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    shown = ", ".join(f"{k}={v}" for k, v in hyper.items() if v != type(optimizer).spec.defaults[k] or k == "lr")
    print(f"fastopt train: {'-'.join(map(str, data.sizes))} MLP on {data.name} "
          f"({len(data.y_train)} training samples), {type(optimizer).__name__}({shown}), "
          f"schedule {args.schedule}, batch {batch_size}, {epochs} epochs, seed {args.seed}")
    if dist:
        print(dist.describe())
    bar = ProgressBar(epochs, "train", enabled=False if args.no_progress or (dist and not dist.is_root) else None)
    with bar:
        result = train(model, optimizer, data, epochs, batch_size, seed=args.seed, schedule=schedule, progress=bar,
                       distributed=dist)
    warning = divergence_warning("train", type(optimizer).__name__, result, lr)
    if warning:
        print(warning, file=sys.stderr)
    line = f"final: train loss {result.train_loss:.4f}, train accuracy {100 * result.train_acc:.1f}%"
    if result.test_acc is not None:
        line += f", test accuracy {100 * result.test_acc:.1f}%"
    print(line)
    print(f"{result.steps} steps in {result.seconds:.2f} s; optimizer.step {result.us_per_step:.1f} us per step "
          f"({100 * result.step_share:.0f}% of the training time)")
    if args.plot and (dist is None or dist.is_root):
        from ._plot import save_loss_curves

        save_loss_curves(args.plot, {type(optimizer).__name__: result.epoch_losses},
                         f"{type(optimizer).__name__} on {data.name}, lr={lr:g}, schedule {args.schedule}")
        print(f"wrote {args.plot}")
    return 1 if result.diverged else 0
