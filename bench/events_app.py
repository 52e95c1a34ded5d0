"""The served application of bench/events.py: astron.asgi's, plus a stamp per published batch.

`daphne bench.events_app:application` serves exactly `astron.asgi.application`; the only
addition is that each batch the sink publishes writes one line, `<run id> <first seq>
<last seq> <time.time()>`, to the file named by BENCH_PUBLISH_LOG just before it goes to the
channel layer, so the benchmark can split a client's latency into emit→publish (batching,
storing) and publish→receive (channel layer, consumer, websocket); and each delivery of a
batch to a socket writes one to BENCH_PUBLISH_LOG.deliveries.
"""

import atexit
import os
import sys
import time

from astron.asgi import application
from flows.execution import publisher

__all__ = ["application"]

_publish = publisher.publish
# Block-buffered (a write per line would cost the server more than what is measured),
# flushed at the end of each run.
_log = open(os.environ["BENCH_PUBLISH_LOG"], "a")  # noqa: SIM115 - process-long


async def _stamped_publish(run_id, events):
    if events:
        _log.write(f"{run_id} {events[0]['seq']} {events[-1]['seq']} {time.time():.6f}\n")
        if events[-1]["type"] == "run.finished":
            _log.flush()
    return await _publish(run_id, events)


publisher.publish = _stamped_publish


# Per delivery to one watcher: when its follower got the batch and when it had handed the
# last frame to daphne (`<run id> <first seq> <start> <end>`), to tell the channel layer's
# delivery from the follower's sending from the client's receiving.
from flows.follow import RunFollower  # noqa: E402

_run_events = RunFollower.run_events
_deliveries = open(os.environ["BENCH_PUBLISH_LOG"] + ".deliveries", "a")  # noqa: SIM115


async def _timed_run_events(self, message):
    began = time.time()
    await _run_events(self, message)
    events = message["events"]
    if events:
        _deliveries.write(f"{events[0]['run']} {events[0]['seq']} {began:.6f} {time.time():.6f}\n")
        if events[-1]["type"] == "run.finished":
            _deliveries.flush()


RunFollower.run_events = _timed_run_events
atexit.register(_log.flush)
atexit.register(_deliveries.flush)

if os.environ.get("BENCH_SWITCH_INTERVAL"):  # an experiment: the GIL's hand-over interval
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
