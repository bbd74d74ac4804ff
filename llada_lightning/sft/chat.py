"""Chat templates: conversations to token ids and back, and the split of a dialogue into one example per answer.

`llada` (the default) is LLaDA-8B-Instruct's layout (its tokenizer_config.json `chat_template`, Llama 3's):

    <BOS><|start_header_id|>user<|end_header_id|>\\n\\n{content}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n

then the answer `{content}<EOS>`, right-padded with EOS (LLaDA GUIDELINES.md, "SFT"). Earlier assistant turns of a
multi-turn prompt end with <|eot_id|> like every other turn. The markers are special tokens: a tokenizer without
them gets them added (`ensure_special_tokens`; the model's vocabulary grows by as many rows, sft/parent.py), and
BOS falls back to the document separator EOS, which precedes every document in pre-training.

Any other template is a Jinja chat template as Hugging Face tokenizers ship it (`chat_template` in
tokenizer_config.json, rendered as transformers' `apply_chat_template` does: a sandboxed environment with
trim_blocks/lstrip_blocks and `messages`, `add_generation_prompt`, `bos_token`, `eos_token`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer

from llada_lightning.config.errors import ConfigError

ROLES = ("system", "user", "assistant")
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
LLADA_BOS = "<|startoftext|>"
LLADA_MARKERS = (START_HEADER, END_HEADER, EOT)  # LLaDA-8B-Instruct's special tokens (tokenizer_config.json)
TEMPLATE_CHOICES = "llada, tokenizer (the chat_template of the tokenizer's tokenizer_config.json) or a file"

Message = dict[str, str]


def split_turns(messages: list[Message]) -> list[tuple[list[Message], str]]:
    """One (prompt messages, answer) per assistant turn, the earlier turns as its prompt (LLaDA GUIDELINES.md:
    multi-turn dialogues are split into single-turn pairs with the history as prompt). A turn needs a user
    message before it."""
    out = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant" and any(m["role"] == "user" for m in messages[:i]):
            out.append((messages[:i], message["content"]))
    return out


def ensure_special_tokens(tokenizer: Tokenizer) -> list[str]:
    """Add LLaDA's markers the tokenizer lacks as special tokens (new ids at its end); returns those added."""
    missing = [t for t in LLADA_MARKERS if tokenizer.token_to_id(t) is None]
    if missing:
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    return missing


