"""The user's code: fetching it (S3, local, archives), describing its entry point and the command line
that runs it, and installing what it needs."""
