"""Only what pyproject.toml cannot say: ship the top-level ``resources/`` as ``app/resources``.

The icons live at the repository root (designers and packaging scripts find them there), but
an installed copy must carry them inside the package, where ``app.resource_paths`` looks.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["app", "app.*"]), "app.resources"])
