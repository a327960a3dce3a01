"""Schemathesis hooks for scripts/test-openapi.sh: a check that a request the server
refused (4xx) wrote nothing to `$all`, and a bound on the long polls the run waits for.

Requests run one at a time (--workers 1), so what `$all` gained between the refused
request's start and its answer is what that request wrote. Events of system streams (and
`$`-typed events) are left out: the server writes those by itself (persistent-subscription
checkpoints, say).
"""

import json
import os
import urllib.request

import schemathesis

BASE = os.environ["STRATA_URL"].rstrip("/")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
# The position of the last event in `$all` when the current write request started.
_last_before = {}
# Longest `waitMs` of a persistent-subscription poll the run waits for (the server allows
# 30 s; the run's request timeout is shorter).
WAIT_MS_IN_RUN = 500


def _get(path):
    with urllib.request.urlopen(BASE + path, timeout=10) as answer:
        return json.load(answer)


def _last_position():
    events = _get("/v1/all?direction=backwards&from=end&count=1")["events"]
    return events[0]["position"] if events else -1


def _events_after(position):
    start = "start" if position < 0 else str(position)
    page = _get(f"/v1/all?from={start}&count=1000")
    return [event for event in page["events"] if event["position"] > position]


@schemathesis.hook
def before_call(context, case, kwargs):
    wait = (case.query or {}).get("waitMs")
    if isinstance(wait, bool):
        wait = None
    if isinstance(wait, str) and wait.isdigit():
        wait = int(wait)
    if isinstance(wait, int) and wait > WAIT_MS_IN_RUN:
        case.query["waitMs"] = WAIT_MS_IN_RUN
    if case.method.upper() in WRITES:
        _last_before["position"] = _last_position()


@schemathesis.check
def refused_requests_write_nothing(ctx, response, case):
    if case.method.upper() not in WRITES or response.status_code < 400:
        return None
    before = _last_before.pop("position", None)
    if before is None:
        return None
    written = [
        f'{event["stream"]}@{event["revision"]} ({event["type"]})'
        for event in _events_after(before)
        if not event["stream"].startswith("$") and not event["type"].startswith("$")
    ]
    if written:
        raise AssertionError(
            f"answered {response.status_code} but wrote {len(written)} event(s): {', '.join(written[:5])}"
        )
    return None
