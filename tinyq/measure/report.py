"""Reports: the JSON records of tinyq's commands as Markdown with tables and PNG plots.

A *record* is the dict a command writes with ``--json`` (``BenchResult.to_json``,
``ValidateResult.to_json``, ...; kinds and schemas in :mod:`tinyq.records`). Records
an older tinyq wrote are read through :func:`tinyq.records.upgrade`. The renderer
shows the sections a record has:

* ``latency``/``ram``/``flash``/``outputs_match`` (bench): latency table (the unit
  says instructions under an emulator, cycles + ms on a board), RAM and flash
  against the board's budget, the output check;
* ``layers``: the per-layer table and a bar chart PNG;
* ``device_accuracy`` (validate): accuracy on the device, on the host and of the
  float model, bit-exactness, and an accuracy-vs-size plot (with ``compare``
  rows when the record has them);
* ``stages`` (deploy): seconds per pipeline stage;
* any other kind (run, evaluate, inspect, build, qat, quantize): its figures as one
  table and each list of entries (layers, history, ...) as a table.

``compare_markdown`` puts several records of one kind side by side (two runtimes,
two boards, before/after). Every file is written atomically and nothing is
overwritten without ``force`` (:mod:`tinyq.fileio`); all paths are checked
before the first is written.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyq.errors import UserInputError
from tinyq.fileio import (
    JSON_BOOL,
    JSON_INT,
    JSON_LIST,
    JSON_NUMBER,
    JSON_OBJECT,
    JSON_STR,
    check_json_fields,
    check_output,
    json_shown,
    json_values,
    parse_json,
    read_input_text,
    write_bytes,
    write_text,
)

log = logging.getLogger(__name__)

#: Plot size in inches and resolution: readable on GitHub without zooming.
FIGURE_WIDTH_IN = 8.0
FIGURE_DPI = 110
#: Height per bar of the per-layer chart (inches), with a floor.
LAYER_BAR_IN = 0.28
MIN_FIGURE_HEIGHT_IN = 2.5


#: The plots a report may hold, each written beside the Markdown as ``<stem>-<name>.png``:
#: "layers" when the record has a per-layer profile, "accuracy" when it has accuracies,
#: "confusion" when it has confusion matrices (validate of a classifier).
REPORT_IMAGES = ("layers", "accuracy", "confusion")


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    images: tuple[Path, ...]


# -- records ----------------------------------------------------------------------------

_NUM, _INT, _STR, _BOOL = JSON_NUMBER, JSON_INT, JSON_STR, JSON_BOOL
_LIST, _DICT = JSON_LIST, JSON_OBJECT

#: What each field of a record must hold, when present and not null: dotted key -> kind;
#: ``name[]`` stands for every entry of the list ``name``. Parents come before their
#: fields. Checked on load, so a damaged file fails in one line naming the field
#: instead of deep inside a table or a plot. Fields not listed are not checked.
RECORD_FIELDS: dict[str, str] = {
    "kind": _STR, "tinyq": _STR, "model": _STR, "source_model": _STR, "model_id": _STR,
    "board": _STR, "runtime": _STR, "device": _STR, "emulated": _BOOL, "input": _STR,
    "latency": _DICT, "latency.unit": _STR, "latency.median": _NUM, "latency.min": _NUM,
    "latency.max": _NUM, "latency.p95": _NUM, "latency.runs": _INT, "latency.recorded": _INT,
    "latency.warmup": _INT, "latency.tick_hz": _NUM, "latency.counter": _STR,
    "latency.core_hz": _NUM, "latency.emulated": _BOOL, "latency.ms": _NUM,
    "latency.ms_min": _NUM, "latency.ms_max": _NUM, "latency.ms_p95": _NUM,
    "latency.values": _LIST, "latency.ticks": _LIST,
    "ram": _DICT, "ram.static": _NUM, "ram.stack_peak": _NUM, "ram.arena": _NUM,
    "ram.total": _NUM, "ram.available": _NUM, "ram.data": _NUM, "ram.bss": _NUM,
    "ram.stack_reserved": _NUM, "ram.arena_reserved": _NUM, "ram.arena_region": _STR,
    "flash": _DICT, "flash.code": _NUM, "flash.model": _NUM, "flash.total": _NUM,
    "flash.available": _NUM,
    "macs": _NUM, "macs_per_instruction": _NUM, "macs_per_cycle": _NUM,
    "layers": _LIST, "layers[]": _DICT, "layers[].index": _INT, "layers[].op": _STR,
    "layers[].share": _NUM, "layers[].macs": _NUM, "layers[].instructions": _NUM,
    "layers[].cycles": _NUM, "layers[].macs_per_instruction": _NUM,
    "layers[].macs_per_cycle": _NUM,
    "outputs_match": _BOOL, "max_lsb_diff": _NUM, "bench_max_lsb_diff": _NUM,
    "samples": _INT, "samples_requested": _INT, "missing": _INT, "complete": _BOOL,
    "error": _STR, "device_accuracy": _NUM, "host_accuracy": _NUM, "float_accuracy": _NUM,
    "bit_exact": _BOOL, "bit_exact_count": _INT, "float_model_bytes": _NUM,
    "tflite_bytes": _NUM, "per_sample": _LIST, "per_sample[]": _LIST,
    "stages": _LIST, "stages[]": _DICT, "stages[].name": _STR, "stages[].seconds": _NUM,
    "stages[].summary": _STR, "wall_seconds": _NUM,
    "reference_accuracy": _NUM, "data": _STR,
    "rows": _LIST, "rows[]": _DICT, "rows[].mode": _STR, "rows[].size_bytes": _NUM,
    "rows[].accuracy": _NUM, "rows[].top1_agreement": _NUM, "rows[].max_abs_error": _NUM,
    "rows[].tflm_runs": _BOOL, "rows[].tflm_note": _STR, "rows[].error": _STR,
    "compare": _LIST, "compare[]": _DICT, "compare[].mode": _STR,
    "compare[].size_bytes": _NUM, "compare[].accuracy": _NUM,
}
#: Fields the renderer cannot do without when their parent is there.
REQUIRED_FIELDS = frozenset({"latency.unit", "latency.median", "layers[].index", "layers[].op",
                             "layers[].share", "stages[].name", "stages[].seconds",
                             "rows[].mode"})
#: Latency units a record may carry (the per-layer counts are stored under the unit).
LATENCY_UNITS = ("instructions", "cycles")


def check_record(record: Mapping[str, Any], source: str) -> None:
    """Refuse a record whose fields do not hold what :data:`RECORD_FIELDS` says (one line)."""
    def bad(field: str, problem: str) -> UserInputError:
        return UserInputError(f"{source}: {field} {problem}",
                              hint="re-create the file with the tinyq command's --json, or "
                                   "fix that field", path=source, field=field)

    from tinyq.records import KINDS

    kind = record.get("kind")
    if kind not in KINDS:              # load_record names the kind of an older record
        raise bad("kind", "is missing" if kind is None else
                  f"must be one of {', '.join(KINDS)}, not {json_shown(kind)}")
    if "latency" in record:            # layers[] is a per-layer profile (bench, deploy)
        fields: Mapping[str, str] = RECORD_FIELDS
    else:                              # inspect's or evaluate's layers: only their op
        fields = {k: v for k, v in RECORD_FIELDS.items()
                  if not k.startswith("layers[].") or k == "layers[].op"}
    check_json_fields(record, fields, REQUIRED_FIELDS, bad)
    unit = json_values(record, "latency.unit")
    if unit and unit[0][1] not in LATENCY_UNITS:
        raise bad("latency.unit", f'must be one of {", ".join(LATENCY_UNITS)}, not '
                                  f"{json_shown(unit[0][1])}")


def load_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``--json`` record, or a UserInputError naming the file."""
    file = Path(path)
    text = read_input_text(file, "record")
    try:
        record = parse_json(text)
    except ValueError as exc:
        raise UserInputError(f"{file} is not readable JSON: {exc}",
                             hint="pass JSON files written by tinyq --json",
                             path=str(file)) from None
    from tinyq.records import KINDS, SCHEMA_VERSIONS, upgrade

    if isinstance(record, dict):
        record = upgrade(record)
    if not isinstance(record, dict) or record.get("kind") not in KINDS:
        raise UserInputError(f"{file} is not a tinyq record",
                             hint=f"pass a JSON file written by tinyq {'/'.join(KINDS)} --json",
                             path=str(file))
    version = record.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) \
            and version > SCHEMA_VERSIONS[record["kind"]]:
        raise UserInputError(f"{file} is a {record['kind']} record of schema version {version}, "
                             f"newer than this tinyq reads ({SCHEMA_VERSIONS[record['kind']]})",
                             hint="upgrade tinyq (pip install -U tinyq)", path=str(file))
    check_record(record, str(file))
    return record


