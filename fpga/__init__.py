"""The accelerator on an iCE40 UP5K board (iCEBreaker) with a UART host link.

``protocol`` (frame format), ``uart``, ``link`` (parser/dispatcher), ``memory`` (SPRAM weight
store and beat reader), ``runner`` (feeds the engine), ``top`` (``BoardCore``, ``BoardTop``) and
``host`` (library and CLI). See ``docs/fpga.md``.
"""
