"""The job's outputs on their way to S3 while it runs: watching a directory for closed files and
uploading them (the intermediate output sync, and local mode's checkpoint sync)."""
