"""Static memory plan for the native runtime: tensor lifetimes -> offsets in one arena.

Every non-constant tensor gets a byte offset in one static arena, computed here on
the laptop; the generated C only uses those offsets (no allocator on the device).

* **Lifetimes** come from graph order: a tensor lives from the op that writes it
  to the last op that reads it (inclusive, so an op's inputs and outputs never
  share memory unless aliased on purpose). Model inputs live from op 0, model
  outputs to the last op. Like TFLM, a model input is *consumed* by an inference:
  its memory may be reused after its last reader, so the caller refills inputs
  before every ``tq_invoke`` (``PlanOptions.preserve_inputs`` keeps them intact).
* **Aliases** (zero-copy): the output of RESHAPE/SQUEEZE shares its input's memory
  when the input's last reader is that op (so nothing else can see the shared
  bytes change) and the input is in the arena. Elementwise ops listed in
  ``INPLACE_INPUTS`` may write their output over an input that dies there and
  has the output's exact shape and dtype; their kernels read element ``i`` of
  every input before writing element ``i`` of the output. A tensor that must
  stay intact (a model output, or a preserved model input) is never written over,
  because its lifetime extends past the op.
* **Offsets**: aliased tensors are merged into one buffer whose lifetime is the
  union; buffers are packed greedily (TFLM's greedy-by-size strategy is the
  floor, several orderings are tried and the smallest peak wins), each aligned
  to ``ALIGNMENT`` bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tinyq.model import ir

#: Every buffer offset (and the arena size) is a multiple of this (SIMD loads,
#: float32 tensors, and the same figure TFLM uses).
ALIGNMENT = 16

#: Ops whose output is the input's bytes, unchanged: aliased with no copy.
ALIAS_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})

#: opcode -> positions of the inputs the output may overwrite in place (same
#: shape and dtype only). The kernel must read element i of every input before
#: writing element i of the output, for every i, in one pass.
INPLACE_INPUTS: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "ADD": (0, 1),
    "MUL": (0, 1),
    "RELU": (0,),
    "RELU6": (0,),
    "RELU_N1_TO_1": (0,),
    "QUANTIZE": (0,),
    # table lookups (tq_lut_s8 reads in[i] before writing out[i])
    "LOGISTIC": (0,),
    "TANH": (0,),
    "HARD_SWISH": (0,),
    "LEAKY_RELU": (0,),
})


@dataclass(frozen=True)
class PlanOptions:
    preserve_inputs: bool = False   # keep model inputs intact for the whole inference
    inplace: bool = True            # allow in-place elementwise ops (INPLACE_INPUTS)


@dataclass(frozen=True)
class Buffer:
    """One region of the arena, shared by ``tensors`` (the first is the root)."""

    tensors: tuple[int, ...]
    nbytes: int
    first: int          # first op index it is live at
    last: int           # last op index it is live at (inclusive)
    offset: int = 0


@dataclass(frozen=True)
class MemoryPlan:
    """Where every arena tensor lives. Constants are not in the arena."""

    offsets: Mapping[int, int]                  # tensor index -> byte offset in the arena
    arena_bytes: int                            # total arena size (multiple of ALIGNMENT)
    aliases: Mapping[int, int]                  # tensor -> tensor whose memory it shares
    lifetimes: Mapping[int, tuple[int, int]]    # tensor -> (first op, last op), inclusive
    scratch_offsets: Mapping[int, int] = field(default_factory=dict)  # op index -> offset
    buffers: tuple[Buffer, ...] = ()
    strategy: str = ""                          # which packing order won

    def offset(self, tensor: int) -> int:
        return self.offsets[tensor]


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _arena_tensors(model: ir.Model) -> list[int]:
    """Indices of the tensors that need arena memory (non-constant, used by the graph)."""
    used: set[int] = set(model.inputs) | set(model.outputs)
    for op in model.operators:
        used.update(i for i in op.inputs if i >= 0)
        used.update(i for i in op.outputs if i >= 0)
    return sorted(i for i in used if not model.tensors[i].is_constant)


def lifetimes(model: ir.Model, preserve_inputs: bool = False) -> dict[int, tuple[int, int]]:
    """tensor -> (first op, last op) it must be live at, inclusive, for arena tensors."""
    n_ops = len(model.operators)
    end = max(n_ops - 1, 0)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in model.inputs:
        first[t] = 0
        last[t] = end if preserve_inputs else 0
    for op in model.operators:
        for t in op.inputs:
            if t < 0 or model.tensors[t].is_constant:
                continue
            first.setdefault(t, op.index)   # read before written: a variable/unknown tensor
            last[t] = max(last.get(t, op.index), op.index)
        for t in op.outputs:
            if t < 0 or model.tensors[t].is_constant:
                continue
            first[t] = min(first.get(t, op.index), op.index)
            last[t] = max(last.get(t, op.index), op.index)
    for t in model.outputs:
        if not model.tensors[t].is_constant:
            first.setdefault(t, 0)
            last[t] = end
    return {t: (first[t], last[t]) for t in _arena_tensors(model) if t in first}


def _find_aliases(model: ir.Model, life: Mapping[int, tuple[int, int]],
                  options: PlanOptions) -> dict[int, int]:
    """output tensor -> input tensor whose memory it takes over."""
    aliases: dict[int, int] = {}
    for op in model.operators:
        if len(op.outputs) != 1 or op.outputs[0] not in life:
            continue
        out = model.tensors[op.outputs[0]]
        if op.opcode in ALIAS_OPS:
            candidates: tuple[int, ...] = (0,)
        elif options.inplace and op.opcode in INPLACE_INPUTS:
            candidates = INPLACE_INPUTS[op.opcode]
        else:
            continue
        for pos in candidates:
            if pos >= len(op.inputs) or op.inputs[pos] not in life:
                continue
            src = model.tensors[op.inputs[pos]]
            if src.nbytes != out.nbytes or (op.opcode not in ALIAS_OPS and (
                    src.shape != out.shape or src.dtype != out.dtype)):
                continue
            if life[src.index][1] != op.index:
                continue          # someone reads the input later (or it is a kept tensor)
            if sum(1 for i in op.inputs if i == src.index) > 1:
                continue          # ADD(x, x): both operands are the same buffer; keep it simple
            if src.index in model.outputs:
                continue
            if (options.preserve_inputs and op.opcode not in ALIAS_OPS
                    and _root(aliases, src.index) in model.inputs):
                continue          # writing in place would overwrite a kept model input
            aliases[out.index] = src.index
            break
    return aliases


def _root(aliases: Mapping[int, int], t: int) -> int:
    while t in aliases:
        t = aliases[t]
    return t


def _pack(buffers: list[Buffer], order: list[int]) -> tuple[list[int], int]:
    """Greedy first-fit in the given order; returns offsets (by buffer position) and peak."""
    offsets = [-1] * len(buffers)
    placed: list[int] = []
    peak = 0
    for b in order:
        buf = buffers[b]
        busy = sorted(
            (offsets[p], offsets[p] + buffers[p].nbytes) for p in placed
            if buffers[p].first <= buf.last and buf.first <= buffers[p].last
        )
        candidate = 0
        for lo, hi in busy:
            if candidate + buf.nbytes <= lo:
                break
            candidate = max(candidate, _align(hi))
        offsets[b] = candidate
        placed.append(b)
        peak = max(peak, candidate + buf.nbytes)
    return offsets, _align(peak)


def _orders(buffers: list[Buffer]) -> dict[str, list[int]]:
    idx = list(range(len(buffers)))

    def dur(i: int) -> int:
        return buffers[i].last - buffers[i].first + 1

    return {
        "greedy-by-size": sorted(idx, key=lambda i: (-buffers[i].nbytes, buffers[i].first)),
        "size-x-lifetime": sorted(idx, key=lambda i: (-buffers[i].nbytes * dur(i),
                                                      buffers[i].first)),
        "lifetime-then-size": sorted(idx, key=lambda i: (-dur(i), -buffers[i].nbytes,
                                                         buffers[i].first)),
        "graph-order": sorted(idx, key=lambda i: (buffers[i].first, -buffers[i].nbytes)),
    }


def plan(model: ir.Model, options: PlanOptions | None = None,
         scratch: Mapping[int, int] | None = None) -> MemoryPlan:
    """Plan the arena for ``model``.

    ``scratch`` maps an op index to the bytes of temporary memory its kernel
    needs during that op only (placed like a tensor living at that op).
    """
    options = options or PlanOptions()
    life = lifetimes(model, options.preserve_inputs)
    aliases = _find_aliases(model, life, options)

    groups: dict[int, list[int]] = {}
    for t in life:
        groups.setdefault(_root(aliases, t), []).append(t)
    buffers: list[Buffer] = []
    for root, members in sorted(groups.items()):
        members = [root] + sorted(m for m in members if m != root)
        buffers.append(Buffer(
            tensors=tuple(members),
            nbytes=max(model.tensors[m].nbytes for m in members),
            first=min(life[m][0] for m in members),
            last=max(life[m][1] for m in members),
        ))
    scratch_ops = sorted((scratch or {}).items())
    for op_index, nbytes in scratch_ops:
        if nbytes > 0:
            buffers.append(Buffer(tensors=(), nbytes=nbytes, first=op_index, last=op_index))

    best: tuple[int, str, list[int]] | None = None
    for name, order in _orders(buffers).items():
        offs, peak = _pack(buffers, order)
        if best is None or peak < best[0]:
            best = (peak, name, offs)
    peak, strategy, offs = best if best is not None else (0, "empty", [])

    offsets: dict[int, int] = {}
    scratch_offsets: dict[int, int] = {}
    placed: list[Buffer] = []
    scratch_iter = iter(op for op, n in scratch_ops if n > 0)
    for buf, off in zip(buffers, offs, strict=True):
        placed.append(Buffer(buf.tensors, buf.nbytes, buf.first, buf.last, off))
        if buf.tensors:
            for t in buf.tensors:
                offsets[t] = off
        else:
            scratch_offsets[next(scratch_iter)] = off
    return MemoryPlan(
        offsets=MappingProxyType(offsets),
        arena_bytes=peak,
        aliases=MappingProxyType({t: _root(aliases, t) for t in aliases}),
        lifetimes=MappingProxyType(life),
        scratch_offsets=MappingProxyType(scratch_offsets),
        buffers=tuple(placed),
        strategy=strategy,
    )
