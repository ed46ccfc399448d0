"""Type aliases shared by the package."""
from typing import Any

# A parameter pytree: nested dicts of arrays, e.g. {'nm': ..., 'pln': ...}.
Params = Any
