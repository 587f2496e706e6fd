"""Train the tinyq demo model: a small conv net on scikit-learn's 8x8 digits (offline).

    python examples/digits/train.py [--out examples/digits/out] [--epochs 25] [--seed 0]

Writes into ``--out``:

* ``digits.keras``  the float Keras 3 model (input 8x8x1, pixels scaled to 0..1, 10 logits)
* ``train.npz``     x, y: training samples (for QAT)
* ``calib.npz``     x, y: 200 training samples for post-training calibration
* ``test.npz``      x, y: the 20 % held-out test split (360 samples, stratified)

Deterministic for a given seed (Keras seeds and TensorFlow op determinism), and fast
(a few seconds on two CPU cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"
TEST_FRACTION = 0.2
CALIB_SAMPLES = 200


def load_split(seed: int = 0):
    """(x_train, y_train, x_test, y_test): digits as float32 (N, 8, 8, 1) in 0..1."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION,
                                              random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


def build_model(keras):
    """Two 3x3 convs, a 2x2 max-pool and two dense layers: 38.3k parameters."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(2, name="pool"),
        layers.Flatten(name="flatten"),
        layers.Dense(64, activation="relu", name="fc1"),
        layers.Dense(10, name="logits"),
    ], name="digits")


def train(out: Path = DEFAULT_OUT, epochs: int = 25, seed: int = 0) -> dict[str, Path]:
    """Train, save the model and the .npz files into ``out``; return their paths."""
    from tinyq.convert.model_loader import import_tensorflow

    # Training logs harmless C++ errors (a tf.data attribute the installed wheel pair
    # disagrees on); tinyq's import keeps the start-up lines off the terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x_tr, y_tr, x_te, y_te = load_split(seed)
    model = build_model(keras)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_tr, y_tr, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.npz" for name in ("train", "calib", "test")}
    paths["model"] = out / "digits.keras"
    model.save(paths["model"])
    np.savez(paths["train"], x=x_tr, y=y_tr)
    np.savez(paths["calib"], x=x_tr[:CALIB_SAMPLES], y=y_tr[:CALIB_SAMPLES])
    np.savez(paths["test"], x=x_te, y=y_te)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    paths = train(args.out, args.epochs, args.seed)
    import keras

    x_te, y_te = (np.load(paths["test"])[k] for k in ("x", "y"))
    model = keras.models.load_model(paths["model"])
    acc = float(np.mean(np.argmax(model.predict(x_te, verbose=0), axis=1) == y_te))
    print(f"trained in {time.perf_counter() - start:.1f} s: float test accuracy "
          f"{100 * acc:.2f}% on {len(y_te)} samples")
    for name, path in paths.items():
        print(f"  {name:6s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
