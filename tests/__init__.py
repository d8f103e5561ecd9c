"""The project's unit tests; :mod:`tests.helpers` holds what several of them share."""
