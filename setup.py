"""Put the top-level templates/ and static/ into the wheel as app/templates and app/static (the rest is in pyproject.toml).

The product keeps the two folders at the top of the repository; a wheel only carries packages. Mapping them to
two data packages here, with every file below them as package data, ships whatever subfolders they grow.
"""
from setuptools import find_namespace_packages, setup

TOP_LEVEL_FOLDERS = {"app.templates": "templates", "app.static": "static"}

setup(
    packages=[*find_namespace_packages(include=["app", "app.*"], exclude=["*__pycache__"]), *TOP_LEVEL_FOLDERS],
    package_dir=TOP_LEVEL_FOLDERS,
)
