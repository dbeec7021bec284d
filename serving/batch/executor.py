"""The batch executor: runs the lines of active batches on replicas the rulebook allows.

One asyncio task in the gateway's event loop does everything, in cycles
woken by new batches, cancellations and finished lines:

1. **Validate** new batches (in a thread): all lines good, or the batch fails
   and nothing runs. An input that cannot be validated fails the batch too;
   a step that fails for another reason (the disk, the store) is retried with
   backoff (:data:`RETRY_FIRST_S` doubling up to :data:`RETRY_MAX_S`), logged
   once per batch; validation gives up after :data:`VALIDATION_ATTEMPTS`.
2. **Expire and cancel**: past ``expires_at``, or once cancelled, no new line
   starts; pending lines get the error ``batch_expired`` / ``batch_cancelled``;
   lines in flight finish.
3. **Dispatch** lines, fairly: the tenant with the fewest lines in flight
   goes next (round robin over its batches), never above its bundle quota
   ``quotas.batch_concurrency``. A line goes to the least loaded live replica
   of an allowed pool (the gateway router's choice, so the rulebook decides)
   that has a free batch slot: at most ``replica_batch_slots`` batch lines
   per replica, and none while the replica already has ``replica_slots``
   requests in flight, so interactive traffic keeps priority. When the
   rulebook allows pools but none has a live replica of the model, a batch
   replica is placed (:mod:`serving.batch.provisioning`). Chat lines that
   differ only in their messages go to the replica together, up to
   ``bulk_lines`` in one request (:mod:`serving.batch.bulk`).
4. **Record** answers in groups (one transaction per ``flush_lines`` answers
   or ``flush_interval_s``); a line that got no answer (replica gone) runs
   again, at most ``line_attempts`` times.
5. **Finalize**: write the output and error files, set the final status.

The first use of a replica by a batch is a ``placement`` entry in the ledger
(kind ``batch``, pool, node, decision), written before the line is sent; once
per batch and replica, never per line. After a restart, lines without a
stored answer run again; answers are stored once (see
:mod:`serving.batch.store`).

One module because the cycle, the fair dispatch and the line execution share
the in-flight counters and the run table of one event loop; the parts that
need no such state live in :mod:`~serving.batch.runs`,
:mod:`~serving.batch.lifecycle` and :mod:`~serving.batch.replicas`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable

from prometheus_client import Counter as MetricCounter
from prometheus_client import CollectorRegistry, Gauge

from policies import Workload, parse_marking
from scheduler.ledger import decisions as decision_records
from serving.batch.bulk import BULK_PATH, bulk_body, group_key, split_answer
from serving.batch.lifecycle import finalize_batch, validate_batch
from serving.batch.ports import BatchPorts
from serving.batch.provisioning import Provisioner
from serving.batch.records import (CANCELLED, CANCELLING, EXPIRED, FAILED, FINALIZING, IN_PROGRESS,
                                   VALIDATING, BatchError, BatchRecord, LineResult)
from serving.batch.replicas import BatchReplicas
from serving.batch.runs import ENDINGS, ExecutionSettings, Run
from serving.batch.storage import BatchStorage
from serving.batch.validation import InputLimits
from serving.routing import Endpoint, UpstreamBroken, UpstreamUnreachable

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
VALIDATION_ATTEMPTS = 6

class BatchExecutor:
    """Runs every active batch of one store; started and stopped with the gateway app."""

    def __init__(self, store: BatchStorage, *, settings: ExecutionSettings = ExecutionSettings(),
                 limits: InputLimits = InputLimits(), provisioner: Provisioner | None = None,
                 clock: Callable[[], float] = time.time, shared: bool = False) -> None:
        self.store = store
        # ``shared``: gateway workers of the site create and cancel batches in the same store;
        # every ``poll_interval_s`` the executor adopts theirs (:meth:`adopt_stored`).
        self.shared = shared
        self._adopted_at = 0.0
        self.settings = settings
        self.limits = limits
        self.provisioner = provisioner
        self.clock = clock
        self.ports: BatchPorts | None = None
        self._runs: dict[str, Run] = {}
        self._tenant_inflight: Counter[str] = Counter()
        self._replica_inflight: Counter[str] = Counter()
        self._served: dict[str, float] = {}
        self._no_bulk: set[str] = set()  # replicas that answered a bulk request 404/405
        self._results: list[LineResult] = []
        self._oldest_result = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._batch_replicas = BatchReplicas(provisioner, settings, clock, self._start_task, self.wake)
        self._wake: asyncio.Event | None = None
        self._main: asyncio.Task | None = None
        self._lines_metric: MetricCounter | None = None
        self._inflight_metric: Gauge | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self, ports: BatchPorts) -> None:
        """Resume every active batch of the store and start working (the app's lifespan)."""
        self.ports = ports
        self._register_metrics(ports.registry)
        self._wake = asyncio.Event()
        for record, replicas in await asyncio.to_thread(self._load_active):
            self._adopt(record).replicas = replicas
        self._main = asyncio.create_task(self._loop(), name="corridor-batch-executor")

    async def stop(self) -> None:
        """Stop: lines in flight are abandoned (they run again after the next start)."""
        if self._main is not None:
            self._main.cancel()
            await asyncio.gather(self._main, return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._flush(force=True)
        await self._batch_replicas.release_all()

    def submit(self, record: BatchRecord) -> None:
        """Take a new batch (status ``validating``), stored already."""
        self._adopt(record)
        self.wake()

    def cancel(self, batch_id: str) -> BatchRecord | None:
        """Cancel an active batch: no new line starts; returns its record, None if not active."""
        run = self._runs.get(batch_id)
        if run is None or run.record.status == FINALIZING or run.record.ending is not None:
            return run.record if run is not None else None
        now = int(self.clock())
        run.record.ending, run.record.status, run.record.cancelling_at = CANCELLED, CANCELLING, now
        self.store.update_batch(batch_id, ending=CANCELLED, status=CANCELLING, cancelling_at=now)
        self.wake()
        return run.record

    def ports_(self) -> BatchPorts:
        """The serving layer's parts, once :meth:`start` gave them."""
        if self.ports is None:
            raise RuntimeError("batch executor not started: call start(ports) first")
        return self.ports

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def waiting(self, batch_id: str) -> str | None:
        """Why the batch has no line running now, if it is waiting (for status displays)."""
        run = self._runs.get(batch_id)
        return run.waiting if run is not None else None

    # -- the loop -------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                self._cycle()
            except Exception:  # noqa: BLE001 - keep serving the other batches
                log.exception("batch executor cycle failed")
            timeout = self.settings.poll_interval_s
            if self._results:
                timeout = min(timeout, self.settings.flush_interval_s)
            retries = [run.retry_at for run in self._runs.values() if run.failures and not run.busy]
            if retries:
                timeout = max(0.0, min(timeout, min(retries) - time.monotonic()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except TimeoutError:
                pass

    def adopt_stored(self) -> int:
        """Take the batches other processes stored or cancelled since the last look; how many."""
        taken = 0
        for record in self.store.active_batches():
            run = self._runs.get(record.id)
            if run is None:
                self._adopt(record).replicas = self.store.replicas_of(record.id)
                taken += 1
            elif record.ending == CANCELLED and run.record.ending is None:
                run.record.ending, run.record.status = CANCELLED, record.status
                run.record.cancelling_at = record.cancelling_at
                taken += 1
        return taken

    def _cycle(self) -> None:
        if self.shared and time.monotonic() - self._adopted_at >= self.settings.poll_interval_s:
            self._adopted_at = time.monotonic()
            self.adopt_stored()
        now = self.clock()
        self._flush(force=False)
        monotonic = time.monotonic()
        for run in list(self._runs.values()):
            record = run.record
            if run.busy or run.retry_at > monotonic:
                continue
            if record.status == VALIDATING:
                self._spawn(run, "validating", self._validate(run))
                continue
            if (record.ending is None and record.status == IN_PROGRESS
                    and now >= record.expires_at):
                record.ending = EXPIRED
                self.store.update_batch(run.id, ending=EXPIRED)
            if record.ending is not None and not run.closed:
                self._flush(force=True)
                run.queue.clear()
                self._spawn(run, "closing", self._close(run))
                continue
            if record.status == FINALIZING or run.drained:
                self._flush(force=True)
                if self.store.pending_count(run.id) == 0:
                    self._spawn(run, "finalizing", self._finalize(run))
                else:  # a line left behind (e.g. a cancelled task): read the store again
                    run.cursor, run.exhausted = 0, False
        self._dispatch()
        self._batch_replicas.release_idle(now, self._runs.values())

    def _spawn(self, run: Run, what: str, work) -> None:
        run.busy = what
        self._start_task(work)

    def _start_task(self, work) -> None:
        """Run a coroutine as one of the executor's tasks (cancelled when it stops)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- validation -----------------------------------------------------------

    async def _validate(self, run: Run) -> None:
        try:
            router = self.ports_().router
            declarations = tuple(router.declarations())
            ports = self.ports_()
            await asyncio.to_thread(validate_batch, self.store, run.record, self._workload(run.record),
                                    router.policy, declarations, self.limits, ports.ledger, self.clock)
            record = await asyncio.to_thread(self.store.get_batch, run.id)
            if record is None or record.status == FAILED:
                self._runs.pop(run.id, None)
                return
            run.record = record
            run.workload = self._workload(record)
            run.failures = 0
        except Exception as exc:  # noqa: BLE001 - retried with backoff, then the batch fails
            if self._step_failed(run, "validating", exc) >= VALIDATION_ATTEMPTS:
                await self._give_up_validation(run, exc)
        finally:
            run.busy = None
            self.wake()

    # -- ending: cancel and expiry --------------------------------------------

    async def _close(self, run: Run) -> None:
        ending = run.record.ending
        assert ending is not None
        code, message = ENDINGS[ending]
        try:
            if run.record.status != VALIDATING:
                await asyncio.to_thread(self.store.close_pending, run.id, code, message,
                                        keep=set(run.inflight))
            run.closed = True
            record = await asyncio.to_thread(self.store.get_batch, run.id)
            if record is not None:
                record.ending = ending
                run.record = record
            run.failures = 0
        except Exception as exc:  # noqa: BLE001 - retried with backoff
            self._step_failed(run, "closing", exc)
        finally:
            run.busy = None
            self.wake()

    # -- finalization ---------------------------------------------------------

    async def _finalize(self, run: Run) -> None:
        try:
            await asyncio.to_thread(finalize_batch, self.store, run.id, self.clock)
            self._runs.pop(run.id, None)
        except Exception as exc:  # noqa: BLE001 - retried with backoff
            self._step_failed(run, "finalizing", exc)
        finally:
            run.busy = None
            self.wake()

    def _step_failed(self, run: Run, what: str, exc: Exception) -> int:
        """Back off before the next try of a failed step; log the first failure in full, the
        later ones in one line. Returns the failures in a row."""
        run.failures += 1
        delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (run.failures - 1))
        run.retry_at = time.monotonic() + delay
        if run.failures == 1:
            log.warning("%s batch %s failed; retrying in %.1f s", what, run.id, delay, exc_info=exc)
        else:
            log.debug("%s batch %s failed again (%d): %s", what, run.id, run.failures, exc)
        return run.failures

    async def _give_up_validation(self, run: Run, exc: Exception) -> None:
        """After :data:`VALIDATION_ATTEMPTS` failures the batch fails with the reason."""
        error = BatchError("validation_unavailable",
                           f"the input could not be read after {run.failures} attempts "
                           f"({type(exc).__name__}); submit the batch again")
        log.warning("batch %s fails: validation failed %d times", run.id, run.failures)
        try:
            await asyncio.to_thread(self.store.update_batch, run.id, status=FAILED,
                                    failed_at=int(self.clock()), errors=[error])
            self._runs.pop(run.id, None)
        except Exception:  # noqa: BLE001 - the store itself is failing: keep backing off
            log.debug("batch %s: recording the failure failed too", run.id, exc_info=True)

    # -- dispatch -------------------------------------------------------------

    def _dispatch(self) -> None:
        by_tenant: dict[str, deque[Run]] = {}
        for run in self._runs.values():
            if (run.busy is None and run.workload is not None and run.record.ending is None
                    and run.record.status == IN_PROGRESS and not (run.exhausted and not run.queue)):
                by_tenant.setdefault(run.record.tenant, deque()).append(run)
        blocked: set[str] = set()
        while by_tenant:
            chosen = None
            for tenant in sorted(by_tenant, key=lambda t: (self._tenant_inflight[t],
                                                           self._served.get(t, 0.0))):
                if self._tenant_inflight[tenant] >= self._quota(tenant):
                    continue
                runs = by_tenant[tenant]
                for _ in range(len(runs)):
                    run = runs[0]
                    runs.rotate(-1)
                    if run.id in blocked:
                        continue
                    endpoint = self._pick(run)
                    item = run.next_line(self.store, 512) if endpoint is not None else None
                    if endpoint is None or item is None:
                        blocked.add(run.id)
                        continue
                    chosen = (tenant, run, endpoint, item)
                    break
                if chosen is not None:
                    break
            if chosen is None:
                return
            tenant, run, endpoint, item = chosen
            group = self._bulk_group(tenant, run, endpoint, item)
            if group is not None:
                self._start_bulk(tenant, run, endpoint, *group)
            else:
                self._start_line(tenant, run, endpoint, item)

    def _quota(self, tenant: str) -> int:
        known = self.ports_().router.policy.tenants.get(tenant)
        return known.quotas.batch_concurrency if known is not None else 0

    def _pick(self, run: Run) -> Endpoint | None:
        """The least loaded allowed replica with a free batch slot, or None (and why in ``waiting``)."""
        router = self.ports_().router
        route = router.route(run.workload)
        if not route.evaluation.allowed:
            run.waiting = f"no pool allowed now ({route.evaluation.summary()})"
            return None
        if not route.candidates:
            allowed = {d.pool for d in route.evaluation.allowed}
            if any(e.model == run.workload.model and e.pool in allowed
                   for e in router.source.endpoints()):
                run.waiting = "the allowed replicas did not answer; retrying shortly"
                return None
            run.waiting = (f"no live replica of '{run.workload.model}' in an allowed pool "
                           f"({', '.join(sorted(allowed))})")
            self._batch_replicas.want(run)
            return None
        run.waiting = None
        for endpoint in route.candidates:
            if (self._replica_inflight[endpoint.replica_id] < self.settings.replica_batch_slots
                    and router.outstanding.get(endpoint.replica_id, 0) < self.settings.replica_slots):
                return endpoint
        return None

    def _start_line(self, tenant: str, run: Run, endpoint: Endpoint, item: tuple[int, str, str]) -> None:
        self._count_out(tenant, run, endpoint, [item])
        self._start_task(self._execute(run, endpoint, item))

    def _count_out(self, tenant: str, run: Run, endpoint: Endpoint, items: list[tuple[int, str, str]]) -> None:
        router = self.ports_().router
        for item in items:
            run.inflight.add(item[0])
            router.acquire(endpoint)
        self._tenant_inflight[tenant] += len(items)
        self._replica_inflight[endpoint.replica_id] += len(items)
        self._served[tenant] = time.monotonic()
        if self._inflight_metric is not None:
            self._inflight_metric.inc(len(items))

    def _count_back(self, run: Run, endpoint: Endpoint, item: tuple[int, str, str]) -> None:
        run.inflight.discard(item[0])
        self._tenant_inflight[run.record.tenant] -= 1
        self._replica_inflight[endpoint.replica_id] -= 1
        self.ports_().router.release(endpoint)
        if self._inflight_metric is not None:
            self._inflight_metric.dec()

    # -- bulk -------------------------------------------------------------------

    def _bulk_group(self, tenant: str, run: Run, endpoint: Endpoint, item: tuple[int, str, str]
                    ) -> tuple[str, list[tuple[int, str, str]]] | None:
        """``item`` and the next lines of ``run`` that may share one bulk request with it, as many
        as the replica's slots and the tenant's quota allow (the quota shared out over the
        replicas that have room, so groups spread); None to send ``item`` alone."""
        settings = self.settings
        if (settings.bulk_lines < 2 or run.alone or run.record.endpoint != "/v1/chat/completions"
                or endpoint.replica_id in self._no_bulk):
            return None
        key = group_key(item[2])
        if key is None:
            return None
        router = self.ports_().router
        free = sum(1 for e in router.route(run.workload).candidates
                   if self._replica_inflight[e.replica_id] < settings.replica_batch_slots) or 1
        room = min(settings.bulk_lines,
                   -(-(self._quota(tenant) - self._tenant_inflight[tenant]) // free),
                   settings.replica_batch_slots - self._replica_inflight[endpoint.replica_id],
                   settings.replica_slots - router.outstanding.get(endpoint.replica_id, 0))
        items = [item]
        while len(items) < room:
            following = run.next_line(self.store, 512)
            if following is None:
                break
            if group_key(following[2]) != key:
                run.queue.appendleft(following)
                break
            items.append(following)
        return (key, items) if len(items) > 1 else None

    def _start_bulk(self, tenant: str, run: Run, endpoint: Endpoint, key: str,
                    items: list[tuple[int, str, str]]) -> None:
        self._count_out(tenant, run, endpoint, items)
        self._start_task(self._execute_bulk(run, endpoint, key, items))

    async def _execute_bulk(self, run: Run, endpoint: Endpoint, key: str,
                            items: list[tuple[int, str, str]]) -> None:
        """Send lines together; split the answer back per line, or put them back to go alone
        (the replica has no bulk endpoint, or refused the group) or to run again (it failed)."""
        results: list[LineResult | None] = [None] * len(items)
        problem: str | None = None
        last_try: set[int] = set()  # lines whose failed answer is their answer (no attempt left)
        cancelled = alone = False
        try:
            await self._note_replica(run, endpoint)
            ports = self.ports_()
            response = await ports.upstream.post(
                endpoint.url + BULK_PATH, bulk_body(key, [i[2] for i in items],
                                                    ports.cache_salts.salt(run.record.tenant)))
            try:
                content = await response.read()
            finally:
                response.release()
            answers = split_answer(content, len(items)) if response.status == 200 else None
            if answers is not None:
                group = json.loads(answers[0].body)["corridor_usage"]["group"]
                for n, ((line, custom_id, _), answer) in enumerate(zip(items, answers)):
                    result = LineResult.response(run.id, line, custom_id, 200, answer.body)
                    prompt = group.get("prompt_tokens") if n == 0 else 0  # the group's, once
                    results[n] = dataclasses.replace(
                        result, output_tokens=answer.completion_tokens,
                        input_tokens=prompt if isinstance(prompt, int) else 0)
            elif response.status >= 500:
                problem = f"the replica answered {response.status}"
                for n, (line, custom_id, _) in enumerate(items):
                    if run.attempts[line] + 1 >= self.settings.line_attempts:  # as a line alone
                        results[n] = LineResult.response(run.id, line, custom_id, response.status,
                                                         content)
                        last_try.add(line)
            else:
                alone = True
                if response.status in (404, 405):
                    self._no_bulk.add(endpoint.replica_id)
                else:
                    run.alone = True
        except asyncio.CancelledError:
            cancelled = True
            raise
        except (UpstreamUnreachable, UpstreamBroken) as exc:
            self.ports_().router.mark_failed(endpoint)
            problem = f"the replica did not answer ({exc})"
        except Exception as exc:  # noqa: BLE001 - e.g. the ledger refused the entry: retry later
            log.warning("batch %s: %d lines not sent: %s", run.id, len(items), exc)
            problem = f"{type(exc).__name__}: {exc}"
        finally:
            for item in items:
                self._count_back(run, endpoint, item)
            if not cancelled:
                if alone:
                    run.queue.extendleft(reversed(items))
                else:
                    for item, result in zip(items, results):
                        self._settle(run, item, result, None if item[0] in last_try else problem)
                self.wake()

    async def _execute(self, run: Run, endpoint: Endpoint, item: tuple[int, str, str]) -> None:
        """Send one line; record its answer, or put it back to run again."""
        line, custom_id, body = item
        result: LineResult | None = None
        problem: str | None = None
        cancelled = False
        try:
            await self._note_replica(run, endpoint)
            payload = json.loads(body)  # validated: a JSON object, bounded depth
            response = await self.ports_().upstream.post(
                endpoint.url + run.record.endpoint,
                self.ports_().cache_salts.salted(payload, run.record.tenant))
            try:
                content = await response.read()
            finally:
                response.release()
            if response.status >= 500 and run.attempts[line] + 1 < self.settings.line_attempts:
                problem = f"the replica answered {response.status}"
            else:
                result = LineResult.response(run.id, line, custom_id, response.status, content)
        except asyncio.CancelledError:
            cancelled = True
            raise
        except (UpstreamUnreachable, UpstreamBroken) as exc:
            self.ports_().router.mark_failed(endpoint)
            log.info("batch %s line %d: replica %s did not answer: %s", run.id, line,
                     endpoint.replica_id, exc)
            problem = "the replica did not answer"  # the caller never sees replica addresses
        except Exception as exc:  # noqa: BLE001 - e.g. the ledger refused the entry: retry later
            log.warning("batch %s line %d not sent: %s", run.id, line, exc)
            problem = f"the request could not be sent ({type(exc).__name__})"
        finally:
            self._count_back(run, endpoint, item)
            if not cancelled:
                self._settle(run, item, result, problem)
                self.wake()

    def _settle(self, run: Run, item: tuple[int, str, str], result: LineResult | None,
                problem: str | None) -> None:
        """Keep a line's answer, or count the failed attempt: again later, or an error line."""
        line, custom_id, _ = item
        if problem is not None:
            run.attempts[line] += 1
            if run.record.ending is not None:
                result = LineResult.failure(run.id, line, custom_id, *ENDINGS[run.record.ending])
            elif run.attempts[line] >= self.settings.line_attempts:
                result = LineResult.failure(
                    run.id, line, custom_id, "replica_unavailable",
                    f"no replica answered after {run.attempts[line]} attempts: {problem}")
            else:
                run.queue.appendleft(item)
        if result is not None:
            if not self._results:
                self._oldest_result = time.monotonic()
            self._results.append(result)
            if self._lines_metric is not None:
                self._lines_metric.labels(run.record.tenant,
                                          "completed" if result.ok else "failed").inc()

    def _flush(self, *, force: bool) -> None:
        """Commit buffered answers when enough wait or the oldest waited long enough."""
        if not self._results:
            return
        if (not force and len(self._results) < self.settings.flush_lines
                and time.monotonic() - self._oldest_result < self.settings.flush_interval_s):
            return
        results, self._results = self._results, []
        self.store.record_results(results)

    # -- the ledger -----------------------------------------------------------

    async def _note_replica(self, run: Run, endpoint: Endpoint) -> None:
        """Make sure the ledger has this batch's use of this replica, once."""
        key = f"{endpoint.replica_id}@{endpoint.node_id}"
        if key in run.replicas:
            return
        future = run.noting.get(key)
        if future is None:
            future = run.noting[key] = asyncio.ensure_future(self._write_placement(run, endpoint, key))
        try:
            await asyncio.shield(future)
        except Exception:
            run.noting.pop(key, None)
            raise

    async def _write_placement(self, run: Run, endpoint: Endpoint, key: str) -> None:
        router = self.ports_().router
        assert run.workload is not None
        evaluation = router.policy.decide_all(run.workload, at=dt.datetime.now(dt.UTC),
                                              declarations=tuple(router.declarations()))
        decision = next(d for d in evaluation.decisions if d.pool == endpoint.pool)
        if not decision.allowed:
            raise RuntimeError(f"pool {endpoint.pool} is no longer allowed for batch {run.id}: "
                               f"{', '.join(decision.codes)}")
        record = run.record
        await self.ports_().ledger.append_async(decision_records.decision_entry(
            "placement", decision, node_id=endpoint.node_id,
            detail={"action": "batch", "batch": record.id, "replica": endpoint.replica_id,
                    "endpoint": record.endpoint, "lines": record.total}))
        await asyncio.to_thread(self.store.add_replica, run.id, key)
        run.replicas.add(key)

    # -- batch replicas -------------------------------------------------------

    # -- bookkeeping ----------------------------------------------------------

    def _adopt(self, record: BatchRecord) -> Run:
        run = Run(record)
        if record.model is not None:
            run.workload = self._workload(record)
        self._runs[record.id] = run
        return run

    def _load_active(self) -> list[tuple[BatchRecord, set[str]]]:
        """After a start: every active batch, with the replicas the ledger has for it."""
        self.store.remove_orphans()
        return [(record, self.store.replicas_of(record.id)) for record in self.store.active_batches()]

    def _workload(self, record: BatchRecord) -> Workload:
        """The batch as the rulebook sees it, with the served artifact's digest of its model."""
        digests = self.ports_().model_digests
        return Workload(tenant=record.tenant, marking=parse_marking(record.marking), kind="batch",
                        data_flags=frozenset(record.data_flags), model=record.model,
                        model_digest=digests.get(record.model) if record.model else None,
                        id=record.id)

    def _register_metrics(self, registry: CollectorRegistry) -> None:
        try:
            self._lines_metric = MetricCounter(
                "corridor_batch_lines", "Batch lines answered, by tenant and outcome.",
                ["tenant", "outcome"], registry=registry)
            self._inflight_metric = Gauge("corridor_batch_lines_in_flight",
                                          "Batch lines sent to replicas and not yet answered.",
                                          registry=registry)
        except ValueError:  # registered by an earlier start of this app
            pass
