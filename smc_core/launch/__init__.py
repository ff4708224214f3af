"""Running the user's code: supervised processes, signal forwarding, function mode, and waiting for
peer hosts."""
