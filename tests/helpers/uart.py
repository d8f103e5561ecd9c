"""Test helpers: bit-level UART driving/sampling in the Amaranth simulator (tests only)."""

from fpga.protocol import ReplyDecoder


async def uart_send_byte(ctx, pin, byte, divisor, *, stop_bits=1, bit_cycles=None):
    """Drive one 8N1 byte on ``pin`` (LSB first). ``bit_cycles`` may differ from ``divisor``
    to model a transmitter with a rate error."""
    n = bit_cycles or divisor
    ctx.set(pin, 0)
    await ctx.tick().repeat(n)
    for i in range(8):
        ctx.set(pin, (byte >> i) & 1)
        await ctx.tick().repeat(n)
    ctx.set(pin, 1)
    await ctx.tick().repeat(n * stop_bits)


async def uart_send(ctx, pin, data, divisor, *, gap=0):
    for b in data:
        await uart_send_byte(ctx, pin, b, divisor)
        if gap:
            await ctx.tick().repeat(gap)


class UARTMonitor:
    """Samples an 8N1 line each cycle; decoded bytes land in ``data``, framing errors in
    ``errors``. Run :meth:`process` with ``sim.add_testbench(..., background=True)``."""

    def __init__(self, pin, divisor):
        self.pin = pin
        self.divisor = divisor
        self.data = bytearray()
        self.errors = 0

    async def process(self, ctx):
        d = self.divisor
        while True:
            await ctx.tick()
            if ctx.get(self.pin):
                continue
            await ctx.tick().repeat(d // 2)  # middle of the start bit
            if ctx.get(self.pin):
                self.errors += 1
                continue
            byte = 0
            for i in range(8):
                await ctx.tick().repeat(d)
                byte |= ctx.get(self.pin) << i
            await ctx.tick().repeat(d)
            if not ctx.get(self.pin):
                self.errors += 1
            self.data.append(byte)

    def take(self):
        out = bytes(self.data)
        self.data.clear()
        return out


async def exchange(ctx, dut, mon, frame, divisor, *, max_cycles=200_000):
    """Send a request frame on ``dut.rx`` and wait for one complete reply frame."""
    await uart_send(ctx, dut.rx, frame, divisor)
    return await wait_reply(ctx, mon, max_cycles=max_cycles)


async def wait_reply(ctx, mon, *, max_cycles=200_000):
    dec = ReplyDecoder()
    got = []
    for _ in range(max_cycles // 16):
        await ctx.tick().repeat(16)
        if mon.data:
            got += dec.feed(mon.take())
            if got:
                assert len(got) == 1 and dec.pending == 0 and dec.junk == 0, (got, dec.pending)
                return got[0]
    raise AssertionError("no reply from the board")
