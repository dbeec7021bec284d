"""The two ends of a batch's life that touch files, run in a thread: validating its input
before any line runs, and writing its output and error files when the last line is in."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from policies import Evaluation, Policy, Workload
from scheduler.database import DatabaseUnavailable
from scheduler.ledger import Ledger, LedgerEntryDraft
from scheduler.ledger import decisions as decision_records
from serving.batch.records import (COMPLETED, FAILED, FINALIZING, TERMINAL, BatchError, BatchRecord,
                                   FileRecord, new_id)
from serving.batch.storage import BatchStorage
from serving.batch.validation import InputLimits, ValidatedInput, validate_input

log = logging.getLogger(__name__)


def refusal_entry(batch_id: str, evaluation: Evaluation, action: str) -> LedgerEntryDraft:
    """The ledger's ``placement`` refusal of a batch: every reason code and rule the rulebook gave."""
    return decision_records.refusal_entry("placement", evaluation,
                                          detail={"action": action, "batch": batch_id})


def validate_batch(store: BatchStorage, record: BatchRecord, base: Workload, policy: Policy,
               declarations: tuple, limits: InputLimits, ledger: Ledger,
               clock: Callable[[], float]) -> None:
    """Validate the input file; store its lines (in progress) or fail the batch. In a thread.

    ``base`` is the batch's workload (without the model, which the lines name). Whatever
    goes wrong while checking the input fails the batch, terminally, with its errors;
    only reading the file or the store (``OSError``, the database) raises, for the executor to
    retry later."""

    def evaluate(workload: Workload) -> Evaluation:
        return policy.decide_all(workload, at=dt.datetime.now(dt.UTC), declarations=declarations)

    try:
        with store.open_file(record.input_file_id) as handle:
            result = validate_input(handle, endpoint=record.endpoint, workload=base,
                                    policy=policy, evaluate=evaluate, limits=limits)
    except FileNotFoundError:
        result = None
    except (OSError, DatabaseUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - input no check foresaw: fail the batch, never loop
        log.warning("batch %s: validating its input raised %s; the batch fails", record.id,
                    type(exc).__name__, exc_info=True)
        result = ValidatedInput(errors=[BatchError(
            "validation_failed", f"the input file could not be validated ({type(exc).__name__}); "
            f"check that every line is a JSON request of the batch's endpoint")])
    now = int(clock())
    if result is None or not result.ok:
        errors = (result.errors if result is not None else
                  [BatchError("input_file_missing",
                              f"the input file {record.input_file_id} was deleted")])
        if result is not None and result.refusal is not None:
            ledger.append(refusal_entry(record.id, result.refusal, "validate"))
        store.update_batch(record.id, status=FAILED, failed_at=now, errors=errors,
                                model=result.model if result else None)
        return
    assert result.model is not None
    store.start_lines(record.id, result.model, result.lines, now)


def finalize_batch(store: BatchStorage, batch_id: str, clock: Callable[[], float]) -> None:
    """Write the output and error files and set the final status. In a thread."""
    record = store.get_batch(batch_id)
    assert record is not None
    if record.status in TERMINAL:
        return  # finished already (by another gateway process sharing the store)
    now = int(clock())
    if record.ending is None and record.status != FINALIZING:
        store.update_batch(batch_id, status=FINALIZING, finalizing_at=now)
    files: dict[bool, FileRecord] = {}
    for ok, suffix in ((True, "output"), (False, "error")):
        file_id = new_id("file-")
        size = store.write_results(batch_id, ok, file_id)
        if size:
            files[ok] = FileRecord(file_id, record.tenant, f"batch_{batch_id}_{suffix}.jsonl",
                                   "batch_output", size, now)
    status = record.ending or COMPLETED
    store.finish(batch_id, files.values(), status=status, **{f"{status}_at": now},
                      output_file_id=files[True].id if True in files else None,
                      error_file_id=files[False].id if False in files else None)

