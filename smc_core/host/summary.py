"""What a job ran, in its log: the plugins, the host layout, the command and the user's environment.

SageMaker users debug from this block, as they do from the reference toolkit's. Values of variables
whose name looks secret (:data:`~smc_core.base.redact.SECRET_NAME`: ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, any ``...PASSWORD``, ``...CREDENTIAL...``, ``...KEY...``) are never logged, nor
are those values where they reappear inside another variable or the command line (a hyperparameter
``api_key`` is also in ``SM_HPS`` and in the arguments): see :mod:`smc_core.base.redact`.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from smc_core import __version__
from smc_core.base.log import logger
from smc_core.base.redact import REDACTED, is_secret_name, redact, secret_values

if TYPE_CHECKING:
    import pluggy

    from smc_core.job.environment import TrainingEnv
    from smc_core.launch.result import TrainingResult


def shown_value(name: str, value: str, secrets: Collection[str] = ()) -> str:
    """``value`` as the log shows it: :data:`~smc_core.base.redact.REDACTED` for a secret-looking
    ``name``, else ``value`` through :func:`~smc_core.base.redact.redact`."""
    return REDACTED if is_secret_name(name) else redact(value, secrets)


def plugins_line(pm: pluggy.PluginManager) -> str:
    """The adapter and the plugins loaded, each with its distribution and version."""
    infos = list(getattr(pm, "plugin_info", {}).values())
    if not infos:  # a plain pluggy manager (tests): names only
        return "Plugins: " + ", ".join(name for name, _ in pm.list_name_plugin())

    def where(info: Any) -> str:
        return f"{info.distribution} {info.version}" if info.distribution else info.module

    adapter = next((i for i in infos if i.origin == "adapter"), None)
    others = [f"{i.name} ({i.origin}, {where(i)})" for i in infos if i.origin not in ("adapter", "default")]
    defaults = sum(1 for i in infos if i.origin == "default")

    head = (
        f"Adapter: {adapter.name} ({where(adapter)})"
        if adapter
        else "Adapter: none (the core runs the script)"
    )
    return (
        f"{head}; plugins: {', '.join(others) or 'none'}; smc-core {__version__} ({defaults} default plugins)"
    )


def host_layout_line(training_env: TrainingEnv) -> str:
    """This host, its rank and the hosts of the job."""
    hosts = list(training_env.hosts)
    line = (
        f"Host {training_env.current_host} (rank {training_env.current_host_rank} of {len(hosts)}; "
        f"hosts {', '.join(hosts)}; master {training_env.master_hostname}"
    )
    if training_env.distribution_hosts and list(training_env.distribution_hosts) != hosts:
        line += f"; distribution hosts {', '.join(training_env.distribution_hosts)}"
    return line + ")"


def environment_additions(process_env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``process_env`` that smc and its plugins set: new, or changed from ``environ``."""
    return {name: value for name, value in process_env.items() if environ.get(name) != value}


def environment_lines(process_env: Mapping[str, str], environ: Mapping[str, str]) -> list[str]:
    """``NAME=value`` for each addition (:func:`environment_additions`), sorted, secrets redacted."""
    added = environment_additions(process_env, environ)
    secrets = secret_values(process_env)
    return [f"{name}={shown_value(name, added[name], secrets)}" for name in sorted(added)]


def ran_line(result: TrainingResult, environ: Mapping[str, str] | None = None) -> str:
    """The command line (shell-quoted, exactly as run; the values of ``environ``'s secret variables
    scrubbed) or the function that was called."""
    if result.command:
        secrets = secret_values(environ or {})
        return redact("command: " + shlex.join(str(part) for part in result.command), secrets)
    function = result.details.get("function")
    return f"function: {function}()" if function else "nothing recorded"


def log_plugins(pm: pluggy.PluginManager) -> None:
    """Log :func:`plugins_line` at INFO."""
    logger.info("%s", plugins_line(pm))


def log_user_environment(training_env: TrainingEnv, process_env: Mapping[str, str]) -> None:
    """Log the host layout, the supervision policy and what the user's process gets besides smc's own
    environment, at INFO."""
    logger.info("%s", host_layout_line(training_env))
    logger.info("Supervision (every launch obeys it): %s", training_env.supervision.describe())
    lines = environment_lines(process_env, training_env.environ)
    inherited = len(process_env) - len(lines)
    logger.info(
        "Environment of the user's process: %d variable(s) set by smc and its plugins (below), "
        "%d inherited from smc's own environment (not listed; secret values are never logged):\n  %s",
        len(lines),
        inherited,
        "\n  ".join(lines),
    )
