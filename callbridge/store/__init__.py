"""Persistence: the only package that speaks SQL."""

from .commits import StoreBusy
from .db import Database

__all__ = ["Database", "StoreBusy"]
