"""Pytest fixtures for projects that use census (the simulator arrives with its own module)."""
