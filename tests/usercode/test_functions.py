"""Function mode: train(...) called in-process with hyperparameters and environment fields."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smc_core import hookimpl
from smc_core.errors import ConfigError
from smc_core.host.runner import main
from smc_core.launch.functions import intersect_fn_parameters, train_arguments

from ..helpers import failure_text, run_train

TRAIN_FN = """
import os
def train(epochs: int, lr: float, model_dir, hyperparameters, channel_input_dirs,
          use_amp: bool = False):
    print("TRAIN", epochs, type(epochs).__name__, lr, use_amp, os.path.basename(model_dir),
          sorted(hyperparameters), os.getcwd() == os.path.dirname(os.path.abspath(__file__)),
          os.environ.get("SM_MODEL_DIR") == model_dir)
    return {"weights": [epochs, lr]}
"""
TRAIN_FN_SAVES_ITSELF = TRAIN_FN.replace('return {"weights": [epochs, lr]}', "return None")


def test_function_mode_end_to_end(job_dir: Callable[..., Path]) -> None:
    base = job_dir(
        entry_point="train.py",
        hyperparameters={"epochs": "3", "lr": 1, "use_amp": "true"},
        code={"train.py": TRAIN_FN_SAVES_ITSELF},
        channels=["train"],
    )
    done = run_train(base, env={"SMC_FUNCTION_MODE": "1"})
    assert done.returncode == 0, done.stderr
    assert "TRAIN 3 int 1.0 True model ['epochs', 'lr', 'use_amp'] True" in done.stdout


def test_function_mode_by_hyperparameter(job_dir: Callable[..., Path]) -> None:
    base = job_dir(
        entry_point="train.py",
        hyperparameters={"epochs": 1, "lr": 0.5, "sagemaker_function_mode": True},
        code={"train.py": TRAIN_FN_SAVES_ITSELF},
    )
    done = run_train(base)
    assert done.returncode == 0, done.stderr
    assert "TRAIN 1 int 0.5 False" in done.stdout


class SavesModel:
    """What an adapter does: save result.model in an invoke_train wrapper."""

    def __init__(self) -> None:
        self.saved: Any = None

    @hookimpl(wrapper=True)
    def invoke_train(self, training_env: Any, user_code: Any, process_env: Any) -> Any:
        result = yield
        self.saved = result.model
        (training_env.model_dir / "model.json").write_text(json.dumps(result.model))
        return dataclasses.replace(result, model_handled_by="saves-model")


def test_a_returned_object_no_plugin_saves_fails_the_job(job_dir: Callable[..., Path]) -> None:
    base = job_dir(
        entry_point="train.py", hyperparameters={"epochs": 2, "lr": 0.1}, code={"train.py": TRAIN_FN}
    )
    done = run_train(base, env={"SMC_FUNCTION_MODE": "1"})
    assert done.returncode == 2, done.stderr
    text = failure_text(base)
    assert text.startswith("ConfigError: train.train() returned a builtins.dict")
    assert "save it yourself in train() under model_dir" in text
    assert not (base / "output" / "success").exists()


@pytest.mark.parametrize(
    ("module", "name", "adapters"),
    [
        ("torch.nn.modules.module", "Module", "smc-pytorch"),
        ("keras.src.models.model", "Model", "smc-keras or smc-tensorflow"),
        ("tf_keras.src.engine.training", "Model", "smc-keras or smc-tensorflow"),
        ("tensorflow.python.module.module", "Module", "smc-tensorflow"),
    ],
)
def test_which_adapter_saves_a_returned_type(module: str, name: str, adapters: str) -> None:
    from smc_core.host.returns import model_saver

    base = type(name, (), {"__module__": module})
    subclass = type("MyNet", (base,), {"__module__": "train"})  # found along the MRO
    assert model_saver(subclass()) is not None and model_saver(subclass())[1] == adapters
    assert model_saver({"weights": 1}) is None


def test_the_returned_object_reaches_the_adapter(
    job_dir: Callable[..., Path],
    plugin_manager: Any,
    register_plugin: Callable[[object], object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = job_dir(
        entry_point="train.py", hyperparameters={"epochs": 2, "lr": 0.1}, code={"train.py": TRAIN_FN}
    )
    saver = SavesModel()
    register_plugin(saver)
    cwd, path = os.getcwd(), list(sys.path)
    monkeypatch.delenv("SMC_FUNCTION_MODE", raising=False)  # the hooks read the environ given to main
    code = main(
        plugin_manager,
        base=base,
        environ={**os.environ, "SMC_FUNCTION_MODE": "1", "SAGEMAKER_BASE_DIR": str(base)},
    )
    assert code == 0
    assert saver.saved == {"weights": [2, 0.1]}
    assert json.loads((base / "model" / "model.json").read_text()) == {"weights": [2, 0.1]}
    assert os.getcwd() == cwd and sys.path == path
    sys.modules.pop("train", None)


def test_misspelt_hyperparameter_names_it_and_suggests(job_dir: Callable[..., Path]) -> None:
    code = "def train(epochs: int, lr: float, model_dir):\n    pass\n"
    base = job_dir(entry_point="train.py", hyperparameters={"epoch": 3, "lr": 0.1}, code={"train.py": code})
    done = run_train(base, env={"SMC_FUNCTION_MODE": "1"})
    assert done.returncode == 2
    text = failure_text(base)
    assert text.startswith("ConfigError: Function mode: train() in ")
    assert (
        "requires the parameter 'epochs', which no hyperparameter or environment field gives. "
        "Did you mean 'epoch'? Add the hyperparameter 'epochs'" in text
    )
    assert (
        "the hyperparameter 'epoch' is not a parameter of train()" in text
        and "(it takes: epochs, lr, model_dir). Did you mean 'epochs'? Fix the name" in text
    )


def test_wrong_type_is_explained(job_dir: Callable[..., Path]) -> None:
    base = job_dir(
        entry_point="train.py", hyperparameters={"epochs": "ten", "lr": 0.1}, code={"train.py": TRAIN_FN}
    )
    done = run_train(base, env={"SMC_FUNCTION_MODE": "1"})
    assert done.returncode == 2
    assert "hyperparameters.json: 'epochs' is 'ten', which train() in" in failure_text(base)
    assert "takes as int: pass a int value, e.g. epochs=10" in failure_text(base)


def test_exception_in_train_is_a_user_failure_with_traceback(job_dir: Callable[..., Path]) -> None:
    code = "def train(epochs):\n    helper()\n\ndef helper():\n    raise RuntimeError('bad batch')\n"
    base = job_dir(entry_point="train.py", hyperparameters={"epochs": 1}, code={"train.py": code})
    done = run_train(base, env={"SMC_FUNCTION_MODE": "1"})
    assert done.returncode == 1
    text = failure_text(base)
    assert text.startswith("UserCodeError: RuntimeError: bad batch\nExitCode 1\n")
    assert "in helper" in text and "runner.py" not in text and "functions.py" not in text


def test_missing_function(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", code={"train.py": "x = 1\n"})
    done = run_train(base, env={"SMC_FUNCTION_MODE": "1"})
    assert done.returncode == 2
    assert "defines no function train()" in failure_text(base)


def test_system_exit_in_train_keeps_the_code(job_dir: Callable[..., Path]) -> None:
    base = job_dir(entry_point="train.py", code={"train.py": "import sys\ndef train():\n    sys.exit(7)\n"})
    done = run_train(base, env={"SMC_FUNCTION_MODE": "1"})
    assert done.returncode == 7


# --- the functions alone ------------------------------------------------------------------------


def test_intersect_fn_parameters() -> None:
    def f(a, b=1, *args, c):  # type: ignore[no-untyped-def]
        pass

    def g(a, **kwargs):  # type: ignore[no-untyped-def]
        pass

    assert intersect_fn_parameters(f, {"a": 1, "c": 2, "d": 3, "args": 4}) == {"a": 1, "c": 2}
    assert intersect_fn_parameters(g, {"a": 1, "z": 2}) == {"a": 1, "z": 2}


def test_train_arguments_rules() -> None:
    def train(epochs: int, model_dir: str, hyperparameters: dict, opt="sgd"):  # type: ignore[no-untyped-def,type-arg]
        pass

    args, kwargs = train_arguments(
        train, {"epochs": 2.0, "extra": 1}, {"model_dir": "/m", "hyperparameters": {}}
    )
    assert args == [] and kwargs == {"epochs": 2, "model_dir": "/m", "hyperparameters": {}}

    def strict(epochs):  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(
        ConfigError,
        match=r"'epohcs' is not a parameter of train\(\) \(it takes: epochs\)\. Did you mean 'epochs'\?",
    ):
        train_arguments(strict, {"epochs": 1, "epohcs": 1}, {})

    def loose(epochs, **kwargs):  # type: ignore[no-untyped-def]
        pass

    assert train_arguments(loose, {"epochs": 1, "other": 2}, {})[1] == {"epochs": 1, "other": 2}
