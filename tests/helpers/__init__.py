"""Helpers shared by the tests, one module per job; imported as ``from tests.helpers.x import y``.

* :mod:`tests.helpers.streams`: drive and collect ``lib.stream`` ports in Amaranth's simulator;
* :mod:`tests.helpers.uart`: bit-level UART driving and sampling of the board's serial pins;
* :mod:`tests.helpers.softboard`: a software model of the board's protocol (the host's tests);
* :mod:`tests.helpers.standin_engine`: a behavioural stand-in for the engine (the board's tests).
"""
