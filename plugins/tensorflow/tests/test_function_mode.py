"""Function mode: a Keras model or tf.Module returned by train() is saved, loads back, predicts the same."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from smc_tensorflow.saving import KERAS_FILE, is_saveable, save_model, serving_warning

from smc_core import TrainingResult, UserCodeError, create_environment

KERAS_FUNCTION = """
import numpy as np
import tensorflow as tf

def train(epochs: int, model_dir):
    tf.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((32, 3), dtype=np.float32)
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2, activation="relu")])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x[:, :2], epochs=epochs, verbose=0)
    np.save(f"{model_dir}/expected.npy", model.predict(np.ones((4, 3), dtype=np.float32), verbose=0))
    return model
"""

MODULE_FUNCTION = """
import tensorflow as tf

class Scale(tf.Module):
    def __init__(self):
        self.w = tf.Variable([[2.0], [3.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def __call__(self, x):
        return tf.matmul(x, self.w)

def train():
    return Scale()
"""


def test_returned_keras_model_is_saved_twice(smc_job):
    done = smc_job(
        hyperparameters={"epochs": 2},
        code={"net.py": KERAS_FUNCTION},
        entry_point="net.py",
        env={"SMC_FUNCTION_MODE": "1"},
    )
    done.assert_success()
    model_dir = done.model_dir
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "expected.npy", KERAS_FILE]
    expected = np.load(model_dir / "expected.npy")
    reloaded = keras.models.load_model(model_dir / KERAS_FILE)
    np.testing.assert_allclose(reloaded.predict(np.ones((4, 3), dtype=np.float32), verbose=0), expected)
    served = tf.saved_model.load(str(model_dir / "1"))
    np.testing.assert_allclose(served.serve(tf.ones((4, 3))).numpy(), expected, rtol=1e-6)
    assert "Not servable" not in done.stderr


def test_returned_tf_module_is_a_saved_model(smc_job):
    done = smc_job(code={"scale.py": MODULE_FUNCTION}, entry_point="scale.py", env={"SMC_FUNCTION_MODE": "1"})
    done.assert_success()
    loaded = tf.saved_model.load(str(done.model_dir / "1"))
    assert loaded(tf.constant([[1.0, 1.0]])).numpy().tolist() == [[5.0]]


def test_an_unbuilt_keras_model_fails_with_the_fix(tmp_path):
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    assert is_saveable(unbuilt) and not is_saveable(object()) and not is_saveable(None)
    with pytest.raises(UserCodeError, match="Build the model before returning it"):
        save_model(unbuilt, tmp_path)


def test_serving_warning_cases(tmp_path):
    assert "is empty" in serving_warning(tmp_path)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "saved_model.pb").write_bytes(b"")
    assert "is under export, not a numbered version directory" in serving_warning(tmp_path)
    (tmp_path / "models" / "0002").mkdir(parents=True)
    (tmp_path / "models" / "0002" / "saved_model.pb").write_bytes(b"")
    assert serving_warning(tmp_path) is None


def run_wrapper(training_env, result):
    from smc_tensorflow.plugin import save_and_check

    wrapper = save_and_check(training_env, None, {})
    next(wrapper)
    with pytest.raises(StopIteration) as stop:
        wrapper.send(result)
    return stop.value.value


@pytest.mark.parametrize("current_host", ["algo-1", "algo-2"])
def test_the_model_is_handled_and_saved_on_the_master_only(job_dir, current_host):
    base = job_dir(hyperparameters={}, hosts=["algo-1", "algo-2"], current_host=current_host)
    training_env = create_environment(base, {})
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    result = run_wrapper(training_env, TrainingResult(exit_code=0, model=model))
    assert result.model_handled_by == "smc-tensorflow"
    saved = sorted(p.name for p in (base / "model").iterdir())
    assert saved == (["1", KERAS_FILE] if current_host == "algo-1" else [])
    plain = run_wrapper(training_env, TrainingResult(exit_code=0, model={"not": "a model"}))
    assert plain.model_handled_by is None  # not ours: the core decides what to do with it
