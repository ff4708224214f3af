"""smc adapter for PyTorch."""
