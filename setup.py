"""The package list of the pdstack wheel; everything else (metadata, dependencies, package data) is in pyproject.toml.

``infra``, ``runtime`` and ``pdstack`` with their subpackages are found, so a new subpackage ships without an edit
here. ``container/`` (the Dockerfile and buildspec the serving image is built from) ships as ``pdstack.container``:
an installed pdstack stages the image's build context from it (infra/image/build_context.py). pyproject.toml alone
cannot add that mapped package beside an automatic search, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["infra", "infra.*", "runtime", "runtime.*", "pdstack", "pdstack.*"]),
        "pdstack.container",
    ],
    package_dir={"pdstack.container": "container"},
)
