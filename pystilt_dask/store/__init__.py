"""The project store: layout, registry, footprint arrays and derived status.

See :mod:`pystilt_dask.store.layout` for the keys a project holds and
``docs/store.md`` for the design. The rule: the store is the source of truth, and
a simulation is complete iff the keys it must produce exist
(:mod:`pystilt_dask.store.completion`).
"""

from ..errors import StoreError
from .completion import CompletionRule, State
from .paths import Location
from .registry import Registry
from .status import Status

__all__ = ["CompletionRule", "Location", "Registry", "State", "Status", "StoreError"]
