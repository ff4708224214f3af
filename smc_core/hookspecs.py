"""The smc hook contract: the four steps of a training job, as pluggy hook specifications.

The runner calls the hooks in this order, with keyword arguments, and nothing else in between::

    settings     = every plugin's register_settings(), parsed from the runner's environment
    claimed      = every plugin's claim_switches(): an unclaimed switch that is on stops the job
    owned        = every plugin's claim_hyperparameters(): kept out of the script's arguments
    training_env = load_environment(base_dir=..., environ=..., settings=...)  # first result wins
    user_code    = fetch_user_code(training_env=...)                   # first result wins
    contributions = prepare_training(training_env=..., user_code=...)  # every plugin contributes
    result       = invoke_train(training_env=..., user_code=..., process_env=...)  # first result wins

One name per concept, in every hook: ``training_env`` (:class:`smc_core.job.environment.TrainingEnv`),
``user_code`` (:class:`smc_core.usercode.describe.UserCode`), ``process_env`` (the environment variables the
user's processes get) and ``result`` (:class:`smc_core.launch.process.TrainingResult`).

The defaults (``smc_core.defaults``) implement every hook ``trylast``: any plugin or adapter that
answers wins over them, and one that returns ``None`` ("not mine") lets them answer. With the
defaults alone, ``prepare_training`` installs the code's requirements and exports the ``SM_*``
variables, and ``invoke_train`` runs the entry point once, supervised (or calls ``train()`` in
function mode). A launch style (a framework's launcher on each host, a process beside the worker,
``mpirun``) is a plugin that claims its distribution switch (``claim_switches``), contributes its
variables and waits for its peers in ``prepare_training``, and answers ``invoke_train`` for the jobs
it launches; ``docs/lifecycle.md`` lists the launch styles smc and its adapters provide. A
distribution switch (``sagemaker_*_enabled``) that no loaded plugin claims stops the job at start
with exit 2 instead of running one independent copy per host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from smc_core.base.settings import Setting, Settings
    from smc_core.job.environment import TrainingEnv
    from smc_core.launch.result import TrainingResult
    from smc_core.usercode.describe import UserCode

PROJECT_NAME = "smc"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def register_settings() -> Iterable[Setting[Any]] | None:
    """Declare the environment variables this plugin reads, so that they are parsed and checked once.

    Called once, when the plugin manager is built, before any step of the job. Every plugin
    contributes (not first-result). The runner parses every declared setting (and the core's own)
    from its environment before :func:`load_environment`; a bad value of any of them fails the job
    with exit 2, naming the variable, the value and what is accepted. The values reach every hook as
    ``training_env.settings``; the settings reference (``smc --help``, the README) lists them all.

    :return: the plugin's :class:`~smc_core.base.settings.Setting` declarations, or None.

    Example::

        WORKERS = Setting.integer("SMC_MYFW_WORKERS", 1, "worker processes per host", minimum=1,
                                  owner="smc-myfw")

        @hookimpl
        def register_settings():
            return [WORKERS]
    """


@hookspec
def claim_switches() -> Iterable[str] | None:
    """Name the distribution switches (``sagemaker_*`` framework parameters) this plugin launches.

    Called once, before any step of the job. Every plugin contributes. A job whose hyperparameters
    turn on a distribution switch that no loaded plugin claims fails at start with exit 2, naming the
    switch and what to install or pin, rather than silently running one independent copy per host.
    A packaged plugin also declares its switches in its metadata (entry-point group ``smc.switches``,
    each switch naming the plugin's module), so that the message can name it when it is installed
    but not loaded.

    :return: the switch names (``sagemaker_multi_worker_mirrored_strategy_enabled`` ...), or None.

    Example::

        @hookimpl
        def claim_switches():
            return ["sagemaker_myfw_distributed_enabled"]

    and in ``pyproject.toml``::

        [project.entry-points."smc.switches"]
        sagemaker_myfw_distributed_enabled = "smc_myfw.plugin"
    """


@hookspec
def claim_hyperparameters() -> Iterable[str] | None:
    """Name the hyperparameters this plugin reads itself, so that they never reach the user's script.

    Called once, before any step of the job. Every plugin contributes. After
    :func:`load_environment`, each claimed hyperparameter the job sets is moved out of
    ``training_env.hyperparameters`` into ``training_env.plugin_hyperparameters`` (JSON-decoded, as
    every hyperparameter): it is not passed to the entry point as an argument, and is not in ``SM_HPS``,
    ``SM_HP_<NAME>``, ``SM_USER_ARGS``, ``SM_TRAINING_ENV``'s ``hyperparameters`` or function mode's
    keyword arguments, so an ``argparse`` script never sees an option it does not know. A
    ``sagemaker_*`` name is a framework parameter, as the container contract says: it never reaches
    the script anyway and stays in ``additional_framework_parameters`` (``SM_FRAMEWORK_PARAMS``) as
    well. The names the toolkit reserves (``sagemaker_program``, ``sagemaker_submit_directory`` ...)
    cannot be claimed (exit 3). Off SageMaker, where the container's own arguments reach the script
    as given (``train --epochs 3``), those arguments are passed on unchanged.

    :return: the hyperparameter names, or None.

    Example: a plugin that clones the code from a repository the job names::

        @hookimpl
        def claim_hyperparameters():
            return ["git_repo"]

        @hookimpl
        def fetch_user_code(training_env):
            repo = training_env.plugin_hyperparameters.get("git_repo")
            if repo is None:
                return None  # not mine: the default fetch answers
            ...
    """


@hookspec(firstresult=True)
def load_environment(base_dir: Path, environ: Mapping[str, str], settings: Settings) -> TrainingEnv | None:
    """Read the job directory and the process environment into a :class:`TrainingEnv`.

    Called first, once per host. The first non-None result wins; the default reads
    ``base_dir/input/config/*.json`` as the container contract describes.

    :param base_dir: the job directory (``/opt/ml``, or ``$SAGEMAKER_BASE_DIR``).
    :param environ: the process environment to read (``SAGEMAKER_PROGRAM``, ``TRAINING_JOB_NAME`` ...).
    :param settings: every declared setting, parsed; pass it on as ``create_environment(...,
        settings=settings)`` so that later hooks find it as ``training_env.settings``.
    :return: the environment, or None to let the next plugin (finally the default) answer.

    Example: a platform that describes hosts in its own file, as a :class:`~smc_core.PlatformFacts`::

        @hookimpl
        def load_environment(base_dir, environ, settings):
            if "MY_CLUSTER_FILE" in environ:
                facts = PlatformFacts(name="my-cluster", resource_config=read_mine(...))
                return create_environment(base_dir, environ, settings=settings, platform=facts)
    """


@hookspec(firstresult=True)
def fetch_user_code(training_env: TrainingEnv) -> UserCode | None:
    """Make the user's code available in ``training_env.code_dir`` and describe its entry point.

    Called once per host after :func:`load_environment`. The first non-None result wins; the default
    fetches ``training_env.module_dir`` (``s3://`` tar.gz, ``file://``, a local directory or tarball),
    or uses the code dir as it is when none is given.

    :param training_env: the job's environment.
    :return: the :class:`UserCode`, or None to let the next plugin answer.

    Example: code from a mounted volume, named by the plugin's own setting (declared with
    :func:`register_settings`, read from ``training_env.settings``, never from ``os.environ``)::

        CODE_DIR = Setting.text("SMC_MY_CODE_DIR", None, "where the code is mounted", owner="smc-my-code")

        @hookimpl
        def fetch_user_code(training_env):
            source = training_env.settings[CODE_DIR]
            if source is None:
                return None  # not mine: the default fetch answers
            shutil.copytree(source, training_env.code_dir, dirs_exist_ok=True)
            return describe_user_code(training_env, source=source)
    """


@hookspec
def prepare_training(training_env: TrainingEnv, user_code: UserCode) -> Mapping[str, str] | None:
    """Get ready to launch: install what the code needs, wire hosts together, export variables.

    Called once per host after :func:`fetch_user_code`. Every plugin contributes (not first-result):
    each returns the environment variables it wants the user's processes to have, or None. Where two
    plugins set the same variable, the one called first wins (adapters and plugins over the defaults).
    Side effects belong here too: installing ``requirements.txt``, waiting until peer hosts resolve.

    :param training_env: the job's environment.
    :param user_code: the fetched code.
    :return: a mapping of environment variables to add, or None.

    Example: an adapter's rendezvous variables::

        @hookimpl
        def prepare_training(training_env, user_code):
            return {"MASTER_ADDR": training_env.master_hostname, "MASTER_PORT": "7777"}
    """


@hookspec(firstresult=True)
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> TrainingResult | None:
    """Launch and supervise the user's processes until they end, and say how they ended.

    Called once per host, last. The first non-None result wins: an adapter returns a result for the
    launch styles it owns (its framework's launcher) and None for the rest; the default runs the
    entry point as one supervised process, or calls ``train()`` in function mode. Wrappers
    (``@hookimpl(wrapper=True)``) see the result, e.g. to save ``result.model``.

    :param training_env: the job's environment.
    :param user_code: the fetched code.
    :param process_env: the complete environment for the user's processes (this process's
        environment plus every ``prepare_training`` contribution).
    :return: the :class:`TrainingResult`, or None to let the next plugin answer.

    Example: a custom launcher::

        @hookimpl
        def invoke_train(training_env, user_code, process_env):
            return run_process(["my-launcher", user_code.entry_point], env=process_env,
                               cwd=user_code.code_dir)
    """
