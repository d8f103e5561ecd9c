"""The Yosys scripts of the iCE40 and ECP5 synthesis (:func:`hw.build.ice40.build_ice40`,
:func:`hw.build.ecp5.build_ecp5`).

:data:`RTL_SCRIPT` runs after Amaranth's RTLIL is read (memories, FSMs, the RTL cell count in
``stat_rtl.json``); :func:`synth_ice40_scripts` gives the ``synth_ice40`` options and the LUT
mapping script, timed for the device.
"""

__all__ = ["NO_RW_CHECK_SCRIPT", "HIDE_INDEXED_NAMES_SCRIPT", "RTL_SCRIPT",
           "ECP5_RTL_SCRIPT", "CHECK_NETLIST_SCRIPT", "ABC9_WIRE_DELAY_PS",
           "SYNTH_DEVICE", "synth_ice40_scripts"]

#: Memories that carry the ``no_rw_check`` attribute are never read and written at the same
#: address in one cycle (their writer and reader take turns), so the result of such a
#: collision does not matter. Amaranth emits every non-transparent read port as "read the old
#: data", which the iCE40 EBR does not guarantee: Yosys then emulates it with an address
#: compare and a bypass register per data bit, in front of the read path. For those memories
#: (one read and one write port) this marks the collision result undefined, so each maps to
#: plain EBR.
NO_RW_CHECK_SCRIPT = ("memory_collect; setparam -set RD_COLLISION_X_MASK 1'1 "
                      "t:$mem_v2 a:no_rw_check %i r:RD_PORTS=1 %i r:WR_PORTS=1 %i; ")

#: Amaranth names the wires of a layout's elements ``trits[5]``, ``acc[0]``, beside the whole
#: ``trits``, ``acc``. Yosys 0.70's ABC9 reintegration (``abc_ops_reintegrate``) names bit ``i``
#: of a wire ``w`` as ``w[i]`` and takes a wire already of that name for the same signal: it
#: merges bit 1 of ``a`` with bit 0 of a wire named ``a[1]`` (a flip-flop output driven twice,
#: a silent wrong netlist) or, in the 1024-MAC arrays on the ECP5, stops with ``Assert 'wire'
#: failed in passes/techmap/abc_ops_reintegrate.cc:596``. Making those names private
#: (``$``: never read back as a bit of another wire) avoids it; ports keep their names
#: (docs/build.md, "Why the 1024-MAC arrays failed").
HIDE_INDEXED_NAMES_SCRIPT = "rename -hide w:*[[]* x:* %d"

#: The script after Amaranth's RTLIL is read (``script_after_read`` of the platform build).
#: opt_expr turns constant power-of-two multiplies (Amaranth's word_select offsets) into
#: shifts; real multipliers stay $mul. Yosys extracts (and one-hot encodes) an FSM only if its
#: state register has no init value; Amaranth gives every register one, equal to its reset
#: value, which the synchronous reset applies anyway (board tops are held in reset until the
#: PLL locks).
RTL_SCRIPT = ("hierarchy -top top; proc; " + NO_RW_CHECK_SCRIPT
              + "setattr -unset init w:*fsm_state; opt_expr; tee -q -o stat_rtl.json stat -json")
#: The ECP5 build's :data:`RTL_SCRIPT`: with :data:`HIDE_INDEXED_NAMES_SCRIPT`, without which
#: the 1024-MAC arrays do not synthesize. The iCE40 build reads without it (on the iCE40 board
#: top it costs 23 LUT4: 3811 against 3788) and relies on :data:`CHECK_NETLIST_SCRIPT`.
ECP5_RTL_SCRIPT = RTL_SCRIPT + "; " + HIDE_INDEXED_NAMES_SCRIPT

#: After synthesis: a netlist in which a net has two drivers (what the ABC9 name clash of
#: :data:`HIDE_INDEXED_NAMES_SCRIPT` made) or another ``check`` problem fails the build.
CHECK_NETLIST_SCRIPT = "check -assert"

#: ``synth_ice40`` times its LUT mapping (``abc9``) for the iCE40 HX unless told the device,
#: and with a wire delay of 250 ps per connection. On a UP5K a connection between two logic
#: cells costs 1.8-4.7 ns after routing (nextpnr's critical-path reports of this design), so
#: ABC takes LUT levels for almost free and trades them for area: the board's handshake
#: logic came out 6-7 LUTs deep where 4 do. The build maps with the device's own timing
#: (``-device``) and this wire delay, so ABC minimises LUT levels first.
ABC9_WIRE_DELAY_PS = 2000
#: ``synth_ice40 -device`` by ``platform.device`` prefix.
SYNTH_DEVICE = {"iCE40UP": "u", "iCE40LP": "lp", "iCE40HX": "hx", "iCE40UL": "lp"}


def synth_ice40_scripts(device, *, use_dsp=True, wire_delay_ps=ABC9_WIRE_DELAY_PS):
    """``(synth_opts, map_luts_script)`` for ``synth_ice40`` with an explicit ``abc9 -W``.

    ``synth_ice40`` runs up to its ``map_luts`` step; the returned script then does that step
    (the commands of ``help synth_ice40``, with ``abc9 -W wire_delay_ps`` and the device's
    delay model) and the rest of ``synth_ice40``.
    """
    dev = next((v for k, v in SYNTH_DEVICE.items() if device.startswith(k)), "hx")
    opts = f"{'-dsp ' if use_dsp else ''}-device {dev}"
    script = (f"check -latchonly -assert; techmap -map +/ice40/latches_map.v; "
              f"read_verilog -D ICE40_{dev.upper()} -icells -lib -specify "
              f"+/ice40/abc9_model.v; abc9 -W {int(wire_delay_ps)}; "
              f"ice40_wrapcarry -unwrap; techmap -map +/ice40/ff_map.v; clean; "
              f"opt_lut -tech ice40; synth_ice40 {opts} -top top -run map_cells:")
    return f"{opts} -run :map_luts", script
