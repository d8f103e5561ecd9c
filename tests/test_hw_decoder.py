"""WeightDecoder: packed bytes to trit codes at line rate, sticky error on invalid codes."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.decoder import WeightDecoder
from model import packing as model_packing
from model.accel import TRITS_PER_BYTE
from sim.golden import TQ1_INVALID, TQ1_VALID, pack_trits
from tests.helpers.streams import stream_sink, stream_source


def pack(trits, packing):
    """Bytes of a flat trit sequence from the independent reference (``sim.golden``), checked
    against ``model.packing``."""
    ours = [int(b) for b in pack_trits(trits, packing)]
    theirs = [int(b) for b in model_packing.pack_trits(np.asarray(trits, dtype=np.int8), packing)]
    assert theirs == ours
    return ours


def code_to_trit(code):
    return {(0, 0): 0, (1, 0): 1, (1, 1): -1}[(code["nz"], code["neg"])]


def run_decoder(packing, trits_per_beat, beats, *, idle=0.0, backpressure=0.0, seed=0,
                stages=1):
    """Send byte beats; return (decoded trit beats, error flag per cycle)."""
    dec = WeightDecoder(packing=packing, trits_per_beat=trits_per_beat, stages=stages)
    out, errors = [], []

    async def monitor(ctx):
        async for _, _, error in ctx.tick().sample(dec.error):
            errors.append(error)
    sim = Simulator(dec)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_source(dec.packed, beats, rng=random.Random(seed), idle=idle))
    sim.add_testbench(stream_sink(dec.trits, len(beats), out, rng=random.Random(seed + 1),
                                  backpressure=backpressure))
    sim.add_testbench(monitor, background=True)

    async def quiet(ctx):
        # after the last beat, no further output appears
        while len(out) < len(beats):
            await ctx.tick()
        ctx.set(dec.trits.ready, 1)
        for _ in range(5):
            _, _, valid = await ctx.tick().sample(dec.trits.valid)
            assert not valid
    sim.add_testbench(quiet)
    sim.run()
    decoded = [[code_to_trit({"nz": t.nz, "neg": t.neg}) for t in beat] for beat in out]
    return decoded, errors


def test_tq1_invalid_set_is_the_complement_of_the_encoder_image():
    assert len(TQ1_VALID) == 243 and len(TQ1_INVALID) == 13
    image = set(int(pack_trits([a, b, c, d, e], "tq1")[0]) for a in (-1, 0, 1) for b in (-1, 0, 1)
                for c in (-1, 0, 1) for d in (-1, 0, 1) for e in (-1, 0, 1))
    assert image == set(TQ1_VALID) == model_packing.TQ1_VALID_BYTES
    assert set(TQ1_INVALID) == set(range(256)) - image == set(model_packing.TQ1_INVALID_BYTES)


@pytest.mark.parametrize("packing,stages", [("i2", 1), ("tq1", 1), ("tq1", 2), ("tq1", 3)])
def test_every_valid_byte_decodes(packing, stages):
    per = TRITS_PER_BYTE[packing]
    combos = np.array(np.meshgrid(*[[-1, 0, 1]] * per, indexing="ij")).reshape(per, -1).T
    beats = [pack(list(c), packing) for c in combos]
    decoded, errors = run_decoder(packing, per, beats, idle=0.2, backpressure=0.3,
                                  stages=stages)
    assert decoded == [list(map(int, c)) for c in combos]
    assert not any(errors)


@pytest.mark.parametrize("packing,stages", [("i2", 1), ("tq1", 1), ("tq1", 2), ("tq1", 3)])
@pytest.mark.parametrize("rows,cols", [(1, 8), (4, 16), (3, 5), (8, 32)])
def test_random_beats_with_stalls(packing, stages, rows, cols):
    rng = np.random.default_rng(rows * cols)
    n = rows * cols
    trits = rng.integers(-1, 2, size=(40, n))
    trits[0, :] = 1
    trits[1, :] = -1
    trits[2, :] = 0
    beats = [pack(list(t), packing) for t in trits]
    decoded, errors = run_decoder(packing, n, beats, idle=0.3, backpressure=0.3, seed=n,
                                  stages=stages)
    assert decoded == trits.tolist()
    assert not any(errors)


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_line_rate_one_beat_per_cycle(stages):
    """With an always-valid source and always-ready sink, N beats take N + latency cycles."""
    dec = WeightDecoder(packing="tq1", trits_per_beat=64, stages=stages)
    assert dec.latency == stages and dec.bytes_per_beat == 13
    beats = [[int(b) for b in np.random.default_rng(i).choice(TQ1_VALID, 13)]
             for i in range(50)]
    times = []

    async def sink(ctx):
        ctx.set(dec.trits.ready, 1)
        cycle = 0
        while len(times) < len(beats):
            _, _, valid = await ctx.tick().sample(dec.trits.valid)
            if valid:
                times.append(cycle)
            cycle += 1
    sim = Simulator(dec)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_source(dec.packed, beats))
    sim.add_testbench(sink)
    sim.run()
    assert times == list(range(stages, len(beats) + stages))


@pytest.mark.parametrize("stages", [1, 2])
@pytest.mark.parametrize("bad", TQ1_INVALID)
def test_tq1_invalid_byte_sets_sticky_error(bad, stages):
    good = pack([1, 0, -1, 0, 1, -1, -1, 0, 1, 1], "tq1")
    beats = [good, good, [good[0], bad], good, good]
    decoded, errors = run_decoder("tq1", 10, beats, stages=stages)
    assert len(decoded) == 5 and decoded[0] == decoded[1] == decoded[3]
    first = errors.index(1)
    assert all(errors[first:]) and first >= 2


@pytest.mark.parametrize("position", range(8))
def test_i2_code3_sets_sticky_error(position):
    beat = pack([0, 1, -1, 0, 1, 1, -1, -1], "i2")
    bad = list(beat)
    bad[position // 4] |= 3 << (2 * (position % 4))
    decoded, errors = run_decoder("i2", 8, [beat, bad, beat])
    assert decoded[0] == decoded[2] == [0, 1, -1, 0, 1, 1, -1, -1]
    assert decoded[1][position] == 0          # invalid code decodes to 0
    first = errors.index(1)
    assert all(errors[first:]) and first >= 1


def test_i2_code3_in_padding_is_an_error():
    decoded, errors = run_decoder("i2", 3, [[0b11_01_01_01]])
    assert decoded == [[0, 0, 0]] and errors[-1] == 1


@pytest.mark.parametrize("kwargs", [
    {"packing": "i3", "trits_per_beat": 8}, {"packing": "i2", "trits_per_beat": 0},
    {"packing": "tq1", "trits_per_beat": 2.5},
    {"packing": "tq1", "trits_per_beat": 5, "stages": 0},
    {"packing": "tq1", "trits_per_beat": 5, "stages": 4},
    {"packing": "i2", "trits_per_beat": 4, "stages": 2}])
def test_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        WeightDecoder(**kwargs)


@pytest.mark.parametrize("packing,stages", [("i2", 1), ("tq1", 2)])
def test_from_config_default_stages(packing, stages):
    from amaranth.hdl import Fragment

    from model.accel import AccelConfig
    dec = WeightDecoder.from_config(AccelConfig(rows=2, cols=8, packing=packing))
    Fragment.get(dec, None)                     # elaborates (and so uses) the component
    assert dec.stages == dec.latency == stages


def test_two_digits_per_adder_identity():
    """The decoder's 9x step: 9 x = 256 (3 d_i + d_{i+1}) + x_{i+2} for every x in 0..255."""
    for x in range(256):
        d0, x1 = (3 * x) >> 8, (3 * x) & 0xFF
        d1, x2 = (3 * x1) >> 8, (3 * x1) & 0xFF
        assert 9 * x == 256 * (3 * d0 + d1) + x2
