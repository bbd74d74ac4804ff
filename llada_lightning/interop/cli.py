"""`llada export RUN_DIR OUT_DIR [--format llada|llama]` (registered into the main parser by `register`).

No torch at module level: `llada --help` stays fast.
"""

from __future__ import annotations

import argparse


def _cmd_export(args: argparse.Namespace) -> int:
    from llada_lightning.interop.export import export_run

    out = export_run(args.run_dir, args.out_dir, format=args.format, dtype=args.dtype, overwrite=args.overwrite)
    print(f"exported {args.run_dir} -> {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `export` to the `llada` parser."""
    p = sub.add_parser(
        "export",
        help="write a trained run as a Hugging Face model directory (LLaDA's format or Llama's)",
        description="Writes config.json, safetensors, tokenizer files and a README model card. A LLaDA run is "
        "written in LLaDA-8B's format (load it back with llada_lightning.interop.load_pretrained, or with "
        "transformers and trust_remote_code=True); an ARM run in transformers' Llama format "
        "(AutoModelForCausalLM.from_pretrained(OUT_DIR)). OUT_DIR is written whole or not at all.",
    )
    p.add_argument("run_dir", help="a run directory written by `llada train` or `llada sft`")
    p.add_argument("out_dir", help="the directory to create (refused when it exists and is not empty)")
    p.add_argument(
        "--format",
        choices=["llada", "llama"],
        default=None,
        help="llada (LLaDA runs) or llama (ARM runs); default: the run's",
    )
    p.add_argument("--dtype", default=None, help="dtype of the saved weights: float32 (as trained), bfloat16, float16")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    p.set_defaults(func=_cmd_export)
