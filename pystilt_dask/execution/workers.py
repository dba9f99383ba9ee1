"""How every worker pystilt_dask starts is set up: one HYSPLIT slot, warmed up.

Shared by the cluster builders (:mod:`.clusters`, :mod:`.slurm`, :mod:`.kubernetes`)
and ``stilt-dask worker``, which start workers in different ways but alike.
"""

#: Module every worker preloads to import and warm the simulation code at start.
PRELOAD = "pystilt_dask.execution.preload"
#: Arguments every worker gets: one HYSPLIT slot, warmed up.
SLOT_ARGS = ["--resources", "hysplit=1", "--preload", PRELOAD]
#: :data:`SLOT_ARGS` and one task at a time (workers whose thread count is ours to choose).
WORKER_ARGS = ["--nthreads", "1", *SLOT_ARGS]
