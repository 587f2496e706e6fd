"""Result tables several commands print (bench's and validate's, also shown by deploy)."""

from __future__ import annotations


def print_bench(result, ui) -> None:
    """The bench tables on stdout."""
    from pathlib import Path

    lat = result.latency
    unit = lat.unit
    ui.print(f"{Path(result.model).name} on {result.board} ({result.runtime}) via {result.device}")
    if result.emulated:
        ui.print("latency in emulator instructions (QEMU icount: 1 instruction = 1 ns of "
                 "virtual time), not cycles or milliseconds")
    rows = []
    for key in ("median", "min", "max", "p95"):
        value = getattr(lat, key)
        ms = lat.ms(value)
        rows.append((key, f"{value:,}") + (() if ms is None else (f"{ms:.3f} ms",)))
    if result.emulated:
        ui.table(("latency", unit), rows, align="lr")
    else:
        ui.table(("latency", unit, f"at {lat.core_hz / 1e6:g} MHz"), rows, align="lrr")
    ui.print(f"{len(lat.values)} timed run(s) after {lat.warmup} warm-up(s); "
             f"{result.macs:,} MACs = {result.macs / lat.median:.3f} MACs per {unit[:-1]}"
             if lat.median else "")
    ui.print()
    ram, flash = result.ram, result.flash

    def share(n: int, total: int) -> str:
        return f"{100 * n / total:.2f}%" if total else "-"

    ui.table(("memory", "what", "bytes", "of board"), [
        ("RAM", "static (.data + .bss)", f"{ram.static:,}", share(ram.static, ram.available)),
        ("RAM", "stack high-water mark (since boot)", f"{ram.stack_peak:,}",
         share(ram.stack_peak, ram.available)),
        ("RAM", "arena used", f"{ram.arena:,}", share(ram.arena, ram.available)),
        ("RAM", "total peak", f"{ram.total:,}", share(ram.total, ram.available)),
        ("RAM", "board", f"{ram.available:,}", ""),
        ("flash", "code", f"{flash.code:,}", share(flash.code, flash.available)),
        ("flash", "model", f"{flash.model:,}", share(flash.model, flash.available)),
        ("flash", "total", f"{flash.total:,}", share(flash.total, flash.available)),
        ("flash", "board", f"{flash.available:,}", ""),
    ], align="llrr")
    if result.layers:
        ui.print()
        ui.table(("#", "op", unit, "share", "MACs", f"MACs/{unit[:-1]}"), [
            (layer.index, layer.op, f"{layer.count:,}", f"{100 * layer.share:.1f}%",
             f"{layer.macs:,}",
             "" if layer.macs_per_count is None else f"{layer.macs_per_count:.3f}")
            for layer in result.layers], align="rlrrrr")
    ui.print()
    ui.print("outputs vs TFLM: " + ("identical" if result.outputs_match else
                                    f"DIFFERENT (max {result.max_lsb_diff} LSB)")
             + f" (input: {result.input_source})")


def print_validate(result, ui) -> None:
    from pathlib import Path

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    def num(v):
        return "-" if v is None else f"{v:.6g}"

    ui.print(f"{Path(result.model).name} on {result.board} ({result.runtime}) via "
             f"{result.device}: {result.samples} of {result.requested} samples"
             + (f" ({result.resumed} resumed)" if result.resumed else "")
             + ("" if result.task == "classify" else f", task {result.task}"))
    rows = []
    if result.task == "classify":
        rows += [("on-device top-1", pct(result.device_accuracy)),
                 ("host top-1 (tflite-micro)", pct(result.host_accuracy))]
        if result.float_accuracy is not None:
            rows.append(("float model top-1", pct(result.float_accuracy)))
    elif result.task == "regress" and result.regression:
        reg = result.regression
        for key, name in (("mae", "MAE"), ("rmse", "RMSE"), ("cosine", "cosine similarity"),
                          ("l2r", "L2 relative error")):
            rows += [(f"on-device {name}", num(reg["device"][key])),
                     (f"host {name} (tflite-micro)", num(reg["host"][key]))]
        rows.append(("device vs host RMSE", num(reg["device_vs_host"]["rmse"])))
    elif result.task == "anomaly" and result.anomaly:
        an = result.anomaly
        what = "reconstruction MSE" if an["score"] == "reconstruction_mse" else "score"
        rows += [(f"on-device mean {what}", num(an["device_mean_score"])),
                 (f"host mean {what} (tflite-micro)", num(an["host_mean_score"]))]
        if an["device_auc"] is not None:
            rows += [("on-device AUC", num(an["device_auc"])),
                     ("host AUC (tflite-micro)", num(an["host_auc"]))]
        rows.append((f"max device-host {what} difference", num(an["max_score_diff"])))
    rows += [("bit-exact outputs", f"{result.bit_exact_count}/{result.samples}"),
             ("max LSB difference", str(result.max_lsb_diff))]
    if result.agreement is not None:
        rows.append(("same prediction", f"{result.agreement}/{result.samples}"))
    rows.append(("device time", f"{result.seconds:.1f} s"))
    ui.table(("measure", "value"), rows, align="lr")
    if result.task == "classify" and result.records:
        ui.print()
        ui.table(("class", "support", "device precision", "device recall", "host precision",
                  "host recall"),
                 [(c["class"], c["support"], pct(c["device_precision"]), pct(c["device_recall"]),
                   pct(c["host_precision"]), pct(c["host_recall"])) for c in result.per_class],
                 align="rrrrrr")
        ui.print()
        matrix = result.confusion("device")
        ui.print("on-device confusion matrix (rows: true class, columns: predicted)")
        ui.table(("true", *(str(k) for k in range(len(matrix)))),
                 [(k, *row) for k, row in enumerate(matrix)], align="r" * (len(matrix) + 1))
        if matrix != result.confusion("host"):
            ui.print("the host's confusion matrix differs: see the --json record")
