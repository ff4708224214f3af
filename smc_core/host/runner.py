"""The runner: the four steps of a training job, in order, then the report.

Read :func:`run_training` to see a whole job; :func:`main` adds the report (``output/success`` or
``output/failure``) and the exit code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pluggy

from smc_core.base.log import configure_logging, logger
from smc_core.base.settings import Setting, Settings, parse_settings
from smc_core.base.stopping import JobStopped, set_phase, stop_on_signals
from smc_core.base.supervision import apply_supervision, last_resort
from smc_core.cluster.job import open_job_channel, stop_outcome
from smc_core.errors import ConfigError, PluginError, SmcError
from smc_core.host.jobdir import check_job_dir, disk_full, job_lock
from smc_core.host.plugins import get_plugin_manager, raising_plugin
from smc_core.host.reporting import FailureFile, format_error, format_user_failure, write_success
from smc_core.host.returns import check_returned_model
from smc_core.host.summary import log_plugins
from smc_core.host.switches import check_switches, claimed_switches
from smc_core.job.paths import JobPaths, base_dir
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


def declared_settings(pm: pluggy.PluginManager) -> list[Setting[Any]]:
    """Every setting the loaded plugins declare with ``register_settings`` (the core's included)."""
    declared: list[Setting[Any]] = []
    for contribution in pm.hook.register_settings():
        if contribution is None:
            continue
        for setting in contribution:
            if not isinstance(setting, Setting):
                raise PluginError(
                    f"A register_settings implementation returned {setting!r}; it must return "
                    "smc_core.Setting objects (Setting.seconds(...), Setting.integer(...) ...), or None."
                )
            declared.append(setting)
    return declared


def load_settings(pm: pluggy.PluginManager, environ: Mapping[str, str]) -> Settings:
    """Parse the core's settings and every plugin's ``register_settings`` declarations from ``environ``.

    :raises ConfigError: one line per bad value, naming the variable, the value and what is accepted.
    """
    return parse_settings(environ, declared_settings(pm))


def run_training(
    pm: pluggy.PluginManager, *, base: Path | None = None, environ: Mapping[str, str] | None = None
) -> TrainingResult:
    """Run the four hooks of a training job in order and return the result of ``invoke_train``."""
    environ = dict(os.environ if environ is None else environ)
    hook: Any = pm.hook
    log_plugins(pm)
    settings = load_settings(pm, environ)
    claimed = claimed_switches(pm)
    training_env = require(
        hook.load_environment(base_dir=base or base_dir(environ), environ=environ, settings=settings),
        "load_environment",
        pm,
    )
    check_switches(training_env.additional_framework_parameters, claimed)
    # Every process started and every wait from here on obeys the job's policy, whoever starts it;
    # the job's channel joins its hosts (job_channel()), keeps them alive, and ends with one outcome on
    # every host: a stop or a lost host overrules what the user's code returned.
    with apply_supervision(training_env.supervision), open_job_channel(training_env) as channel:
        user_code = require(hook.fetch_user_code(training_env=training_env), "fetch_user_code", pm)
        contributions = hook.prepare_training(training_env=training_env, user_code=user_code)
        process_env = merge_process_env(contributions, environ)
        result = require(
            hook.invoke_train(training_env=training_env, user_code=user_code, process_env=process_env),
            "invoke_train",
            pm,
        )
        result = channel.conclude(result)
    return result


def report_crash(error: Exception, pm: pluggy.PluginManager | None, failure_file: FailureFile) -> int:
    """Report an exception that is not an :class:`SmcError`: exit 3 when a plugin's own code raised it
    (:func:`~smc_core.host.plugins.raising_plugin`), else 1 (smc itself crashed: a bug)."""
    plugin = raising_plugin(pm, error) if pm is not None else None
    if plugin is None:
        logger.exception("smc failed: this is a bug in smc; please report it with this traceback")
        failure_file.write(format_error(error))
        return 1
    logger.exception("The plugin %s raised an exception of its own", plugin)
    name = plugin.split(" ")[0]
    wrapped = PluginError(
        f"The plugin {plugin} raised {type(error).__name__}: {error}. Fix or update the plugin, or block "
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
    configure_logging()
    paths = JobPaths(base or base_dir(environ))
    with stop_on_signals():
        try:
            check_job_dir(paths, environ)
            with job_lock(paths):
                return run_and_report(pm, paths, environ)
        except ConfigError as error:  # the job dir itself is unusable, or busy
            logger.error("%s", error.message)
            return error.exit_code
        except JobStopped as stopped:
            logger.error("The job was %s.", stopped)
            return stopped.exit_code


def run_and_report(pm: pluggy.PluginManager | None, paths: JobPaths, environ: Mapping[str, str]) -> int:
    """Run the job in ``paths`` (locked by the caller) and write its outcome; the exit code."""
    failure_file = FailureFile(paths.failure_file)
    # An outcome left by an earlier run in this job directory must not describe this one.
    paths.success_file.unlink(missing_ok=True)
    failure_file.reserve()

    def report_last(exit_code: int, reason: str, details: Mapping[str, Any]) -> int:
        # smc ends itself (function mode outlived the grace period of a stop): the failure file first.
        stopped = stop_outcome(f"The training code then did not return: {reason}")
        if stopped is not None:
            return report_failure(failure_file, stopped.failure_text(), stopped.exit_code)
        return report_failure(
            failure_file, format_user_failure(exit_code, reason, None, details=details), exit_code
        )

    try:
        pm = pm or get_plugin_manager(environ=environ)
        with last_resort(report_last):
            result = run_training(pm, base=paths.base_dir, environ=environ)
        check_returned_model(result)
    except SmcError as error:
        logger.error("%s", error.message)
        return report_failure(failure_file, format_error(error), error.exit_code)
    except JobStopped as stopped:
        logger.error("The job was %s.", stopped)
        return report_failure(failure_file, stopped.failure_text(), stopped.exit_code)
    except Exception as error:
        code = report_crash(error, pm, failure_file)
        failure_file.release()
        return code
    set_phase("reporting")
    return report_result(result, failure_file, paths)


def report_failure(failure_file: FailureFile, text: str, exit_code: int) -> int:
    """Write ``text`` to the failure file (unless the user's code wrote its own); ``exit_code``."""
    try:
        failure_file.write(text)
    except OSError as exc:
        logger.error("Could not write %s: %s. The failure was:\n%s", failure_file.path, exc, text)
    failure_file.release()
    return exit_code


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
    report_failure(failure_file, text, result.exit_code)
    logger.error("Training failed with exit code %d; see %s", result.exit_code, paths.failure_file)
    return result.exit_code
