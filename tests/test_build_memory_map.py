"""The build's memory mapping: a ``no_rw_check`` memory becomes plain EBR (no collision logic)."""

import json
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory

from hw.build.toolchain import find_tool
from hw.build.yosys import NO_RW_CHECK_SCRIPT


class _OneMemory(Elaboratable):
    """One 256 x 8 memory with a write port and a (non-transparent) read port on pins."""

    def __init__(self, attrs):
        self.attrs = attrs
        self.wa, self.ra, self.wd, self.rd = Signal(8), Signal(8), Signal(8), Signal(8)
        self.we, self.re = Signal(), Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=8, depth=256, init=[], attrs=self.attrs)
        w, r = mem.write_port(), mem.read_port()
        m.d.comb += [w.addr.eq(self.wa), w.data.eq(self.wd), w.en.eq(self.we),
                     r.addr.eq(self.ra), r.en.eq(self.re), self.rd.eq(r.data)]
        return m

    def ports(self):
        return [self.wa, self.ra, self.wd, self.we, self.rd, self.re]


def _ice40_cells(tmp_path, attrs):
    top = _OneMemory(attrs)
    (tmp_path / "t.il").write_text(rtlil.convert(top, name="top", ports=top.ports()))
    script = ("read_rtlil t.il; hierarchy -top top; proc; " + NO_RW_CHECK_SCRIPT
              + "synth_ice40 -top top; tee -q -o stat.json stat -json")
    subprocess.run([find_tool("yosys"), "-q", "-p", script], cwd=tmp_path, check=True,
                   capture_output=True, timeout=300)
    stat = json.loads((tmp_path / "stat.json").read_text())
    return stat["modules"]["\\top"]["num_cells_by_type"]


@pytest.mark.toolchain
def test_no_rw_check_memory_maps_to_plain_ebr(tmp_path):
    marked = _ice40_cells(tmp_path, {"no_rw_check": 1})
    assert marked == {"SB_RAM40_4K": 1}
    # without the attribute Yosys emulates read-old-data: compare and bypass logic appear
    plain = _ice40_cells(tmp_path, {})
    assert plain["SB_RAM40_4K"] == 1 and sum(plain.values()) > 10
