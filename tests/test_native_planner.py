"""Memory planner: lifetimes, no overlap of live tensors, aliasing, MLPerf arenas."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import MLPERF_INT8, mlperf_model

from tinyq.firmware.native.planner import ALIGNMENT, PlanOptions, lifetimes, plan
from tinyq.model import ir


def _t(index: int, nbytes: int, const: bool = False, shape: tuple[int, ...] | None = None
       ) -> ir.Tensor:
    return ir.Tensor(index, f"t{index}", shape or (nbytes,), "int8",
                     ir.Quantization((0.1,), (0,)), b"\0" * nbytes if const else None)


def _model(tensors, ops, inputs, outputs) -> ir.Model:
    return ir.Model(tuple(tensors), tuple(ir.Operator(i, code, 1, tuple(ins), tuple(outs))
                                          for i, (code, ins, outs) in enumerate(ops)),
                    tuple(inputs), tuple(outputs))


def _check_no_overlap(model: ir.Model, p) -> None:
    """Two tensors live at the same op never share bytes unless one aliases the other."""
    life = p.lifetimes
    root = {t: p.aliases.get(t, t) for t in p.offsets}
    items = sorted(p.offsets)
    for t in items:
        assert p.offsets[t] % ALIGNMENT == 0
        assert p.offsets[t] + model.tensors[t].nbytes <= p.arena_bytes
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            if root[a] == root[b]:
                continue
            (fa, la), (fb, lb) = life[a], life[b]
            if fa <= lb and fb <= la:
                a0, a1 = p.offsets[a], p.offsets[a] + model.tensors[a].nbytes
                b0, b1 = p.offsets[b], p.offsets[b] + model.tensors[b].nbytes
                assert a1 <= b0 or b1 <= a0, f"tensors {a} and {b} overlap while both live"


def test_lifetimes_of_a_chain():
    # in(0) -> CONV -> 2 -> CONV -> 4 -> CONV -> out(6); 1,3,5 are weights
    ts = [_t(0, 10), _t(1, 9, True), _t(2, 20), _t(3, 9, True), _t(4, 30), _t(5, 9, True),
          _t(6, 5)]
    m = _model(ts, [("CONV_2D", (0, 1), (2,)), ("CONV_2D", (2, 3), (4,)),
                    ("CONV_2D", (4, 5), (6,))], [0], [6])
    assert lifetimes(m) == {0: (0, 0), 2: (0, 1), 4: (1, 2), 6: (2, 2)}
    assert lifetimes(m, preserve_inputs=True)[0] == (0, 2)
    p = plan(m)
    assert set(p.offsets) == {0, 2, 4, 6}          # constants are not in the arena
    _check_no_overlap(m, p)
    # the best possible peak is max over ops of the live bytes, each rounded to 16
    assert p.arena_bytes == 32 + 32


def test_reshape_aliases_its_dying_input():
    ts = [_t(0, 64), _t(1, 9, True), _t(2, 64), _t(3, 64), _t(4, 8)]
    m = _model(ts, [("CONV_2D", (0, 1), (2,)), ("RESHAPE", (2,), (3,)),
                    ("FULLY_CONNECTED", (3, 1), (4,))], [0], [4])
    p = plan(m)
    assert p.aliases == {3: 2}
    assert p.offsets[3] == p.offsets[2]
    assert p.lifetimes[2] == (0, 1) and p.lifetimes[3] == (1, 2)
    _check_no_overlap(m, p)


def test_reshape_does_not_alias_an_input_read_later():
    # tensor 2 is read by RESHAPE (op 1) and again by ADD (op 2): a copy is needed
    ts = [_t(0, 64), _t(1, 9, True), _t(2, 64), _t(3, 64), _t(4, 64)]
    m = _model(ts, [("CONV_2D", (0, 1), (2,)), ("RESHAPE", (2,), (3,)),
                    ("ADD", (2, 3), (4,))], [0], [4])
    p = plan(m)
    assert 3 not in p.aliases
    _check_no_overlap(m, p)


def test_reshape_does_not_alias_a_model_output():
    ts = [_t(0, 64), _t(1, 9, True), _t(2, 64), _t(3, 64)]
    m = _model(ts, [("CONV_2D", (0, 1), (2,)), ("RESHAPE", (2,), (3,))], [0], [2, 3])
    p = plan(m)
    assert p.aliases == {}
    assert p.offsets[2] != p.offsets[3]


def test_reshape_of_a_model_input_aliases_unless_inputs_are_preserved():
    ts = [_t(0, 64), _t(1, 64), _t(2, 9, True), _t(3, 8)]
    m = _model(ts, [("RESHAPE", (0,), (1,)), ("FULLY_CONNECTED", (1, 2), (3,))], [0], [3])
    assert plan(m).aliases == {1: 0}
    assert plan(m, PlanOptions(preserve_inputs=True)).aliases == {}


def test_inplace_add_reuses_a_dying_operand_of_the_same_shape():
    # skip connection: x(2) lives to the ADD, y(4) dies there too
    ts = [_t(0, 64), _t(1, 9, True), _t(2, 64), _t(3, 9, True), _t(4, 64), _t(5, 64)]
    m = _model(ts, [("CONV_2D", (0, 1), (2,)), ("CONV_2D", (2, 3), (4,)),
                    ("ADD", (2, 4), (5,))], [0], [5])
    p = plan(m)
    assert p.aliases.get(5) in (2, 4)
    assert p.arena_bytes == 128
    q = plan(m, PlanOptions(inplace=False))
    assert q.aliases == {} and q.arena_bytes == 192
    _check_no_overlap(m, p)
    _check_no_overlap(m, q)


def test_inplace_needs_the_same_shape():
    ts = [_t(0, 64, shape=(4, 16)), _t(1, 16, shape=(16,)), _t(2, 64, shape=(4, 16))]
    m = _model(ts, [("ADD", (0, 1), (2,))], [0, 1], [2])
    assert plan(m).aliases == {2: 0}
    ts = [_t(0, 16, shape=(16,)), _t(1, 64, shape=(4, 16)), _t(2, 64, shape=(4, 16))]
    m = _model(ts, [("ADD", (0, 1), (2,))], [0, 1], [2])
    assert plan(m).aliases == {2: 1}
    ts = [_t(0, 16, shape=(1, 16)), _t(1, 4, shape=(4, 1)), _t(2, 64, shape=(4, 16))]
    m = _model(ts, [("ADD", (0, 1), (2,))], [0, 1], [2])
    assert plan(m).aliases == {}


def test_scratch_buffers_are_planned_at_their_op_only():
    ts = [_t(0, 32), _t(1, 9, True), _t(2, 32), _t(3, 32)]
    m = _model(ts, [("CONV_2D", (0, 1), (2,)), ("CONV_2D", (2, 1), (3,))], [0], [3])
    p = plan(m, scratch={1: 100})
    s = p.scratch_offsets[1]
    for t in (2, 3):
        assert s + 100 <= p.offsets[t] or p.offsets[t] + 32 <= s


def _random_model(rng: random.Random) -> ir.Model:
    tensors: list[ir.Tensor] = []

    def new(nbytes: int, const: bool = False) -> int:
        tensors.append(_t(len(tensors), nbytes, const))
        return len(tensors) - 1

    inputs = [new(rng.choice([16, 40, 64, 100])) for _ in range(rng.randint(1, 3))]
    live = list(inputs)
    ops = []
    for _ in range(rng.randint(1, 25)):
        code = rng.choice(["CONV_2D", "ADD", "RESHAPE", "CONCATENATION", "RELU", "MUL"])
        if code in ("RESHAPE", "RELU"):
            src = rng.choice(live)
            ins = (src,)
            out = new(tensors[src].nbytes)
        elif code in ("ADD", "MUL"):
            a = rng.choice(live)
            b = rng.choice(live)
            ins = (a, b)
            out = new(tensors[a].nbytes) if rng.random() < 0.7 else new(rng.choice([16, 48]))
        else:
            ins = tuple(rng.sample(live, k=min(len(live), rng.randint(1, 3))))
            if code == "CONV_2D":
                ins = ins[:1] + (new(9, const=True),)
            out = new(rng.choice([8, 16, 33, 64, 128, 200]))
        ops.append((code, ins, (out,)))
        live.append(out)
    outputs = rng.sample(live[len(inputs):], k=rng.randint(1, min(3, len(live) - len(inputs))))
    return _model(tensors, ops, inputs, outputs)


#: ops whose output holds the same bytes as their first input (the planner may alias them)
_SAME_BYTES = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")


def _simulate(model: ir.Model, p, preserve_inputs: bool) -> None:
    """Run the plan on a model of the arena, independently of the planner's lifetimes:
    each byte records which value it holds; every op must find its inputs intact, and
    the model outputs (and inputs, if preserved) must be intact at the end."""
    arena = np.full(p.arena_bytes, -1, dtype=np.int64)
    value = {t: t for t in p.offsets}

    def span(t: int) -> slice:
        return slice(p.offsets[t], p.offsets[t] + model.tensors[t].nbytes)

    def intact(t: int) -> bool:
        return bool((arena[span(t)] == value[t]).all())

    for t in model.inputs:
        arena[span(t)] = value[t]
    for op in model.operators:
        ins = [t for t in op.inputs if t in p.offsets]
        assert all(intact(t) for t in ins), f"op {op.index} reads a clobbered input"
        for t in op.outputs:
            if op.opcode in _SAME_BYTES and ins:
                value[t] = value[ins[0]]
            arena[span(t)] = value[t]
    assert all(intact(t) for t in model.outputs), "an output was clobbered"
    if preserve_inputs:
        assert all(intact(t) for t in model.inputs), "an input was not preserved"


def test_simulation_catches_a_clobbering_plan():
    """The simulation can fail: two chained tensors forced onto the same bytes."""
    from dataclasses import replace

    ts = [_t(0, 16), _t(1, 9, True), _t(2, 16), _t(3, 9, True), _t(4, 16)]
    m = _model(ts, [("CONV_2D", (0, 1), (2,)), ("CONV_2D", (2, 3), (4,)),
                    ("ADD", (0, 2), (4,))], [0], [4])
    p = plan(m)
    bad = replace(p, offsets={**p.offsets, 2: p.offsets[0]})
    with pytest.raises(AssertionError, match="clobbered"):
        _simulate(m, bad, preserve_inputs=False)


@pytest.mark.parametrize("seed", range(200))
def test_random_graphs_never_overlap_live_tensors(seed):
    rng = random.Random(seed)
    m = _random_model(rng)
    for opts in (PlanOptions(), PlanOptions(inplace=False), PlanOptions(preserve_inputs=True)):
        p = plan(m, opts)
        _check_no_overlap(m, p)
        _simulate(m, p, opts.preserve_inputs)
        # the arena is at least the live bytes at the busiest op
        for op in m.operators:
            live = {p.aliases.get(t, t) for t, (f, last) in p.lifetimes.items()
                    if f <= op.index <= last}
            assert p.arena_bytes >= sum(m.tensors[t].nbytes for t in live)


#: TFLM's activation bytes for the MLPerf Tiny int8 models (measured with TFLM: the README table)
TFLM_ACTIVATION_BYTES = {
    "ad01_int8.tflite": 768,
    "kws_ref_model.tflite": 16_000,
    "vww_96_int8.tflite": 73_728,
    "pretrainedResnet_quant.tflite": 49_152,
}


@pytest.mark.parametrize("name", MLPERF_INT8)
def test_mlperf_arena_is_no_larger_than_tflm(name):
    from tinyq.model.tflite_reader import read_model

    m = read_model(mlperf_model(name))
    p = plan(m)
    _check_no_overlap(m, p)
    assert p.arena_bytes <= TFLM_ACTIVATION_BYTES[name]
