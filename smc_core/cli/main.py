"""The command line: ``train`` (what the platform runs) and ``smc`` (train, env, exec, plugins, local)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smc_core import __version__
from smc_core.base.log import logger
from smc_core.base.settings import CORE_SETTINGS, Setting, SettingsRegistry, settings_help
from smc_core.cli.new_adapter import new_adapter
from smc_core.errors import ConfigError, SmcError
from smc_core.host.claims import claimed_hyperparameters, hand_over
from smc_core.host.plugins import get_plugin_manager, hook_implementations, hook_names
from smc_core.host.runner import declared_settings, load_settings, require
from smc_core.host.runner import main as run_main
from smc_core.job.exports import exported_vars, training_env_dict
from smc_core.job.paths import base_dir

if TYPE_CHECKING:
    import argparse

DESCRIPTION = """\
smc runs a training job inside a machine-learning container: it reads the job directory
(/opt/ml, or $SAGEMAKER_BASE_DIR), fetches the user's code, installs its requirements, wires hosts
together, runs the entry point, and writes output/success or output/failure.
"""

EXIT_CODES = """\
exit codes: 0 success; 2 bad configuration; 3 plugin error (failed to load, broke the contract, or
raised an exception of its own); 4 code fetch failed; 5 install failed; 6 a peer host never came up;
1 smc itself crashed (a bug: the traceback is in the log); any other: the training code's own exit
code (137: killed, likely out of memory).
"""


def epilog(settings: Sequence[Setting[Any]]) -> str:
    """The text after ``smc --help``'s options: the job directory, every declared setting (from the
    settings registry), and the exit codes."""
    return (
        "environment:\n  SAGEMAKER_BASE_DIR\n      job directory (default /opt/ml)\n"
        f"{settings_help(settings)}\n\n{EXIT_CODES}"
    )


def _help_settings() -> list[Setting[Any]]:
    """The core's settings and those of every plugin that loads here (the core's alone when the
    plugins cannot be loaded: help must not fail)."""
    try:
        declared = declared_settings(_plugin_manager())
    except Exception:
        declared = []
    return list({s.name: s for s in [*CORE_SETTINGS, *declared]}.values())


def _plugin_manager(registry: SettingsRegistry | None = None) -> Any:
    return get_plugin_manager(registry=registry)


def _load_training_env(pm: Any, registry: SettingsRegistry) -> Any:
    """The job's TrainingEnv, read as ``train`` reads it, with the settings in ``registry`` (the one
    that chose ``pm``'s plugins)."""
    environ = dict(registry.environ)
    settings = load_settings(pm, registry)
    base = base_dir(environ)
    if not base.is_dir():
        raise ConfigError(
            f"The job directory {base} does not exist (SAGEMAKER_BASE_DIR, default /opt/ml): there is no "
            "job to describe. Point SAGEMAKER_BASE_DIR at a job directory."
        )
    training_env = require(
        pm.hook.load_environment(base_dir=base, environ=environ, settings=settings),
        "load_environment",
        pm,
    )
    return hand_over(training_env, claimed_hyperparameters(pm))


def cmd_train(args: argparse.Namespace) -> int:
    """Run the training job in the job directory."""
    return exit_past_threads(run_main())


def exit_past_threads(exit_code: int) -> int:
    """``exit_code``; but when threads would keep the interpreter from exiting (function mode's
    ``train()`` started them, not as daemons; a thread pool's workers, which Python joins at exit,
    still in an upload the job was stopped during), end the process now with ``exit_code``: the
    outcome is written, and nothing of the job may outlive it."""
    pools = getattr(sys.modules.get("concurrent.futures.thread"), "_threads_queues", {})
    left = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and t.is_alive() and (not t.daemon or t in pools)
    ]
    if not left:
        return exit_code
    logger.warning(
        "Exiting with %d although %d thread(s) of the job still run (%s): they end with train.",
        exit_code,
        len(left),
        ", ".join(t.name for t in left),
    )
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(exit_code)


ENV_LEAVES_OUT = (
    "Not shown: what plugins add when the job runs (their prepare_training: the adapter's rendezvous "
    "variables such as MASTER_ADDR and MASTER_PORT, or TF_CONFIG), which needs the job's peer hosts up "
    "and may install packages; the job's log lists every variable the user's process got."
)


