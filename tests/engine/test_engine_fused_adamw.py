"""DirectFusedAdamW: the fused AdamW kernel called directly: bit-identical weights and state to optimizer.step()."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deit.engine.fused_adamw import DirectFusedAdamW
from deit.engine.optim import param_groups


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))


def _optimizer(model: nn.Module, **kwargs) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, 0.05), lr=1e-2, fused=True, **kwargs)


def _backward(model: nn.Module, seed: int, *, skip_last_bias: bool = False) -> None:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(5, 6, generator=generator)
    model(inputs).square().mean().backward()
    if skip_last_bias:
        model[2].bias.grad = None  # a parameter without a gradient this step: optimizer.step() skips it


def _run(direct: bool, steps: int = 6, **changes) -> tuple[nn.Module, torch.optim.AdamW, DirectFusedAdamW]:
    model = _model()
    optimizer = _optimizer(model)
    stepper = DirectFusedAdamW(optimizer)
    for step in range(steps):
        stepper.zero_grad() if direct else optimizer.zero_grad(set_to_none=True)
        _backward(model, step, skip_last_bias=step == changes.get("skip_at"))
        for group in optimizer.param_groups:
            group["lr"] = 1e-2 * (0.7**step)  # as the epoch scheduler does
        if step == changes.get("reload_at"):
            optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        stepper.step() if direct else optimizer.step()
    return model, optimizer, stepper


def _assert_identical(a: tuple, b: tuple) -> None:
    (model_a, opt_a, _), (model_b, opt_b, _) = a, b
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(p, q)
    for state_a, state_b in zip(opt_a.state.values(), opt_b.state.values()):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state_a[key], state_b[key]), key


@pytest.mark.parametrize("changes", [{}, {"skip_at": 3}, {"reload_at": 2}])
def test_direct_steps_are_bit_identical_to_optimizer_step(changes):
    direct = _run(True, **changes)
    _assert_identical(direct, _run(False, **changes))
    # Step 0 creates the state through torch; a step with a missing gradient goes through torch too.
    assert direct[2].direct_steps == 5 - ("skip_at" in changes)


def test_the_first_step_goes_through_the_optimizer_and_builds_the_lists():
    model = _model()
    optimizer = _optimizer(model)
    stepper = DirectFusedAdamW(optimizer)
    calls = []
    optimizer.register_step_post_hook(lambda *args: calls.append(1))
    _backward(model, 0)
    stepper.step()
    assert calls == [1] and stepper.direct_steps == 0  # the state did not exist yet
    stepper.step()
    assert calls == [1, 1] and stepper.direct_steps == 0  # a registered hook keeps every later step in torch


def test_supports_only_fused_adamw():
    model = _model()
    assert DirectFusedAdamW.supports(_optimizer(model))
    assert not DirectFusedAdamW.supports(torch.optim.AdamW(model.parameters(), foreach=True))
    assert not DirectFusedAdamW.supports(torch.optim.Adam(model.parameters(), fused=True))
    assert not DirectFusedAdamW.supports(torch.optim.SGD(model.parameters(), lr=0.1))


def test_amsgrad_and_a_wrapped_step_fall_back_to_torch():
    model = _model()
    optimizer = _optimizer(model, amsgrad=True)
    stepper = DirectFusedAdamW(optimizer)
    _backward(model, 0)
    stepper.step()
    assert not stepper._usable()
    plain = _optimizer(model)
    stepper = DirectFusedAdamW(plain)
    _backward(model, 1)
    stepper.step()
    assert stepper._usable()
    plain.step = plain.step  # an instance attribute, as torch's LR schedulers install to count calls
    assert not stepper._usable()


def test_train_step_uses_it_and_matches_the_optimizer_path():
    from deit.engine.step import TrainStep
    from deit.precision import resolve_precision

    results = []
    for direct in (True, False):
        model = _model()
        optimizer = _optimizer(model)
        step = TrainStep(
            model,
            lambda inputs, outputs, targets: nn.functional.cross_entropy(outputs, targets),
            optimizer,
            precision=resolve_precision("none", torch.device("cpu")),
        )
        assert step._direct is not None
        if not direct:
            step._direct = None
        generator = torch.Generator().manual_seed(3)
        for _ in range(4):
            step(torch.randn(5, 6, generator=generator), torch.randint(0, 3, (5,), generator=generator))
        assert not direct or step._direct.direct_steps == 3  # all but the first step taken directly
        results.append((model, optimizer, None))
    _assert_identical(*results)
