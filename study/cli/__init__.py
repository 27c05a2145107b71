"""The ``distill`` command line: the only package that imports both ``study`` and ``analysis``."""

from study.cli.app import app

__all__ = ["app"]
