"""``python -m pystilt_dask`` runs the ``stilt-dask`` command line."""

from .cli import main

main()
