"""BoardCore (UART + link + memories + runner) in the Amaranth simulator, driven at the serial
pins with protocol frames. The engine is the TEST-ONLY stand-in of
``tests/helpers/standin_engine.py`` (the real engine is exercised end to end by
``sim/test_board.py``)."""

import struct

import numpy as np
import pytest
from amaranth import Module
from amaranth.sim import Simulator

from fpga.protocol import (
    LINK_CRC,
    MAX_PAYLOAD,
    Info,
    Op,
    RunReply,
    Status,
    StatusInfo,
    crc16,
    encode_request,
)
from fpga.top import BoardCore
from model.accel import AccelConfig
from model.bitlinear import ternary_matmul
from model.packing import pack_layer_stream
from tests.helpers.standin_engine import StandInEngine
from tests.helpers.uart import UARTMonitor, exchange, uart_send, wait_reply

CFG = AccelConfig(rows=2, cols=4, max_k=32, max_m=16)
DIV = 4
INVALID_TQ1 = 20  # one of the 13 byte values the tq1 encoder never produces


def make_core(**kw):
    args = dict(config=CFG, divisor=DIV, weight_depth=64, act_rows=16, result_depth=48,
                engine_factory=StandInEngine, memory_backend="generic", timeout=48 * DIV)
    args.update(kw)
    return BoardCore(**args)


def run_board(body, core=None):
    """Simulate ``core`` running ``body(ctx, dut, req)``; ``req(frame)`` returns the reply."""
    dut = core or make_core()
    mon = UARTMonitor(dut.tx, DIV)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(mon.process, background=True)
    done = []

    async def tb(ctx):
        async def req(frame):
            return await exchange(ctx, dut, mon, frame, DIV)
        await body(ctx, dut, req, mon)
        done.append(True)
        assert not mon.data, "bytes after the last reply"
        assert mon.errors == 0

    sim.add_testbench(tb)
    sim.run()
    assert done


def ok(rep, op):
    assert rep.op == op and rep.status == Status.OK, rep
    return rep.payload


def layer_frames(w, x, base):
    stream = pack_layer_stream(w, CFG).tobytes()
    kt = CFG.k_tiles(w.shape[1])
    codes = np.zeros((x.shape[0], kt * CFG.cols), np.int8)
    codes[:, :w.shape[1]] = x
    return [encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", base) + stream),
            encode_request(Op.WRITE_ACT, struct.pack("<H", 0) + codes.tobytes())]


def test_link_crc_matches_software():
    """The gateware's CRC (``amaranth.lib.crc`` with ``LINK_CRC``) equals ``protocol.crc16`` on
    random messages, byte by byte, and on the catalogue's check string."""
    rng = np.random.default_rng(3)
    m = Module()
    m.submodules.crc = crc = LINK_CRC.create()
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def tb(ctx):
        for msg in [b"123456789"] + [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()
                                     for n in rng.integers(1, 40, 30)]:
            ctx.set(crc.start, 1)
            await ctx.tick()
            ctx.set(crc.start, 0)
            ctx.set(crc.valid, 1)
            for i, b in enumerate(msg):
                ctx.set(crc.data, b)
                await ctx.tick()
                assert ctx.get(crc.crc) == crc16(msg[:i + 1])
            ctx.set(crc.valid, 0)
        assert crc16(b"123456789") == 0x29B1
    sim.add_testbench(tb)
    sim.run()


def test_info_and_status():
    core = make_core()

    async def body(ctx, dut, req, mon):
        info = Info.unpack(ok(await req(encode_request(Op.INFO)), Op.INFO))
        assert info == Info(1, CFG.rows, CFG.cols, CFG.act_bits, CFG.packing,
                            CFG.bytes_per_beat, CFG.max_k, CFG.max_m, 64 * 8, 16 * CFG.cols,
                            48, MAX_PAYLOAD, 12_000_000)
        st = StatusInfo.unpack(ok(await req(encode_request(Op.STATUS)), Op.STATUS))
        assert (st.flags, st.good_frames, st.bad_frames) == (0, 1, 0)
    run_board(body, core)


