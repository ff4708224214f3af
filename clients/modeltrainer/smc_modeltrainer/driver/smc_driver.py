"""smc-modeltrainer's driver: the SageMaker SDK's ``sm_train.sh`` runs it; it hands the job to ``train``.

By the time this runs, ``sm_train.sh`` has exported the SDK's environment, changed into the code
channel and installed ``SourceCode.requirements``. ``train`` (smc) reads the rest from the job
directory: ``sourcecode.json``, ``distributed.json`` and the hyperparameters. Standard library only:
it runs with the image's ``python3``, before anything of the user's is importable.
"""

import os
import shutil
import sys


def main() -> None:
    """Replace this process with ``train``; without one, write the failure file and exit 1."""
    train = shutil.which("train")
    if train is None:
        message = (
            "smc_modeltrainer.Smc: the image has no `train` command on PATH, so the job cannot run "
            "through smc. Build the image with smc (pip install smc-core, plus the adapter, e.g. "
            f"smc-pytorch), or use the SDK's own Torchrun or MPI config. PATH={os.environ.get('PATH', '')}\n"
        )
        sys.stderr.write(message)
        failure = os.path.join(os.environ.get("SAGEMAKER_BASE_DIR") or "/opt/ml", "output", "failure")
        try:
            if not os.path.exists(failure) or os.path.getsize(failure) == 0:
                with open(failure, "w") as file:
                    file.write(message)
        except OSError:
            pass
        sys.exit(1)
    print(f"smc_modeltrainer: handing the job over to {train}", flush=True)
    os.execv(train, [train])


if __name__ == "__main__":
    main()
