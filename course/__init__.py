"""The course package: what the notebooks import.

Each lesson's idea lives in one module whose name says it:

- ``course.servers``  start/reuse/stop the bundled servers from a notebook or test
- ``course.checks``   exercises with ``check()``, ``hint()`` and ``solution()``
- ``course.show``     display the package's own source in a notebook
"""

__version__ = "0.1.0"