def test_weights_roundtrip_and_bounds():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 100, dtype=np.uint8).tobytes()

    async def body(ctx, dut, req, mon):
        ok(await req(encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 5) + data)),
           Op.WRITE_WEIGHTS)
        got = ok(await req(encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 5, 100))),
                 Op.READ_WEIGHTS)
        assert got == data
        # the bytes around the written range are untouched (memory starts zeroed)
        got = ok(await req(encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 0, 112))),
                 Op.READ_WEIGHTS)
        assert got == bytes(5) + data + bytes(7)
        # out of range: 512 bytes of weight memory
        for frame in (encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 510) + b"abc"),
                      encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 500, 13)),
                      encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 0, MAX_PAYLOAD + 1)),
                      # addresses whose low bits are in range but a high bit is set
                      encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", (1 << 16) | 5) + b"x"),
                      encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", (1 << 31) | 5) + b"x"),
                      encode_request(Op.READ_WEIGHTS, struct.pack("<IH", (1 << 20) | 5, 1)),
                      encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 0xFFFFFFFF, 1))):
            rep = await req(frame)
            assert rep.status == Status.BAD_ARG and rep.payload == b""
        ok(await req(encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 509) + b"abc")),
           Op.WRITE_WEIGHTS)
        assert ok(await req(encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 508, 4))),
                  Op.READ_WEIGHTS) == b"\x00abc"
    run_board(body)


def test_bad_frames_rejected_without_side_effects():
    good = bytes(range(1, 41))

    async def body(ctx, dut, req, mon):
        ok(await req(encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 0) + good)),
           Op.WRITE_WEIGHTS)
        evil = encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 0) + bytes(40))
        # bad CRC
        bad_crc = evil[:-1] + bytes([evil[-1] ^ 0x01])
        rep = await req(bad_crc)
        assert (rep.op, rep.status, rep.payload) == (Op.WRITE_WEIGHTS, Status.BAD_CRC, b"")
        # a flipped payload bit
        flipped = bytearray(evil)
        flipped[9] ^= 0x80
        assert (await req(bytes(flipped))).status == Status.BAD_CRC
        # length above MAX_PAYLOAD: the rest is drained, answered after the idle timeout
        huge = bytes([0xA5, Op.WRITE_WEIGHTS]) + struct.pack("<H", MAX_PAYLOAD + 1) + bytes(20)
        assert (await req(huge)).status == Status.BAD_LENGTH
        # length wrong for the opcode (RUN takes 10 argument bytes; WRITE needs data)
        rep = await req(encode_request(Op.RUN, bytes(8)))
        assert (rep.op, rep.status) == (Op.RUN, Status.BAD_LENGTH)
        assert (await req(encode_request(Op.WRITE_WEIGHTS, bytes(4)))).status \
            == Status.BAD_LENGTH
        assert (await req(encode_request(Op.INFO, b"x"))).status == Status.BAD_LENGTH
        # unknown opcodes
        for op in (0x00, 0x09, 0xFF):
            rep = await req(encode_request(op, b"\x01\x02"))
            assert (rep.op, rep.status) == (op, Status.UNKNOWN_OP)
        # truncated frames (cut in the header, in the payload, in the CRC)
        for cut in (2, 4, 20, len(evil) - 1):
            rep = await req(evil[:cut])
            assert rep.status == Status.TRUNCATED
        # line noise before a good frame is skipped
        rep = await req(b"\x00\x13\x37" + encode_request(Op.STATUS))
        st = StatusInfo.unpack(ok(rep, Op.STATUS))
        assert st.bad_frames == 13 and st.good_frames == 1  # counted before this reply
        # the stored weights never changed
        got = ok(await req(encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 0, 40))),
                 Op.READ_WEIGHTS)
        assert got == good
    run_board(body)


def test_silence_after_reply_and_gaps_inside_frame():
    """Byte gaps shorter than the timeout are fine; nothing is sent without a request."""
    async def body(ctx, dut, req, mon):
        frame = encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 8) + b"\x11\x22\x33")
        await uart_send(ctx, dut.rx, frame, DIV, gap=30 * DIV)
        ok(await wait_reply(ctx, mon), Op.WRITE_WEIGHTS)
        await ctx.tick().repeat(200 * DIV)
        assert not mon.data
        got = ok(await req(encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 8, 3))),
                 Op.READ_WEIGHTS)
        assert got == b"\x11\x22\x33"
    run_board(body)


