"""Checkpoints in and out of Hugging Face: LLaDA's format, transformers' Llama format and SMDM's releases.

model, tokenizer, info = load_pretrained("path/to/LLaDA-8B-Base", dtype=torch.bfloat16, device="cuda")
export_run("runs/llada-cpu-1m-abc", "out/", format="llada")      # or `llada export RUN_DIR OUT_DIR`
"""

from llada_lightning.interop.export import export_run
from llada_lightning.interop.pretrained import PretrainedInfo, detect_format, load_pretrained

__all__ = ["PretrainedInfo", "detect_format", "export_run", "load_pretrained"]
