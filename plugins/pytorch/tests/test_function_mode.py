"""Function mode: a module returned by train() is saved on rank 0, loads back, predicts the same."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from smc_pytorch.saving import STATE_DICT_FILE, TORCHSCRIPT_FILE, is_module, is_rank_zero, save_model

TRAIN_FUNCTION = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)

    def forward(self, x):
        return torch.relu(self.layer(x))

def train(epochs: int, model_dir):
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(epochs):
        x = torch.randn(16, 3)
        loss = (net(x) - x[:, :2]).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    torch.save(net(torch.ones(4, 3)).detach(), f"{model_dir}/expected.pt")
    return net
"""


def test_returned_module_is_saved_and_predicts_the_same(smc_job, monkeypatch):
    done = smc_job(
        hyperparameters={"epochs": 2},
        code={"net.py": TRAIN_FUNCTION},
        entry_point="net.py",
        env={"SMC_FUNCTION_MODE": "1"},
    )
    done.assert_success()
    model_dir = done.model_dir
    assert sorted(p.name for p in model_dir.iterdir()) == ["expected.pt", TORCHSCRIPT_FILE, STATE_DICT_FILE]
    expected = torch.load(model_dir / "expected.pt")
    scripted = torch.jit.load(str(model_dir / TORCHSCRIPT_FILE))
    assert torch.equal(scripted(torch.ones(4, 3)), expected)
    monkeypatch.syspath_prepend(str(done.job_dir / "code"))
    import net

    fresh = net.Net()
    fresh.load_state_dict(torch.load(model_dir / STATE_DICT_FILE))
    assert torch.equal(fresh(torch.ones(4, 3)), expected)


def test_a_returned_module_without_the_adapter_fails_naming_it(smc_job):
    done = smc_job(
        hyperparameters={"epochs": 1},
        code={"net.py": TRAIN_FUNCTION},
        entry_point="net.py",
        env={"SMC_FUNCTION_MODE": "1", "SMC_DISABLE_PLUGINS": "pytorch"},
        adapter=None,
    )
    done.assert_failure(2)
    assert done.failure.startswith("ConfigError: net.train() returned a net.Net: a torch.nn.Module")
    assert "pip install smc-pytorch" in done.failure and "SMC_ADAPTER=pytorch" in done.failure
    assert sorted(p.name for p in done.model_dir.iterdir()) == ["expected.pt"]  # nothing saved


class Unscriptable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)

    def forward(self, x, *extra):  # varargs: TorchScript refuses
        return self.layer(x)


def test_unscriptable_module_saves_state_dict_only(tmp_path):
    module = torch.nn.parallel.DistributedDataParallel.__new__(torch.nn.parallel.DistributedDataParallel)
    torch.nn.Module.__init__(module)
    module.module = Unscriptable()  # a wrapper with .module, as DDP: saved unwrapped
    written = save_model(module, tmp_path)
    assert [p.name for p in written] == [STATE_DICT_FILE]
    assert set(torch.load(tmp_path / STATE_DICT_FILE)) == {"layer.weight", "layer.bias"}


def test_only_rank_zero_saves():
    master = SimpleNamespace(is_master=True)
    assert is_rank_zero(master, {}) and is_rank_zero(master, {"RANK": "0"})
    assert not is_rank_zero(master, {"RANK": "1"})
    assert not is_rank_zero(SimpleNamespace(is_master=False), {})
    assert is_module(torch.nn.Linear(1, 1)) and not is_module(object()) and not is_module(None)