def write_json(record: Mapping[str, Any], path: str | os.PathLike[str],
               force: bool = False, inputs: Iterable[Any] = ()) -> Path:
    """Write a record atomically (refuses an existing file without ``force``, and any
    path :func:`tinyq.fileio.check_output` refuses: a folder, one of the ``inputs``)."""
    return write_text(path, json.dumps(record, indent=2) + "\n", force, inputs=inputs)


# -- formatting -------------------------------------------------------------------------

def _n(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def _share(part: int | None, whole: int | None) -> str:
    if not part or not whole:
        return "–"
    return f"{100 * part / whole:.2f} %"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    align = align or "l" + "r" * (len(headers) - 1)
    marks = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def _name(record: Mapping[str, Any]) -> str:
    model = (record.get("source_model") or record.get("model") or record.get("firmware")
             or "model")
    return Path(str(model)).name


def _unit(record: Mapping[str, Any]) -> str:
    return (record.get("latency") or {}).get("unit", "cycles")


# -- sections ---------------------------------------------------------------------------

def _latency_section(rec: Mapping[str, Any]) -> list[str]:
    lat = rec["latency"]
    unit = lat.get("unit", "cycles")
    has_ms = "ms" in lat
    headers = ["", unit] + (["ms"] if has_ms else [])
    rows = []
    for key in ("median", "min", "max", "p95"):
        row = [key, _n(lat.get(key))]
        if has_ms:
            row.append(_n(lat.get("ms" if key == "median" else f"ms_{key}")))
        rows.append(row)
    out = ["## Latency per inference", "",
           _table(headers, rows), "",
           f"{lat.get('recorded', lat.get('runs'))} timed run(s) after {lat.get('warmup', 0)} "
           f"warm-up(s); counter {lat.get('counter', '?')} at {_n(lat.get('tick_hz'))} Hz."]
    if lat.get("emulated") or unit == "instructions":
        out.append("Counts are **emulator instructions** (QEMU `-icount shift=0`: 1 instruction "
                   "= 1 ns of virtual time), not cycles or time on a real core.")
    elif has_ms:
        out.append(f"Milliseconds at the core clock ({_n(lat.get('core_hz'))} Hz).")
    macs = rec.get("macs")
    per = rec.get(f"macs_per_{unit[:-1]}")
    if macs:
        out.append(f"{_n(macs)} MACs per inference: {_n(per)} MACs per {unit[:-1]}.")
    return out + [""]


def _memory_section(rec: Mapping[str, Any]) -> list[str]:
    out = []
    ram = rec.get("ram")
    if ram:
        avail = ram.get("available")
        rows = [["static (.data + .bss)", _n(ram.get("static")), _share(ram.get("static"), avail)],
                ["stack (high-water mark)", _n(ram.get("stack_peak")),
                 _share(ram.get("stack_peak"), avail)],
                ["arena (used)", _n(ram.get("arena")), _share(ram.get("arena"), avail)],
                ["**total peak**", f"**{_n(ram.get('total'))}**", _share(ram.get("total"), avail)],
                ["board RAM", _n(avail), ""]]
        out += ["## RAM (measured on the device)", "",
                _table(["", "bytes", "of the board"], rows), ""]
        if ram.get("stack_reserved") or ram.get("arena_reserved"):
            out += [f"Reserved by the linker script: stack {_n(ram.get('stack_reserved'))} B, "
                    f"arena section {_n(ram.get('arena_reserved'))} B "
                    f"(in {ram.get('arena_region', 'ram')}).", ""]
    flash = rec.get("flash")
    if flash:
        avail = flash.get("available")
        rows = [["code (runtime, harness, glue, libc)", _n(flash.get("code")),
                 _share(flash.get("code"), avail)],
                ["model (weights, biases, parameters)", _n(flash.get("model")),
                 _share(flash.get("model"), avail)],
                ["**total**", f"**{_n(flash.get('total'))}**", _share(flash.get("total"), avail)],
                ["board flash", _n(avail), ""]]
        out += ["## Flash (measured from the ELF)", "",
                _table(["", "bytes", "of the board"], rows), ""]
    out += _estimate_note(rec)
    return out


def _estimate_note(rec: Mapping[str, Any]) -> list[str]:
    """The pre-build estimate (deploy's inspect stage), labelled as such beside the measured
    tables, so the two sets of figures are not read as one."""
    fit = rec.get("fit")
    if not isinstance(fit, Mapping) or fit.get("ram_needed") is None:
        return []
    return [f"Before building, `inspect` **estimated** {_n(fit.get('flash_needed'))} B of flash "
            f"and {_n(fit.get('ram_needed'))} B of RAM (the fit check); the tables above are "
            "**measured**: flash from the built ELF, RAM on the device (stack high-water "
            "mark and arena in use) plus static data.", ""]


def _output_section(rec: Mapping[str, Any]) -> list[str]:
    if "outputs_match" not in rec or "latency" not in rec:
        return []
    lsb = rec.get("bench_max_lsb_diff", rec.get("max_lsb_diff"))
    verdict = ("identical to the tflite-micro interpreter" if rec["outputs_match"]
               else f"**different** from the tflite-micro interpreter (max {lsb} LSB)")
    return ["## Output check", "",
            f"The device's raw output for the benchmark input ({rec.get('input', '?')}) is "
            f"{verdict}.", ""]


def _layers_section(rec: Mapping[str, Any], image: str | None) -> list[str]:
    layers = rec.get("layers")
    if not layers:
        return []
    unit = _unit(rec)
    per_key = f"macs_per_{unit[:-1]}"
    rows = [[layer["index"], layer["op"], _n(layer.get(unit)), f"{100 * layer['share']:.1f} %",
             _n(layer.get("macs")), _n(layer.get(per_key))] for layer in layers]
    total = sum(int(layer.get(unit) or 0) for layer in layers)
    median = (rec.get("latency") or {}).get("median")
    out = ["## Per-layer profile", "",
           _table(["#", "op", unit, "share", "MACs", f"MACs/{unit[:-1]}"], rows, "rlrrrr"), "",
           f"Sum over layers: {_n(total)} {unit} (one inference with the layer hook on"
           + (f"; the timed median is {_n(median)})." if median else ").")]
    if image:
        out += ["", f"![per-layer profile]({image})"]
    return out + [""]


def _g(value: Any) -> str:
    """A measure (an error, a similarity, an AUC) to 6 significant digits."""
    return "–" if value is None else f"{value:.6g}"


def _task_rows(rec: Mapping[str, Any]) -> tuple[str, list[list[str]]]:
    """The heading and the measure rows of a validate record's task."""
    task = rec.get("task", "classify")
    if task == "regress" and isinstance(rec.get("regression"), dict):
        reg = rec["regression"]
        rows = []
        for key, name in (("mae", "MAE"), ("rmse", "RMSE"), ("cosine", "cosine similarity"),
                          ("l2r", "L2 relative error")):
            rows += [[f"on-device {name}", _g(reg["device"].get(key))],
                     [f"host {name} (tflite-micro)", _g(reg["host"].get(key))]]
        rows.append(["device vs host RMSE", _g(reg["device_vs_host"].get("rmse"))])
        return "Regression", rows
    if task == "anomaly" and isinstance(rec.get("anomaly"), dict):
        an = rec["anomaly"]
        what = "reconstruction MSE" if an.get("score") == "reconstruction_mse" else "score"
        rows = [[f"on-device mean {what}", _g(an.get("device_mean_score"))],
                [f"host mean {what} (tflite-micro)", _g(an.get("host_mean_score"))]]
        if an.get("device_auc") is not None:
            rows += [["on-device AUC", _g(an.get("device_auc"))],
                     ["host AUC (tflite-micro)", _g(an.get("host_auc"))]]
        rows.append([f"max device-host {what} difference", _g(an.get("max_score_diff"))])
        return "Anomaly detection", rows
    rows = [["on-device top-1", _pct(rec.get("device_accuracy"))],
            ["host top-1 (tflite-micro)", _pct(rec.get("host_accuracy"))]]
    if rec.get("float_accuracy") is not None:
        rows.append(["float model top-1", _pct(rec.get("float_accuracy"))])
    return "Accuracy", rows


def _per_class_section(rec: Mapping[str, Any], image: str | None) -> list[str]:
    """classify: per-class precision/recall and the on-device confusion matrix."""
    per_class, matrix = rec.get("per_class"), rec.get("confusion_device")
    if not per_class or not matrix:
        return []
    out = ["### Per class", "", _table(
        ["class", "support", "device precision", "device recall", "host precision",
         "host recall"],
        [[c.get("class"), _n(c.get("support")), _pct(c.get("device_precision")),
          _pct(c.get("device_recall")), _pct(c.get("host_precision")),
          _pct(c.get("host_recall"))] for c in per_class], "rrrrrr"), "",
        "On-device confusion matrix (rows: true class, columns: predicted class)"
        + ("; the host's is the same." if matrix == rec.get("confusion_host")
           else "; the host's differs (see the image)."), "",
        _table(["true", *(str(k) for k in range(len(matrix)))],
               [[str(k), *(_n(v) for v in row)] for k, row in enumerate(matrix)],
               "r" * (len(matrix) + 1)), ""]
    if image:
        out += [f"![confusion matrices]({image})", ""]
    return out


def _accuracy_section(rec: Mapping[str, Any], image: str | None,
                      confusion: str | None = None) -> list[str]:
    if "device_accuracy" not in rec:
        return []
    heading, task_rows = _task_rows(rec)
    rows = [["samples", f"{_n(rec.get('samples'))} of {_n(rec.get('samples_requested'))}"],
            *task_rows]
    rows += [["bit-exact outputs", f"{_n(rec.get('bit_exact_count'))} of {_n(rec.get('samples'))}"
              + (" (all)" if rec.get("bit_exact") else "")],
             ["max LSB difference", _n(rec.get("max_lsb_diff"))]]
    out = [f"## {heading}", "", _table(["", ""], rows, "lr"), ""]
    if not rec.get("complete", True):
        out += [f"**Incomplete:** the device stopped after {_n(rec.get('samples'))} of "
                f"{_n(rec.get('samples_requested'))} samples; {_n(rec.get('missing'))} are "
                f"missing ({rec.get('error')}). Resume with `tinyq validate ... --resume`.", ""]
    if image:
        out += [f"![accuracy vs size]({image})", ""]
    return out + _per_class_section(rec, confusion)


def _modes_section(rec: Mapping[str, Any], image: str | None) -> list[str]:
    """A ``tinyq compare`` record: one row per quantization mode."""
    rows = rec.get("rows")
    if not rows:
        return []
    table = [[r.get("mode", "?"), _n(r.get("size_bytes")), _pct(r.get("accuracy")),
              _pct(r.get("top1_agreement")), _n(r.get("max_abs_error")),
              "yes" if r.get("tflm_runs") else f"no ({r.get('tflm_note') or r.get('error')})"]
             for r in rows]
    out = ["## Quantization modes (host)", "",
           _table(["mode", ".tflite bytes", "top-1", "agrees with float", "max abs error",
                   "TFLM runs it"], table, "lrrrrl"), ""]
    if rec.get("reference_accuracy") is not None:
        out += [f"Float model top-1: {_pct(rec['reference_accuracy'])} on "
                f"{_n(rec.get('samples'))} samples ({rec.get('data', '?')}).", ""]
    if image:
        out += [f"![accuracy vs size]({image})", ""]
    return out


def _stages_section(rec: Mapping[str, Any]) -> list[str]:
    stages = rec.get("stages")
    if not stages:
        return []
    rows = [[s["name"], f"{s['seconds']:.2f}", s.get("summary", "")] for s in stages]
    total = rec.get("wall_seconds")
    if total is None:
        total = sum(s["seconds"] for s in stages)
    rows.append(["**total (wall clock)**", f"**{total:.2f}**", ""])
    return ["## Pipeline stages", "", _table(["stage", "seconds", "result"], rows, "lrl"), ""]


#: Fields the title and the line under it already show.
_HEADER_KEYS = frozenset({"kind", "schema_version", "tinyq", "model", "model_id", "board",
                          "runtime", "device"})
#: Kinds with sections of their own (above); the others get the generic tables.
_SECTIONED_KINDS = frozenset({"bench", "validate", "deploy", "compare"})


def figures(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's single values by dotted key (``ram.total``), lists left out."""
    out: dict[str, Any] = {}

    def walk(obj: Mapping[str, Any], prefix: str) -> None:
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(value, f"{name}.")
            elif not isinstance(value, list):
                out[name] = value
    walk(record, "")
    return out


def _figures_section(rec: Mapping[str, Any]) -> list[str]:
    rows = [[key, _n(value)] for key, value in figures(rec).items()
            if key not in _HEADER_KEYS]
    return ["## Figures", "", _table(["", ""], rows, "lr"), ""] if rows else []


def _lists_section(rec: Mapping[str, Any]) -> list[str]:
    """Each list of objects (layers, history, ...) as a table of its single values."""
    out = []
    for key, value in rec.items():
        entries = [e for e in value if isinstance(e, Mapping)] if isinstance(value, list) else []
        if not entries:
            continue
        columns = list(dict.fromkeys(k for e in entries for k, v in e.items()
                                     if not isinstance(v, list | Mapping)))
        rows = [[_n(e.get(c)) for c in columns] for e in entries]
        out += [f"## {key}", "", _table(columns, rows, "l" * len(columns)), ""]
    return out


def _title(rec: Mapping[str, Any]) -> str:
    kind = rec.get("kind") or ("compare" if "rows" in rec else "report")
    where = f" on {rec['board']} ({rec.get('runtime', '?')})" if rec.get("board") else ""
    return f"# tinyq {kind}: {_name(rec)}{where}"


def markdown(record: Mapping[str, Any], images: Mapping[str, str] | None = None) -> str:
    """The Markdown of one record; ``images`` maps "layers"/"accuracy" to relative PNG paths."""
    images = images or {}
    if record.get("kind") == "sweep":     # a grid of cells: its own table and fronts
        from tinyq.measure.sweeping import sweep_markdown

        return sweep_markdown(record, {})
    out = [_title(record), ""]
    facts = [f"model `{Path(str(record['model'])).name}`"
             + (f" ({record['model_id']})" if record.get("model_id") else "")
             ] if record.get("model") else []
    if record.get("device"):
        facts.append(f"device {record['device']}")
    if record.get("tinyq"):
        facts.append(f"tinyq {record['tinyq']}")
    out += ["; ".join(facts) + ".", ""]
    out += _stages_section(record)
    if record.get("latency"):          # null in a damaged record: no section
        out += _latency_section(record)
        out += _memory_section(record)
        out += _output_section(record)
        out += _layers_section(record, images.get("layers"))
    out += _accuracy_section(record, images.get("accuracy"), images.get("confusion"))
    if "device_accuracy" not in record:
        out += _modes_section(record, images.get("accuracy"))
    if record.get("kind") not in _SECTIONED_KINDS:
        out += _figures_section(record)
        out += _lists_section(record)
    return "\n".join(out).rstrip() + "\n"


# -- plots --------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    return buf.getvalue()


def _plain_thousands(axis) -> None:
    """Ticks as 2,000,000 rather than 2 with a '1e6' offset in the corner, which reads as
    part of the last tick."""
    from matplotlib.ticker import StrMethodFormatter

    axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def layers_png(record: Mapping[str, Any]) -> bytes | None:
    """Horizontal bars: each layer's count, labelled with its share."""
    layers = record.get("layers")
    if not layers or "latency" not in record:      # a profile (bench/deploy), not inspect's ops
        return None
    plt = _pyplot()
    unit = _unit(record)
    labels = [f"{layer['index']} {layer['op']}" for layer in layers]
    values = [int(layer.get(unit) or 0) for layer in layers]
    height = max(MIN_FIGURE_HEIGHT_IN, LAYER_BAR_IN * len(layers) + 1.0)
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, height))
    try:
        bars = ax.barh(range(len(values)), values, color="#4477aa")
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{unit} per inference" + (" (emulated)" if unit == "instructions" else ""))
        ax.set_title(f"{_name(record)} on {record.get('board', '?')} "
                     f"({record.get('runtime', '?')}): per-layer profile", fontsize=10)
        for bar, layer in zip(bars, layers, strict=True):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {100 * layer['share']:.1f}%", va="center", fontsize=7)
        ax.margins(x=0.12)
        _plain_thousands(ax.xaxis)
        return _png(fig)
    finally:
        plt.close(fig)


