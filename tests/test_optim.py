"""The fused Adam the training loops use: the same update as PyTorch's default Adam, one kernel."""

from __future__ import annotations

import torch

from ssn3d.engine.optim import adam


def test_fused_adam_takes_the_same_steps_as_the_default_one() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    ref = [p.detach().clone().requires_grad_() for p in net.parameters()]
    opt = adam(net.parameters(), lr=1e-2, weight_decay=5e-4)
    assert opt.param_groups[0]["fused"] is True  # CPU parameters get the fused kernel
    ref_opt = torch.optim.Adam(ref, lr=1e-2, weight_decay=5e-4, foreach=False)
    for step in range(5):
        x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(step))
        for params, o in ((list(net.parameters()), opt), (ref, ref_opt)):
            o.zero_grad()
            y = torch.nn.functional.conv2d(
                torch.relu(torch.nn.functional.conv2d(x, params[0], params[1])), params[2], params[3]
            )
            y.square().mean().backward()
            o.step()
    for mine, theirs in zip(net.parameters(), ref, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert len(opt.state_dict()["state"]) == 4  # state for every parameter, resumable like the default's


def test_a_parameter_the_fused_kernel_cannot_take_falls_back_to_the_default() -> None:
    p = torch.nn.Parameter(torch.zeros(3, device="meta"))
    assert not adam([p], lr=1e-3).param_groups[0]["fused"]
