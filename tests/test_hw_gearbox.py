"""Gearbox: byte order preserved across widths, under stalls and backpressure; line rate."""

import math
import random

import pytest
from amaranth.back import rtlil

from hw.gearbox import Gearbox
from tests.helpers.streams import run_stream_dut


def run_gearbox(in_bytes, out_bytes, data, *, idle=0.0, backpressure=0.0, seed=0):
    gb = Gearbox(in_bytes=in_bytes, out_bytes=out_bytes)
    beats_in = [data[i:i + in_bytes] for i in range(0, len(data), in_bytes)]
    out, cycles = run_stream_dut(gb, beats_in, len(data) // out_bytes, idle=idle,
                                 backpressure=backpressure, seed=seed, extra_cycles=10)
    return [b for beat in out for b in beat], cycles


@pytest.mark.parametrize("in_bytes,out_bytes", [
    (1, 2), (2, 13), (4, 13), (2, 2), (13, 13), (13, 4), (3, 5), (16, 52), (8, 3)])
def test_gearbox_preserves_bytes_under_stalls(in_bytes, out_bytes):
    rng = random.Random(in_bytes * 100 + out_bytes)
    group = math.lcm(in_bytes, out_bytes)
    data = [rng.randrange(256) for _ in range(group * max(2, 60 // group))]
    got, _ = run_gearbox(in_bytes, out_bytes, data, idle=0.3, backpressure=0.3)
    assert got == data


@pytest.mark.parametrize("in_bytes,out_bytes", [(2, 13), (13, 13), (13, 2), (5, 3)])
def test_gearbox_line_rate(in_bytes, out_bytes):
    """Unstalled, the narrower side transfers every cycle (plus a fill latency)."""
    group = math.lcm(in_bytes, out_bytes)
    data = list(range(256))[:group] * (200 // group + 1)
    data = data[:group * (len(data) // group)]
    got, n = run_gearbox(in_bytes, out_bytes, data)
    assert got == data
    transfers = len(data) // min(in_bytes, out_bytes)
    assert n <= transfers + 3


def test_gearbox_no_mul_and_bad_parameters():
    assert "$mul" not in rtlil.convert(Gearbox(in_bytes=3, out_bytes=13))
    for kwargs in ({"in_bytes": 0, "out_bytes": 2}, {"in_bytes": 2, "out_bytes": "13"}):
        with pytest.raises(ValueError):
            Gearbox(**kwargs)