def accuracy_points(record: Mapping[str, Any]) -> list[tuple[str, int, float]]:
    """(label, size in bytes, accuracy) points the record knows."""
    points: list[tuple[str, int, float]] = []
    for row in record.get("compare") or record.get("rows") or ():
        size, acc = row.get("size_bytes"), row.get("accuracy")
        if size and acc is not None:
            points.append((str(row.get("mode", "?")), int(size), float(acc)))
    # .tflite sizes on both axes' points (the float model is measured as a float .tflite).
    model_size = record.get("tflite_bytes") or (record.get("flash") or {}).get("model")
    if record.get("float_accuracy") is not None and record.get("float_model_bytes"):
        points.append(("float (host)", int(record["float_model_bytes"]),
                       float(record["float_accuracy"])))
    if model_size:
        if record.get("host_accuracy") is not None:
            points.append(("int8 host (tflite-micro)", int(model_size),
                           float(record["host_accuracy"])))
        if record.get("device_accuracy") is not None:
            points.append(("int8 on device", int(model_size), float(record["device_accuracy"])))
    return points


def accuracy_png(record: Mapping[str, Any]) -> bytes | None:
    points = accuracy_points(record)
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN * 0.75, 4.0))
    try:
        markers = "osD^v<>p*"
        for n, (label, size, acc) in enumerate(points):
            ax.scatter([size / 1024], [100 * acc], marker=markers[n % len(markers)], s=60,
                       label=label, zorder=3)
        ax.set_xlabel("model size (KiB)")
        ax.set_ylabel("top-1 accuracy (%)")
        lowest = min(100 * acc for _label, _size, acc in points)
        ax.set_ylim(max(0.0, lowest - 5.0), 100.5)
        ax.set_title(f"{_name(record)}: accuracy vs size", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        return _png(fig)
    finally:
        plt.close(fig)


#: Classes up to which each confusion-matrix cell is labelled with its count (beyond, the
#: numbers would not fit a readable cell at FIGURE_WIDTH_IN).
CONFUSION_CELL_LABELS_MAX = 20


def confusion_png(record: Mapping[str, Any]) -> bytes | None:
    """The device's and the host's confusion matrices side by side (validate, classify)."""
    device, host = record.get("confusion_device"), record.get("confusion_host")
    if not device or not host:
        return None
    plt = _pyplot()
    n = len(device)
    fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH_IN, FIGURE_WIDTH_IN * 0.5))
    try:
        top = max(1, max(max(row) for row in (*device, *host)))
        for ax, matrix, name in ((axes[0], device, "on device"),
                                 (axes[1], host, "host (tflite-micro)")):
            ax.imshow(matrix, cmap="Blues", vmin=0, vmax=top)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            ax.set_xticks(range(n))
            ax.set_yticks(range(n))
            ax.tick_params(labelsize=7)
            if n <= CONFUSION_CELL_LABELS_MAX:
                for i, row in enumerate(matrix):
                    for j, count in enumerate(row):
                        if count:
                            ax.text(j, i, str(count), ha="center", va="center", fontsize=6,
                                    color="white" if count > top / 2 else "black")
        fig.suptitle(f"{_name(record)}: confusion matrices ({_n(record.get('samples'))} "
                     f"samples)", fontsize=10)
        return _png(fig)
    finally:
        plt.close(fig)


