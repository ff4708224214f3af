"""The command line (``train``, ``smc``) and local mode (``smc local``)."""
