"""The plugin host: finding and loading plugins, the runner that calls the hooks in order, settings,
logging and the outcome files."""