def test_bytes_during_a_request_are_dropped_and_flagged():
    """Bytes that arrive while a request executes (here: during its 200-byte reply) are
    dropped, even a sync byte; the reply is whole, STATUS shows the overrun until RESET."""
    data = bytes(range(200))

    async def body(ctx, dut, req, mon):
        ok(await req(encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 0) + data)),
           Op.WRITE_WEIGHTS)
        st = StatusInfo.unpack(ok(await req(encode_request(Op.STATUS)), Op.STATUS))
        assert not st.overrun
        await uart_send(ctx, dut.rx, encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 0, 200)),
                        DIV)
        await ctx.tick().repeat(100 * DIV)          # the reply is on its way out
        await uart_send(ctx, dut.rx, bytes([0xA5, Op.INFO, 0, 0]), DIV)
        assert ok(await wait_reply(ctx, mon), Op.READ_WEIGHTS) == data
        await ctx.tick().repeat(200 * DIV)
        assert not mon.data                          # the dropped bytes started no frame
        st = StatusInfo.unpack(ok(await req(encode_request(Op.STATUS)), Op.STATUS))
        assert st.overrun and (st.good_frames, st.bad_frames) == (3, 0)
        ok(await req(encode_request(Op.RESET)), Op.RESET)
        st = StatusInfo.unpack(ok(await req(encode_request(Op.STATUS)), Op.STATUS))
        assert st.flags == 0
    run_board(body)


def _cases():
    rng = np.random.default_rng(7)
    yield "random", rng.integers(-1, 2, (5, 10)), rng.integers(-128, 128, (3, 10))
    yield "all +1, x=-128", np.ones((7, 32)), np.full((2, 32), -128)
    yield "all -1, x=-128", -np.ones((3, 13)), np.full((1, 13), -128)
    yield "all -1, x=127", -np.ones((4, 9)), np.full((2, 9), 127)
    yield "all 0", np.zeros((6, 7)), rng.integers(-128, 128, (2, 7))
    yield "1 x 1", np.ones((1, 1)), np.array([[-5]])
    yield "max m, tail k", rng.integers(-1, 2, (16, 31)), rng.integers(-128, 128, (2, 31))


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: c[0])
def test_run_layer_matches_golden(case):
    _, w, x = case
    w = np.asarray(w, np.int8)
    x = np.asarray(x, np.int64)
    m, k = w.shape
    t = x.shape[0]
    base = 24  # 8-byte aligned, not zero

    async def body(ctx, dut, req, mon):
        for f in layer_frames(w, x, base):
            assert (await req(f)).status == Status.OK
        cycles = RunReply.unpack(ok(await req(encode_request(
            Op.RUN, struct.pack("<HHHI", m, k, t, base))), Op.RUN)).cycles
        assert cycles > CFG.beats(m, k) * t  # at least one cycle per beat
        got = ok(await req(encode_request(Op.READ_RESULTS, struct.pack("<HH", 0, m * t))),
                 Op.READ_RESULTS)
        np.testing.assert_array_equal(np.frombuffer(got, "<i4").reshape(t, m), ternary_matmul(x, w))
        st = StatusInfo.unpack(ok(await req(encode_request(Op.STATUS)), Op.STATUS))
        assert (st.flags, st.last_status, st.last_cycles) == (0, Status.OK, cycles)
    run_board(body)


