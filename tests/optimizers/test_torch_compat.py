"""The private torch internals sit behind one version guard (optimizers/torch_compat.py): on a torch the
shortcut was not checked against, torch's own step wrapper is used unchanged."""

import torch

from optimizers import MeZO, torch_compat


def test_an_unchecked_torch_version_gets_torchs_own_wrapper(monkeypatch):
    # on a checked torch (the pinned 2.13) the shortcut is on; on any other (the GPU machine's 2.11) it is off
    assert torch_compat.shortcut_available() == (torch_compat._torch_version() in torch_compat.CHECKED_TORCH)
    monkeypatch.setattr(torch_compat, "CHECKED_TORCH", ())
    assert not torch_compat.shortcut_available()
    scopes = []
    real_scope = torch.autograd.profiler.record_function

    def counting_scope(label, *args):
        scopes.append(label)
        return real_scope(label, *args)

    monkeypatch.setattr(torch.autograd.profiler, "record_function", counting_scope)

    class Guarded(MeZO):
        def step(self, closure=None):  # its own step: torch wraps it (guarded) when the first one is built
            return torch_compat.unhooked_step(MeZO.step)(self, closure)

    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = Guarded([p], lr=1e-3)
    opt.step(lambda: (p**2).sum())
    assert scopes == ["Optimizer.step#Guarded.step"]  # the scope the shortcut skips is entered again
    assert opt.steps == 1 and opt.forward_passes == 2
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # torch wraps Adam.step once an Adam exists
    assert getattr(torch.optim.Adam.step, "hooked", False)
    raw = torch_compat.unhooked_step(torch.optim.Adam.step)
    assert raw is torch.optim.Adam.step.__wrapped__ and not getattr(raw, "hooked", False)
