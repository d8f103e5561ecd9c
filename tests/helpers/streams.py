"""Reusable Amaranth-simulator helpers for ``lib.stream`` ports (async testbenches).

Sources insert random idle cycles, sinks apply random backpressure; both work cycle by cycle so
they can also record the cycle (from a free-running counter signal) of every transfer. Each
helper raises ``TimeoutError`` instead of hanging.

Usage::

    sim.add_testbench(stream_source(dut.cmd, commands, rng=rng, idle=0.3))
    sim.add_testbench(stream_sink(dut.result, n, out, rng=rng, backpressure=0.3))
"""

import random

__all__ = ["stream_source", "stream_sink", "run_for", "run_stream_dut"]


def stream_source(stream, payloads, *, rng=None, idle=0.0, timeout=1_000_000, log=None,
                  cycle=None, start=None, stop=None):
    """Return an async testbench that sends ``payloads`` (dicts or ints) in order on ``stream``.

    Before each payload it idles (``valid`` low) with probability ``idle`` per cycle. Once
    ``valid`` is high it stays high with a stable payload until the transfer. If ``log`` is a
    list, the value of ``cycle`` (a counter signal) at each transfer is appended to it.
    ``start`` / ``stop`` are optional callables polled every cycle: the source waits until
    ``start()`` is true and quits (``valid`` low) as soon as ``stop()`` is true.
    """
    rng = rng or random.Random(0)
    payloads = list(payloads)

    async def testbench(ctx):
        waited = 0
        while start is not None and not start():
            await ctx.tick()
        for payload in payloads:
            if stop is not None and stop():
                break
            while idle and rng.random() < idle:
                ctx.set(stream.valid, 0)
                await ctx.tick()
            ctx.set(stream.valid, 1)
            ctx.set(stream.payload, payload)
            while True:
                if cycle is not None:
                    _, _, ready, count = await ctx.tick().sample(stream.ready, cycle)
                else:
                    _, _, ready = await ctx.tick().sample(stream.ready)
                    count = None
                waited += 1
                if waited > timeout:
                    raise TimeoutError(f"stream source timed out after {timeout} cycles")
                if ready:
                    if log is not None:
                        log.append(count)
                    break
                if stop is not None and stop():
                    break
            ctx.set(stream.valid, 0)

    return testbench


def stream_sink(stream, count, out, *, rng=None, backpressure=0.0, timeout=1_000_000, log=None,
                cycle=None, start=None, stop=None):
    """Return an async testbench that receives ``count`` payloads from ``stream`` into ``out``.

    Each cycle ``ready`` is low with probability ``backpressure``. Payloads are appended to the
    list ``out`` as Amaranth payload values (use ``.acc`` etc. or ``int``); with ``log`` and
    ``cycle`` the counter value at each transfer is recorded too. ``start`` / ``stop`` as for
    :func:`stream_source`.
    """
    rng = rng or random.Random(1)

    async def testbench(ctx):
        waited = 0
        while start is not None and not start():
            await ctx.tick()
        while len(out) < count:
            if stop is not None and stop():
                break
            ready = not (backpressure and rng.random() < backpressure)
            ctx.set(stream.ready, ready)
            sample = (stream.valid, stream.payload) + ((cycle,) if cycle is not None else ())
            values = (await ctx.tick().sample(*sample))[2:]
            waited += 1
            if waited > timeout:
                raise TimeoutError(
                    f"stream sink timed out after {timeout} cycles with {len(out)}/{count}")
            if ready and values[0]:
                out.append(values[1])
                if log is not None:
                    log.append(values[2])
        ctx.set(stream.ready, 0)

    return testbench


def run_for(cycles):
    """Return an async testbench that just lets ``cycles`` clock cycles pass."""
    async def testbench(ctx):
        await ctx.tick().repeat(cycles)
    return testbench


def run_stream_dut(dut, payloads, n_out, *, idle=0.0, backpressure=0.0, seed=0, extra_cycles=8):
    """Simulate a one-in, one-out stream block (ports ``i`` and ``o``) on ``payloads``.

    The source idles with probability ``idle``, the sink applies ``backpressure``; after
    ``n_out`` outputs the sink stays ready for ``extra_cycles`` more cycles, and nothing more
    may come out. Returns ``(outputs, cycles)``: the payloads received and the cycles until the
    last one. Raises ``AssertionError`` if anything extra came out.
    """
    from amaranth.sim import Simulator

    out, state = [], {}
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_source(dut.i, payloads, rng=random.Random(seed), idle=idle))
    sim.add_testbench(stream_sink(dut.o, n_out, out, rng=random.Random(seed + 1),
                                  backpressure=backpressure))

    async def watch(ctx):
        cycles = 0
        while len(out) < n_out:
            await ctx.tick()
            cycles += 1
        state["cycles"] = cycles
        ctx.set(dut.o.ready, 1)
        extra = 0
        for _ in range(extra_cycles):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            extra += valid
        state["extra"] = extra
    sim.add_testbench(watch)
    sim.run()
    assert state["extra"] == 0, f"{state['extra']} extra outputs after the expected {n_out}"
    return out, state["cycles"]
