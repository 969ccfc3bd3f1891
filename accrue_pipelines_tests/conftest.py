"""Shared fixtures. Each area keeps its fixtures in a plugin module of its own."""

pytest_plugins = [
    "accrue_pipelines_tests.fixtures_warehouse",
    "accrue_pipelines_tests.fixtures_sandbox",
    "accrue_pipelines_tests.fixtures_crms",
]
