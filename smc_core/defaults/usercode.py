"""Default ``fetch_user_code``: fetch ``sagemaker_submit_directory`` into the code dir and describe it.

See :mod:`smc_core.usercode.fetch` for the sources and the code dir rule (``SMC_EXISTING_CODE``).
"""

from __future__ import annotations

from smc_core import hookimpl
from smc_core.base.settings import EXISTING_CODE, S3_RETRIES, S3_TIMEOUT
from smc_core.job.environment import TrainingEnv
from smc_core.usercode.describe import UserCode, describe_user_code


@hookimpl(trylast=True)
def fetch_user_code(training_env: TrainingEnv) -> UserCode:
    """Fetch ``training_env.module_dir`` (if any) into ``training_env.code_dir``; describe the entry point.

    The code dir rule is ``training_env.settings[EXISTING_CODE]`` (``SMC_EXISTING_CODE``); the S3
    endpoint is read from ``training_env.environ``, the environment the job was loaded from. When the
    rule keeps other code in place of the source (``keep``), :attr:`UserCode.source` is None: the
    source named by the job was never fetched. A ModelTrainer job's ``.tar.gz`` source dir is
    extracted where it lies, in the ``code`` channel, as the SDK's ``sm_train.sh`` does."""
    source = training_env.module_dir or None
    if source:
        # fetching (archives, hashing, locks, S3) only when there is a source: every job's start imports this
        from smc_core.usercode.fetch import fetch_code
        from smc_core.usercode.warmpool import warm_pool

        outcome = fetch_code(
            source,
            training_env.code_dir,
            region=training_env.region,
            policy=training_env.settings[EXISTING_CODE],
            environ=training_env.environ,
            s3_timeout=training_env.settings[S3_TIMEOUT],
            s3_retries=training_env.settings[S3_RETRIES],
            cache=warm_pool(training_env) if source.startswith("s3://") else None,
        )
        if outcome == "kept":
            source = None
    else:
        training_env.code_dir.mkdir(parents=True, exist_ok=True)
        job = training_env.model_trainer
        if job is not None and job.source_archive and not job.sdk_script_ran:
            # SourceCode(source_dir="....tar.gz"): sm_train.sh extracts it in the code channel; so do we.
            from smc_core.usercode.archive import extract_tar

            archive = training_env.code_dir / job.source_archive
            extract_tar(archive, training_env.code_dir, source=str(archive))
            source = str(archive)
    return describe_user_code(training_env, source=source)
