"""The user's code: describing its entry point, fetching it (S3, local, archives) and installing what
it needs."""
