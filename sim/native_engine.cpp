// Verilator-native driver of hw.engine.BitLinearEngine: whole layers at simulator speed.
//
// The Verilated model ("engine", the Verilog Amaranth generates for one AccelConfig) is clocked
// in a C++ loop; the cmd / weights / act streams are driven from buffers and every result is
// collected, with no Python and no VPI per cycle. sim/native.py builds this file together with
// the Verilog and talks to the process over its standard input and output:
//
// request  (little-endian): u32 magic 'BNA1', m, k, tokens, beats (one pass), chunks
//          (groups * ceil(k / cols) activation transfers), idle and backpressure (probability
//          * 65536 that a source withholds valid / the sink withholds ready in a cycle), seed,
//          u64 timeout (cycles); then beats * WEIGHT_BYTES bytes (the pass, replayed once per
//          group of TOKENS_PER_BEAT tokens) and chunks * ACT_BYTES bytes (the activation
//          transfers in stream order).
//          magic 'BNA0' alone ends the process.
// reply    u32 status (0 ok, 1 engine error flag, 2 timeout, 3 a result's last flag wrong,
//          4 a result after the last one), u64 cycles (rising edges from the cmd transfer to the
//          final result transfer, exclusive / inclusive: model.accel_cycles.cycles), u64
//          weight beats taken, u64 activation chunks taken, u64 nanoseconds spent simulating
//          (the clock loop alone), then tokens * m int32 accumulators in the engine's result
//          order (model.packing.result_order: for TOKENS_PER_BEAT = 1 token by token).
//
// Handshakes follow lib.stream: a transfer happens at a rising edge where valid and ready are
// both high; valid never depends on ready. Inputs are set while the clock is low, the model is
// evaluated (ready settles), the transfers are sampled, then the clock rises.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "Vengine.h"
#include "verilated.h"

// Verilator spells the "__" of Amaranth's flattened port names (cmd__valid) as "___05F".

#ifndef WEIGHT_BYTES
#error "define WEIGHT_BYTES (bytes per weight beat)"
#endif
#ifndef TOKENS_PER_BEAT
#error "define TOKENS_PER_BEAT (AccelConfig.tokens_per_beat)"
#endif
#ifndef ACT_BYTES
#error "define ACT_BYTES (bytes per activation chunk payload)"
#endif

namespace {

// -- port access: payloads up to 64 bits are integers, wider ones VlWide<N> ---------------------
template <typename T>
void set_bytes(T& port, const uint8_t* src, int n) {
    uint64_t v = 0;
    std::memcpy(&v, src, n);
    port = static_cast<T>(v);
}

template <std::size_t N>
void set_bytes(VlWide<N>& port, const uint8_t* src, int n) {
    uint32_t w[N] = {};  // one copy of the payload bytes, then whole words
    if (n > static_cast<int>(4 * N)) n = static_cast<int>(4 * N);
    std::memcpy(w, src, n);
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}

struct Rng {  // xorshift64*: seeded, reproducible stalls
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint32_t next16() {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        return static_cast<uint32_t>((s * 0x2545F4914F6CDD1Dull) >> 48);
    }
};

bool read_all(void* dst, size_t n) {
    return std::fread(dst, 1, n, stdin) == n;
}

void write_all(const void* src, size_t n) {
    std::fwrite(src, 1, n, stdout);
}

struct Engine {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vengine> top;

    Engine() : ctx(new VerilatedContext), top(new Vengine(ctx.get())) {
        top->clk = 0;
        top->cmd___05Fvalid = 0;
        top->weights___05Fvalid = 0;
        top->act___05Fvalid = 0;
        top->result___05Fready = 0;
        reset();
    }

    void edge() {  // one rising edge, inputs already set
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
    }

