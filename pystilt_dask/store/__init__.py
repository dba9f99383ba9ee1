"""The project store: layout, registry, footprint arrays and derived status.

See :mod:`pystilt_dask.store.layout` for the keys a project holds and
``docs/store.md`` for the design. The rule: the store is the source of truth, and
a simulation is complete iff the keys it must produce exist.
"""

from ..errors import StoreError
from .paths import Location
from .status import State, Status, task_key

__all__ = ["Location", "State", "Status", "StoreError", "task_key"]
