"""Root conftest: makes the simulator fixtures available to every test."""

pytest_plugins = ["census.testing.pytest_plugin"]
