"""The PyTorch adapter's hook implementations (torch is imported only inside functions)."""
