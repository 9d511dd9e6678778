"""Package discovery, the one thing pyproject.toml cannot say: the folders under algorithms/ ship as
subpackages of offrl_zoo.algorithms. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

ALGORITHMS = "offrl_zoo.algorithms"
setup(packages=[*find_packages("src"), ALGORITHMS, *(f"{ALGORITHMS}.{p}" for p in find_packages("algorithms"))])
