"""The files and folders a command reads, for :func:`tinyq.fileio.check_output`.

Every command passes these with each output path, so no output lands on an input.
"""

from __future__ import annotations

#: argparse destinations that name files or folders a command reads.
INPUT_OPTIONS = ("model", "target", "firmware", "board", "data", "calib", "train", "val",
                 "reference", "input", "resume", "records", "tflm_dir")


def inputs_of(args) -> tuple[str, ...]:
    """The paths among ``args``' input options (lists flattened, unset ones dropped).

    ``validate --resume R --json R`` is the one input replaced by design: the record it
    continues is rewritten whole, with the new samples added.
    """
    found: list[str] = []
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is None or str(item) == "":
                continue
            if name == "resume" and str(item) == str(getattr(args, "json", None)):
                continue
            found.append(str(item))
    return tuple(found)
