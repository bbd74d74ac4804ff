"""`llada sample` and `llada eval` (registered into the main parser by `register`).

No torch at module level: `llada config` and `llada --help` stay fast.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from llada_lightning.config.errors import ConfigError

if TYPE_CHECKING:
    from llada_lightning.inference.decoders import Decoder
    from llada_lightning.inference.loading import LoadedRun


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: must be >= 1")
        import torch

        torch.set_num_threads(threads)


def _refuse_options_that_do_not_apply(args: argparse.Namespace, decoder: Decoder) -> None:
    """ConfigError naming every given flag that the run's decoder does not read (None/False = not given)."""
    wrong = decoder.options_that_do_not_apply
    given = [flag for key, flag in wrong.items() if getattr(args, key) not in (None, False)]
    if given:
        use = "/".join(decoder.options.values())
        raise ConfigError(f"{' '.join(given)} does not apply to {args.run_dir} ({decoder.label} run); use {use}")


def _check_chat_flags(args: argparse.Namespace) -> None:
    """ConfigError (before the run is loaded) for --prompt/--system/--no-stop-at-eos used without/with --chat."""
    if args.prompt is None and not args.chat:
        raise ConfigError("--prompt is required (the text to continue, may be empty); or pass --chat to chat on stdin")
    if args.system is not None and not args.chat:
        raise ConfigError("--system applies to --chat only; pass --chat, or put the text into --prompt")
    if args.chat and args.no_stop_at_eos:
        raise ConfigError("--no-stop-at-eos does not apply to --chat (an answer ends at EOS or <|eot_id|>); drop it")


def _cmd_sample(args: argparse.Namespace) -> int:
    from llada_lightning.inference.generation import sample_text
    from llada_lightning.inference.loading import load_run

    _check_chat_flags(args)
    _set_threads(args.threads)
    loaded = load_run(args.run_dir, device=args.device)
    _refuse_options_that_do_not_apply(args, loaded.decoder)
    kwargs = dict(
        gen_length=args.gen_length,
        steps=args.steps,
        block_length=args.block_length,
        temperature=args.temperature,
        cfg_scale=args.cfg_scale or 0.0,
        remasking=args.remasking or "low_confidence",
        prompt_cache=bool(args.prompt_cache),
        threshold=args.threshold,
        cache=args.cache,
        top_k=args.top_k,
        top_p=args.top_p,
        logits_eos_inf=bool(args.logits_eos_inf),
        confidence_eos_eot_inf=bool(args.confidence_eos_eot_inf),
        seed=args.seed,
    )
    if args.chat:
        return _chat(loaded, args, kwargs)
    text = sample_text(loaded, args.prompt, stop_at_eos=not args.no_stop_at_eos, **kwargs)
    print(text if not args.completion_only else text[len(args.prompt) :])
    return 0


