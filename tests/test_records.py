"""Every command's --json record has a kind, a schema_version and matches its JSON Schema
in tinyq/schemas; old records still read; ``tinyq report`` renders and compares any kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_tools

from tinyq.cli import main
from tinyq.errors import UserInputError
from tinyq.measure.report import compare_markdown, load_record, markdown
from tinyq.records import KINDS, SCHEMA_VERSIONS, device_name, schema, stamp, upgrade

jsonschema = pytest.importorskip("jsonschema", reason="the dev extra's jsonschema")

#: Samples the device commands stream (enough for a figure, few for CI time).
SAMPLES = 3


def check(record: dict, kind: str) -> None:
    """``record`` is a current ``kind`` record that its schema accepts."""
    assert record["kind"] == kind and record["schema_version"] == SCHEMA_VERSIONS[kind]
    jsonschema.Draft202012Validator(schema(kind)).validate(json.loads(json.dumps(record)))


def test_every_kind_has_a_valid_schema_that_names_its_kind():
    for kind in KINDS:
        s = schema(kind)
        jsonschema.Draft202012Validator.check_schema(s)
        assert s["properties"]["kind"] == {"const": kind, **{
            k: v for k, v in s["properties"]["kind"].items() if k != "const"}}
        assert {"kind", "schema_version", "tinyq"} <= set(s["required"])


def test_a_schema_rejects_a_renamed_field():
    """The schemas are strict enough to catch drift: inspect's old ``ops[].type``."""
    layers = schema("inspect")["properties"]["layers"]
    entry = {"index": 0, "op": "CONV_2D", "version": 1, "macs": 0, "weights_bytes": 0}
    jsonschema.validate([entry], layers)
    entry["type"] = entry.pop("op")
    with pytest.raises(jsonschema.ValidationError, match="'op' is a required property"):
        jsonschema.validate([entry], layers)


@pytest.fixture(scope="module")
def hello_records(tmp_path_factory, shared_models):
    """The --json records of the commands that take a .tflite, on hello_world in QEMU."""
    require_tools("arm-none-eabi-gcc", "qemu-system-arm", "make")
    model = shared_models / "tflm-examples" / "hello_world_int8.tflite"
    if not model.is_file():
        pytest.skip("tflm-examples/hello_world_int8.tflite missing from ../shared/models")
    work = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 6, (SAMPLES, 1)).astype(np.float32)
    np.savez(work / "test.npz", x=x, y=(np.sin(x[:, 0]) > 0.5).astype(np.int64))
    board = ["--board", "mps2-an386"]
    argv = {
        "inspect": ["inspect", model, "--no-arena-search"],
        "evaluate": ["evaluate", model, "--data", work / "test.npz", "--reference",
                     model.with_name("hello_world_float.tflite")],
        "build": ["build", model, *board],
        "run": ["run", model, *board, "--samples", "2"],
        "bench": ["bench", model, *board, "--runs", "2", "--warmup", "0", "--per-layer"],
        "validate": ["validate", model, *board, "--data", work / "test.npz"],
        "deploy": ["deploy", model, *board, "--data", work / "test.npz", "--runs", "2",
                   "-o", work / "deploy"],
    }
    records = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYQ_CACHE_DIR", str(work / "cache"))
        for kind, args in argv.items():
            out = work / f"{kind}.json"
            assert main([str(a) for a in args] + ["--json", str(out)]) == 0, kind
            records[kind] = json.loads(out.read_text())
    return records


@pytest.mark.qemu
@pytest.mark.parametrize("kind", ["inspect", "evaluate", "build", "run", "bench", "validate",
                                  "deploy"])
def test_tflite_commands_write_records_their_schema_accepts(hello_records, kind):
    record = hello_records[kind]
    check(record, kind)
    assert "tcp:" not in json.dumps(record)            # no ephemeral port anywhere
    if kind in ("run", "bench", "validate", "deploy"):
        assert record["device"] == "QEMU mps2-an386"
    if kind in ("inspect", "bench", "deploy", "evaluate"):
        assert record["layers"] and all("op" in layer for layer in record["layers"])


@pytest.mark.qemu
def test_report_renders_and_compares_every_device_kind(hello_records, tmp_path):
    for kind, record in hello_records.items():
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(record))
        loaded = load_record(path)
        name = "app.elf" if kind == "build" else "hello_world_int8.tflite"
        assert markdown(loaded).startswith(f"# tinyq {kind}: {name}")
        text = compare_markdown([loaded, loaded], ["a", "b"])
        assert "| a | b | ratio (2nd / 1st) |" in text


