"""The bundled mock items API: ``python -m server.mockapi`` or ``make_app(config)`` in-process.

    >>> from server.mockapi import MockConfig, Scenario, make_app
    >>> app = make_app(MockConfig(items=50, scenario=Scenario.from_json({"error_rate": 0.1})))
    >>> Scenario.from_text('{"error_rate": 0.1}') == Scenario.from_json({"error_rate": 0.1})
    True

Routes, scenarios, the order of fault checks and the stats are described in
``app.py``, ``scenario.py``, ``faults.py`` and ``stats.py``.
"""

from .app import VERSION as __version__
from .app import MockConfig, make_app
from .scenario import Latency, Outage, RateLimit, RepeatingOutage, Scenario, ScenarioError, ScenarioTextError
from .serve import serve

__all__ = [
    "Latency",
    "MockConfig",
    "Outage",
    "RateLimit",
    "RepeatingOutage",
    "Scenario",
    "ScenarioError",
    "ScenarioTextError",
    "__version__",
    "make_app",
    "serve",
]
