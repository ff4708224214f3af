"""Function mode: import the user's module and call its ``train(...)`` in this process.

The original design's alternative to a script: the module defines ``train`` and names, as parameters,
the hyperparameters and environment fields it wants::

    def train(epochs: int, lr: float, model_dir, channel_input_dirs, hyperparameters):
        ...
        return model           # the adapter saves it to model_dir (None: train() saved it itself)

Switched on by ``SMC_FUNCTION_MODE=1`` (or the hyperparameter ``sagemaker_function_mode=true``). A
returned object that no loaded adapter saves fails the job (exit 2, :mod:`smc_core.host.returns`).
Each parameter gets, by name, the hyperparameter of that name, else the environment field of that
name (:func:`environment_fields`: ``model_dir``, ``channel_input_dirs``, ``hyperparameters``,
``hosts``, ``current_host``, ``num_gpus``, ``training_env`` ...). A required parameter that nothing
gives, or a hyperparameter that ``train`` does not take (unless it has ``**kwargs`` or a
``hyperparameters`` parameter), is a :class:`~smc_core.errors.ConfigError` naming it and suggesting
the closest name. A value whose type does not fit a simple annotation (``int``, ``float``, ``bool``,
``str``) is converted when it can be, else reported.

It runs in-process, as the original design did, so that the returned object reaches the adapter's
``invoke_train`` wrapper as it is (no pickling): during the call the working directory is the code
dir, the code dir is first on ``sys.path``, ``os.environ`` is the job's process environment,
``sys.argv`` holds the entry point and its arguments, and SIGTERM raises ``SystemExit(143)`` in the
user's code (so ``finally`` blocks run) unless the user installs a handler.

The grace period holds here too: ``train()`` has the job's ``SMC_GRACE_PERIOD`` from the first SIGTERM
or SIGINT smc receives (seen through Python's wakeup fd, even when the user's code installed a handler
of its own) to return. When it has not, smc writes the failure file (naming the grace period) and ends
its own process with exit code 137, as it would SIGKILL a script (:func:`~smc_core.base.supervision.end_now`).
Only a handler set to ``SIG_IGN`` hides a signal from smc: the kernel then never delivers it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
import signal
import sys
import threading
import traceback
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from smc_core.base.log import logger
from smc_core.base.messages import did_you_mean
from smc_core.base.stopping import notify_stop
from smc_core.base.supervision import Supervision, applied_supervision, end_now
from smc_core.errors import ConfigError
from smc_core.launch.result import TrainingResult

if typing.TYPE_CHECKING:
    from smc_core.job.environment import TrainingEnv

__all__ = [
    "call_with_arguments",
    "environment_fields",
    "intersect_fn_parameters",
    "load_function",
    "result_of_exception",
    "run_function",
    "train_arguments",
]

_TAIL_LINES = 60


def intersect_fn_parameters(fn: Callable[..., Any], mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``mapping`` that ``fn`` takes by name (all of them when it has ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(mapping)
    names = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    return {k: v for k, v in mapping.items() if k in names}


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def environment_fields(training_env: TrainingEnv) -> dict[str, Any]:
    """The environment fields function mode can pass by name: every ``TrainingEnv`` field and
    property (paths as strings, as the original design passed them), plus ``training_env`` itself."""
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(training_env):
        if f.name != "paths":
            fields[f.name] = _plain(getattr(training_env, f.name))
    for name, attr in inspect.getmembers(type(training_env)):
        if isinstance(attr, property) and not name.startswith("_"):
            with contextlib.suppress(Exception):
                fields[name] = _plain(getattr(training_env, name))
    fields["training_env"] = training_env
    return fields


_SIMPLE_TYPES = (bool, int, float, str)


def _convert(name: str, value: Any, annotation: Any, where: str) -> Any:
    """``value`` as the simple type ``annotation`` wants, or a ConfigError that says what to pass."""
    if annotation not in _SIMPLE_TYPES:
        return value
    example = {bool: "true", int: "10", float: "0.01", str: '"text"'}[annotation]
    wrong = ConfigError(
        f"hyperparameters.json: {name!r} is {value!r}, which {where} takes as {annotation.__name__}: "
        f"pass a {annotation.__name__} value, e.g. {name}={example}."
    )
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        raise wrong
    if annotation is str:
        return value if isinstance(value, str) else str(value)
    if isinstance(value, bool):
        raise wrong
    if annotation is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value.strip())
        raise wrong
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value.strip())
    raise wrong


def train_arguments(
    fn: Callable[..., Any],
    hyperparameters: Mapping[str, Any],
    fields: Mapping[str, Any],
    *,
    where: str = "train()",
) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments to call ``fn`` with (see the module docstring).

    :param fn: the user's function.
    :param hyperparameters: the user's hyperparameters (decoded).
    :param fields: environment fields by name (:func:`environment_fields`).
    :param where: how to name ``fn`` in errors (``train() in train.py``).
    :raises ConfigError: a required parameter has no value, a hyperparameter is not a parameter, or
        a value does not fit its annotation; the message names each and suggests the closest name.
    """
    signature = inspect.signature(fn)
    params = signature.parameters
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: no conversion
        hints = {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    problems: list[str] = []
    unknown = [k for k in hyperparameters if k not in named]
    for name in named:
        param = params[name]
        if name in hyperparameters:
            value = _convert(name, hyperparameters[name], hints.get(name), where)
        elif name in fields:
            value = fields[name]
        elif param.default is inspect.Parameter.empty:
            problems.append(
                f"{where} requires the parameter {name!r}, which no hyperparameter or environment field "
                f"gives.{did_you_mean(name, unknown)} Add the hyperparameter {name!r}, or give the parameter "
                "a default."
            )
            continue
        else:
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[name] = value
    if takes_kwargs:
        kwargs.update({k: hyperparameters[k] for k in unknown})
    elif "hyperparameters" not in named:
        for name in unknown:
            problems.append(
                f"the hyperparameter {name!r} is not a parameter of {where} "
                f"(it takes: {', '.join(named) or 'nothing'}).{did_you_mean(name, named)} "
                "Fix the name, or add the parameter (or **kwargs) to the function."
            )
    if problems:
        raise ConfigError("Function mode: " + "\n".join(problems))
    return args, kwargs


def load_function(code_dir: Path | str, module_name: str, function_name: str = "train") -> Callable[..., Any]:
    """Import ``module_name`` (the code dir first on ``sys.path``) and return its ``function_name``.

    Exceptions raised by the module's own code while importing propagate unchanged.

    :raises ConfigError: the module cannot be found, or does not define the function.
    """
    code_dir = str(code_dir)
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise
        raise ConfigError(
            f"Function mode: no module {module_name!r} in {code_dir} or on the path. Set sagemaker_program "
            f"(SAGEMAKER_PROGRAM) to the file that defines {function_name}(), e.g. train.py."
        ) from exc
    fn = getattr(module, function_name, None)
    if not callable(fn):
        raise ConfigError(
            f"Function mode: {getattr(module, '__file__', module_name)} defines no function "
            f"{function_name}(). "
            f"Define def {function_name}(...), or turn function mode off (unset SMC_FUNCTION_MODE) to run it "
            "as a script."
        )
    return fn


def _terminate(signum: int, frame: Any) -> None:
    notify_stop(signum)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _user_context(code_dir: Path, environ: Mapping[str, str], argv: list[str]) -> Iterator[None]:
    """Working directory, ``sys.path``, ``os.environ``, ``sys.argv`` and SIGTERM as the user's code
    expects them, restored afterwards."""
    saved_cwd, saved_env, saved_argv, saved_path = os.getcwd(), dict(os.environ), sys.argv, list(sys.path)
    previous_term = None
    os.chdir(code_dir)
    os.environ.clear()
    os.environ.update(environ)
    sys.argv = argv
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    with contextlib.suppress(ValueError):
        previous_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        if previous_term is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous_term)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        sys.path[:] = saved_path


