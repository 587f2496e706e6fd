"""Recurrent Keras 3 models through `tinyq quantize`: what the graph holds, and accuracy.

    python benchmarks/recurrent_convert.py [--out DIR] [--epochs 15] [--long]

Makes an offline sequence task (which of 3 frequencies a noisy, randomly phased sine
wave of 32 steps has, 2 channels), trains ``LSTM(16) -> Dense(3)`` and
``GRU(16) -> Dense(3)`` in Keras 3, quantizes each with tinyq to int8 and int16x8 and
prints, per model and mode: the ops of the .tflite (fused UNIDIRECTIONAL_SEQUENCE_LSTM
or unrolled), tinyq's note, the conversion time, and the test accuracy on the
``tflite-micro`` interpreter next to the float model's. ``--long`` adds a stacked LSTM.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tinyq.cli.ui import format_table

STEPS = 32
CHANNELS = 2
FREQUENCIES = (0.5, 1.0, 1.7)      # cycles over the window, one class each
SAMPLES = 1200


def make_task(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x: (SAMPLES, STEPS, CHANNELS) float32 sines with noise; y: the frequency class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(FREQUENCIES), SAMPLES)
    t = np.linspace(0, 2 * np.pi, STEPS)[None, :, None]
    freq = np.array(FREQUENCIES)[y][:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (SAMPLES, 1, CHANNELS))
    amp = rng.uniform(0.5, 1.5, (SAMPLES, 1, CHANNELS))
    x = amp * np.sin(freq * t + phase) + 0.2 * rng.standard_normal((SAMPLES, STEPS, CHANNELS))
    return x.astype(np.float32), y.astype(np.int64)


def build(kind: str):
    import keras

    layers = {"lstm": [keras.layers.LSTM(16)], "gru": [keras.layers.GRU(16)],
              "stacked-lstm": [keras.layers.LSTM(16, return_sequences=True),
                               keras.layers.LSTM(16)]}[kind]
    model = keras.Sequential([keras.Input((STEPS, CHANNELS)), *layers, keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def tflm_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy on the tflite-micro interpreter (state reset before each sequence)."""
    from tinyq.convert.evaluation import run_model

    return float(np.mean(np.argmax(run_model(tflite, x, runtime="tflm"), -1) == y))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the models here (default: a temp dir)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--long", action="store_true", help="add a stacked LSTM")
    args = parser.parse_args(argv)

    import keras

    from tinyq.convert.ptq import QuantizeOptions, quantize

    keras.utils.set_random_seed(0)
    x, y = make_task()
    split = int(0.8 * len(x))
    kinds = ["lstm", "gru"] + (["stacked-lstm"] if args.long else [])
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        calib = out / "calib.npy"
        np.save(calib, x[:200])
        for kind in kinds:
            model = build(kind)
            model.fit(x[:split], y[:split], epochs=args.epochs, batch_size=32, verbose=0)
            float_acc = float(np.mean(np.argmax(model.predict(x[split:], verbose=0), -1)
                                      == y[split:]))
            path = out / f"{kind}.keras"
            model.save(path)
            for mode in ("int8", "int16x8"):
                start = time.perf_counter()
                r = quantize(path, calib, QuantizeOptions(mode=mode))
                seconds = time.perf_counter() - start
                ops = dict(r.ops)
                form = ("fused" if "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops else
                        "WHILE" if "WHILE" in ops else f"unrolled, {len(r.ops)} op kinds, "
                        f"{sum(ops.values())} ops")
                acc = tflm_accuracy(r.tflite, x[split:], y[split:])
                rows.append((kind, mode, form, f"{r.size_bytes:,}", f"{seconds:.1f}",
                             f"{100 * float_acc:.1f}%", f"{100 * acc:.1f}%"))
                notes += [f"{kind} {mode}: {n}" for n in r.notes]
    print(f"{len(x) - split} test sequences of {STEPS} steps x {CHANNELS} channels, "
          f"{len(FREQUENCIES)} classes; accuracy on the tflite-micro interpreter")
    print(format_table(("model", "mode", "graph", "bytes", "convert s", "float", "quantized"),
                       rows, "lllrrrr"))
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
