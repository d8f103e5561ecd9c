"""What the build refuses, and how: :class:`BuildError`, the size limit and the multiplier check.

Every refusal is a :class:`BuildError` with a one-line message; ``python -m hw.build`` prints it
as ``error: ...`` and exits with status 1. The iCE40 UP5K area estimate that refuses what cannot
fit the device is :func:`hw.build.ice40.check_fits_up5k`.
"""

__all__ = ["BuildError", "MAX_MACS", "check_size", "design_macs", "MUL_CELLS",
           "check_no_multipliers"]


class BuildError(RuntimeError):
    """A build step failed or the design does not meet a requirement (one-line message)."""


#: Largest array the build elaborates: ``rows * cols`` ternary MACs per cycle. Amaranth's
#: elaboration alone grows faster than linearly with it (the engine to RTLIL on this machine:
#: 64 MACs 1.8 s, 1024 MACs 29 s, 2048 MACs 73 s, 4096 MACs 233 s), synthesis more, and far
#: beyond it Amaranth fails inside its own code (1e6 x 1e6: "Port member initial value None is
#: not a valid constant initializer for ArrayLayout(unsigned(8), 200000000000)"). 8192 is
#: twice the largest engine the design notes target could hold (ECP5-85F, about 84 k
#: LUT4 at about 20 LUT4 per MAC). Raise it here to build larger.
MAX_MACS = 8192


def design_macs(config, top):
    """MACs per cycle of a build ``top``: the engine and the board top ``rows x cols x
    tokens_per_beat`` (``T`` arrays), the bare ternary array and the int8 baseline one
    ``rows x cols`` array."""
    return config.macs_per_cycle if top in ("engine", "fpga") else config.rows * config.cols


def shape_name(config, top=None):
    """``RxC``, with ``xT`` tokens per beat for the tops that have them (the engine, the board):
    ``5x8``, ``5x8x2``."""
    t = config.tokens_per_beat
    return f"{config.rows}x{config.cols}" + (f"x{t}" if t > 1 and top in (None, "engine",
                                                                             "fpga") else "")


def check_size(config):
    """Raise :class:`BuildError` if ``config``'s engine (``rows x cols x tokens_per_beat``
    MACs) is larger than :data:`MAX_MACS`."""
    macs = config.macs_per_cycle
    if macs > MAX_MACS:
        t = config.tokens_per_beat
        what = (f"rows x cols = {config.rows} x {config.cols}" if t == 1 else
                f"rows x cols x tokens_per_beat = {config.rows} x {config.cols} x {t}")
        raise BuildError(
            f"{what} = {macs} MACs per cycle is above "
            f"hw.build.checks.MAX_MACS = {MAX_MACS}, the largest array this build elaborates "
            "(Amaranth alone takes about 4 minutes for 4096)")


#: Yosys RTL cells that are multipliers (counted in the RTL before any mapping).
MUL_CELLS = ("$mul", "$macc", "$macc_v2")


def check_no_multipliers(rtl_mul_cells, dsp=0, dsp_cell="SB_MAC16"):
    """Raise :class:`BuildError` if a ternary design has multiplier cells: ``rtl_mul_cells``
    (:data:`MUL_CELLS` in its RTL) or ``dsp`` hard multipliers (``dsp_cell``: iCE40 SB_MAC16,
    ECP5 MULT18X18D) in its netlist."""
    if rtl_mul_cells:
        raise BuildError(f"multiplier check failed: {rtl_mul_cells} $mul/$macc cells in the "
                         "ternary RTL")
    if dsp:
        raise BuildError(f"multiplier check failed: {dsp} {dsp_cell} in the ternary netlist")
