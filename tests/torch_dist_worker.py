"""The worker of tests/test_torch_distributed.py (a module of its own, so a
spawned process imports only this): two ranks over gloo train the same model
with fastopt.torch and with torch.optim, under DDP and under
ZeroRedundancyOptimizer, and check that the runs agree."""

from __future__ import annotations

import datetime
import os


def run(rank: int, world: int, store: str, steps: int) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch_cases import Net, assert_same_params, batch

    import fastopt
    import fastopt.torch as ft

    torch.set_num_threads(1)
    fastopt.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        def model():
            torch.manual_seed(0)
            return Net()

        def wrap(module):  # Net's side branch and `unused` param get no gradient on these steps
            return DDP(module, find_unused_parameters=True)

        def train(ddp, opt):
            for t in range(steps):
                opt.zero_grad()
                x, y = batch(100 * rank + t)  # each rank its own data: DDP averages the gradients
                torch.nn.functional.mse_loss(ddp(x, 1), y).backward()
                opt.step()

        # DDP, gradients not bucket views: DDP copies the averaged gradients into .grad in place.
        ours_model, theirs_model = model(), model()
        ours_ddp, theirs_ddp = wrap(ours_model), wrap(theirs_model)
        ours = ft.AdamW(ours_ddp.parameters(), lr=1e-2)
        theirs = torch.optim.AdamW(theirs_ddp.parameters(), lr=1e-2)
        train(ours_ddp, ours)
        train(theirs_ddp, theirs)
        assert_same_params(ours_model, theirs_model, msg=f"DDP rank {rank}")
        gathered = [torch.zeros_like(ours_model.a.weight) for _ in range(world)]
        dist.all_gather(gathered, ours_model.a.weight.detach().clone())
        assert all(torch.equal(g, gathered[0]) for g in gathered), "ranks diverged"
        # The steady state reads the gradients in place (set_to_none=False keeps the flat views).
        ours.zero_grad(set_to_none=False)
        x, y = batch(rank)
        torch.nn.functional.mse_loss(ours_ddp(x, 1), y).backward()
        buffer = ours._buffers[0]
        held = [p for p in buffer.params if p.grad is not None]
        assert held and all(p.grad is v for p, v in zip(buffer.params, buffer.grad_views) if p.grad is not None)

        # ZeroRedundancyOptimizer with fastopt.torch.Adam as the local optimizer.
        ours_model, theirs_model = model(), model()
        ours_ddp, theirs_ddp = wrap(ours_model), wrap(theirs_model)
        ours = ZeroRedundancyOptimizer(ours_ddp.parameters(), optimizer_class=ft.Adam, lr=1e-2)
        theirs = ZeroRedundancyOptimizer(theirs_ddp.parameters(), optimizer_class=torch.optim.Adam, lr=1e-2)
        assert isinstance(ours.optim, ft.Adam)
        sched = torch.optim.lr_scheduler.StepLR(ours, step_size=2, gamma=0.5)
        sched_theirs = torch.optim.lr_scheduler.StepLR(theirs, step_size=2, gamma=0.5)
        for t in range(steps):
            for ddp, opt, s in ((ours_ddp, ours, sched), (theirs_ddp, theirs, sched_theirs)):
                opt.zero_grad()
                x, y = batch(100 * rank + t)
                torch.nn.functional.mse_loss(ddp(x, 1), y).backward()
                opt.step()
                s.step()
        assert_same_params(ours_model, theirs_model, msg=f"ZeRO rank {rank}")
        # The sharded state consolidates on rank 0 and loads back on every rank.
        ours.consolidate_state_dict(to=0)
        theirs.consolidate_state_dict(to=0)
        saved = [None]
        if rank == 0:
            sd, sd_theirs = ours.state_dict(), theirs.state_dict()
            assert sd["state"].keys() == sd_theirs["state"].keys()
            for k, entry in sd_theirs["state"].items():
                for key, value in entry.items():
                    torch.testing.assert_close(sd["state"][k][key], value, rtol=1e-5, atol=1e-6)
            saved = [sd]
        dist.broadcast_object_list(saved, src=0)
        ours.load_state_dict(saved[0])
        theirs.load_state_dict(saved[0])
        for t in range(steps, steps + 2):
            for ddp, opt in ((ours_ddp, ours), (theirs_ddp, theirs)):
                opt.zero_grad()
                x, y = batch(100 * rank + t)
                torch.nn.functional.mse_loss(ddp(x, 1), y).backward()
                opt.step()
        assert_same_params(ours_model, theirs_model, msg=f"ZeRO after load, rank {rank}")
        dist.barrier()
    finally:
        dist.destroy_process_group()