    void reset() {
        top->rst = 1;
        top->eval();
        for (int i = 0; i < 4; ++i) edge();
        top->rst = 0;
        top->eval();
    }
};

}  // namespace

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    Engine eng;
    Vengine* top = eng.top.get();
    std::vector<uint8_t> weights, acts;
    std::vector<int32_t> acc;
    for (;;) {
        uint32_t head[9];
        if (!read_all(head, 4)) return 0;
        if (head[0] == 0x30414E42u) return 0;           // 'BNA0'
        if (head[0] != 0x31414E42u || !read_all(head + 1, 32)) {
            std::fprintf(stderr, "native_engine: bad request header\n");
            return 2;
        }
        uint64_t timeout;
        if (!read_all(&timeout, 8)) return 2;
        const uint32_t m = head[1], k = head[2], tokens = head[3], beats = head[4];
        const uint32_t chunks = head[5], idle = head[6], backpressure = head[7];
        Rng rng(head[8]);
        weights.resize(static_cast<size_t>(beats) * WEIGHT_BYTES);
        acts.resize(static_cast<size_t>(chunks) * ACT_BYTES);
        if (!read_all(weights.data(), weights.size()) || !read_all(acts.data(), acts.size())) {
            std::fprintf(stderr, "native_engine: short request\n");
            return 2;
        }
        const uint64_t n_results = static_cast<uint64_t>(tokens) * m;
        const uint64_t groups = (static_cast<uint64_t>(tokens) + TOKENS_PER_BEAT - 1)
                                / TOKENS_PER_BEAT;
        const uint64_t w_total = groups * beats;
        // results of a whole token group; `last` ends every group, the last one maybe smaller
        const uint64_t group_results = static_cast<uint64_t>(TOKENS_PER_BEAT) * m;
        acc.assign(n_results, 0);
        uint64_t w_sent = 0, a_sent = 0, r_got = 0, cycles = 0, t = 0;
        uint32_t w_idx = 0, status = 0;
        bool cmd_pending = true, running = false;
        top->cmd___05Fpayload = static_cast<uint64_t>(m) | (static_cast<uint64_t>(k) << 16)
                            | (static_cast<uint64_t>(tokens) << 32);
        // an in-flight beat / chunk stays valid with its payload until it is taken
        bool w_valid = false, a_valid = false;
        const auto t_start = std::chrono::steady_clock::now();
        for (;;) {
            if (!w_valid && w_sent < w_total && (idle == 0 || rng.next16() >= idle)) {
                set_bytes(top->weights___05Fpayload, &weights[static_cast<size_t>(w_idx)
                                                          * WEIGHT_BYTES], WEIGHT_BYTES);
                w_valid = true;
            }
            if (!a_valid && a_sent < chunks && (idle == 0 || rng.next16() >= idle)) {
                set_bytes(top->act___05Fpayload, &acts[a_sent * ACT_BYTES], ACT_BYTES);
                a_valid = true;
            }
            top->cmd___05Fvalid = cmd_pending;
            top->weights___05Fvalid = w_valid;
            top->act___05Fvalid = a_valid;
            top->result___05Fready = backpressure == 0 || rng.next16() >= backpressure;
            top->eval();
            const bool cmd_fire = top->cmd___05Fvalid && top->cmd___05Fready;
            const bool w_fire = top->weights___05Fvalid && top->weights___05Fready;
            const bool a_fire = top->act___05Fvalid && top->act___05Fready;
            const bool r_fire = top->result___05Fvalid && top->result___05Fready;
            uint64_t result = 0;
            if (r_fire) result = static_cast<uint64_t>(top->result___05Fpayload);
            const bool error = top->error;
            top->clk = 1;
            top->eval();
            top->clk = 0;
            ++t;
            if (running) ++cycles;
            if (cmd_fire) { cmd_pending = false; running = true; cycles = 0; }
            if (w_fire) {
                w_valid = false;
                ++w_sent;
                if (++w_idx == beats) w_idx = 0;
            }
            if (a_fire) { a_valid = false; ++a_sent; }
            if (r_fire) {
                if (r_got >= n_results) { status = 4; break; }
                const bool last = (result >> 32) & 1;
                const bool want_last = (r_got % group_results) == group_results - 1
                                       || r_got == n_results - 1;
                acc[r_got] = static_cast<int32_t>(static_cast<uint32_t>(result));
                if (last != want_last) { status = 3; }
                if (++r_got == n_results) running = false;
            }
            if (error) { status = 1; break; }
            if (r_got == n_results && !running) {
                // a few more cycles with ready high: nothing further may come out
                top->weights___05Fvalid = 0;
                top->act___05Fvalid = 0;
                top->result___05Fready = 1;
                for (int i = 0; i < 8 && status == 0; ++i) {
                    top->eval();
                    if (top->result___05Fvalid) status = 4;
                    if (top->error) status = 1;
                    top->clk = 1; top->eval(); top->clk = 0;
                }
                break;
            }
            if (t > timeout) { status = 2; break; }
        }
        const uint64_t sim_ns = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::steady_clock::now() - t_start).count());
        top->weights___05Fvalid = 0;
        top->act___05Fvalid = 0;
        top->cmd___05Fvalid = 0;
        top->eval();
        if (status == 1 || status == 2 || status == 4) eng.reset();
        write_all(&status, 4);
        write_all(&cycles, 8);
        write_all(&w_sent, 8);
        write_all(&a_sent, 8);
        write_all(&sim_ns, 8);
        write_all(acc.data(), acc.size() * 4);
        std::fflush(stdout);
    }
}
