"""The bundle's models as artifacts on this machine: found (or built), digested, turned into the
configuration of a replica.

A model's ``artifact`` (:class:`policies.bundle.Artifact`) names where its files come from:

- ``{build: corridor-tiny}``: a deterministic offline build (:mod:`serving.models.demo`),
  made into ``$CORRIDOR_MODELS/<model id>`` on first use;
- ``{path: DIR}``: a local Hugging Face-format directory, absolute or relative to
  ``$CORRIDOR_MODELS`` (default ``$CORRIDOR_HOME/models``);
- ``{package: PKG, path: DIR}``: a directory inside an installed Python package;
- no ``artifact``: ``$CORRIDOR_MODELS/<model id>``.

Whatever cannot be found or read is an :class:`ArtifactError` naming the model and the path.
On a real cluster the directory must exist at the same path on every node.

>>> engine_arguments({"max_model_len": 512, "enforce_eager": True, "dtype": "float32"})
['--max-model-len', '512', '--enforce-eager', '--dtype', 'float32']
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.bundle import Model
from serving.models.artifacts import artifact_digest
from serving.models.demo import DEMO_BUILDS, build_demo_model

#: vLLM arguments Corridor sets itself; a deployment may not pass them.
RESERVED_ARGUMENTS = frozenset({"model", "served-model-name", "host", "port", "tensor-parallel-size",
                                "distributed-executor-backend", "runner", "api-key"})
_ARGUMENT = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")


class ArtifactError(ValueError):
    """A model artifact that cannot be found, built or read; the message names model and path."""

    def __init__(self, model: str, path: str, problem: str) -> None:
        self.model, self.path, self.problem = model, path, problem
        super().__init__(f"model {model}: artifact {path}: {problem}")


@dataclass(frozen=True)
class Refusal:
    """A model not served: why, and its artifact's digest when that was the problem."""

    model: str
    message: str
    mismatched_digest: str | None


@dataclass(frozen=True)
class ResolvedModel:
    """A model's artifact on this machine."""

    id: str
    task: str
    directory: Path
    digest: str


def engine_arguments(values: Mapping[str, Any]) -> list[str]:
    """vLLM server arguments from a mapping: ``max_model_len: 512`` → ``--max-model-len 512``;
    ``true`` → the bare flag; ``false`` → left out; lists and mappings → JSON.
    A reserved or malformed name is a :class:`ValueError` naming it."""
    out: list[str] = []
    for name, value in values.items():
        if not isinstance(name, str) or not _ARGUMENT.match(name):
            raise ValueError(f"engine_args.{name}: want a vLLM argument name such as max_model_len")
        flag = name.replace("_", "-")
        if flag in RESERVED_ARGUMENTS:
            raise ValueError(f"engine_args.{name}: set by Corridor itself (model, host, port, "
                             f"tensor parallelism); leave it out")
        if value is False or value is None:
            continue
        out.append(f"--{flag}")
        if value is not True:
            out.append(json.dumps(value) if isinstance(value, (list, dict)) else str(value))
    return out


class ModelCatalog:
    """Resolves the bundle's models to artifacts and replica configurations; thread-safe.

    ``models_dir`` is ``$CORRIDOR_MODELS``; ``defaults`` are replica configuration keys
    (:class:`serving.replica.actor.VLLMReplica`) every replica gets, e.g. ``host``, ``env``,
    ``ready_timeout_s``, ``log_dir``; ``max_model_len`` is passed to chat models unless a
    deployment's engine arguments set it. ``digests`` (model id → artifact digest) fills as
    models are resolved; the gateway shares the dict to put the digest in request workloads.
    """

    def __init__(self, models_dir: Path, *, defaults: Mapping[str, Any] | None = None,
                 max_model_len: int | None = 512) -> None:
        self.models_dir = Path(models_dir)
        self.defaults = dict(defaults or {})
        self.max_model_len = max_model_len
        self.digests: dict[str, str] = {}
        self._resolved: dict[tuple[str, str], ResolvedModel] = {}
        self._lock = threading.Lock()

    def directory(self, model: Model) -> Path:
        """Where ``model``'s files are (or will be built), without reading them."""
        artifact = model.artifact
        if artifact is None:
            return self.models_dir / model.id
        if artifact.build is not None:
            return self.models_dir / model.id
        path = Path(artifact.path or "")
        if artifact.package is not None:
            spec = importlib.util.find_spec(artifact.package)
            if spec is None or not spec.submodule_search_locations:
                raise ArtifactError(model.id, f"package {artifact.package}",
                                    "no such Python package is installed")
            return Path(next(iter(spec.submodule_search_locations))) / path
        return path if path.is_absolute() else self.models_dir / path

    def resolve(self, model: Model) -> ResolvedModel:
        """Find (or build) ``model``'s artifact and digest it; cached per model and artifact."""
        key = (model.id, model.artifact.model_dump_json() if model.artifact else "")
        with self._lock:
            found = self._resolved.get(key)
            if found is not None:
                return found
            directory = self.directory(model)
            build = model.artifact.build if model.artifact else None
            if build is not None:
                if build not in DEMO_BUILDS:
                    raise ArtifactError(model.id, f"build {build}",
                                        f"unknown build; known: {', '.join(DEMO_BUILDS)}")
                build_demo_model(directory, build)
            if not directory.is_dir():
                raise ArtifactError(model.id, str(directory), "not a directory on this machine")
            if not (directory / "config.json").is_file():
                raise ArtifactError(model.id, str(directory),
                                    "no config.json: not a Hugging Face-format model directory")
            try:
                digest = artifact_digest(directory)
            except OSError as exc:
                raise ArtifactError(model.id, str(directory), f"cannot be read: {exc}") from exc
            found = self._resolved[key] = ResolvedModel(model.id, model.task, directory, digest)
            self.digests[model.id] = digest
            return found

    def replica_config(self, model: Model, engine_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The replica actor's ``config`` for ``model`` (``DeploymentSpec.replica_config``)."""
        resolved = self.resolve(model)
        args = dict(engine_args or {})
        if model.task == "chat" and self.max_model_len and "max_model_len" not in args:
            args = {"max_model_len": self.max_model_len, **args}
        return {**self.defaults, "model_path": str(resolved.directory), "task": model.task,
                "expected_digest": model.digest, "engine_args": engine_arguments(args)}

    def prepare(self, models: Iterable[Model]) -> tuple[dict[str, dict[str, Any]], list[Refusal]]:
        """Replica configurations of ``models`` (``corridor up``), and why each other one is left
        out: its artifact cannot be found, or its digest does not match the pinned digest."""
        configs: dict[str, dict[str, Any]] = {}
        refused: list[Refusal] = []
        for model in models:
            try:
                config = self.replica_config(model)
            except ArtifactError as exc:
                refused.append(Refusal(model.id, f"{exc}; not started", None))
                continue
            digest = self.digests[model.id]
            if model.digest and model.digest != digest:
                refused.append(Refusal(model.id, f"model {model.id} artifact digest {digest} does "
                                       f"not match the pinned {model.digest}; not started", digest))
                continue
            configs[model.id] = config
        return configs, refused
