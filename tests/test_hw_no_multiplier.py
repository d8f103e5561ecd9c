"""Proof that the ternary datapath has no multiplier: RTLIL cells, iCE40 netlist, source scan."""

import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable, Module, Signal

from hw.decoder import WeightDecoder
from hw.engine import BitLinearEngine
from model.accel import AccelConfig

HW = Path(__file__).resolve().parent.parent / "hw"
#: Modules allowed to multiply: the int8 baseline array built for comparison.
EXEMPT = {"baseline.py"}
#: Files of this (datapath) part that the source scan covers.
DATAPATH = ["trit.py", "pe.py", "row.py", "array.py", "decoder.py", "engine.py", "gearbox.py",
            "skid.py",
            "_util.py", "__init__.py"]

CONFIGS = [
    AccelConfig(rows=1, cols=8, act_bits=8, packing="i2", max_k=64, max_m=64, adder_stages=0),
    AccelConfig(rows=4, cols=16, act_bits=4, packing="tq1", max_k=256, max_m=256),
    AccelConfig(rows=8, cols=32, act_bits=8, packing="tq1", max_k=1024, max_m=4096,
                adder_stages=5),
]


def cell_types(text):
    return set(re.findall(r"^\s*cell\s+(\S+)", text, flags=re.M))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.slug)
def test_rtlil_has_no_mul_div_cells(config):
    text = rtlil.convert(BitLinearEngine(config=config), name="bitlinear_engine")
    cells = cell_types(text)
    assert "$add" in cells                       # the scan sees real cells
    assert not cells & {"$mul", "$div", "$mod", "$divfloor", "$modfloor", "$pow", "$macc"}


def test_source_scan_no_star_on_signals():
    """Every binary ``*`` in the datapath sources sits on a line marked ``# int-only``.

    (Keyword-only ``*`` in signatures and ``*args`` unpacking are not binary operators.)
    """
    offenders = []
    for name in DATAPATH:
        path = HW / name
        if not path.exists() or name in EXEMPT:
            continue
        source = path.read_text()
        lines = source.splitlines()
        prev = None
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.OP and tok.string in ("*", "**", "*=", "**="):
                binary = prev is not None and (
                    prev.type in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING)
                    and prev.string not in ("lambda", "in", "return", "yield", "and", "or",
                                            "not", "if", "else")
                    or prev.type == tokenize.OP and prev.string in (")", "]", "}"))
                if binary and "# int-only" not in lines[tok.start[0] - 1]:
                    offenders.append(f"{name}:{tok.start[0]}: {lines[tok.start[0] - 1].strip()}")
            if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
                prev = tok
    assert not offenders, "binary * in hw/ datapath:\n" + "\n".join(offenders)


def _yosys(script, cwd):
    # YoWASP's Yosys loses its stdout after the in-process ABC call: use a log file instead;
    # run in the work directory with relative paths (the WASI sandbox sees the cwd)
    from hw.build.toolchain import find_tool

    result = subprocess.run([find_tool("yosys"), "-l", "yosys.log", "-p", script], cwd=cwd,
                            capture_output=True, text=True, timeout=900)
    log = cwd / "yosys.log"
    assert result.returncode == 0, (log.read_text()[-2000:] if log.exists() else result.stderr)


class _RegisteredDecoder(Elaboratable):
    """The decoder with registered outputs, as inside the engine.

    (Yosys 0.70 hits an internal assertion in ``abc9`` reintegration when the decoder's registered
    payload drives top-level ports directly; inside the engine, or behind this wrapper, it does
    not.)
    """

    def __init__(self, dut):
        self.dut = dut
        self.packed = Signal(len(dut.packed.payload.as_value()))
        self.packed_valid = Signal()
        self.packed_ready = Signal()
        self.trits = Signal(len(dut.trits.payload.as_value()))
        self.trits_valid = Signal()
        self.trits_ready = Signal()
        self.error = Signal()

    def ports(self):
        return [self.packed, self.packed_valid, self.packed_ready, self.trits, self.trits_valid,
                self.trits_ready, self.error]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = d = self.dut
        m.d.comb += [d.packed.payload.eq(self.packed), d.packed.valid.eq(self.packed_valid),
                     self.packed_ready.eq(d.packed.ready), d.trits.ready.eq(self.trits_ready)]
        m.d.sync += [self.trits.eq(d.trits.payload), self.trits_valid.eq(d.trits.valid),
                     self.error.eq(d.error)]
        return m


@pytest.mark.toolchain
@pytest.mark.parametrize("dut", ["engine", "decoder"])
def test_synth_ice40_has_no_sb_mac16(tmp_path, dut):
    """``synth_ice40 -dsp`` (DSP inference on) maps nothing to SB_MAC16 and leaves no $mul."""
    if dut == "engine":
        top = BitLinearEngine(config=AccelConfig(rows=2, cols=8, packing="tq1", max_k=64,
                                                 max_m=64, adder_stages=1))
    else:
        top = _RegisteredDecoder(WeightDecoder(packing="tq1", trits_per_beat=40))
    il = tmp_path / "top.il"
    if dut == "engine":
        il.write_text(rtlil.convert(top, name="top"))
    else:
        il.write_text(rtlil.convert(top, name="top", ports=top.ports()))
    stat = tmp_path / "stat.txt"
    _yosys("read_rtlil top.il; synth_ice40 -dsp -top top; tee -o stat.txt stat", tmp_path)
    report = stat.read_text()
    assert "SB_LUT4" in report
    assert "SB_MAC16" not in report and "$mul" not in report
