"""Property-based tests (Hypothesis): checkpoints, converters and facades over generated models.

A package so that the test files can share ``strategies`` with a relative import.
"""
