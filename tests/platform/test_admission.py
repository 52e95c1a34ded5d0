"""A worker's room for runs (flows/execution/admission.py) and the doorbell's task waiting
for it (flows/execution/worker.py): the backlog stays in the broker, and a stopping worker
gives back the message it holds."""

from __future__ import annotations

import threading

import pytest
from celery.exceptions import Reject

from flows.execution import worker
from flows.execution.admission import Admission
from flows.execution.executor import Executor


def test_permits_run_out_and_come_back():
    room = Admission(2)
    assert room.try_acquire() and room.try_acquire()
    assert not room.try_acquire() and room.free == 0

    room.release()
    assert room.free == 1 and room.try_acquire()


def test_a_waiting_acquire_gets_the_permit_a_release_frees():
    room = Admission(1)
    room.try_acquire()
    got = []
    waiter = threading.Thread(target=lambda: got.append(room.acquire(timeout=10)))
    waiter.start()
    room.release()
    waiter.join(10)
    assert got == [True] and room.taken == 1


def test_a_claimed_run_takes_a_permit_even_when_none_is_free():
    room = Admission(1)
    room.try_acquire()
    room.take()  # the sweep claimed it: it executes here whatever the count says
    assert room.taken == 2 and room.free == 0
    room.release()
    room.release()
    assert room.free == 1


@pytest.fixture
def stopping_worker(monkeypatch):
    executor = Executor()
    executor.admission = Admission(1)
    executor.admission.try_acquire()  # full
    executor.draining = True
    monkeypatch.setattr(worker, "executor", executor)
    monkeypatch.setattr(worker, "ROOM_CHECK_S", 0.01)
    return executor


def test_a_doorbell_waiting_for_room_goes_back_to_the_broker_when_the_worker_stops(
        stopping_worker):
    with pytest.raises(Reject) as rejected:
        worker.admit("a-run", "start")
    assert rejected.value.requeue is True
    assert stopping_worker.admission.taken == 1  # nothing taken for it


def test_a_doorbell_admitted_as_the_worker_stops_goes_back_too(stopping_worker):
    stopping_worker.admission.release()  # room, but the worker is stopping
    with pytest.raises(Reject):
        worker.admit("a-run", "start")
    assert stopping_worker.admission.taken == 0