@contextlib.contextmanager
def _grace_watch(where: str, policy: Supervision) -> Iterator[None]:
    """While inside (main thread), a stop signal smc receives starts the grace period; when it runs out
    before the block ends, :func:`end_now` ends smc (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main interpreter
        os.close(read_end)
        os.close(write_end)
        yield
        return
    done = threading.Event()

    def expire(name: str) -> None:
        if done.is_set():
            return
        grace = policy.grace_period
        reason = (
            f"smc ended the job {grace:g} s after {name}: {where} did not return within the grace period "
            "(set SMC_GRACE_PERIOD to allow more)."
        )
        logger.error("%s", reason)
        end_now(
            137, reason, {"kill_cause": "grace-period", "killed_after_grace_period": grace, "signal": name}
        )

    def watch() -> None:
        timer: threading.Timer | None = None
        while True:
            try:
                data = os.read(read_end, 64)
            except OSError:
                data = b""
            if not data or done.is_set():
                break
            for signum in data:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    notify_stop(signum)  # seen even when train() replaced the handler
                if signum in (signal.SIGTERM, signal.SIGINT) and timer is None:
                    name = signal.Signals(signum).name
                    logger.warning(
                        "Received %s while %s runs: it has %.0f s to return (grace period).",
                        name,
                        where,
                        policy.grace_period,
                    )
                    timer = threading.Timer(policy.grace_period, expire, args=(name,))
                    timer.daemon = True
                    timer.start()
        if timer is not None:
            timer.cancel()

    watcher = threading.Thread(target=watch, name="smc-grace", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(previous)
        os.close(write_end)  # the watcher reads the end of the pipe and stops
        watcher.join(1.0)
        os.close(read_end)


def result_of_exception(exc: BaseException, where: str) -> TrainingResult:
    """The :class:`TrainingResult` for user code that raised ``exc``: ``SystemExit(n)`` exits n
    (0: success), ``KeyboardInterrupt`` 130, any other exception 1 with its traceback as ``failure``
    (also written to stderr, as Python would)."""
    details = {"function": where}
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 0:
            return TrainingResult(exit_code=0, details=details)
        reason = str(exc.code) if not isinstance(exc.code, int) else _traceback_text(exc)
        return TrainingResult(exit_code=code, failure=reason, details=details)
    text = _traceback_text(exc)
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    code = 130 if isinstance(exc, KeyboardInterrupt) else 1
    return TrainingResult(exit_code=code, failure=text, details=details)


def call_with_arguments(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> TrainingResult:
    """Call ``fn`` and turn how it ended into a :class:`TrainingResult` (``model``: what it returned;
    an exception as :func:`result_of_exception` says)."""
    where = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    try:
        model = fn(*args, **kwargs)
    except BaseException as exc:
        return result_of_exception(exc, where)
    return TrainingResult(exit_code=0, model=model, details={"function": where})


def _traceback_text(exc: BaseException) -> str:
    """The traceback without smc's own frame, limited to its last lines."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    lines = "".join(traceback.format_exception(type(exc), exc, tb)).rstrip().splitlines()
    return "\n".join(lines[-_TAIL_LINES:])


def run_function(
    training_env: TrainingEnv,
    *,
    code_dir: Path,
    module_name: str,
    process_env: Mapping[str, str],
    argv: Sequence[str] = (),
    function_name: str = "train",
) -> TrainingResult:
    """Function mode, whole: import ``module_name`` from ``code_dir``, call its ``train`` with the
    arguments its signature names, and return the result (``result.model``: what it returned).

    :raises ConfigError: the module or function is missing, or the arguments do not fit its signature.
    """
    with _user_context(code_dir, process_env, [module_name, *argv]):
        try:
            fn = load_function(code_dir, module_name, function_name)
        except ConfigError:
            raise
        except BaseException as exc:  # the module's own code failed while importing
            return result_of_exception(exc, f"{module_name}.{function_name}")
        where = (
            f"{function_name}() in {getattr(sys.modules.get(module_name), '__file__', None) or module_name}"
        )
        args, kwargs = train_arguments(
            fn, training_env.hyperparameters, environment_fields(training_env), where=where
        )
        logger.info("Function mode: calling %s with %s.", where, ", ".join(kwargs) or "no arguments")
        with _grace_watch(where, applied_supervision()):
            return call_with_arguments(fn, args, kwargs)
