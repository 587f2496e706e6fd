"""A case where post-training int8 quantization loses accuracy and QAT recovers it.

Reproduce (needs the [qat] extra; about a minute on 2 cores):

    python examples/qat_hard_case/run.py [--out DIR] [--seeds 0 1 2] [--spread 30]

What it builds, honestly stated: a small MLP (64 -> 32 ReLU -> 10) trained on
scikit-learn's 8x8 digits, then *rebalanced*: hidden unit j's incoming weights and
bias are multiplied by s_j and its outgoing weights divided by s_j, with s_j spread
log-uniformly over [1/spread, spread]. ReLU is positively homogeneous, so the float
model computes exactly the same function (the script checks this), but its hidden
activations now span very different ranges. That is what poorly conditioned trained
models look like (no batch norm, no weight decay, BN folded with extreme gammas):
int8 has one scale per activation tensor, so the small-range units drown in the
rounding step of the large ones. Per-channel weights do not help; the activation
tensor is the problem. QAT fine-tunes with that rounding in the forward pass and
the network learns to carry the information through the surviving resolution.

Held-out data: a stratified 40% test split, used for per-epoch validation and for
the reported accuracies; no model selection uses it (the last epoch is converted).
The int8 accuracies come from the tflite-micro interpreter (real TFLM on the host).
With ``--control`` the same is run on the un-rebalanced model (PTQ already fine).
A second control ("float FT") fine-tunes the rebalanced model for the same epochs
*without* fake quantization and then applies PTQ, so the QAT gain is not mistaken
for the effect of extra training.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

#: Float training of the starting model.
FLOAT_EPOCHS = 30
HIDDEN = 32
TEST_FRACTION = 0.4


def digits_split(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return train_test_split(x, digits.target.astype(np.int64), test_size=TEST_FRACTION,
                            random_state=seed, stratify=digits.target)


def float_model(x_train, y_train):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(HIDDEN, activation="relu", name="hidden"),
        keras.layers.Dense(10, name="logits"),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=FLOAT_EPOCHS, batch_size=32, verbose=0)
    return model


def rebalance(model, spread: float, x_check) -> None:
    """Scale hidden unit j by s_j in, 1/s_j out (same function); check outputs are unchanged."""
    before = np.asarray(model(x_check))
    rng = np.random.default_rng(0)
    s = np.exp(rng.uniform(-np.log(spread), np.log(spread), HIDDEN)).astype(np.float32)
    hidden, logits = model.get_layer("hidden"), model.get_layer("logits")
    w1, b1 = hidden.get_weights()
    w2, b2 = logits.get_weights()
    hidden.set_weights([w1 * s, b1 * s])
    logits.set_weights([w2 / s[:, None], b2])
    after = np.asarray(model(x_check))
    assert np.allclose(before, after, rtol=1e-4, atol=1e-4), "rebalancing changed the model"


def run_case(name: str, model_path: Path, data, seeds, epochs: int, lr: float) -> list:
    from tinyq.convert.qat_training import QatOptions, qat

    x_train, x_test, y_train, y_test = data
    rows = []
    for seed in seeds:
        result = qat(model_path, (x_train, y_train),
                     QatOptions(epochs=epochs, learning_rate=lr, seed=seed),
                     calib=(x_train, None), val=(x_test, y_test))
        rows.append((name, seed, result))
        print(f"{name:<11} seed {seed}: float {result.float_accuracy:.4f}  "
              f"PTQ int8 {result.ptq_accuracy if result.ptq_accuracy is None else f'{result.ptq_accuracy:.4f}'}  "  # noqa: E501
              f"QAT int8 {result.qat_accuracy:.4f}  ({result.train_seconds:.1f} s of QAT)",
              flush=True)
    return rows


def float_finetune_ptq(model_path: Path, data, seed: int, epochs: int, lr: float,
                       out: Path) -> tuple[float, float]:
    """Control for "QAT is just more training": the same fine-tuning without fake
    quantization, then post-training int8. Returns (float accuracy, PTQ int8 accuracy)."""
    import keras

    from tinyq.convert.qat_training import accuracy, int8_predict, ptq_int8

    x_train, x_test, y_train, y_test = data
    keras.utils.set_random_seed(seed)
    model = keras.models.load_model(model_path)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    tuned = out / f"float_finetuned_seed{seed}.keras"
    model.save(tuned)
    float_acc = accuracy(np.asarray(model(x_test)), y_test)
    return float_acc, accuracy(int8_predict(ptq_int8(tuned, x_train[:200]), x_test), y_test)


def native_check(tflite: bytes, x) -> str:
    """Compare the QAT model on tinyq's native runtime (host build) with TFLM, every sample."""
    try:
        from tinyq.firmware.native.host import HostModel
        from tinyq.model.interpreters import TflmInterpreter
        from tinyq.model.tflite_reader import read_model_bytes
    except ImportError as exc:
        return f"native host runtime not available ({exc})"
    tflm, native = TflmInterpreter(tflite), HostModel(read_model_bytes(tflite))
    inp = tflm.input_details(0)
    q = np.clip(np.round(x / inp.scale) + inp.zero_point, -128, 127).astype(np.int8)
    same = sum(np.array_equal(tflm.invoke([r.reshape(inp.shape)])[0].reshape(-1),
                              native.invoke([r.reshape(inp.shape)])[0].reshape(-1)) for r in q)
    return f"QAT int8 model, native runtime (host build) vs TFLM: {same}/{len(q)} identical"


