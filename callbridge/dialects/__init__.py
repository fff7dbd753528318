"""The dialect registry: the one place that knows which vendors exist."""

from .base import Dialect
from .cloudpbx import DIALECT as _cloudpbx

DIALECTS: dict[str, Dialect] = {d.kind: d for d in (_cloudpbx,)}
