"""The runner: the four steps of a training job, in order, then the report.

Read :func:`run_training` to see a whole job; :func:`main` adds the report (``output/success`` or
``output/failure``) and the exit code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pluggy

from smc_core.base.log import configure_logging, logger
from smc_core.base.redact import forget_secrets, remember_secrets
from smc_core.base.settings import Setting, Settings, SettingsRegistry
from smc_core.base.stopping import JobStopped, raise_caught_stop, set_phase, stop_on_signals
from smc_core.base.supervision import apply_supervision
from smc_core.cluster.job import open_job_channel, stop_outcome
from smc_core.errors import ConfigError, PluginError, SmcError
from smc_core.host.attempts import check_long_jobs, run_attempts
from smc_core.host.claims import claimed_hyperparameters, hand_over
from smc_core.host.jobdir import check_job_dir, create_job_folders, disk_full, job_lock
from smc_core.host.plugins import get_plugin_manager, raising_plugin
from smc_core.host.reporting import FailureFile, format_error, format_user_failure, write_success
from smc_core.host.returns import check_returned_model
from smc_core.host.summary import log_plugins
from smc_core.host.switches import check_switches, claimed_switches
from smc_core.job.environment import TrainingEnv
from smc_core.job.paths import JobPaths, base_dir
from smc_core.launch.functions import on_hard_exit
from smc_core.launch.result import TrainingResult

T = TypeVar("T")


def require(value: T | None, hook: str, pm: pluggy.PluginManager) -> T:
    """``value``, or a :class:`PluginError` naming the hook and the plugins that were asked."""
    if value is None:
        asked = ", ".join(pm.get_name(i.plugin) or "?" for i in getattr(pm.hook, hook).get_hookimpls())
        raise PluginError(
            f"No plugin answered {hook}: every implementation returned None (asked: {asked or 'none'}). "
            f"Check SMC_DISABLE_PLUGINS, or make one plugin's {hook} return a result."
        )
    return value


def merge_process_env(
    contributions: Sequence[Mapping[str, str] | None], environ: Mapping[str, str]
) -> dict[str, str]:
    """``environ`` plus every ``prepare_training`` contribution; the first-called plugin wins.

    Raises :class:`PluginError` for a contribution that is not a mapping of strings to strings.
    """
    process_env = dict(environ)
    for contribution in reversed(contributions):  # defaults come last: apply them first
        if contribution is None:
            continue
        if not isinstance(contribution, Mapping):
            raise PluginError(
                f"A prepare_training implementation returned a {type(contribution).__name__}; it must "
                "return a mapping of environment variables (names to string values), or None."
            )
        for name, value in contribution.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise PluginError(
                    f"A prepare_training implementation returned {name!r}={value!r} "
                    f"({type(value).__name__}); environment variable names and values must be strings: "
                    f"return str(value), e.g. {{{str(name)!r}: {str(value)!r}}}."
                )
        process_env.update(contribution)
    return process_env


def settings_by_plugin(pm: pluggy.PluginManager) -> list[tuple[str, list[Setting[Any]]]]:
    """What each loaded plugin declares with ``register_settings``: (plugin name, its settings), in
    the order pluggy calls them. The core's own settings are not among them: the registry always
    declares those (:class:`~smc_core.base.settings.SettingsRegistry`)."""
    declared: list[tuple[str, list[Setting[Any]]]] = []
    for impl in reversed(pm.hook.register_settings.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        contribution = impl.function()
        if contribution is None:
            continue
        name = pm.get_name(impl.plugin) or "?"
        if isinstance(contribution, (str, Setting)) or not isinstance(contribution, Iterable):
            raise PluginError(
                f"The register_settings implementation of {name} returned {contribution!r}; it must "
                "return a list of smc_core.Setting objects (Setting.seconds(...), Setting.integer(...) ...), "
                "or None."
            )
        declared.append((name, list(contribution)))
    return declared


def declared_settings(pm: pluggy.PluginManager) -> list[Setting[Any]]:
    """Every setting the loaded plugins declare with ``register_settings`` (the core's are not among
    them), in the order pluggy calls the plugins."""
    return [setting for _, settings in settings_by_plugin(pm) for setting in settings]


def load_settings(pm: pluggy.PluginManager, registry: SettingsRegistry) -> Settings:
    """Declare every loaded plugin's ``register_settings`` in ``registry`` (which holds the core's
    settings, parsed from the job's environment), then freeze it: the job's settings.

    :raises ConfigError: one line per bad value, naming the variable, the value and what is accepted.
    :raises PluginError: a variable declared twice, naming both owners.
    """
    for name, settings in settings_by_plugin(pm):
        registry.declare(settings, by=name)
    return registry.freeze()


def run_training(
    pm: pluggy.PluginManager,
    *,
    base: Path | None = None,
    environ: Mapping[str, str] | None = None,
    registry: SettingsRegistry | None = None,
) -> TrainingResult:
    """Run the four hooks of a training job in order and return the result of ``invoke_train``.

    :param registry: the job's settings as parsed from ``environ`` so far (the runner's, which also
        chose the plugins); default: parsed here from ``environ``.
    """
    environ = dict(os.environ if environ is None else environ)
    registry = SettingsRegistry(environ) if registry is None else registry
    hook: Any = pm.hook
    log_plugins(pm)
    settings = load_settings(pm, registry)
    claimed = claimed_switches(pm)
    owned = claimed_hyperparameters(pm)
    training_env = require(
        hook.load_environment(base_dir=base or base_dir(environ), environ=environ, settings=settings),
        "load_environment",
        pm,
    )
    remember_secrets(training_env.hyperparameters)  # redacted from the log and the failure file
    check_settings_kept(training_env, settings, pm)
    training_env = hand_over(training_env, owned)  # plugins' own hyperparameters: not the script's
    create_job_folders(training_env)  # model/, output/data/ ... where a job dir made by hand lacks them
    check_switches(training_env, claimed, pm)
    check_long_jobs(training_env)  # a bad stall or restart setting fails here, before any work
    # Every process started and every wait from here on obeys the job's policy, whoever starts it;
    # the job's channel joins its hosts (job_channel()), keeps them alive, and ends with one outcome on
    # every host: a stop or a lost host overrules what the user's code returned.
    with apply_supervision(training_env.supervision), open_job_channel(training_env) as channel:
        user_code = require(hook.fetch_user_code(training_env=training_env), "fetch_user_code", pm)
        contributions = hook.prepare_training(training_env=training_env, user_code=user_code)
        process_env = merge_process_env(contributions, environ)
        remember_secrets(process_env)

        def invoke(attempt_env: Mapping[str, str]) -> TrainingResult:
            found = hook.invoke_train(training_env=training_env, user_code=user_code, process_env=attempt_env)
            return require(found, "invoke_train", pm)

        # Watched for stalls and asked for stacks (SIGUSR1); restarted when the job asks for it.
        result = run_attempts(invoke, training_env, user_code, process_env, channel)
        result = channel.conclude(result)
    return result


def check_settings_kept(training_env: TrainingEnv, settings: Settings, pm: pluggy.PluginManager) -> None:
    """Raise :class:`PluginError` when ``load_environment`` answered with a :class:`TrainingEnv` that
    does not carry the job's ``settings`` (its plugins' settings would be missing from it)."""
    if training_env.settings is not settings:
        asked = ", ".join(pm.get_name(i.plugin) or "?" for i in pm.hook.load_environment.get_hookimpls())
        raise PluginError(
            "A load_environment implementation returned a TrainingEnv without the job's settings (asked: "
            f"{asked}): pass the settings it is given on, create_environment(base_dir, environ, "
            "settings=settings, ...), so that every plugin's settings reach the later hooks."
        )


def report_crash(error: BaseException, pm: pluggy.PluginManager | None, failure_file: FailureFile) -> int:
    """Report an exception that is not an :class:`SmcError`: exit 3 when a plugin's own code raised it
    (:func:`~smc_core.host.plugins.raising_plugin`), else 1 (smc itself crashed: a bug). A
    ``SystemExit`` (a plugin calling ``sys.exit(0)``) is such an exception: it would end ``train``
    with no outcome and the user's code never run."""
    plugin = raising_plugin(pm, error) if pm is not None else None
    if plugin is None:
        logger.exception("smc failed: this is a bug in smc; please report it with this traceback")
        failure_file.write(format_error(error))
        return 1
    logger.exception("The plugin %s raised an exception of its own", plugin)
    name = plugin.split(" ")[0]
    what = (
        f"called sys.exit({error.code!r})"
        if isinstance(error, SystemExit)
        else f"raised {type(error).__name__}: {error}"
    )
    wrapped = PluginError(
        f"The plugin {plugin} {what}. Fix or update the plugin, or block "
        f"it with SMC_DISABLE_PLUGINS={name}; the traceback is in the job's log."
    )
    failure_file.write(format_error(wrapped))
    return wrapped.exit_code