# -- writing ------------------------------------------------------------------------------

def report_paths(path: str | os.PathLike[str],
                 images: Sequence[str] = REPORT_IMAGES) -> tuple[Path, ...]:
    """The Markdown ``path`` and the PNGs beside it for ``images`` (see REPORT_IMAGES).

    A command checks these before its work (:func:`tinyq.fileio.check_output`), so an
    existing plot is refused up front rather than after a long run.
    """
    md = Path(path)
    if md.name in ("", ".", ".."):
        raise UserInputError(f"the report {path} is a folder, not a file",
                             hint="name a file, e.g. report.md", path=str(path))
    return (md, *(md.with_name(f"{md.stem}-{name}.png") for name in images))


def write_report(record: Mapping[str, Any], path: str | os.PathLike[str],
                 force: bool = False, inputs: Iterable[Any] = ()) -> ReportFiles:
    """Write ``path`` (Markdown) and its PNGs beside it (``<stem>-layers.png`` ...);
    ``inputs``: the command's input files, which no output may replace."""
    inputs = tuple(inputs)
    md = Path(path)
    pngs = {"layers": layers_png(record), "accuracy": accuracy_png(record),
            "confusion": confusion_png(record)}
    names = [k for k, v in pngs.items() if v]
    targets = dict(zip(names, report_paths(md, names)[1:], strict=True))
    for target in (md, *targets.values()):
        check_output(target, force, inputs=inputs)     # refuse before writing anything
    for key, target in targets.items():
        write_bytes(target, pngs[key] or b"", inputs=inputs)
    write_text(md, markdown(record, {k: t.name for k, t in targets.items()}), inputs=inputs)
    return ReportFiles(markdown=md, images=tuple(targets.values()))


