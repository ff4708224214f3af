"""Does the intermediate output sync slow the user's code? A script writes 1,000 files of 100 KB into
``output/intermediate`` through the real ``train``, with the sync on (``sagemaker_s3_output`` set,
uploading to moto's S3 server on 127.0.0.1) and off, interleaved; the figure is the script's own
writing time, as it measures it, so smc's start-up and the final flush are not counted.

    .venv/bin/python benchmarks/sync_overhead.py [--runs 5] [--files 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import services

SCRIPT = """
import os, sys, time
out = os.environ["SM_OUTPUT_INTERMEDIATE_DIR"]
payload = os.urandom(100_000)
start = time.perf_counter()
for i in range(int(sys.argv[sys.argv.index("--files") + 1])):
    with open(os.path.join(out, f"f{i:05d}.bin"), "wb") as f:
        f.write(payload)
print("WRITE_SECONDS", time.perf_counter() - start, flush=True)
"""
TRAIN = str(Path(sys.executable).parent / "train")


def make_job(base: Path, files: int, s3_output: str | None) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (base / "code").mkdir()
    (base / "output" / "intermediate").mkdir(parents=True)  # the platform lays it out
    (base / "code" / "train.py").write_text(SCRIPT)
    hps = {"files": str(files), "sagemaker_program": '"train.py"'}
    if s3_output:
        hps["sagemaker_s3_output"] = json.dumps(s3_output)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (config / "inputdataconfig.json").write_text("{}")


def run(base: Path, env: dict[str, str]) -> float:
    done = subprocess.run(
        [TRAIN],
        env={**env, "SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": "bench"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"train failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("WRITE_SECONDS"))
    return float(line.split()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smc-bench-sync-"))
    try:
        # moto stands in for S3, which is elsewhere on a real instance: at the lowest priority its own
        # CPU use (a Python server) does not count against the user's script on this 2-core machine.
        port = services.free_port()
        moto = ["nice", "-n", "19", sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        with services._serving(
            moto, f"http://127.0.0.1:{port}", "moto_server", work / "moto.log"
        ) as endpoint:
            env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, **services.FAKE_CREDENTIALS}
            services.upload(endpoint, "bench", "warm", Path(__file__))  # creates the bucket
            times: dict[str, list[float]] = {"off": [], "on": []}
            for round_ in range(args.runs + 1):  # round 0 warms caches and is dropped
                for mode in ("off", "on"):
                    base = work / f"{mode}-{round_}"
                    make_job(base, args.files, "s3://bench/runs" if mode == "on" else None)
                    seconds = run(base, env)
                    if round_:
                        times[mode].append(seconds)
                    shutil.rmtree(base)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"{args.files} files of 100 KB, median of {args.runs} interleaved runs:")
    print(f"  sync off: {off:.3f} s   sync on: {on:.3f} s   ratio on/off: {on / off:.2f}x (target <= 1.10x)")
    print(f"  all runs: off {[round(t, 3) for t in times['off']]}, on {[round(t, 3) for t in times['on']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