def main(
    pm: pluggy.PluginManager | None = None,
    *,
    base: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run a training job and report it: returns the exit code (0 on success).

    Writes ``output/success``, or ``output/failure`` (keeping one the user's code wrote itself). A
    job dir that is missing, read-only or busy with another job is exit 2 (see
    :mod:`smc_core.host.jobdir`); SIGTERM/SIGINT in any phase end the job with ``128 + signal``
    and a failure file naming the phase (see :mod:`smc_core.base.stopping`).
    """
    environ = dict(os.environ if environ is None else environ)
    forget_secrets()  # a new job: another job's secrets (tests run several in one process) are not its
    remember_secrets(environ)
    configure_logging()
    paths = JobPaths(base or base_dir(environ))
    registry = SettingsRegistry(environ)  # the one parse of the job's settings; plugins add theirs
    with stop_on_signals():
        try:
            try:
                check_job_dir(paths, registry)
            except ConfigError as error:  # the job dir is unusable: a failure file where one fits
                logger.error("%s", error.message)
                write_failure_if_possible(paths, format_error(error))
                return error.exit_code
            with job_lock(paths):
                return run_and_report(pm, paths, registry)
        except ConfigError as error:  # busy with another job (whose outcome files are not touched)
            logger.error("%s", error.message)
            return error.exit_code
        except JobStopped as stopped:
            logger.error("The job was %s.", stopped)
            return stopped.exit_code


def write_failure_if_possible(paths: JobPaths, text: str) -> None:
    """Write the failure file for a job dir that :func:`check_job_dir` refused, where it can hold one
    (``output/`` a directory, ``output/failure`` not one); nothing is created otherwise."""
    if not paths.output_dir.is_dir() or paths.failure_file.is_dir() or paths.failure_file.is_symlink():
        return
    try:
        FailureFile(paths.failure_file).write(text)
    except OSError as exc:
        logger.debug("No failure file: %s", exc)
        return
    with contextlib.suppress(OSError):  # an earlier job's success must not stand beside it
        if not paths.success_file.is_dir():
            paths.success_file.unlink(missing_ok=True)


def run_and_report(pm: pluggy.PluginManager | None, paths: JobPaths, registry: SettingsRegistry) -> int:
    """Run the job in ``paths`` (locked by the caller) with the settings in ``registry`` (parsed from
    the job's environment) and write its outcome; the exit code."""
    failure_file = FailureFile(paths.failure_file)
    # An outcome left by an earlier run in this job directory must not describe this one.
    paths.success_file.unlink(missing_ok=True)
    failure_file.reserve()
    on_hard_exit(lambda code, reason, details: report_hard_exit(code, failure_file, paths, reason, details))
    try:
        raise_caught_stop()  # a stop that came while train was starting: this job's outcome
        pm = pm or get_plugin_manager(registry=registry)
        result = run_training(pm, base=paths.base_dir, environ=registry.environ, registry=registry)
        check_returned_model(result)
    except SmcError as error:
        logger.error("%s", error.message)
        return report_failure(failure_file, format_error(error), error.exit_code, paths)
    except JobStopped as stopped:
        logger.error("The job was %s.", stopped)
        return report_failure(failure_file, stopped.failure_text(), stopped.exit_code, paths)
    except BaseException as error:  # a bug; SystemExit too: a plugin's sys.exit() is no outcome
        code = report_crash(error, pm, failure_file)
        failure_file.release()
        return code
    finally:
        on_hard_exit(None)
    set_phase("reporting")
    return report_result(result, failure_file, paths)


def report_hard_exit(
    exit_code: int,
    failure_file: FailureFile,
    paths: JobPaths,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    """The outcome of a job whose process ends at once in function mode: the user's code ended it
    itself (``os._exit``, ``reason`` None), or ``train()`` outlived its grace period (``reason`` says so);
    the exit code to end with (a stop's ``128 + signal``: a stop is a stop, however the code ended)."""
    ended = reason or f"the training code ended the process with os._exit({exit_code})"
    stopped = stop_outcome(f"Then: {ended}")
    if stopped is not None:
        return report_failure(failure_file, stopped.failure_text(), stopped.exit_code, paths)
    if exit_code == 0 and reason is None:
        failure_file.release()
        write_success(paths.success_file)
        return 0
    return report_failure(
        failure_file, format_user_failure(exit_code, ended, None, details=details), exit_code, paths
    )


def report_failure(
    failure_file: FailureFile, text: str, exit_code: int, paths: JobPaths | None = None
) -> int:
    """Write ``text`` to the failure file (unless the user's code wrote its own); ``exit_code``.

    A success file in ``paths`` (which the runner removed at the start, so the user's code wrote it)
    is removed: a failed job has one outcome.
    """
    try:
        failure_file.write(text)
    except OSError as exc:
        logger.error("Could not write %s: %s. The failure was:\n%s", failure_file.path, exc, text)
    failure_file.release()
    if paths is not None:
        remove_users_success(paths)
    return exit_code


def remove_users_success(paths: JobPaths) -> None:
    """Remove ``output/success`` written by the user's code in a job that failed, with a warning."""
    if paths.success_file.is_file() or paths.success_file.is_symlink():
        logger.warning(
            "The training code wrote %s, but the job failed: removing it (a job has one outcome; "
            "write it only once training succeeded, or leave it to smc).",
            paths.success_file,
        )
        paths.success_file.unlink(missing_ok=True)


def report_result(result: TrainingResult, failure_file: FailureFile, paths: JobPaths) -> int:
    """Write the outcome of the user's code: ``output/success``, or the failure file; the exit code.

    A failure file written by the user's code is the failure's reason, and means the job failed:
    when the code exited 0 anyway, smc warns and exits 1 (no success file).
    """
    if result.succeeded and failure_file.written_by_user():
        logger.warning(
            "The training code exited 0 but wrote %s: reporting the job as failed (exit 1), with that "
            "file as the reason. Exit non-zero when training fails, or do not write the failure file.",
            failure_file.path,
        )
        failure_file.release()
        remove_users_success(paths)
        return 1
    if result.succeeded:
        failure_file.remove_stale()
        failure_file.release()
        write_success(paths.success_file)
        logger.info("Training succeeded.")
        return 0
    note = f"the disk holding {paths.base_dir} is full" if disk_full(paths.base_dir) else None
    text = format_user_failure(
        result.exit_code, result.failure, result.command, details=result.details, note=note
    )
    report_failure(failure_file, text, result.exit_code, paths)
    logger.error("Training failed with exit code %d; see %s", result.exit_code, paths.failure_file)
    return result.exit_code
