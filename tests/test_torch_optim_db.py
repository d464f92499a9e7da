"""torch's own optimizer test database (``optim_db``) against fastopt.torch:
for every OptimizerInfo whose optimizer fastopt has, every config of its
``optim_inputs_func`` with the global flags torch adds (foreach, fused,
differentiable), in float32 and float64, runs next to torch.optim (or raises
the same exception type where torch raises); every ``optim_error_inputs_func``
case raises (or warns) as torch's own test expects.

One kind of config cannot pass, by design: ``differentiable=True`` (a
fused in-place step records no autograd graph); fastopt raises a ValueError
saying so, and that is checked too."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch.testing._internal needs it (the test extra installs it)

from torch.testing._internal.common_optimizers import (  # noqa: E402
    OptimizerErrorEnum,
    _get_optim_inputs_including_global_cliquey_kwargs,
    optim_db,
)

import fastopt.torch as ft  # noqa: E402

INFOS = [info for info in optim_db if hasattr(ft, info.optim_cls.__name__)
         and info.optim_cls.__name__ in ft.__all__]
NAMES = [info.optim_cls.__name__ for info in INFOS]
STEPS = 5


def test_every_optimizer_fastopt_shares_with_torch_is_in_optim_db():
    assert sorted(NAMES) == sorted(["Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop",
                                    "SGD"])


def _params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.nn.Parameter(torch.randn(3, 4, generator=g, dtype=dtype))
    bias = torch.nn.Parameter(torch.randn(3, generator=g, dtype=dtype))
    return [weight, bias]


def _run(cls, kwargs, dtype):
    params = _params(dtype)
    opt = cls([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.01}] if "lr" not in kwargs else params,
              **kwargs)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=g, dtype=dtype)
    for t in range(STEPS):
        opt.zero_grad()
        loss = (x @ params[0].T + params[1]).pow(2).mean() + (params[0] ** 3).sum() * 0.01
        loss.backward()
        opt.step()
        if t == 2:
            params[1].grad = None  # torch skips a param without a gradient
    return params, opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("info", INFOS, ids=NAMES)
def test_optim_inputs_match_torch(info, dtype):
    name = info.optim_cls.__name__
    ours_cls = getattr(ft, name)
    configs = _get_optim_inputs_including_global_cliquey_kwargs("cpu", dtype, info)
    assert configs
    checked = differentiable = 0
    for config in configs:
        kwargs = config.kwargs
        if kwargs.get("differentiable"):  # torch runs these on non-leaf param copies; fastopt refuses them
            with pytest.raises(ValueError, match="differentiable=True is not supported"):
                _run(ours_cls, dict(kwargs), dtype)
            differentiable += 1
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected, torch_opt = _run(info.optim_cls, dict(kwargs), dtype)
        except Exception as exc:  # torch refuses this config: so must fastopt
            with pytest.raises(type(exc)):
                _run(ours_cls, dict(kwargs), dtype)
            checked += 1
            continue
        got, ours = _run(ours_cls, dict(kwargs), dtype)
        for p, q in zip(got, expected):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6,
                                       msg=lambda m, c=config: f"{name} {c.desc} {c.kwargs}: {m}")
        assert ours.state_dict()["param_groups"] == torch_opt.state_dict()["param_groups"], config.desc
        checked += 1
    assert checked + differentiable == len(configs)


@pytest.mark.parametrize("info", INFOS, ids=NAMES)
def test_optim_error_inputs_raise_as_in_torch(info):
    ours_cls = getattr(ft, info.optim_cls.__name__)
    cases = info.optim_error_inputs_func("cpu", torch.float32)
    assert cases
    for case in cases:
        config = case.optimizer_error_input
        params = config.params if config.params is not None else _params(torch.float32)
        if case.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
            if issubclass(case.error_type, Warning):
                with pytest.warns(case.error_type, match=case.error_regex):
                    ours_cls(params, **config.kwargs)
            else:
                with pytest.raises(case.error_type, match=case.error_regex):
                    ours_cls(params, **config.kwargs)
        else:
            opt = ours_cls(params, **config.kwargs)
            if issubclass(case.error_type, Warning):
                with pytest.warns(case.error_type, match=case.error_regex):
                    opt.step()
            else:
                with pytest.raises(case.error_type, match=case.error_regex):
                    opt.step()
