"""Registers the harness pytest plugin (options, markers, fixtures) for `pytest suites/`."""

pytest_plugins = ["harness.testkit.plugin"]
