"""Batch throughput: chat requests through Corridor's Batch API beside vLLM's own offline batch.

The same requests (the demo model, greedy, ``max_tokens`` tokens each with
``ignore_eos`` so every line generates exactly that many) run three ways, on
the same engine settings (``max_model_len`` 512, ``max_num_seqs`` 256,
``max_num_batched_tokens`` 4096, ``VLLM_CPU_KVCACHE_SPACE=1``):

* **vLLM offline**: ``LLM.generate`` on the chat-templated prompts, in this
  process (templating included in the time); the baseline of the goal;
* **vLLM run_batch**: vLLM's own OpenAI batch runner in a process of its own:
  the same JSONL lines through vLLM's OpenAI serving code, in process, no
  HTTP. It shows what OpenAI-format answers cost inside vLLM itself;
* **Corridor**: a vLLM OpenAI server started as a replica starts it (engine
  statistics on, for the router's load scores), behind the gateway with its
  batch service in a process of its own; the openai SDK uploads the file and
  creates the batch, and the time runs from ``batches.create`` to
  ``completed`` (validation, dispatch through the rulebook's routing, lines sent
  in bulk, durable answers, output file).

For this run the tenant's batch quota is 256 lines in flight (a bundle
written for the run; the default bundle gives ``fr-interior`` 8) and a
replica takes up to 256 batch lines, since the batch has the replica to
itself. The three engines stay up; rounds alternate between them, and the
best round of each counts (these machines are shared and noisy). Everything
shares this machine's cores, so read the ratios. Goal: Corridor >= 0.8 of
vLLM offline.

Run: python benchmarks/batch_bench.py [--lines N] [--max-tokens N] [--rounds R]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving.loopback import free_port, wait_http  # noqa: E402

MODEL = "corridor-tiny"
TENANT = "fr-interior"
ENGINE = {"max_model_len": 512, "max_num_seqs": 256, "max_num_batched_tokens": 4096}
BATCH_SLOTS = 256
#: Between phases: an engine that just worked keeps its workers spinning for about a second.
PAUSE_S = 3.0






def conversations(lines: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Résumez le dossier {n} de la préfecture en trois phrases."}]
            for n in range(lines)]


def write_bundle(target: Path) -> Path:
    """The default bundle with the tenant's batch quota raised to the replica's batch slots."""
    import yaml

    from policies import default_bundle_path

    bundle = yaml.safe_load(default_bundle_path().read_text("utf-8"))
    for tenant in bundle["tenants"]:
        if tenant["id"] == TENANT:
            tenant["quotas"]["batch_concurrency"] = BATCH_SLOTS
    target.write_text(yaml.safe_dump(bundle, allow_unicode=True), "utf-8")
    return target


def run_gateway(upstream: str, port: int, home: str, keys_path: str, bundle: str,
                bulk_lines: int | None = None) -> None:
    """Child process: the gateway and its batch service in front of one fr-paris replica."""
    import uvicorn

    from policies import Policy
    from scheduler.ledger import Ledger
    from serving.batch import BatchService, BatchSettings, ExecutionSettings
    from serving.gateway import Authenticator, Gateway, KeyStore, create_app
    from serving.routing import Endpoint, Router, StaticEndpoints

    policy = Policy.load(bundle)
    endpoints = StaticEndpoints([Endpoint("chat-fr-r1", MODEL, "fr-paris", "FR", "node-bench", upstream)])
    settings = BatchSettings(execution=ExecutionSettings(replica_batch_slots=BATCH_SLOTS,
                                                         replica_slots=2 * BATCH_SLOTS,
                                                         **({"bulk_lines": bulk_lines} if bulk_lines else {})))
    gateway = Gateway(policy=policy, ledger=Ledger.open(Path(home) / "ledger"),
                      auth=Authenticator(KeyStore(Path(keys_path))), router=Router(policy, endpoints),
                      batches=BatchService.open(Path(home) / "state", settings=settings))
    uvicorn.run(create_app(gateway), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools")


def start_server(model_path: Path, port: int, log: Path) -> subprocess.Popen:
    """The vLLM OpenAI server, with the arguments a replica gives it plus the shared engine settings."""
    from serving.replica.actor import OFFLINE_ENV

    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_path),
               "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", str(ENGINE["max_model_len"]),
               "--max-num-seqs", str(ENGINE["max_num_seqs"]),
               "--max-num-batched-tokens", str(ENGINE["max_num_batched_tokens"])]
    env = {**os.environ, **OFFLINE_ENV, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOG_STATS_INTERVAL": "60"}
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def batch_lines(lines: int, max_tokens: int, tag: str) -> str:
    """The JSONL input: one OpenAI chat request per conversation."""
    return "\n".join(json.dumps({
        "custom_id": f"{tag}-{n}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": c, "max_tokens": max_tokens, "temperature": 0.0,
                 "ignore_eos": True}}) for n, c in enumerate(conversations(lines))) + "\n"


def run_batch_worker(connection, model_path: str, work: str) -> None:
    """Child process: vLLM's OpenAI batch runner on one engine; runs an input file per message."""
    import asyncio

    from serving.replica.actor import OFFLINE_ENV

    os.environ.update({**OFFLINE_ENV, "VLLM_CPU_KVCACHE_SPACE": "1"})
    from vllm.entrypoints.launchers import run_batch as vllm_run_batch
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
    from vllm.usage.usage_lib import UsageContext

    sys.argv = ["run_batch", "-i", "-", "-o", str(Path(work) / "run_batch.out.jsonl"),
                "--model", model_path, "--served-model-name", MODEL, "--disable-log-stats",
                *(f"--{k.replace('_', '-')}={v}" for k, v in ENGINE.items())]
    args = vllm_run_batch.parse_args()

    async def serve() -> None:
        async with build_async_engine_client(args, usage_context=UsageContext.OPENAI_BATCH_RUNNER) as engine:
            connection.send("ready")
            while (path := await asyncio.to_thread(connection.recv)) is not None:
                args.input_file = path
                started = time.perf_counter()
                await vllm_run_batch.run_batch(engine, args)
                elapsed = time.perf_counter() - started
                with open(args.output_file, encoding="utf-8") as handle:
                    tokens = sum(json.loads(line)["response"]["body"]["usage"]["completion_tokens"]
                                 for line in handle)
                connection.send((elapsed, tokens))

    asyncio.run(serve())