@dataclass
class ChatTemplate:
    """Encodes prompts (history + the assistant header) and answers (content + EOS) with one tokenizer."""

    tokenizer: Tokenizer
    eos_id: int
    kind: str = "llada"  # llada | jinja
    source: str | None = None  # jinja: the template text

    @property
    def eos_token(self) -> str:
        return str(self.tokenizer.id_to_token(self.eos_id))

    @property
    def bos_token(self) -> str:
        return LLADA_BOS if self.tokenizer.token_to_id(LLADA_BOS) is not None else self.eos_token

    # -- text -------------------------------------------------------------------------------------------
    def prompt_text(self, messages: list[Message]) -> str:
        """The conversation so far, ending with the assistant's header (the text the answer follows)."""
        if self.kind == "llada":
            return self._llada(messages) + f"{START_HEADER}assistant{END_HEADER}\n\n"
        return self._jinja(messages, add_generation_prompt=True)

    def answer_text(self, messages: list[Message], answer: str) -> str:
        """The text of `answer` after `prompt_text(messages)`, its end marker included (llada: EOS)."""
        if self.kind == "llada":
            return answer + self.eos_token
        prompt = self._jinja(messages, add_generation_prompt=True)
        full = self._jinja([*messages, {"role": "assistant", "content": answer}], add_generation_prompt=False)
        if not full.startswith(prompt):
            raise ConfigError(
                "the chat template renders the conversation so that it does not start with the rendered prompt; "
                "use sft.chat_template=llada or a template whose generation prompt is a prefix of the answer"
            )
        text = full[len(prompt) :]
        return text if text.endswith(self.eos_token) else text + self.eos_token

    def render(self, messages: list[Message]) -> str:
        """A whole conversation as text (llada: every turn closed by <|eot_id|>)."""
        if self.kind == "llada":
            return self._llada(messages)
        return self._jinja(messages, add_generation_prompt=False)

    def _llada(self, messages: list[Message]) -> str:
        # LLaDA-8B-Instruct chat_template: bos + per turn header(role) + "\n\n" + content + <|eot_id|>
        turns = "".join(f"{START_HEADER}{m['role']}{END_HEADER}\n\n{m['content']}{EOT}" for m in messages)
        return self.bos_token + turns

    def _jinja(self, messages: list[Message], *, add_generation_prompt: bool) -> str:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        try:
            template = env.from_string(self.source or "")
            return template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except Exception as exc:  # jinja's TemplateError and the template's own raise_exception
            raise ConfigError(f"the chat template fails to render ({exc}); fix sft.chat_template") from exc

    # -- ids ----------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def encode_prompt(self, messages: list[Message]) -> list[int]:
        return self.encode(self.prompt_text(messages))

    def encode_answer(self, messages: list[Message], answer: str) -> list[int]:
        """The answer's ids, ending with EOS (the padding EOS are added per batch)."""
        ids = self.encode(self.answer_text(messages, answer))
        return ids if ids and ids[-1] == self.eos_id else [*ids, self.eos_id]

    def parse(self, text: str) -> list[Message]:
        """The messages of a `render`ed llada conversation (the inverse of `render`)."""
        if self.kind != "llada":
            raise ValueError("parse() reads the llada layout only")
        body = text.removeprefix(self.bos_token)
        messages = []
        for turn in body.split(EOT):
            if not turn:
                continue
            if not turn.startswith(START_HEADER) or END_HEADER not in turn:
                raise ValueError(f"not a turn of the llada layout: {turn[:60]!r}")
            role, _, content = turn.removeprefix(START_HEADER).partition(END_HEADER)
            messages.append({"role": role, "content": content.removeprefix("\n\n")})
        return messages


def tokenizer_config_home(data_tokenizer: str, fallback: Path | None) -> Path | None:
    """Where `sft.chat_template=tokenizer` looks for tokenizer_config.json: beside the run's own tokenizer file
    (`data.tokenizer`, e.g. a Hugging Face model directory's tokenizer.json), else beside `fallback`."""
    if data_tokenizer != "bpe" and Path(data_tokenizer).expanduser().is_file():
        return Path(data_tokenizer).expanduser()
    return fallback


def load_template(choice: str, tokenizer: Tokenizer, eos_id: int, tokenizer_path: Path | None = None) -> ChatTemplate:
    """`sft.chat_template`: llada; tokenizer (the `chat_template` of tokenizer_config.json beside the tokenizer);
    or a file (a Jinja template, or a tokenizer_config.json holding one)."""
    if choice == "llada":
        ensure_special_tokens(tokenizer)
        return ChatTemplate(tokenizer, eos_id, "llada")
    if choice == "tokenizer":
        if tokenizer_path is None:
            raise ConfigError(f"sft.chat_template=tokenizer needs a tokenizer file; use one of {TEMPLATE_CHOICES}")
        path = tokenizer_path.parent / "tokenizer_config.json"
    else:
        path = Path(choice).expanduser()
    if not path.is_file():
        raise ConfigError(f"sft.chat_template={choice!r}: no such file {path}; use one of {TEMPLATE_CHOICES}")
    text = path.read_text(encoding="utf-8")
    source = _template_of_config(path, text) if path.suffix == ".json" else text
    return ChatTemplate(tokenizer, eos_id, "jinja", source)


def _template_of_config(path: Path, text: str) -> str:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix sft.chat_template") from exc
    template = data.get("chat_template") if isinstance(data, dict) else None
    if isinstance(template, list):  # transformers' named templates: [{"name": "default", "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str):
        raise ConfigError(f"{path} has no chat_template string; set sft.chat_template=llada or to a template file")
    return template
