"""The JSON records tinyq's commands write with ``--json``: kinds, versions and schemas.

Every record is an object whose ``kind`` names the command that wrote it and whose
``schema_version`` numbers the layout of that kind; ``tinyq`` is the version that wrote
it. Each kind's layout is published as a JSON Schema in ``tinyq/schemas/<kind>.schema.json``
(shipped in the wheel). The same thing has the same field name in every kind: ``model``
(the .tflite), ``board``, ``runtime`` (the firmware runtime), ``interpreter`` (the host
interpreter), ``layers[].op`` (an op's type), ``device`` (the serial port or the emulator
and its machine; never a TCP port, which changes every run).

:func:`upgrade` reads records older tinyq versions wrote (no ``kind`` or
``schema_version``, validate's ``version`` and its top-1-only version 1, inspect's
``ops[].type``) as current ones, so
``tinyq report`` and ``validate --resume`` keep reading them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

#: kind -> schema version of the records this tinyq writes. Raise a kind's number when
#: its layout changes in a way a reader must know about (a renamed or removed field).
SCHEMA_VERSIONS: dict[str, int] = {
    "quantize": 1, "evaluate": 1, "compare": 1, "qat": 1, "inspect": 1, "build": 1,
    "run": 1, "bench": 1, "validate": 2, "deploy": 1, "generate": 1, "flash": 1, "sweep": 1,
}
KINDS = tuple(SCHEMA_VERSIONS)

#: "qemu mps2-an386 (tcp:127.0.0.1:40123)": the emulator's socket, a new port every run.
_EPHEMERAL_PORT = re.compile(r"\s*\(tcp:[^)]*\)")


def stamp(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` as a ``kind`` record: ``kind``, ``schema_version`` and ``tinyq`` first."""
    from tinyq import __version__

    if kind not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown record kind {kind!r}")
    out: dict[str, Any] = {"kind": kind, "schema_version": SCHEMA_VERSIONS[kind],
                           "tinyq": __version__}
    out.update((k, v) for k, v in fields.items() if k not in out)
    return out


def device_name(port: str) -> str:
    """A device (or a text naming one) as a record keeps it: the serial port, or the
    emulator and its machine without the local TCP port it happened to use."""
    return _EPHEMERAL_PORT.sub("", port)


@cache
def _schema_text(kind: str) -> str:
    return (resources.files("tinyq") / "schemas" / f"{kind}.schema.json").read_text("utf-8")


def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``kind`` records (a fresh dict)."""
    if kind not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown record kind {kind!r}; kinds: {', '.join(KINDS)}")
    return json.loads(_schema_text(kind))


def infer_kind(record: Mapping[str, Any]) -> str | None:
    """The kind of a record, also of one written before records had a ``kind``."""
    kind = record.get("kind")
    if isinstance(kind, str):
        return kind
    for key, guess in (("stages", "deploy"), ("device_accuracy", "validate"),
                       ("latency", "bench"), ("rows", "compare"), ("op_set", "inspect"),
                       ("history", "qat"), ("sections", "build")):
        if key in record:
            return guess
    return None


def upgrade(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` in the current layout of its kind (old field names renamed)."""
    out = dict(record)
    kind = infer_kind(out)
    if kind is None:
        return out
    out["kind"] = kind
    if "schema_version" not in out:
        # validate's records carried "version" 1, the layout schema_version 1 continues.
        out["schema_version"] = out.pop("version", SCHEMA_VERSIONS.get(kind, 1))
    if kind == "inspect":
        if "ops" in out and "layers" not in out:
            out["layers"] = out.pop("ops")
        if isinstance(out.get("model"), dict):          # {"path", "sha256", ...} before
            model = out.pop("model")
            out["model"] = model.get("path")
            out["model_sha256"] = model.get("sha256")
            out.update((k, model[k]) for k in ("size_bytes", "num_subgraphs") if k in model)
        for key in ("layers", "op_set"):
            if isinstance(out.get(key), list):
                out[key] = [_renamed(e, "type", "op") for e in out[key]]
    if kind == "validate" and out["schema_version"] == 1:
        # version 2 added the task and its measures; a version 1 record is top-1 only
        out["schema_version"] = 2
        out.setdefault("task", "classify")
    if kind == "build" and "elf" in out and "firmware" not in out:
        out["firmware"] = out.pop("elf")
    if kind == "evaluate" and "runtime" in out and "interpreter" not in out:
        out["interpreter"] = out.pop("runtime")
    if isinstance(out.get("device"), str):
        out["device"] = device_name(out["device"])
    return out


def _renamed(entry: Any, old: str, new: str) -> Any:
    if isinstance(entry, dict) and old in entry and new not in entry:
        entry = dict(entry)
        entry[new] = entry.pop(old)
    return entry