def offline_round(llm, lines: int, max_tokens: int) -> tuple[float, int]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    started = time.perf_counter()
    tokenizer = llm.get_tokenizer()
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
               for c in conversations(lines)]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - started
    return elapsed, sum(len(o.outputs[0].token_ids) for o in outputs)


def receive(connection, process, timeout: float):
    """The worker's next message; an error if it exits or stays silent for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not connection.poll(1.0):
        if not process.is_alive():
            raise RuntimeError(f"vLLM run_batch worker exited with code {process.exitcode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"vLLM run_batch worker silent for {timeout:.0f} s")
    return connection.recv()


def run_batch_round(connection, runner, work: Path, lines: int, max_tokens: int,
                    tag: str) -> tuple[float, int]:
    path = work / f"{tag}.jsonl"
    path.write_text(batch_lines(lines, max_tokens, tag), "utf-8")
    connection.send(str(path))
    return receive(connection, runner, 600)


def corridor_round(client, lines: int, max_tokens: int, tag: str) -> tuple[float, int]:
    body = batch_lines(lines, max_tokens, tag)
    source = client.files.create(file=(f"{tag}.jsonl", io.BytesIO(body.encode())), purpose="batch")
    started = time.perf_counter()
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    elapsed = time.perf_counter() - started
    if batch.status != "completed" or batch.request_counts.completed != lines:
        raise RuntimeError(f"batch ended {batch.status}: {batch.request_counts}, {batch.errors}")
    outputs = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert len({o["custom_id"] for o in outputs}) == lines
    return elapsed, batch.usage.output_tokens  # lines answered in bulk carry no per-line usage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1000, help="chat requests per batch")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each")
    parser.add_argument("--bulk-lines", type=int, default=None,
                        help="lines per bulk request (default: the executor's; 1 sends each line alone)")
    args = parser.parse_args()

    os.environ["VLLM_CPU_KVCACHE_SPACE"] = "1"
    from serving.replica.actor import OFFLINE_ENV

    os.environ.update(OFFLINE_ENV)
    import openai

    from serving.gateway import KeyStore
    from serving.models.demo import build_demo_model

    work = Path(tempfile.mkdtemp(prefix="corridor-batch-bench-"))
    model_path = build_demo_model(work / "models" / MODEL)
    keys_path = work / "keys.json"
    key = KeyStore(keys_path).issue("admin", tenant=TENANT)
    bundle = write_bundle(work / "bundle.yaml")
    vllm_port, gateway_port = free_port(), free_port()
    server = start_server(model_path, vllm_port, work / "vllm.log")
    gateway = runner = None
    connection, child_end = multiprocessing.get_context("spawn").Pipe()
    try:
        upstream = f"http://127.0.0.1:{vllm_port}"
        wait_http(upstream + "/health", 600)
        gateway = multiprocessing.get_context("spawn").Process(
            target=run_gateway, args=(upstream, gateway_port, str(work), str(keys_path), str(bundle),
                                      args.bulk_lines),
            daemon=True)
        gateway.start()
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz", 120)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway_port}/v1", api_key=key,
                               max_retries=0, timeout=600)

        runner = multiprocessing.get_context("spawn").Process(
            target=run_batch_worker, args=(child_end, str(model_path), str(work)))
        runner.start()
        if receive(connection, runner, 600) != "ready":
            raise RuntimeError("vLLM run_batch did not start")

        from vllm import LLM

        llm = LLM(model=str(model_path), served_model_name=MODEL, **ENGINE)
        offline_round(llm, 16, args.max_tokens)  # warm-up, every way
        run_batch_round(connection, runner, work, 16, args.max_tokens, "warm")
        corridor_round(client, 16, args.max_tokens, "warm")
        offline, vllm_batch, corridor = [], [], []
        for n in range(args.rounds):
            time.sleep(PAUSE_S)
            offline.append(offline_round(llm, args.lines, args.max_tokens))
            time.sleep(PAUSE_S)
            vllm_batch.append(run_batch_round(connection, runner, work, args.lines, args.max_tokens,
                                              f"v{n}"))
            time.sleep(PAUSE_S)
            corridor.append(corridor_round(client, args.lines, args.max_tokens, f"r{n}"))
            print(f"round {n + 1}: offline {args.lines / offline[-1][0]:7.1f} · vLLM run_batch "
                  f"{args.lines / vllm_batch[-1][0]:7.1f} · Corridor {args.lines / corridor[-1][0]:7.1f} "
                  f"lines/s", flush=True)
    finally:
        if runner is not None:
            if runner.is_alive():
                connection.send(None)
            runner.join(60)
            if runner.is_alive():
                runner.kill()
        if gateway is not None:
            gateway.terminate()
            gateway.join(30)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    best = {"vLLM offline (LLM)": min(offline), "vLLM run_batch": min(vllm_batch),
            "Corridor Batch API": min(corridor)}
    print(f"\n{args.lines} chat requests × {args.max_tokens} tokens, {MODEL}, best of {args.rounds} rounds")
    print(f"{'':<22}{'seconds':>9}{'lines/s':>10}{'tokens/s':>11}")
    for name, (elapsed, tokens) in best.items():
        print(f"{name:<22}{elapsed:>9.2f}{args.lines / elapsed:>10.1f}{tokens / elapsed:>11.0f}")
    corridor_s = best["Corridor Batch API"][0]
    print(f"ratio Corridor / vLLM offline:   {best['vLLM offline (LLM)'][0] / corridor_s:.2f} (goal >= 0.80)")
    print(f"ratio Corridor / vLLM run_batch: {best['vLLM run_batch'][0] / corridor_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