def _chat(loaded: LoadedRun, args: argparse.Namespace, kwargs: dict[str, Any]) -> int:
    """--chat: one answer to --prompt, or a conversation on stdin (one user line per turn; EOF or an empty line
    ends it) whose history is kept, its oldest turns dropped when the prompt would not fit the context."""
    import sys

    from llada_lightning.inference.generation import chat_reply, fit_history

    loaded.chat_template()  # a run that was not fine-tuned fails here, before reading stdin
    system = [] if args.system is None else [{"role": "system", "content": args.system}]
    if args.prompt is not None:
        print(chat_reply(loaded, [*system, {"role": "user", "content": args.prompt}], **kwargs))
        return 0
    history: list[dict[str, str]] = []
    told = False
    while True:
        if sys.stdin.isatty():
            print("user: ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        text = line.rstrip("\r\n")
        if not text.strip():
            return 0
        messages, dropped = fit_history(loaded, [*system, *history, {"role": "user", "content": text}], args.gen_length)
        if dropped and not told:
            print(
                f"llada: dropped the oldest turns of the conversation to fit model.max_seq_len={loaded.max_seq_len} "
                f"with --gen-length {args.gen_length}",
                file=sys.stderr,
            )
            told = True
        answer = chat_reply(loaded, messages, **kwargs)
        print(f"assistant: {answer}", flush=True)
        history = [*messages[len(system) :], {"role": "assistant", "content": answer}]


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from llada_lightning.inference.loading import load_run
    from llada_lightning.inference.multiple_choice import evaluate_multiple_choice, format_result, read_task

    read_task(args.task)  # a malformed task fails before the model is loaded
    _set_threads(args.threads)
    loaded = load_run(args.run_dir, device=args.device)
    result = evaluate_multiple_choice(
        loaded, args.task, mc_num=args.mc_num, seed=args.seed, limit=args.limit, max_length=args.max_length
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_result(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the inference subcommands to the `llada` parser."""
    p = sub.add_parser(
        "sample",
        help="generate text from a trained run (LLaDA: reverse diffusion; ARM: left to right)",
        description="Print the prompt followed by the generated text (cut at the first end-of-text token). "
        "The sampler follows the run's objective: LLaDA runs take --steps/--block-length/--cfg-scale/--remasking/"
        "--threshold/--cache/--prompt-cache/--logits-eos-inf/--confidence-eos-eot-inf, ARM runs --top-k/--top-p; "
        "--gen-length (alias --max-new-tokens), --temperature and --seed apply to both. With --chat (a run "
        "fine-tuned by `llada sft`) the prompt is a user turn of the run's chat template and only the answer is "
        "printed; without --prompt, each line of stdin is a user turn of one conversation (EOF or an empty line "
        "ends it).",
    )
    p.add_argument(
        "run_dir", help="a run directory written by `llada train`, or a Hugging Face model directory (llada export)"
    )
    p.add_argument("--prompt", default=None, help="the text to continue (may be empty); required without --chat")
    p.add_argument(
        "--chat",
        action="store_true",
        help="chat with a run fine-tuned by `llada sft`: --prompt is one user turn (print only the answer); "
        "without --prompt, read user turns from stdin and print each answer. LLaDA decodes semi-autoregressively "
        "in blocks of --block-length (default 32 when it divides --gen-length), as the paper advises for instruct "
        "models",
    )
    p.add_argument("--system", default=None, help="--chat: a system message before the conversation")
    p.add_argument(
        "--gen-length", "--max-new-tokens", dest="gen_length", type=int, default=64, help="tokens to generate (64)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="LLaDA: denoising steps (default and maximum: --gen-length; with --threshold: the most steps, "
        "default: as many as the threshold needs)",
    )
    p.add_argument(
        "--block-length",
        type=int,
        default=None,
        help="LLaDA: semi-autoregressive block (default: 32 if it divides --gen-length, else --gen-length)",
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--cfg-scale", type=float, default=None, help="LLaDA: classifier-free guidance scale (0)")
    p.add_argument("--remasking", choices=["low_confidence", "random"], default=None, help="LLaDA (low_confidence)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="TAU",
        help="LLaDA: Fast-dLLM parallel decoding: each step commits every token of the block at least TAU confident "
        "(at least one; 0.9 in the paper), so fewer steps; --steps may be omitted",
    )
    p.add_argument(
        "--cache",
        choices=["prefix", "dual"],
        default=None,
        help="LLaDA: Fast-dLLM KV cache within a block: prefix (reuse the prompt's and finished blocks' keys/values) "
        "or dual (also the masked suffix's; run only the block); approximate, faster",
    )
    p.add_argument(
        "--prompt-cache",
        action="store_true",
        default=None,
        help="LLaDA: the same as --cache prefix",
    )
    p.add_argument(
        "--logits-eos-inf",
        action="store_true",
        default=None,
        help="LLaDA: never sample EOS (generate.py logits_eos_inf; the answer fills --gen-length)",
    )
    p.add_argument(
        "--confidence-eos-eot-inf",
        action="store_true",
        default=None,
        help="LLaDA: commit EOS and <|eot_id|> last in each block (generate.py confidence_eos_eot_inf; off by "
        "default, also with --chat)",
    )
    p.add_argument("--top-k", type=int, default=None, help="ARM: sample among the k most probable tokens")
    p.add_argument("--top-p", type=float, default=None, help="ARM: nucleus sampling mass")
    p.add_argument("--seed", type=int, default=0, help="seeds all sampling randomness (0)")
    p.add_argument("--completion-only", action="store_true", help="print only the generated text, not the prompt")
    p.add_argument("--no-stop-at-eos", action="store_true", help="keep the text after the first end-of-text token")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (tiny models: 1 is often fastest)")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser(
        "eval",
        help="multiple-choice accuracy on a local JSONL task ({context, choices, gold} per line)",
        description="Score each choice by log p(choice | context) (LLaDA: Monte Carlo lower bound with --mc-num "
        "draws, seeded; ARM: exact) and print the accuracy, unnormalised and per answer token.",
    )
    p.add_argument(
        "run_dir", help="a run directory written by `llada train`, or a Hugging Face model directory (llada export)"
    )
    p.add_argument("--task", required=True, help="JSONL file: one {context, choices, gold} object per line")
    p.add_argument("--mc-num", type=int, default=32, help="LLaDA: Monte Carlo draws per choice (32)")
    p.add_argument("--seed", type=int, default=0, help="LLaDA: seed of the Monte Carlo draws (0)")
    p.add_argument("--limit", type=int, default=None, help="only the first N examples")
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="left-truncate contexts to fit N tokens (at most model.max_seq_len)",
    )
    p.add_argument("--json", action="store_true", help="print the full result (per example too) as JSON")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (tiny models: 1 is often fastest)")
    p.set_defaults(func=_cmd_eval)
