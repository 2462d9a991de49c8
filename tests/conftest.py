"""Fixtures shared by every test: real parts come from plugin modules under tests/fixtures/."""
pytest_plugins = [
    "tests.fixtures.browser",
    "tests.fixtures.samba",
    "tests.fixtures.simulator",
    "tests.fixtures.postgres",
    "tests.fixtures.smtp",
]
