"""``python -m course.bench``: the client framework's benchmark, kept at the command its documentation gives.

The benchmark itself is ``course.benchmarks.framework``.
"""

from __future__ import annotations

import sys

from course.benchmarks.framework import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
