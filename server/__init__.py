"""The servers the course runs: the mock items API and the Flask messaging app."""
