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
``sys.argv`` holds the entry point and its arguments, and SIGTERM (every stop signal but SIGINT:
SIGHUP, SIGQUIT ...) raises ``SystemExit(128 + signal)`` in the user's code (so ``finally`` blocks run)
unless the user installs a handler.

How the call ends that a process would end otherwise: ``os._exit(n)`` in the user's code first
reports (:func:`on_hard_exit`: the runner writes the outcome, exit code ``n`` kept) and then ends the
process; threads that ``train()`` started and left running (not daemons, which a process would wait
for at exit) get ``leftover_grace`` seconds to end, are then named in a warning, and do not keep
``train`` from exiting (see :func:`smc_core.cli.main.train_main`).

The grace period holds here too: ``train()`` has the job's ``SMC_GRACE_PERIOD`` from the first stop
signal smc receives (seen through Python's wakeup fd, even when the user's code installed a handler of
its own) to return. When it has not, smc writes the failure file (naming the grace period) and ends its
own process with exit code 137, as it would SIGKILL a script. Only a handler set to ``SIG_IGN`` hides a
signal from smc (the kernel then never delivers it), and code that sets a wakeup fd of its own while it
runs (asyncio's signal handling) takes smc's place.
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
import time
import traceback
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from smc_core.base.log import logger
from smc_core.base.messages import did_you_mean
from smc_core.base.redact import REDACTED, is_secret_name
from smc_core.base.stopping import STOP_SIGNALS, notify_stop
from smc_core.base.supervision import Supervision, applied_supervision
from smc_core.errors import ConfigError
from smc_core.launch.result import TrainingResult

if typing.TYPE_CHECKING:
    from smc_core.job.environment import TrainingEnv

__all__ = [
    "call_with_arguments",
    "call_with_hyperparameters",
    "environment_fields",
    "import_user_module",
    "intersect_fn_parameters",
    "load_function",
    "on_hard_exit",
    "result_of_exception",
    "run_function",
    "train_arguments",
]

_TAIL_LINES = 60


def intersect_fn_parameters(fn: Callable[..., Any], mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``mapping`` that ``fn`` takes by name (all of them when it has ``**kwargs``):
    the original design's lenient matching, which drops the rest without a word.

    Example::

        from smc_core import intersect_fn_parameters

        def train(epochs, lr=0.1): ...

        intersect_fn_parameters(train, {"epochs": 3, "batch": 64})  # {"epochs": 3}
        train(**intersect_fn_parameters(train, {"epochs": 3, "batch": 64}))
    """
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
        f"hyperparameters.json: {name!r} is {REDACTED if is_secret_name(name) else repr(value)}, which "
        f"{where} takes as {annotation.__name__}: "
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


def import_user_module(directory: Path | str, module_name: str) -> ModuleType:
    """Import the user's module ``module_name`` from ``directory`` and return it.

    ``directory`` goes first on ``sys.path`` (and stays there, as for the job's own imports), so the
    user's module and its siblings shadow anything installed of the same name. ``module_name`` is an
    import name: ``train`` for ``train.py``, ``pkg.train`` for ``pkg/train.py``. Exceptions raised by
    the module's own code while it is imported propagate unchanged.

    :raises ConfigError: no module of that name in ``directory`` or on the path.

    Example::

        from smc_core import import_user_module

        module = import_user_module("/opt/ml/code", "train")
        model = module.train(epochs=3)
    """
    directory = str(directory)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise  # the module itself imports something missing: its own error, unchanged
        raise ConfigError(
            f"No module {module_name!r} in {directory} or on the path: name the module by its import name "
            "(train for train.py, pkg.train for pkg/train.py), relative to that directory."
        ) from exc


def load_function(code_dir: Path | str, module_name: str, function_name: str = "train") -> Callable[..., Any]:
    """Import ``module_name`` from ``code_dir`` (:func:`import_user_module`) and return its
    ``function_name``.

    Exceptions raised by the module's own code while importing propagate unchanged.

    :raises ConfigError: the module cannot be found, or does not define the function.
    """
    try:
        module = import_user_module(code_dir, module_name)
    except ConfigError as exc:
        raise ConfigError(
            f"Function mode: no module {module_name!r} in {code_dir} or on the path. Set sagemaker_program "
            f"(SAGEMAKER_PROGRAM) to the file that defines {function_name}(), e.g. train.py."
        ) from exc.__cause__
    fn = getattr(module, function_name, None)
    if not callable(fn):
        raise ConfigError(
            f"Function mode: {getattr(module, '__file__', module_name)} defines no function "
            f"{function_name}(). "
            f"Define def {function_name}(...), or turn function mode off (unset SMC_FUNCTION_MODE) to run it "
            "as a script."
        )
    return fn


def call_with_hyperparameters(
    fn: Callable[..., Any],
    hyperparameters: Mapping[str, Any],
    fields: Mapping[str, Any] | None = None,
) -> Any:
    """Call ``fn`` with the hyperparameters (and environment fields) its signature names; return what
    it returns.

    The rules are function mode's (:func:`train_arguments`): each parameter gets the hyperparameter
    of its name, else the field of its name (``fields``: e.g. :func:`environment_fields` of a
    ``TrainingEnv``), else its default; a value is converted to a simple annotation (``int``,
    ``float``, ``bool``, ``str``) when it can be. A hyperparameter that ``fn`` does not take is an
    error (unless it has ``**kwargs`` or a ``hyperparameters`` parameter): to pass only those it
    takes, filter them with :func:`intersect_fn_parameters` first. Exceptions ``fn`` raises propagate.

    :raises ConfigError: a required parameter has no value, a hyperparameter is not a parameter, or
        a value does not fit its annotation; the message names each and the closest name.

    Example::

        from smc_core import call_with_hyperparameters

        def train(epochs: int, lr: float = 0.1, model_dir: str = "/tmp/model"):
            return epochs * lr

        call_with_hyperparameters(train, {"epochs": "3", "lr": 0.5})  # 1.5 (epochs converted to 3)
    """
    where = f"{getattr(fn, '__qualname__', 'the function')}()"
    args, kwargs = train_arguments(fn, hyperparameters, fields or {}, where=where)
    return fn(*args, **kwargs)


def _terminate(signum: int, frame: Any) -> None:
    notify_stop(signum)
    raise SystemExit(128 + signum)


HardExitReport = Callable[[int, "str | None", Mapping[str, Any]], "int | None"]
"""``report(exit_code, reason, details)``: writes the outcome of a job whose process ends at once; may
return the exit code to end with (a stop's ``128 + signal``)."""

_HARD_EXIT_REPORT: list[HardExitReport] = []
_real_exit = os._exit  # the process's own, whatever the user's code is handed meanwhile


def on_hard_exit(report: HardExitReport | None) -> None:
    """Call ``report(exit_code, reason, details)`` before the process ends at once in function mode: the
    user's code called ``os._exit`` (``reason`` None), or ``train()`` outlived its grace period (the
    runner sets the writing of the outcome; None unsets it)."""
    _HARD_EXIT_REPORT[:] = [report] if report is not None else []


def _end_at_once(code: int, reason: str | None = None, details: Mapping[str, Any] | None = None) -> None:
    """Report through :func:`on_hard_exit`'s callback, then end the process with ``code``."""
    for report in list(_HARD_EXIT_REPORT):
        with contextlib.suppress(BaseException):
            chosen = report(code, reason, details or {})
            if isinstance(chosen, int):
                code = chosen
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    _real_exit(code)


def _reporting_exit(real_exit: Callable[[int], typing.NoReturn]) -> Callable[[int], typing.NoReturn]:
    def _exit(code: int) -> typing.NoReturn:
        logger.error("The training code called os._exit(%d): reporting the outcome, then exiting.", code)
        _end_at_once(code)
        real_exit(code)

    return _exit


@contextlib.contextmanager
def _user_context(code_dir: Path, environ: Mapping[str, str], argv: list[str]) -> Iterator[None]:
    """Working directory, ``sys.path``, ``os.environ``, ``sys.argv`` and SIGTERM as the user's code
    expects them, restored afterwards."""
    saved_cwd, saved_env, saved_argv, saved_path = os.getcwd(), dict(os.environ), sys.argv, list(sys.path)
    previous: dict[int, Any] = {}
    os.chdir(code_dir)
    os.environ.clear()
    os.environ.update(environ)
    sys.argv = argv
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    for sig in STOP_SIGNALS:
        if sig != signal.SIGINT:  # SIGINT stays KeyboardInterrupt, as Python makes it
            with contextlib.suppress(ValueError, OSError):
                previous[sig] = signal.signal(sig, _terminate)
    real_exit = os._exit
    os._exit = _reporting_exit(real_exit)  # type: ignore[assignment]  # restored below
    try:
        yield
    finally:
        os._exit = real_exit
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        sys.path[:] = saved_path


@contextlib.contextmanager
def _grace_watch(where: str, policy: Supervision) -> Iterator[None]:
    """While inside (main thread), a stop signal smc receives starts the grace period; when it runs out
    before the block ends, smc reports and ends its own process (see the module docstring)."""
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
        _end_at_once(
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
                if signum in STOP_SIGNALS:
                    notify_stop(signum)  # seen even when train() replaced the handler
                if signum in STOP_SIGNALS and timer is None:
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
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    leftover_grace: float = 5.0,
) -> TrainingResult:
    """Call ``fn`` and turn how it ended into a :class:`TrainingResult` (``model``: what it returned;
    an exception as :func:`result_of_exception` says). Threads it started and left running (not
    daemons) get ``leftover_grace`` seconds to end; those still running are named in a warning and
    in ``details["leftover_threads"]``."""
    where = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    before = set(threading.enumerate())
    try:
        model = fn(*args, **kwargs)
    except BaseException as exc:
        result = result_of_exception(exc, where)
    else:
        result = TrainingResult(exit_code=0, model=model, details={"function": where})
    left = _wait_for_threads(before, leftover_grace, where)
    if left:
        result = dataclasses.replace(result, details={**result.details, "leftover_threads": left})
    return result


def _wait_for_threads(before: set[threading.Thread], grace: float, where: str) -> list[str]:
    """Join the non-daemon threads started since ``before`` for up to ``grace`` seconds in all; the
    names of those still running."""
    started = [t for t in threading.enumerate() if t not in before and not t.daemon and t.is_alive()]
    deadline = time.monotonic() + grace
    for thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in started if t.is_alive()]
    if left:
        logger.warning(
            "%s returned but left %d thread(s) running (%s), which would keep the process from exiting; "
            "not waiting for them beyond %.0f s (SMC_LEFTOVER_GRACE): they end with train. Join your "
            "threads before returning, or make them daemons.",
            where,
            len(left),
            ", ".join(left),
            grace,
        )
    return left


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
    supervision: Supervision | None = None,
) -> TrainingResult:
    """Function mode, whole: import ``module_name`` from ``code_dir``, call its ``train`` with the
    arguments its signature names, and return the result (``result.model``: what it returned).

    :param supervision: the policy ``train()`` obeys (default: the job's): its grace period after a stop
        signal, and the leftover grace of the threads it left running (:func:`call_with_arguments`).
    :raises ConfigError: the module or function is missing, or the arguments do not fit its signature.
    """
    policy = applied_supervision() if supervision is None else supervision
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
        with _grace_watch(where, policy):
            return call_with_arguments(fn, args, kwargs, leftover_grace=policy.leftover_grace)
