"""Peak memory and time of `interop.load_pretrained` against a naive load, on a LLaDA-format checkpoint written here.

    python benchmarks/bench_load.py              # ~0.8 GB float32 checkpoint in a temporary directory (~1 min)
    python benchmarks/bench_load.py --quick      # ~0.1 GB

Each load runs in a fresh process and reports its peak resident memory above what the process held before the load
(Linux /proc/self/status VmHWM after resetting it), every weight read once after the load, as a multiple of the
checkpoint's size. `load_pretrained` builds the model on the meta device and assigns the tensors as
it reads them (safetensors memory-mapped): one copy of the weights in the stored dtype, half of it in bfloat16. The
naive load (`safetensors.torch.load_file`, a model initialised on the CPU, `load_state_dict`) holds two copies.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOADS = {
    "load_pretrained (stored dtype)": "model, _, _ = load_pretrained(path)",
    "load_pretrained (bfloat16)": "model, _, _ = load_pretrained(path, dtype='bfloat16')",
    "load_pretrained (meta)": "model, _, _ = load_pretrained(path, device='meta')",
    "naive: load_file + init + load_state_dict": (
        "from safetensors.torch import load_file\n"
        "from llada_lightning.interop import llada\n"
        "from llada_lightning.models import build_model\n"
        "import json\n"
        "meta = json.loads((path / 'config.json').read_text())\n"
        "cfg = llada.model_config(meta, name='x')\n"
        "state = load_file(str(path / 'model.safetensors'))\n"
        "model = build_model(cfg, device='cpu')\n"
        "model.load_state_dict({p.target: p.take(state[p.source]) for p in llada.pieces(meta, cfg)})"
    ),
}
# peak resident memory of the load alone: /proc/self/clear_refs "5" resets VmHWM (Linux), then every weight is read
PROBE = """
import sys, time
from pathlib import Path
import torch
from llada_lightning.interop import load_pretrained
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
path = Path(sys.argv[1])
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS:")
start = time.perf_counter()
{load}
seconds = time.perf_counter() - start
if next(model.parameters()).device.type != "meta":
    total = sum(float(p.float().sum()) for p in model.parameters())
print(seconds, status("VmHWM:") - base)
"""


def write_checkpoint(out: Path, d_model: int, n_layers: int, vocab: int) -> int:
    """A random LLaDA-format checkpoint (this package's export layout); returns its size in bytes."""
    import torch

    from llada_lightning.config.schema import ModelConfig
    from llada_lightning.interop import llada
    from llada_lightning.interop.export import invert
    from llada_lightning.interop.weights import write_safetensors
    from llada_lightning.models import build_model

    cfg = ModelConfig(n_layers=n_layers, n_heads=d_model // 64, n_kv_heads=d_model // 64, d_model=d_model,
                      d_ff=4 * d_model, vocab_size=vocab, max_seq_len=2048)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg)
    config = llada.export_config(cfg, eos_id=0, init="gpt2", precision="fp32")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config))
    write_safetensors(out, invert(llada.pieces(config, cfg), model.state_dict(), cfg.embedding_rows))
    return (out / "model.safetensors").stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    d_model, n_layers = (512, 8) if args.quick else (1024, 16)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt"
        size = write_checkpoint(path, d_model, n_layers, vocab=32000)
        print(f"checkpoint: LLaDA format, d_model {d_model}, {n_layers} layers, {size / 2**30:.2f} GiB float32")
        print(f"{'load':<44} {'seconds':>8} {'peak MiB':>9} {'x size':>7}")
        for name, load in LOADS.items():
            code = PROBE.format(load=load)
            done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
            seconds, peak = (float(v) for v in done.stdout.split()[-2:])
            print(f"{name:<44} {seconds:>8.2f} {peak / 2**20:>9.0f} {peak / size:>7.2f}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