def test_run_errors_and_recovery():
    rng = np.random.default_rng(11)
    w = rng.integers(-1, 2, (4, 8)).astype(np.int8)
    x = rng.integers(-128, 128, (2, 8))

    async def body(ctx, dut, req, mon):
        for f in layer_frames(w, x, 0):
            assert (await req(f)).status == Status.OK

        async def run(m, k, t, base):
            return await req(encode_request(Op.RUN, struct.pack("<HHHI", m, k, t, base)))
        # arguments the engine cannot take, or an unaligned / out-of-range base
        for args in ((0, 8, 1, 0), (4, 0, 1, 0), (17, 8, 1, 0), (4, 33, 1, 0), (4, 8, 0, 0),
                     (4, 8, 1, 4), (4, 8, 1, 512), (4, 8, 1, 1 << 16), (4, 8, 1, 0xFFFFFFF8)):
            rep = await run(*args)
            assert (rep.op, rep.status, rep.payload) == (Op.RUN, Status.BAD_ARG, b""), args
        # more tokens than the activation memory (16 rows of 4 codes; 2 rows per token) holds
        assert (await run(4, 8, 9, 0)).status == Status.RANGE
        # more results than the result memory (48 entries) holds
        assert (await run(16, 4, 4, 0)).status == Status.RANGE
        # a layer running past the end of the weight memory
        assert (await run(16, 32, 1, 480)).status == Status.RANGE
        # the board still works
        ok(await run(4, 8, 2, 0), Op.RUN)
        got = ok(await req(encode_request(Op.READ_RESULTS, struct.pack("<HH", 0, 8))),
                 Op.READ_RESULTS)
        np.testing.assert_array_equal(np.frombuffer(got, "<i4").reshape(2, 4), ternary_matmul(x, w))
        # an invalid weight byte: ENGINE_ERROR, sticky until RESET
        ok(await req(encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 1)
                                    + bytes([INVALID_TQ1]))), Op.WRITE_WEIGHTS)
        assert (await run(4, 8, 2, 0)).status == Status.ENGINE_ERROR
        st = StatusInfo.unpack(ok(await req(encode_request(Op.STATUS)), Op.STATUS))
        assert st.engine_error and st.last_status == Status.ENGINE_ERROR
        ok(await req(encode_request(Op.RESET)), Op.RESET)
        st = StatusInfo.unpack(ok(await req(encode_request(Op.STATUS)), Op.STATUS))
        assert not st.engine_error
        ok(await req(encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 0)
                                    + pack_layer_stream(w, CFG).tobytes())), Op.WRITE_WEIGHTS)
        ok(await run(4, 8, 2, 0), Op.RUN)
        got = ok(await req(encode_request(Op.READ_RESULTS, struct.pack("<HH", 0, 8))),
                 Op.READ_RESULTS)
        np.testing.assert_array_equal(np.frombuffer(got, "<i4").reshape(2, 4), ternary_matmul(x, w))
        # reading results beyond the memory
        assert (await req(encode_request(Op.READ_RESULTS, struct.pack("<HH", 40, 9)))).status \
            == Status.BAD_ARG
    run_board(body)


@pytest.mark.slow   # 20 s; the Verilated board (sim/tb/board.py refused_runs_change_nothing)
def test_refused_runs_change_no_memory():    # checks the same refusals in the default suite
    """A RUN that does not fit, or that comes before any weights or activations were written,
    is refused before anything is written: after all refusals the whole weight and result
    memories read back unchanged and the next RUN (on the same activations) is exact. 512
    weight bytes, 16 activation rows, 48 results. (The real engine: ``sim/tb/board.py``.)"""
    rng = np.random.default_rng(21)
    w = rng.integers(-1, 2, (16, 16)).astype(np.int8)   # 8 x 4 beats of 2 bytes: 64 bytes
    x = rng.integers(-128, 128, (3, 16))                 # 4 rows per token: rows 0..11
    base = 448                                           # the layer ends at the memory's end
    want = ternary_matmul(x, w)
    wframe, aframe = layer_frames(w, x, base)
    core = make_core()
    assert (core.weight_bytes, core.act_rows, core.result_depth) == (512, 16, 48)

    async def body(ctx, dut, req, mon):
        async def run(m, k, t, b):
            return await req(encode_request(Op.RUN, struct.pack("<HHHI", m, k, t, b)))

        async def results():
            res = ok(await req(encode_request(Op.READ_RESULTS, struct.pack("<HH", 0, 48))),
                     Op.READ_RESULTS)
            return np.frombuffer(res, "<i4")

        # nothing written since power-up; then weights but no activations
        assert (await run(16, 16, 3, base)).status == Status.NOT_LOADED
        assert (await req(wframe)).status == Status.OK
        assert (await run(16, 16, 3, base)).status == Status.NOT_LOADED
        assert (await req(aframe)).status == Status.OK
        # fits exactly: 48 results, up to the last weight byte, 12 of 16 rows
        ok(await run(16, 16, 3, base), Op.RUN)
        np.testing.assert_array_equal(await results(), want.reshape(-1))
        # results no refused run would write: 8 rows of 3 tokens, then the 16-row results
        ok(await run(8, 16, 3, base), Op.RUN)
        res_before = np.concatenate([want[:, :8].reshape(-1), want.reshape(-1)[24:]])
        np.testing.assert_array_equal(await results(), res_before)
        refusals = [
            ((16, 4, 4, base), Status.RANGE),      # 64 results, room for 48
            ((16, 16, 4, base), Status.RANGE),     # 64 results and 16 rows
            ((16, 20, 1, base), Status.RANGE),     # 80 weight bytes from 448: past the end
            ((2, 16, 5, base), Status.RANGE),      # 20 activation rows of 16
            ((5, 33, 1, base), Status.BAD_ARG),    # k above max_k = 32
            ((1, 1, 49, base), Status.RANGE),      # 49 results (one row per token)
            ((16, 8, 3, 512 - 16), Status.RANGE),  # 32 weight bytes from 496
        ]
        for args, status in refusals:
            rep = await run(*args)
            assert (rep.op, rep.status, rep.payload) == (Op.RUN, status, b""), args
        # written so far: the layer at 448..511 only (refused runs write nothing)
        weights = ok(await req(encode_request(Op.READ_WEIGHTS, struct.pack("<IH", 0, 512))),
                     Op.READ_WEIGHTS)
        assert weights == bytes(base) + wframe[8:-2]
        np.testing.assert_array_equal(await results(), res_before)
        # a second copy of the layer at 0; RESET keeps the memories and their marks; both
        # copies are exact
        ok(await req(encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 0) + weights[base:])),
           Op.WRITE_WEIGHTS)
        ok(await req(encode_request(Op.RESET)), Op.RESET)
        for b in (0, base):
            ok(await run(16, 16, 3, b), Op.RUN)
            np.testing.assert_array_equal(await results(), want.reshape(-1))
    run_board(body, core)


