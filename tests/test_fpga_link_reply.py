"""ReplySender alone (Amaranth sim): replies from every source (status registers, INFO ROM,
weight memory, result memory, none) under random ``tx`` stalls and random gaps between
requests; every frame equals ``protocol.encode_reply`` of the expected payload, ``reply`` is
taken once per frame after its last byte, and no byte comes out extra."""

import numpy as np
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from fpga.link_reply import REGS_BYTES, ReplySender
from fpga.memory import WORD_BYTES
from fpga.protocol import MAX_PAYLOAD, Op, Status, encode_reply

W_DEPTH, R_DEPTH = 32, 64
START_WIDTH = 9


class Harness(wiring.Component):
    def __init__(self, info, words, results):
        self.tx = ReplySender(info=info, weight_depth=W_DEPTH, result_depth=R_DEPTH,
                              start_width=START_WIDTH)
        self._words, self._results = words, results
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx = self.tx
        m.submodules.wmem = wmem = Memory(shape=8 * WORD_BYTES, depth=W_DEPTH, init=self._words)
        m.submodules.rmem = rmem = Memory(shape=32, depth=R_DEPTH, init=self._results)
        wiring.connect(m, self.tx.weight_mem, wmem.read_port())
        wiring.connect(m, self.tx.res_mem, rmem.read_port())
        return m


def test_replies_under_random_stalls():
    rng = np.random.default_rng(5)
    info = rng.integers(0, 256, 31, dtype=np.uint8).tobytes()
    wbytes = rng.integers(0, 256, W_DEPTH * WORD_BYTES, dtype=np.uint8).tobytes()
    words = [int.from_bytes(wbytes[i:i + 8], "little") for i in range(0, len(wbytes), 8)]
    results = [int(v) for v in rng.integers(0, 1 << 32, R_DEPTH, dtype=np.uint64)]
    rbytes = b"".join(v.to_bytes(4, "little") for v in results)
    regs = rng.integers(0, 256, REGS_BYTES, dtype=np.uint8).tobytes()

    # (op, status, source, start, length) and the expected payload
    reqs = []
    for _ in range(40):
        kind = rng.choice(["regs", "run", "info", "weights", "results", "error"])
        if kind == "regs":
            reqs.append((Op.STATUS, Status.OK, "regs", 0, REGS_BYTES, regs))
        elif kind == "run":
            reqs.append((Op.RUN, Status.OK, "regs", 8, 4, regs[8:12]))
        elif kind == "info":
            reqs.append((Op.INFO, Status.OK, "info", 0, len(info), info))
        elif kind == "weights":
            a = int(rng.integers(0, len(wbytes)))
            n = int(rng.integers(1, min(MAX_PAYLOAD, len(wbytes) - a) + 1))
            reqs.append((Op.READ_WEIGHTS, Status.OK, "weights", a, n, wbytes[a:a + n]))
        elif kind == "results":
            i = int(rng.integers(0, R_DEPTH))
            n = int(rng.integers(1, R_DEPTH - i + 1))
            reqs.append((Op.READ_RESULTS, Status.OK, "results", i, 4 * n,
                         rbytes[4 * i:4 * (i + n)]))
        else:
            st = Status(int(rng.choice([Status.BAD_CRC, Status.BAD_ARG, Status.RANGE])))
            reqs.append((int(rng.integers(0, 256)), st, "regs", 0, 0, b""))

    dut = Harness(info, words, results)
    tx = dut.tx
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    out = bytearray()
    taken = []

    async def source(ctx):
        ctx.set(tx.regs, int.from_bytes(regs, "little"))
        for op, st, src, start, n, _ in reqs:
            p = tx.reply.payload
            ctx.set(p.op, op)
            ctx.set(p.status, st)
            ctx.set(p.length, n)
            ctx.set(p.start, start)
            for name in ("regs", "info", "weights", "results"):
                ctx.set(p.source[name], int(name == src))
            ctx.set(tx.reply.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(tx.reply.ready)
                if ready:
                    break
            taken.append(len(out))
            ctx.set(tx.reply.valid, 0)
            for _ in range(int(rng.integers(0, 5))):
                await ctx.tick()
        for _ in range(200):
            await ctx.tick()

    async def sink(ctx):
        while True:
            ready = int(rng.random() < 0.6)
            ctx.set(tx.tx.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(tx.tx.valid, tx.tx.payload)
            if valid and ready:
                out.append(payload)

    sim.add_testbench(sink, background=True)
    sim.add_testbench(source)
    sim.run()

    expected = [encode_reply(op, st, pay) for op, st, _, _, _, pay in reqs]
    assert bytes(out) == b"".join(expected)            # nothing extra or missing
    # each reply is taken once, after its frame's last byte
    assert taken == list(np.cumsum([len(f) for f in expected]))
