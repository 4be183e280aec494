"""Maps computed ahead on a low-priority thread (model.qualify.ahead)."""
import os
import sys
import threading
import time

import numpy as np
import pytest

from model.qualify.ahead import MapsAhead, content_key, idle_core


class Recorder:
    """A stand-in for `explain`: records which thread computed what; can be held back by an event."""

    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None):
        self.calls = []
        self.priorities = []
        self.gate = gate
        self.fail_on = fail_on

    def __call__(self, image, target, layer, method):
        if self.gate is not None and threading.current_thread().name == "maps-ahead":
            self.gate.wait(10)
        self.calls.append((threading.current_thread().name, target))
        if sys.platform.startswith("linux"):
            self.priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        if target == self.fail_on:
            raise RuntimeError("boom")
        return (int(image.sum()), target, layer, method)


def always():
    return True


def until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def slice_(seed=0):
    return np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)


def test_content_key_follows_pixels_class_layer_and_method():
    a = slice_(0)
    assert content_key(a, 1, "layer2", "ig") == content_key(a.copy(), 1, "layer2", "ig")
    assert content_key(a, 1, "layer2", "ig") != content_key(slice_(1), 1, "layer2", "ig")
    assert len({content_key(a, 1, "layer2", "ig"), content_key(a, 2, "layer2", "ig"),
                content_key(a, 1, "layer3", "ig"), content_key(a, 1, "layer2", "occlusion"),
                content_key(a.reshape(8, 32), 1, "layer2", "ig")}) == 5


def test_a_map_asked_for_is_computed_once_on_the_asking_thread():
    compute = Recorder()
    maps = MapsAhead(compute, idle=always)
    first = maps.get(slice_(), 2, "layer2", "ig")
    assert maps.get(slice_(), 2, "layer2", "ig") == first
    assert compute.calls == [(threading.current_thread().name, 2)]
    assert maps.served_ahead == 0


def test_maps_computed_ahead_answer_later_requests_without_computing_and_at_low_priority():
    compute = Recorder()
    maps = MapsAhead(compute, idle=always)
    image = slice_()
    maps.ahead(image, [0, 1, 3], "layer2", "ig")
    assert maps.wait_idle(timeout=10)
    assert sorted(t for _, t in compute.calls) == [0, 1, 3]
    assert {name for name, _ in compute.calls} == {"maps-ahead"}
    if sys.platform.startswith("linux"):
        assert set(compute.priorities) == {19}  # the worker thread alone runs at nice 19
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != 19  # the asking thread does not
    assert [maps.get(image, t, "layer2", "ig") for t in (0, 1, 3)] == [compute(image, t, "layer2", "ig")
                                                                       for t in (0, 1, 3)]
    assert maps.served_ahead == 3 and maps.computed_ahead == 3
    maps.ahead(image, [0, 1, 3], "layer2", "ig")  # stored already: nothing is queued again
    assert maps.pending() == 0


def test_a_queued_map_asked_for_is_computed_at_once_not_behind_the_worker():
    gate = threading.Event()
    compute = Recorder(gate=gate)
    maps = MapsAhead(compute, idle=always)
    image = slice_()
    maps.ahead(image, [0, 1], "layer2", "ig")  # the worker takes class 0 and waits at the gate; 1 stays queued
    until(lambda: maps._busy is not None)
    value = maps.get(image, 1, "layer2", "ig")  # answered now, on this thread
    assert value == (int(image.sum()), 1, "layer2", "ig")
    assert (threading.current_thread().name, 1) in compute.calls
    gate.set()
    assert maps.wait_idle(timeout=10)
    assert [t for name, t in compute.calls if name == "maps-ahead"] == [0]  # class 1 was dropped from the queue


def test_the_queue_keeps_only_the_newest_jobs_and_the_store_is_bounded():
    gate = threading.Event()
    compute = Recorder(gate=gate)
    maps = MapsAhead(compute, max_entries=3, max_pending=2, idle=always)
    maps.ahead(slice_(0), [0], "layer2", "ig")  # taken by the worker, held at the gate
    until(lambda: maps._busy is not None)
    for seed in (1, 2, 3):
        maps.ahead(slice_(seed), [0], "layer2", "ig")
    gate.set()
    assert maps.wait_idle(timeout=10)
    done = [t for name, t in compute.calls if name == "maps-ahead"]
    assert len(done) == 3  # the one running, then the 2 newest of the 3 queued
    for seed in range(5, 10):
        maps.get(slice_(seed), 0, "layer2", "ig")
    assert len(maps._store) == 3


def test_a_failing_map_ahead_leaves_the_worker_alive_and_the_request_computes_it():
    compute = Recorder(fail_on=1)
    maps = MapsAhead(compute, idle=always)
    image = slice_()
    maps.ahead(image, [1, 2], "layer2", "ig")
    assert maps.wait_idle(timeout=10)
    assert maps.get(image, 2, "layer2", "ig") == (int(image.sum()), 2, "layer2", "ig")
    assert maps.served_ahead == 1
    with pytest.raises(RuntimeError, match="boom"):  # not stored: asked for, it is computed and fails again, loudly
        maps.get(image, 1, "layer2", "ig")


def test_maps_ahead_equal_the_maps_explain_gives(tiny_predictor):
    from model.qualify.explain import explain

    predictor = tiny_predictor
    image = slice_(7).repeat(8, 0).repeat(8, 1)  # 128 x 128
    maps = MapsAhead(lambda im, t, layer, m: explain(predictor, im, target=t, layer=layer, method=m), idle=always)
    maps.ahead(image, [0, 3], "layer2", "integrated_gradients")
    assert maps.wait_idle(timeout=120)
    for target in (0, 3):
        alone = explain(predictor, image, target=target, method="integrated_gradients")
        ahead = maps.get(image, target, "layer2", "integrated_gradients")
        np.testing.assert_allclose(ahead.heatmap, alone.heatmap, atol=1e-6)
        assert ahead.settings() == alone.settings()
    assert maps.served_ahead == 2


def test_the_worker_waits_for_an_idle_core():
    compute = Recorder()
    spare = threading.Event()
    maps = MapsAhead(compute, idle=spare.is_set)
    maps.ahead(slice_(), [0, 1], "layer2", "ig")
    time.sleep(1.2)  # a busy machine: the worker checked and waited
    assert compute.calls == [] and maps.pending() == 2
    spare.set()
    assert maps.wait_idle(timeout=10)
    assert sorted(t for _, t in compute.calls) == [0, 1]
    assert isinstance(idle_core(0.05), bool)


def test_close_stops_the_worker_and_later_requests_still_compute():
    compute = Recorder()
    maps = MapsAhead(compute, idle=always)
    maps.ahead(slice_(), [0], "layer2", "ig")
    assert maps.wait_idle(timeout=10)
    maps.close()
    assert not maps._worker.is_alive()
    maps.ahead(slice_(1), [0], "layer2", "ig")  # nothing starts again after close
    assert not maps._worker.is_alive() and maps.pending() == 0
    assert maps.get(slice_(1), 0, "layer2", "ig") == (int(slice_(1).sum()), 0, "layer2", "ig")
