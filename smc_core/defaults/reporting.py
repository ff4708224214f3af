"""Timing and log lines around every hook, as wrappers (they see every plugin's work), and what the
user's process gets and ran."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from smc_core import hookimpl
from smc_core.base.log import logger
from smc_core.base.stopping import set_phase
from smc_core.host.summary import log_user_environment, ran_line


def _timed(name: str) -> Generator[None, Any, Any]:
    set_phase(name)  # a stop signal names the phase it interrupted
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        logger.info("%s: %.3f s", name, time.perf_counter() - start)


@hookimpl(wrapper=True)
def load_environment(base_dir: Path, environ: Mapping[str, str]) -> Generator[None, Any, Any]:
    """Log how long reading the environment took."""
    return (yield from _timed("load_environment"))


@hookimpl(wrapper=True)
def fetch_user_code(training_env: Any) -> Generator[None, Any, Any]:
    """Log how long fetching the code took."""
    return (yield from _timed("fetch_user_code"))


@hookimpl(wrapper=True)
def prepare_training(training_env: Any, user_code: Any) -> Generator[None, Any, Any]:
    """Log how long preparing took."""
    return (yield from _timed("prepare_training"))


@hookimpl(wrapper=True)
def invoke_train(training_env: Any, user_code: Any, process_env: Any) -> Generator[None, Any, Any]:
    """Log the host layout and the user's environment before the run; after it, how long it took
    and, on success, the command line or function that ran (:mod:`smc_core.host.summary`)."""
    log_user_environment(training_env, process_env)
    result = yield from _timed("invoke_train")
    if result is not None and result.succeeded:
        logger.info("Ran %s", ran_line(result, process_env))
    return result