def qemu_check(tflite_path: Path, x, board: str) -> str:
    """Run the QAT model with the native runtime in QEMU; compare every output with TFLM."""
    from tinyq.measure.runner import run

    result = run(tflite_path, board, emulator="qemu", inputs=x, runtime="native")
    same = sum(s.outputs_match for s in result.samples)
    return (f"QAT int8 model on QEMU {board} (native runtime) vs TFLM: {same}/{len(x)} "
            f"identical, max diff {result.max_lsb_diff} LSB, "
            f"{result.per_inference} {result.unit}/inference (emulated)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="keep model.keras, the .npz files and qat.tflite here")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="QAT fine-tuning seeds (default 0 1 2)")
    p.add_argument("--spread", type=float, default=30.0,
                   help="hidden-unit scale spread s in [1/spread, spread] (default 30)")
    p.add_argument("--epochs", type=int, default=20, help="QAT epochs (default 20)")
    p.add_argument("--lr", type=float, default=1e-3, help="QAT learning rate (default 1e-3)")
    p.add_argument("--qemu", metavar="BOARD", nargs="?", const="mps2-an386",
                   help="also run the QAT model in QEMU with tinyq's native runtime "
                   "(default board mps2-an386; needs arm-none-eabi-gcc and qemu-system-arm)")
    p.add_argument("--control", action="store_true",
                   help="also run the un-rebalanced model (PTQ is fine there)")
    args = p.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="tinyq-qat-hard-"))
    out.mkdir(parents=True, exist_ok=True)
    data = digits_split()
    x_train, x_test, y_train, y_test = data
    np.savez(out / "train.npz", x=x_train, y=y_train)
    np.savez(out / "test.npz", x=x_test, y=y_test)
    print(f"digits: {len(x_train)} training, {len(x_test)} held-out test samples; files in {out}")

    rows = []
    model = float_model(x_train, y_train)
    if args.control:
        model.save(out / "control.keras")
        rows += run_case("control", out / "control.keras", data, args.seeds, args.epochs,
                         args.lr)
    rebalance(model, args.spread, x_test)
    model.save(out / "model.keras")
    rows += run_case(f"spread {args.spread:g}", out / "model.keras", data, args.seeds,
                     args.epochs, args.lr)
    controls = []
    for seed in args.seeds:
        controls.append(float_finetune_ptq(out / "model.keras", data, seed, args.epochs,
                                           args.lr, out))
        print(f"control: same fine-tuning without fake quant, seed {seed}: float "
              f"{controls[-1][0]:.4f}, then PTQ int8 {controls[-1][1]:.4f}", flush=True)

    print()
    print(f"{'case':<11} {'float':>7} {'PTQ int8':>9} {'QAT int8 (mean, min..max)':>27}")
    for name in dict.fromkeys(r[0] for r in rows):
        results = [r[2] for r in rows if r[0] == name]
        qat_accs = [r.qat_accuracy for r in results]
        ptq = results[0].ptq_accuracy
        print(f"{name:<11} {results[0].float_accuracy:7.4f} "
              f"{'n/a' if ptq is None else f'{ptq:.4f}':>9} "
              f"{np.mean(qat_accs):>11.4f} ({min(qat_accs):.4f}..{max(qat_accs):.4f})")
    ft_float, ft_ptq = (np.array([c[i] for c in controls]) for i in (0, 1))
    print(f"{'float FT':<11} {np.mean(ft_float):7.4f} {np.mean(ft_ptq):>9.4f} "
          f"{'-':>11}   (spread case fine-tuned in float, then PTQ; mean over seeds, "
          f"PTQ {ft_ptq.min():.4f}..{ft_ptq.max():.4f})")
    last = rows[-1][2]
    (out / "qat.tflite").write_bytes(last.tflite)
    print(native_check(last.tflite, x_test))
    if args.qemu:
        print(qemu_check(out / "qat.tflite", x_test, args.qemu))
    print(f"QAT int8 model (seed {rows[-1][1]}) written to {out / 'qat.tflite'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