# -- side by side -------------------------------------------------------------------------

def _get(rec: Mapping[str, Any], dotted: str) -> Any:
    value: Any = rec
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


#: Rows of the side-by-side table: (label, dotted key). ``{unit}`` is each record's unit.
COMPARE_ROWS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("board", "board"),
    ("runtime", "runtime"),
    ("device", "device"),
    ("latency unit", "latency.unit"),
    ("latency median", "latency.median"),
    ("latency p95", "latency.p95"),
    ("latency ms (median)", "latency.ms"),
    ("RAM static", "ram.static"),
    ("RAM stack peak", "ram.stack_peak"),
    ("RAM arena", "ram.arena"),
    ("RAM total", "ram.total"),
    ("flash code", "flash.code"),
    ("flash model", "flash.model"),
    ("flash total", "flash.total"),
    ("outputs match TFLM", "outputs_match"),
    ("samples", "samples"),
    ("on-device accuracy", "device_accuracy"),
    ("host accuracy", "host_accuracy"),
    ("float accuracy", "float_accuracy"),
    ("on-device MAE", "regression.device.mae"),
    ("on-device RMSE", "regression.device.rmse"),
    ("on-device cosine similarity", "regression.device.cosine"),
    ("on-device L2 relative error", "regression.device.l2r"),
    ("on-device mean anomaly score", "anomaly.device_mean_score"),
    ("on-device AUC", "anomaly.device_auc"),
    ("bit-exact", "bit_exact"),
    ("max LSB diff", "max_lsb_diff"),
)
_RATIO_KEYS = {"latency.median", "latency.p95", "latency.ms", "ram.static", "ram.stack_peak",
               "ram.arena", "ram.total", "flash.code", "flash.model", "flash.total"}
