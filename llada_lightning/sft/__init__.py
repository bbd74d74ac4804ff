"""Supervised fine-tuning (LLaDA's second stage): instruction data, chat templates, the parent run, the data module.

The SFT losses live with the other objectives (`llada_lightning.objectives.sft`).
"""

from __future__ import annotations

from llada_lightning.sft.chat import ChatTemplate, load_template, split_turns
from llada_lightning.sft.instructions import instruction_set

__all__ = ["ChatTemplate", "instruction_set", "load_template", "split_turns"]
