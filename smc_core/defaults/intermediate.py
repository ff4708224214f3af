"""Default intermediate output sync: ``output/intermediate/`` reaches S3 while the job runs.

With ``sagemaker_s3_output`` set (``s3://bucket/prefix``), every file closed under
``output/intermediate/`` goes to ``s3://bucket/prefix/<job name>/output/intermediate/<relative
path>`` while the user's code runs, as SageMaker's containers do. When the code ends (success,
failure, or after SIGTERM and its grace period) a final flush uploads what is left, within
``SMC_SYNC_FLUSH_TIMEOUT``, before the outcome file is written. Files that could not be uploaded are
named in the failure file, or in a warning when the job succeeded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping
from typing import Any

from smc_core import hookimpl
from smc_core.base.log import logger
from smc_core.base.settings import SYNC_CONCURRENCY, SYNC_FLUSH_TIMEOUT, SYNC_SETTLE
from smc_core.base.stopping import JobStopped, set_phase
from smc_core.errors import ConfigError
from smc_core.job.environment import TrainingEnv
from smc_core.launch.result import TrainingResult
from smc_core.launch.signals import describe_exit_code
from smc_core.usercode.describe import UserCode


def intermediate_uri(training_env: TrainingEnv) -> str:
    """``<sagemaker_s3_output>/<job name>/output/intermediate``.

    :raises ConfigError: ``sagemaker_s3_output`` is not an S3 location, or the job has no name.
    """
    # The S3 sync's modules only for a job that asks for it: every job's start imports this plugin.
    from smc_core.outputs.upload import join_s3_uri, parse_s3_prefix

    assert training_env.s3_output
    parse_s3_prefix(training_env.s3_output, "The hyperparameter sagemaker_s3_output")
    if not training_env.job_name:
        raise ConfigError(
            "sagemaker_s3_output is set, but the job has no name to put its intermediate output under: set "
            "TRAINING_JOB_NAME (or the hyperparameter sagemaker_job_name)."
        )
    return join_s3_uri(training_env.s3_output, training_env.job_name, "output", "intermediate")


@hookimpl(wrapper=True)
def invoke_train(
    training_env: TrainingEnv, user_code: UserCode, process_env: Mapping[str, str]
) -> Generator[None, Any, Any]:
    """Sync ``output/intermediate`` while the user's code runs, then flush it before the outcome."""
    if not training_env.s3_output:
        return (yield)
    from smc_core.outputs.sync import start_directory_sync  # only with sagemaker_s3_output (above)
    from smc_core.usercode.s3 import s3_client

    settings = training_env.settings
    sync = start_directory_sync(
        training_env.output_intermediate_dir,
        intermediate_uri(training_env),
        lambda: s3_client(training_env.region, environ=training_env.environ),
        max_concurrency=settings[SYNC_CONCURRENCY],
        settle=settings[SYNC_SETTLE],
    )
    timeout = settings[SYNC_FLUSH_TIMEOUT]
    result = None
    try:
        result = yield
    finally:
        if result is not None:  # the user's code has ended: a stop now comes after it
            set_phase("finishing")
        try:
            report = sync.finish(timeout)
        except JobStopped as stopped:
            if result is not None:
                stopped.ended = describe_exit_code(result.exit_code)
            raise
    problem = report.problem("Intermediate output", timeout)
    if problem is None or result is None:
        return result
    return with_sync_problem(result, problem)


def with_sync_problem(result: TrainingResult, problem: str) -> TrainingResult:
    """The result with ``problem`` reported: in the failure reason of a failed job, as a warning on
    a successful one (the training itself succeeded; its model is in the model dir)."""
    if result.succeeded:
        for line in problem.splitlines():
            logger.warning("%s", line)
        return result
    failure = f"{result.failure.rstrip()}\n{problem}" if result.failure else problem
    return dataclasses.replace(result, failure=failure)
