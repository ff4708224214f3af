"""The built-in behaviour, as ordinary plugins registered ``trylast`` so that anything else wins.

The host imports them by name, as it imports any plugin (:data:`smc_core.host.plugins.DEFAULT_PLUGINS`
lists them); nothing below this package imports it."""
