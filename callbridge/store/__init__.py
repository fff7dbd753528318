"""Persistence: the only package that speaks SQL."""

from .db import Database

__all__ = ["Database"]