@pytest.mark.tensorflow
def test_float_model_commands_write_records_their_schema_accepts(tiny_float_model, tmp_path):
    from tinyq.convert.ptq import quantize

    m = tiny_float_model
    check(quantize(m["model"], m["calib"]).to_json(), "quantize")
    out = tmp_path / "compare.json"
    assert main(["compare", str(m["model"]), "--calib", str(m["calib"]), "--data",
                 str(m["test"]), "--modes", "int8", "--json", str(out),
                 "--report", str(tmp_path / "compare.md")]) == 0
    check(json.loads(out.read_text()), "compare")
    assert "## Quantization modes" in (tmp_path / "compare.md").read_text()
    assert (tmp_path / "compare-accuracy.png").is_file()
    pytest.importorskip("tensorflow_model_optimization", reason="needs the [qat] extra")
    out = tmp_path / "qat.json"
    assert main(["qat", str(m["model"]), "--train", str(m["test"]), "--calib", str(m["calib"]),
                 "--epochs", "1", "--no-ptq", "-o", str(tmp_path / "q.tflite"),
                 "--json", str(out)]) == 0
    check(json.loads(out.read_text()), "qat")


# -- old records ---------------------------------------------------------------------

def test_upgrade_reads_an_old_inspect_record():
    old = {"model": {"path": "m.tflite", "sha256": "ab" * 32, "size_bytes": 10,
                     "num_subgraphs": 1},
           "runtime": "tflm", "inputs": [], "outputs": [], "macs": 5, "weights_bytes": 1,
           "activation_bytes": 2, "op_set": [{"type": "ADD", "version": 1}],
           "ops": [{"index": 0, "type": "ADD", "version": 1, "macs": 5, "weights_bytes": 1}],
           "arena_bytes": {"tflm": 16, "native": 8}, "arena_search": None,
           "unsupported": [], "warnings": [], "fit": None, "tinyq": "0.0.9"}
    new = upgrade(old)
    assert new["kind"] == "inspect" and new["schema_version"] == 1
    assert new["layers"][0]["op"] == "ADD" and new["op_set"] == [{"op": "ADD", "version": 1}]
    assert new["model"] == "m.tflite" and new["model_sha256"] == "ab" * 32
    assert old["ops"][0]["type"] == "ADD"                  # the input is left alone
    check(new, "inspect")


def test_upgrade_reads_old_validate_and_evaluate_records():
    assert upgrade({"kind": "validate", "version": 1, "device_accuracy": 1.0,
                    "device": "QEMU mps2-an386 (tcp:127.0.0.1:4711)"}) == {
        "kind": "validate", "schema_version": 2, "device_accuracy": 1.0,
        "device": "QEMU mps2-an386", "task": "classify"}     # version 1 was top-1 only
    assert upgrade({"latency": {}})["kind"] == "bench"         # before records had kinds
    assert upgrade({"kind": "evaluate", "runtime": "tflm"})["interpreter"] == "tflm"


def test_validate_resume_accepts_a_record_an_older_tinyq_wrote():
    from tinyq.measure.validation import resume_records

    old = {"kind": "validate", "version": 1, "model_id": "0123456789ab",
           "data_sha256": "d", "samples_requested": 2,
           "per_sample": [[0, 1, 1, 1, 0]]}
    done = resume_records(old, "0123456789ab" + "0" * 52, "d", 2)
    assert len(done) == 1
    with pytest.raises(UserInputError, match="not a tinyq validate record"):
        resume_records({**old, "version": 99}, "0123456789ab", "d", 2)


def test_device_name_drops_the_emulator_tcp_port():
    assert device_name("QEMU mps2-an386 (tcp:127.0.0.1:40123)") == "QEMU mps2-an386"
    assert device_name("/dev/ttyACM0") == "/dev/ttyACM0"


def test_report_refuses_to_compare_records_of_two_kinds(tmp_path, capsys):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(stamp("run", {"board": "x", "instructions": 5})))
    b.write_text(json.dumps(stamp("build", {"board": "x", "flash": {"total": 5}})))
    assert main(["report", str(a), str(b)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a is a run record, b is a build record" in err
    c = tmp_path / "c.json"
    c.write_text(json.dumps(stamp("run", {"board": "x", "instructions": 10})))
    assert main(["report", str(a), str(c)]) == 0
    assert "| instructions | 5 | 10 | 2.000 |" in capsys.readouterr().out


def test_generate_and_flash_results_are_records_too(shared_models, tmp_path):
    from tinyq.device.flashing import FlashResult
    from tinyq.firmware.codegen import generate

    model = shared_models / "tflm-examples" / "hello_world_int8.tflite"
    if not model.is_file():
        pytest.skip("tflm-examples/hello_world_int8.tflite missing from ../shared/models")
    project = generate(model, "mps2-an386", out_dir=tmp_path / "p")
    check(project.to_json(), "generate")
    result = FlashResult(board="nucleo-f446re", method="pyocd", firmware="app.elf",
                         commands=(("pyocd", "flash", "app.elf"),))
    check(result.to_json(), "flash")