def test_write_act_bounds_are_checked_before_writing():
    rng = np.random.default_rng(5)
    w = rng.integers(-1, 2, (3, 4)).astype(np.int8)
    x = rng.integers(-128, 128, (1, 4))

    async def body(ctx, dut, req, mon):
        for f in layer_frames(w, x, 0):
            assert (await req(f)).status == Status.OK
        # 16 rows of 4 bytes: 9 bytes from row 14 need rows 14..16 -> rejected, nothing written
        rep = await req(encode_request(Op.WRITE_ACT, struct.pack("<H", 14) + bytes(9)))
        assert rep.status == Status.BAD_ARG
        rep = await req(encode_request(Op.WRITE_ACT, struct.pack("<H", 16) + bytes(1)))
        assert rep.status == Status.BAD_ARG
        ok(await req(encode_request(Op.WRITE_ACT, struct.pack("<H", 14) + bytes(8))),
           Op.WRITE_ACT)
        ok(await req(encode_request(Op.RUN, struct.pack("<HHHI", 3, 4, 1, 0))), Op.RUN)
        got = ok(await req(encode_request(Op.READ_RESULTS, struct.pack("<HH", 0, 3))),
                 Op.READ_RESULTS)
        np.testing.assert_array_equal(np.frombuffer(got, "<i4")[None], ternary_matmul(x, w))
    run_board(body)


def test_core_parameter_validation():
    with pytest.raises(ValueError):
        make_core(result_depth=0)
    with pytest.raises(ValueError):
        make_core(divisor=2)


def test_real_engine_in_amaranth_sim():
    """The same board with the real ``hw.engine.BitLinearEngine`` (small config)."""
    from hw.engine import BitLinearEngine

    core = make_core(engine_factory=lambda c: BitLinearEngine(config=c))
    cases = list(_cases())
    layers = [cases[0], cases[1], cases[6]]

    async def body(ctx, dut, req, mon):
        for _, w, x in layers:
            w = np.asarray(w, np.int8)
            x = np.asarray(x, np.int64)
            (m, k), t = w.shape, x.shape[0]
            for f in layer_frames(w, x, 8):
                assert (await req(f)).status == Status.OK
            ok(await req(encode_request(Op.RUN, struct.pack("<HHHI", m, k, t, 8))), Op.RUN)
            got = ok(await req(encode_request(Op.READ_RESULTS, struct.pack("<HH", 0, m * t))),
                     Op.READ_RESULTS)
            np.testing.assert_array_equal(np.frombuffer(got, "<i4").reshape(t, m),
                                          ternary_matmul(x, w))
    run_board(body, core)
