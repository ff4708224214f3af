"""Submit ModelTrainer jobs with the real SageMaker Python SDK v3, to moto's server, and print what the
SDK sent: run by the SDK's interpreter (``$SMC_SAGEMAKER_PYTHON``), not by the tests' own.

Usage: ``python sdk_jobs.py SPECS.json`` with ``AWS_ENDPOINT_URL`` pointing at moto (S3 and SageMaker).
Each spec names a training job (``"kind": "train"``: ``ModelTrainer.train(wait=False)``) or a tuning job
(``"kind": "tune"``: ``HyperparameterTuner.tune(wait=False)``); the SDK uploads the code, its
``sm_drivers`` channel and the data to S3 and calls CreateTrainingJob / CreateHyperParameterTuningJob,
exactly as against AWS. The output is one JSON object, spec name to the request as moto stored it
(DescribeTrainingJob; for a tuning job, the training job definition with the static hyperparameters).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.parameter import ContinuousParameter
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData, SourceCode
from sagemaker.train.distributed import MPI, Torchrun
from sagemaker.train.tuner import HyperparameterTuner

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/smc-image:latest"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "smc-sdk-jobs"


def distributed(spec: dict[str, Any] | None) -> Any:
    if not spec:
        return None
    kind = spec.pop("class")
    if kind == "Torchrun":
        return Torchrun(**spec)
    if kind == "MPI":
        return MPI(**spec)
    from smc_modeltrainer import Smc

    return Smc(**spec)


def trainer(spec: dict[str, Any], session: Session) -> ModelTrainer:
    return ModelTrainer(
        training_image=IMAGE,
        role=ROLE,
        base_job_name=spec["name"],
        source_code=SourceCode(**spec["source_code"]),
        distributed=distributed(spec.get("distributed")),
        compute=Compute(
            instance_type=spec.get("instance_type", "ml.m5.xlarge"), instance_count=spec["hosts"]
        ),
        hyperparameters=spec.get("hyperparameters") or {},
        environment=spec.get("environment") or {},
        sagemaker_session=session,
    )


def main() -> None:
    with open(sys.argv[1]) as file:
        specs = json.load(file)
    boto = boto3.Session(region_name="us-east-1")
    session = Session(boto_session=boto, default_bucket=BUCKET)
    sagemaker = boto.client("sagemaker")
    out = {}
    for spec in specs:
        model_trainer = trainer(spec, session)
        channels = [InputData(channel_name=name, data_source=path) for name, path in spec["channels"].items()]
        if spec["kind"] == "train":
            model_trainer.train(input_data_config=channels, wait=False, logs=False)
            name = model_trainer._latest_training_job.training_job_name
            out[spec["name"]] = sagemaker.describe_training_job(TrainingJobName=name)
            continue
        # A tuning job: its channels must already be in S3 (the tuner does not upload them).
        s3_channels = []
        for channel in channels:
            uri = session.upload_data(channel.data_source, bucket=BUCKET, key_prefix=f"{spec['name']}/data")
            s3_channels.append(InputData(channel_name=channel.channel_name, data_source=uri))
        ranges = {key: ContinuousParameter(low, high) for key, (low, high) in spec["ranges"].items()}
        tuner = HyperparameterTuner(
            model_trainer=model_trainer,
            objective_metric_name="loss",
            metric_definitions=[{"Name": "loss", "Regex": "loss=(\\S+)"}],
            hyperparameter_ranges=ranges,
            max_jobs=1,
            max_parallel_jobs=1,
        )
        tuner.tune(inputs=s3_channels, wait=False)
        name = tuner.latest_tuning_job.hyper_parameter_tuning_job_name
        tuning = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        out[spec["name"]] = {**tuning["TrainingJobDefinition"], "TuningJobName": name}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
