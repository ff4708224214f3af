"""A training script that needs only the core: it fits a line by least squares, in pure Python.

Written as for SageMaker's framework containers: hyperparameters arrive as arguments, the data
channel and model dir as SM_* variables.

    smc local examples/plain --entry-point train.py -p slope=2.5 -c train=examples/plain/data
"""

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slope", type=float, default=2.0)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    args = parser.parse_args()

    train_dir = os.environ.get("SM_CHANNEL_TRAIN")
    if train_dir and Path(train_dir, "points.csv").exists():
        rows = [line.split(",") for line in Path(train_dir, "points.csv").read_text().split()]
        xs, ys = [float(x) for x, _ in rows], [float(y) for _, y in rows]
    else:  # no channel given: make the data
        xs = [i / args.points for i in range(args.points)]
        ys = [args.slope * x + 1.0 for x in xs]

    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    intercept = mean_y - slope * mean_x
    print(f"fitted slope={slope:.4f} intercept={intercept:.4f} on {n} points")

    Path(args.model_dir).mkdir(parents=True, exist_ok=True)
    Path(args.model_dir, "model.json").write_text(json.dumps({"slope": slope, "intercept": intercept}))


if __name__ == "__main__":
    main()