def cmd_env(args: argparse.Namespace) -> int:
    """Print the resolved training environment, or (``--export``) the ``SM_*`` variables smc exports.

    Plugins' own additions (``prepare_training``) are not run here; the output says so."""
    registry = SettingsRegistry(os.environ)
    pm = _plugin_manager(registry)
    training_env = _load_training_env(pm, registry)
    adapter = getattr(pm, "adapter", None)
    note = ENV_LEAVES_OUT + (f" Adapter loaded: {adapter.name}." if adapter else " No adapter is loaded.")
    policy = f"Supervision (every launch obeys it): {training_env.supervision.describe()}."
    if args.export:
        for name, value in sorted(exported_vars(training_env).items()):
            print(f"export {name}={shlex.quote(value)}")
        print("# " + policy)
        print("# " + note)
    else:
        print(json.dumps(training_env_dict(training_env), indent=2, sort_keys=True))
        print(policy, file=sys.stderr)
        print(note, file=sys.stderr)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    """Run a command with the job's SM_* environment (as the default ``prepare_training`` exports it)."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("smc exec: name a command to run, e.g. smc exec -- env", file=sys.stderr)
        return 2
    registry = SettingsRegistry(os.environ)
    training_env = _load_training_env(_plugin_manager(registry), registry)
    environ = {**os.environ, **exported_vars(training_env)}
    try:
        return subprocess.call(command, env=environ)
    except FileNotFoundError:
        print(f"smc exec: command not found: {command[0]}", file=sys.stderr)
        return 127


def cmd_plugins(args: argparse.Namespace) -> int:
    """List the loaded plugins and, for each hook, its implementations in call order."""
    pm = _plugin_manager()
    report: dict[str, Any] = {
        "plugins": [
            {
                "name": info.name,
                "origin": info.origin,
                "module": info.module,
                "distribution": info.distribution,
                "version": info.version,
            }
            for info in pm.plugin_info.values()
        ],
        "hooks": {name: hook_implementations(pm, name) for name in hook_names()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    adapter = pm.adapter
    if adapter:
        print(f"adapter: {adapter.name} ({adapter.distribution or '?'} {adapter.version or '?'})")
    else:
        print("adapter: none (the core alone runs the script)")
    print("plugins:")
    for p in report["plugins"]:
        if p["distribution"]:
            where = f"{p['distribution']} {p['version']}"
        else:  # smc's own defaults, or a module registered by name (SMC_PLUGINS)
            where = f"smc-core {__version__}" if p["origin"] == "default" else p["module"]
        print(f"  {p['name']:<36} {p['origin']:<12} {where}")
    print("hooks (in call order):")
    for name, impls in report["hooks"].items():
        print(f"  {name}: {', '.join(impls) or '(none)'}")
    return 0


def cmd_new_adapter(args: argparse.Namespace) -> int:
    """Render the adapter template into ``DIR/smc-NAME`` (see :mod:`smc_core.cli.new_adapter`)."""
    target = new_adapter(args.name, Path(args.dir))
    print(f"Wrote {target}: pip install -e {target} && pytest {target / 'tests'}")
    return 0


def build_parser(settings: Sequence[Setting[Any]] | None = None) -> argparse.ArgumentParser:
    """The ``smc`` argument parser; its help lists ``settings`` (default: the core's)."""
    import argparse  # only for `smc`: `train` parses no options, and its start is every job's overhead

    parser = argparse.ArgumentParser(
        prog="smc",
        description=DESCRIPTION,
        epilog=epilog(CORE_SETTINGS if settings is None else settings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"smc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("train", help="run the training job in the job directory (what `train` does)")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser(
        "env",
        help="print the resolved training environment as JSON (plugins' prepare_training additions, "
        "such as MASTER_ADDR, are not run: the job's log shows them)",
    )
    p.add_argument(
        "--export",
        action="store_true",
        help="print shell `export` lines of the SM_* variables smc exports (not plugins' additions)",
    )
    p.set_defaults(func=cmd_env)
    p = sub.add_parser(
        "exec", help="run a command with the job's SM_* environment", usage="smc exec -- COMMAND [ARG ...]"
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    p.set_defaults(func=cmd_exec)
    p = sub.add_parser("plugins", help="list loaded plugins and the implementations of each hook")
    p.add_argument("--json", action="store_true", help="print the listing as JSON")
    p.set_defaults(func=cmd_plugins)
    p = sub.add_parser("new-adapter", help="write a new adapter package from smc's template")
    p.add_argument("name", help="the framework's name, as users pin it with SMC_ADAPTER (e.g. jax)")
    p.add_argument("--dir", default=".", help="where to create smc-NAME/ (default: here)")
    p.set_defaults(func=cmd_new_adapter)
    p = sub.add_parser(
        "stacks",
        help="write the Python stacks of every rank of a running job into its log (SIGUSR1 to its "
        "master's train; the job goes on)",
    )
    p.add_argument(
        "job",
        nargs="?",
        default=".smc/jobs",
        help="the job's directory (smc local's .smc/jobs/NAME, or any job dir); default: the one job "
        "running under ./.smc/jobs",
    )
    p.set_defaults(func=cmd_stacks)
    sub.add_parser(
        "local", help="run a training job on this machine (see `smc local --help`)", add_help=False
    )
    return parser


def cmd_stacks(args: Any) -> int:
    """``smc stacks [JOB]``: SIGUSR1 to the ``train`` of the job's master host (the first host's, on
    several), whose log then shows every rank's stacks on every host."""
    import psutil

    root = os.path.abspath(args.job)
    found: list[tuple[str, int]] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            base = proc.environ().get("SAGEMAKER_BASE_DIR", "")
            command = proc.info["cmdline"] or []
        except (psutil.Error, OSError):
            continue
        if base and (base == root or base.startswith(root + os.sep)) and _is_train(command):
            found.append((base, proc.pid))
    if not found:
        print(f"smc stacks: no running train has its job directory under {root}.", file=sys.stderr)
        return 1
    jobs = {os.path.dirname(b) if os.path.basename(b).startswith("algo-") else b for b, _ in found}
    if len(jobs) > 1:
        listed = "\n  ".join(sorted(jobs))
        print(f"smc stacks: several jobs run under {root}; name one:\n  {listed}", file=sys.stderr)
        return 2
    base, pid = sorted(found)[0]  # algo-1 first: the master of a multi-host job
    os.kill(pid, signal.SIGUSR1)
    print(f"smc stacks: asked train (pid {pid}, {base}) for every rank's stacks: they are in the job's log.")
    return 0


def _is_train(command: Sequence[str]) -> bool:
    names = [os.path.basename(c) for c in command[:3]]
    return "train" in names or (len(command) > 2 and command[1:3] == ["-m", "smc_core.cli.main"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smc`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "local":
        # local mode (argparse, tarfile, the hosts, metrics) only when asked: `smc` starts cheap
        from smc_core.local.command import main as local_main

        return local_main(argv[1:])
    wants_help = bool(argv) and argv[0] in ("-h", "--help")
    parser = build_parser(_help_settings() if wants_help else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except SmcError as error:
        print(f"smc {argv[0]}: {error.message}", file=sys.stderr)
        return error.exit_code


TRAIN_USAGE = """\
usage: train [--] [SCRIPT ARGUMENT ...]

Run the training job: on SageMaker from the job directory ($SAGEMAKER_BASE_DIR or /opt/ml), on
Kubeflow or Vertex AI from the platform's variables (SMC_PLATFORM pins one). The same as `smc train`.

Arguments other than -h/--help are the script's (`train --epochs 3 --lr 0.1`; after `--` even -h):
they reach the script as given and are decoded into hyperparameters (SM_HP_*, SM_HPS, function mode).
SageMaker runs plain `train` and takes the script's arguments from hyperparameters.json, so there
an argument is an error (exit 2). See `smc --help` for settings and exit codes.
"""


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``train`` command the platform runs.

    The arguments are the script's (a leading ``--`` is dropped); they travel to the platform reader
    as ``SMC_SCRIPT_ARGS`` (a JSON list).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(TRAIN_USAGE, end="")
        return 0
    if not args:
        return exit_past_threads(run_main())
    if args[0] == "--":
        args = args[1:]
    return exit_past_threads(run_main(environ={**os.environ, "SMC_SCRIPT_ARGS": json.dumps(args)}))


if __name__ == "__main__":
    sys.exit(main())