_ACCURACY_KEYS = {"device_accuracy", "host_accuracy", "float_accuracy"}


def compare_markdown(records: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    """Records side by side; with two, a ratio column (second / first, same unit only)."""
    if len(records) < 2:
        raise UserInputError("comparing needs at least two records",
                             hint="pass two or more JSON files: tinyq report a.json b.json")
    kinds = [str(r.get("kind", "?")) for r in records]
    if not _comparable(kinds):
        shown = ", ".join(f"{label} is a {kind} record" for label, kind in zip(labels, kinds,
                                                                                strict=True))
        raise UserInputError(f"only records of one kind compare side by side: {shown}",
                             hint="pass records written by the same command")
    two = len(records) == 2
    headers = ["", *labels] + (["ratio (2nd / 1st)"] if two else [])
    same_unit = len({_unit(r) for r in records if "latency" in r}) <= 1
    rows = []
    for label, key in _compare_rows(records):
        values = [_get(r, key) for r in records]
        if all(v is None for v in values):
            continue
        if key == "model":
            cells = [Path(str(v)).name if v else "–" for v in values]
        elif key in _ACCURACY_KEYS:
            cells = [_pct(v) for v in values]
        else:
            cells = [_n(v) for v in values]
        row = [label, *cells]
        if two:
            a, b = values
            ratio = key in _RATIO_KEYS or set(kinds).isdisjoint(_SECTIONED_KINDS)
            ok = (ratio and _is_number(a) and _is_number(b)
                  and a and (same_unit or not key.startswith("latency")))
            row.append(f"{b / a:.3f}" if ok else "")
        rows.append(row)
    out = ["# tinyq report: side by side", "",
           _table(headers, rows, "l" + "r" * (len(headers) - 1)), ""]
    if not same_unit:
        out += ["Latency units differ (emulator instructions vs cycles on a board): "
                "no latency ratio is given.", ""]
    layered = [r for r in records if r.get("layers") and "latency" in r]
    if two and len(layered) == 2:
        a, b = layered
        if [x["op"] for x in a["layers"]] == [x["op"] for x in b["layers"]]:
            ua, ub = _unit(a), _unit(b)
            lrows = [[x["index"], x["op"], _n(x.get(ua)), _n(y.get(ub)),
                      f"{(y.get(ub) or 0) / x[ua]:.3f}" if x.get(ua) and ua == ub else ""]
                     for x, y in zip(a["layers"], b["layers"], strict=True)]
            out += ["## Per layer", "", _table(["#", "op", f"{labels[0]} ({ua})",
                                                f"{labels[1]} ({ub})", "ratio"], lrows,
                                               "rlrrr"), ""]
    return "\n".join(out).rstrip() + "\n"


#: Kinds whose records share the bench/validate fields (deploy holds both).
_COMPATIBLE = ({"bench", "deploy"}, {"validate", "deploy"})


def _comparable(kinds: Sequence[str]) -> bool:
    return len(set(kinds)) == 1 or any(set(kinds) <= group for group in _COMPATIBLE)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare_rows(records: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    """COMPARE_ROWS for bench/validate/deploy records; every figure for the other kinds."""
    if records[0].get("kind") in _SECTIONED_KINDS - {"compare"}:
        return COMPARE_ROWS
    keys = dict.fromkeys(k for r in records for k in figures(r)
                         if k not in ("kind", "schema_version", "tinyq"))
    return tuple((key, key) for key in keys)


def labels_for(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Column labels: the file names (their stems when those are distinct)."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(p) for p in paths]


__all__ = ["RECORD_FIELDS", "REPORT_IMAGES", "ReportFiles", "accuracy_png", "check_record",
           "confusion_png",
           "compare_markdown", "labels_for", "layers_png", "load_record", "markdown",
           "report_paths", "write_json", "write_report"]
