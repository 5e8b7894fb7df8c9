"""Executors run a plan's tasks respecting their dependencies and hand every result to the driver, the only
writer: ``serial`` (this process, ``serial.py``) and ``ray`` (``ray/``), chosen by ``factory.make_executor``.
This package imports nothing on its own: the Ray reaper (``python -m benchmark.executors.ray.reaper``) starts
without torch."""
