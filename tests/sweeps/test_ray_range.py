"""The Ray this suite runs on is the one pyproject.toml allows: the range is what is tested.

pyproject.toml allows a single Ray minor series, so CI (which installs the project from it)
tests both ends of the range at once. Widening it needs a CI run at each end.
"""

from __future__ import annotations

import re
from pathlib import Path

import ray
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def ray_requirements() -> list[Requirement]:
    # By regex, not tomllib: the project supports Python 3.10.
    found = re.findall(r'"(ray\[[a-z]+\][^"]*)"', PYPROJECT.read_text())
    return [Requirement(text) for text in found]


def test_both_ray_requirements_are_one_minor_series():
    requirements = ray_requirements()
    assert [r.extras for r in requirements] == [{"tune"}, {"default"}]  # dependencies, cluster
    assert {str(r.specifier) for r in requirements} == {"<2.61,>=2.60"}


def test_the_installed_ray_is_in_the_allowed_range():
    version = Version(ray.__version__)
    assert all(version in r.specifier for r in ray_requirements()), ray.__version__
