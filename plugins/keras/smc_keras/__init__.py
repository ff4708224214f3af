"""smc adapter for Keras: a placeholder distribution.

The adapter's behaviour (see the design's Packages table) comes in its own issue. Until then it
registers no entry point, and the core runs Keras scripts as ordinary scripts.
"""
