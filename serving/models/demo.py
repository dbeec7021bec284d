"""The offline demo chat models (``corridor-tiny``, ``corridor-small``), built locally and
deterministically.

No model hub is reachable from a sovereign installation, so the demo model is
made here: a byte-level BPE tokenizer trained with ``tokenizers`` on the corpus
shipped beside this module, a tiny Llama-architecture model with random
weights from a fixed seed, a chat template, all saved with
``save_pretrained`` into a Hugging Face-format directory. vLLM loads it like
any local model directory, so serving a real model is a configuration change.

Its answers are noise: it exists to exercise placement, routing, streaming and
the ledger end to end, not to be read. ``corridor-small`` is another build of the
same recipe (another seed, one more layer): a bundle names either as
``artifact: {build: <name>}`` and nothing else in Corridor knows them apart.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_ID = "corridor-tiny"
CORPUS = Path(__file__).with_name("corpus.txt")
SEED = 20261128

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

#: Shapes checked on the CPU backend: its attention rejects head_dim 16, takes 64.
ARCHITECTURE = {
    "vocab_size": 512,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 2048,
}


@dataclass(frozen=True)
class DemoBuild:
    """One deterministic build: the weights' seed and the architecture's changes to the base."""

    seed: int
    architecture: dict[str, Any]


#: The builds a bundle may name as ``artifact: {build: <name>}``.
DEMO_BUILDS: dict[str, DemoBuild] = {
    MODEL_ID: DemoBuild(SEED, ARCHITECTURE),
    "corridor-small": DemoBuild(20261207, {**ARCHITECTURE, "num_hidden_layers": 3}),
}


def build_demo_model(target: Path, name: str = MODEL_ID) -> Path:
    """Build the demo model ``name`` into ``target`` unless it is already there; return ``target``.

    The build writes into a temporary sibling directory and renames it into
    place, so an interrupted build never leaves a half-written model behind.
    """
    build = DEMO_BUILDS.get(name)
    if build is None:
        raise KeyError(f"no demo build {name!r}; known: {', '.join(DEMO_BUILDS)}")
    target = Path(target)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _write_tokenizer(staging)
        _write_model(staging, build)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=ARCHITECTURE["vocab_size"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.read_text("utf-8").splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="</s>", model_max_length=ARCHITECTURE["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)


def _write_model(directory: Path, build: DemoBuild) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = json.loads((directory / "tokenizer.json").read_text("utf-8"))["model"]["vocab"]
    config = LlamaConfig(
        **build.architecture,
        bos_token_id=tokens["<s>"],
        eos_token_id=tokens["</s>"],
        pad_token_id=tokens["</s>"],
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    torch.manual_seed(build.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.do_sample = False
    model.save_pretrained(directory, safe_serialization=True)
