"""Starting and supervising processes (the user's code, an installer, sshd): signal forwarding,
function mode, waiting for peer hosts, and MPI's launch."""
