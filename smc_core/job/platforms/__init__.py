"""Other platforms' descriptions of a training job, read into the same :class:`TrainingEnv` as SageMaker's.

One module per platform, each a plain public function that builds a ``TrainingEnv``; the default
plugins in :mod:`smc_core.defaults` call them from ``load_environment``:

* :mod:`~smc_core.job.platforms.detect`: which platform runs this job (``SMC_PLATFORM``, else the
  first platform whose variables or job directory are here; SageMaker by default).
* :mod:`~smc_core.job.platforms.common`: what every reader shares: the script's arguments decoded
  into hyperparameters, the job directory laid out as the contract says, ``gs://`` to ``/gcs/``.
* :mod:`~smc_core.job.platforms.sagemaker`: SageMaker's job directory (the default platform), and in
  it the SageMaker Python SDK v3's ``ModelTrainer`` layouts:
  :mod:`~smc_core.job.platforms.modeltrainer` reads the ``sm_drivers`` channel
  (``sourcecode.json``, ``distributed.json``), :mod:`~smc_core.job.platforms.modeltrainer_env` gives
  the user's process what the SDK's ``environment.py`` and drivers give it.
* :mod:`~smc_core.job.platforms.kubeflow`: Kubeflow Trainer v2 (``PET_*``, ``JAX_*``), Training
  Operator v1 PyTorchJob (``MASTER_ADDR``, ``WORLD_SIZE``, ``RANK``) and TFJob (``TF_CONFIG``).
* :mod:`~smc_core.job.platforms.vertex`: Vertex AI custom jobs (``CLUSTER_SPEC``, ``AIP_*``).
* :mod:`~smc_core.job.platforms.tf_config`: ``TF_CONFIG`` as a resource config.
"""
