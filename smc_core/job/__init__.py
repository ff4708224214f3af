"""The job and its environment: the job directory's paths, its config files, hyperparameters,
hardware, and the ``SM_*`` variables and argv rendered from them."""
