"""The smc-lightgbm adapter's hook implementations.

* ``register_settings``: ``SMC_LIGHTGBM_PROCESSES_PER_HOST``, ``SMC_LIGHTGBM_PORT``.
* ``claim_switches``: ``sagemaker_lightgbm_distributed_enabled``.
* ``claim_hyperparameters``: ``lightgbm_time_out``, the minutes LightGBM's sockets wait for peers;
  the adapter reads it, the script never sees it.
* ``prepare_training``: with the switch on, waits until every host resolves, then every process
  learns LightGBM's machine list (addresses, not names: LightGBM finds its own rank by matching its
  addresses) and the job's size.
* ``invoke_train``: with the switch on, one process per rank on this host, each with its listen port
  and rank; the first process to fail stops the others and is named in the failure file.
* ``save_returned_booster`` (an ``invoke_train`` wrapper): in function mode, saves a returned
  ``lightgbm.Booster`` as ``model.txt`` in the model dir.

LightGBM itself is never imported here: ``smc plugins`` stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping
from typing import Any

from smc_core import (
    ConfigError,
    EntryKind,
    Setting,
    TrainingEnv,
    TrainingResult,
    UserCode,
    entry_command,
    hookimpl,
    is_true,
    logger,
    run_ranks,
    user_args,
    wait_for_hosts,
)

DISTRIBUTION = "smc-lightgbm"
SWITCH = "sagemaker_lightgbm_distributed_enabled"
TIME_OUT = "lightgbm_time_out"
DEFAULT_TIME_OUT = 2
MODEL_FILE = "model.txt"
PROCESSES_PER_HOST = Setting.integer(
    "SMC_LIGHTGBM_PROCESSES_PER_HOST",
    1,
    f"LightGBM processes per host when {SWITCH} is on (each uses every CPU of the host by default)",
    minimum=1,
    owner=DISTRIBUTION,
)
PORT = Setting.integer(
    "SMC_LIGHTGBM_PORT",
    12400,
    "the port the first LightGBM process of each host listens on; the next ones take the ports after it",
    minimum=1,
    owner=DISTRIBUTION,
)


@hookimpl
def register_settings() -> list[Setting[Any]]:
    """The environment variables this adapter reads."""
    return [PROCESSES_PER_HOST, PORT]


@hookimpl
def claim_switches() -> list[str]:
    """The distribution switch this adapter launches."""
    return [SWITCH]


@hookimpl
def claim_hyperparameters() -> list[str]:
    """The hyperparameter this adapter reads: LightGBM's socket time-out, not the script's."""
    return [TIME_OUT]


def switch_on(training_env: TrainingEnv) -> bool:
    """Whether the job asks for a distributed LightGBM launch."""
    return is_true(training_env.additional_framework_parameters.get(SWITCH))


def time_out(training_env: TrainingEnv) -> int:
    """Minutes LightGBM's sockets wait for the other machines (``lightgbm_time_out``, default 2).

    :raises ConfigError: not a whole number of minutes >= 1, naming the file, the key and the fix.
    """
    value = training_env.plugin_hyperparameters.get(TIME_OUT, DEFAULT_TIME_OUT)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"hyperparameters.json: {TIME_OUT!r} is {value!r}; it is the minutes LightGBM waits for the "
            f"other machines: give a whole number >= 1, e.g. {DEFAULT_TIME_OUT}."
        )
    return value


@hookimpl
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> dict[str, str] | None:
    """With the switch on: LightGBM's machine list (``address:port`` per process) and the job's size."""
    if not switch_on(training_env):
        return None
    if user_code.kind is EntryKind.FUNCTION:
        raise ConfigError(
            f"{SWITCH} is on, but function mode calls train() once, in smc's own process: a distributed "
            "LightGBM job needs a script (one process per rank). Turn SMC_FUNCTION_MODE off, or the switch."
        )
    addresses = wait_for_hosts(training_env)  # a one-host job: 127.0.0.1 where algo-1 does not resolve
    per_host, port = training_env.settings[PROCESSES_PER_HOST], training_env.settings[PORT]
    machines = [f"{addresses[host]}:{port + i}" for host in training_env.hosts for i in range(per_host)]
    return {
        "LIGHTGBM_MACHINES": ",".join(machines),
        "LIGHTGBM_NUM_MACHINES": str(len(machines)),
        "LIGHTGBM_TIME_OUT": str(time_out(training_env)),
    }


@hookimpl
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> TrainingResult | None:
    """One process per rank on this host when the switch is on; None lets the default run one."""
    if not switch_on(training_env):
        return None
    per_host, port = training_env.settings[PROCESSES_PER_HOST], training_env.settings[PORT]
    first = training_env.hosts.index(training_env.current_host) * per_host
    command = entry_command(user_code, user_args(training_env), process_env)
    logger.info("%s: %d LightGBM process(es) on this host: %s", SWITCH, per_host, " ".join(command))
    return run_ranks(
        command,
        range(first, first + per_host),
        env=process_env,
        host=training_env.current_host,
        cwd=user_code.code_dir,
        rank_env=lambda rank: {
            "LIGHTGBM_RANK": str(rank),
            "LIGHTGBM_LOCAL_LISTEN_PORT": str(port + rank - first),
        },
    )


def is_booster(model: object) -> bool:
    """Whether ``model`` is a ``lightgbm.Booster`` (checked without importing LightGBM)."""
    kind = type(model)
    return kind.__name__ == "Booster" and kind.__module__.startswith("lightgbm")


@hookimpl(specname="invoke_train", wrapper=True)
def save_returned_booster(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> Generator[None, Any, Any]:
    """Function mode: save a ``lightgbm.Booster`` that ``train()`` returned as ``model.txt``."""
    result = yield
    if result is not None and result.succeeded and is_booster(result.model):
        path = training_env.model_dir / MODEL_FILE
        result.model.save_model(str(path))
        logger.info("Saved the returned LightGBM Booster to %s.", path)
        result = dataclasses.replace(result, model_handled_by=DISTRIBUTION)
    return result
