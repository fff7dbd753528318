"""The dialect registry: the one place that knows which vendors exist."""

from .base import Dialect
from .cloudpbx import DIALECT as _cloudpbx
from .helpdesk import DIALECT as _helpdesk
from .planfix import DIALECT as _planfix
from .uis import DIALECT as _uis

DIALECTS: dict[str, Dialect] = {d.kind: d for d in (_cloudpbx, _planfix, _uis, _helpdesk)}
