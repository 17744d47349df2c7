"""Package list for setuptools: every ldmprobe* package, plus prompts/ shipped as ldmprobe._prompts.

Everything else (metadata, package data, the prompts/ mapping) is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["ldmprobe", "ldmprobe.*"]) + ["ldmprobe._prompts"])
