"""The benchmarks: the course's servers and client framework, measured from the client side.

Each one starts the servers it needs as processes of their own (``course.servers``)
and drives them over loopback, as a learner's client would:

- ``python -m course.benchmarks.mockapi``    the mock API's cost per request next to a bare aiohttp server
- ``python -m course.benchmarks.messaging``  the messaging app's three notification transports under load
- ``python -m course.bench`` (``course.benchmarks.framework``)  the client framework against the mock API

``make bench`` runs all three. Figures depend on the machine and on what else runs on it.
"""
