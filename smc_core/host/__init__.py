"""The plugin host: finding and loading plugins, the runner that calls the hooks in order, the job
directory's checks, the distribution switches and the outcome files."""
