"""Packaging that pyproject.toml cannot say: the scenario library.

`scenarios/` stays where users and the README expect it, and is also the package data
of `vmactors.scenario_library`: `pip install vmactors` installs it as
vmactors/scenario_library/*.toml. One copy in the repository; vmactors/library.py
finds either place.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["vmactors", "vmactors.*"]) + ["vmactors.scenario_library"],
    package_dir={"vmactors.scenario_library": "scenarios"},
)
