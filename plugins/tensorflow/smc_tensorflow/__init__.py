"""smc adapter for TensorFlow."""
