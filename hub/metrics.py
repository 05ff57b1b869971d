"""Prometheus metrics, served as ``GET /metrics`` in the text format (CONTRACT §3, ops).

Each instance reports its own; sum them across instances. Names and labels:

==============================  ================================================================
``hub_events_total``            events committed by this instance, by ``event`` (``session.created``,
                                ``payment.completed``, …)
``hub_commit_seconds``          time of one command's commit and publish (histogram)
``hub_refusals_total``          commands refused, by HTTP ``status`` (REST and socket-op acks)
``hub_sockets``                 open sockets, by ``role`` (``machine``, ``phone``)
``hub_socket_closes_total``     sockets the hub closed, by close ``code`` (1000, 4408, 1012, …)
``hub_webhook_attempts_total``  webhook attempts, by ``result`` (``delivered``, ``failed``,
                                ``given_up``, ``dropped``)
``hub_broker_reconnects_total`` times the Redis pub/sub connection came back after a loss
==============================  ================================================================

plus ``prometheus_client``'s own process and Python collectors (CPU, memory, open files,
GC). The hub's figures are plain numbers bumped on the event loop (one thread, so no
locks: a ``prometheus_client`` metric takes a lock per update, which cost 4% of a socket
op's CPU) and turned into metric families by a collector when scraped.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["count_event", "observe_commit", "refused", "socket_opened", "socket_closed",
           "closed_with", "webhook_attempt", "broker_reconnected", "CONTENT_TYPE", "render"]

#: upper bounds of the commit-time buckets, seconds
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0)

_events: Counter[str] = Counter()
_refusals: Counter[int] = Counter()
_sockets: Counter[str] = Counter()
_closes: Counter[int] = Counter()
_webhooks: Counter[str] = Counter()
_reconnects = [0]
_commit_counts = [0] * (len(COMMIT_BUCKETS) + 1)  # the last one: above every bound
_commit_sum = [0.0]


def count_event(event: str) -> None:
    """One event committed by this instance."""
    _events[event] += 1


def observe_commit(seconds: float) -> None:
    """One command's commit and publish took ``seconds``."""
    _commit_counts[bisect.bisect_left(COMMIT_BUCKETS, seconds)] += 1
    _commit_sum[0] += seconds


def refused(status: int) -> None:
    """One command refused with HTTP ``status`` (a REST answer or a socket-op ack)."""
    _refusals[status] += 1


def socket_opened(role: str) -> None:
    _sockets[role] += 1


def socket_closed(role: str) -> None:
    _sockets[role] -= 1


def closed_with(code: int) -> None:
    """The hub closed a socket with ``code`` (RFC 6455 or CONTRACT §4)."""
    _closes[int(code)] += 1


def webhook_attempt(result: str) -> None:
    """``delivered``, ``failed`` (will retry), ``given_up`` or ``dropped``."""
    _webhooks[result] += 1


def broker_reconnected() -> None:
    _reconnects[0] += 1


class _HubCollector:
    """Turns the numbers above into metric families at scrape time."""

    def collect(self) -> Iterator[Metric]:
        labelled: tuple[tuple[str, str, str, Counter[str] | Counter[int]], ...] = (
            ("hub_events", "Events committed by this instance", "event", _events),
            ("hub_refusals", "Commands refused, by HTTP status", "status", _refusals),
            ("hub_socket_closes", "Sockets closed by the hub, by close code", "code",
             _closes),
            ("hub_webhook_attempts", "Webhook attempts, by result", "result", _webhooks))
        for name, doc, label, values in labelled:
            family = CounterMetricFamily(name, doc, labels=[label])
            for key, value in sorted(values.items(), key=lambda kv: str(kv[0])):
                family.add_metric([str(key)], value)
            yield family
        sockets = GaugeMetricFamily("hub_sockets", "Open sockets", labels=["role"])
        for role, value in sorted(_sockets.items()):
            sockets.add_metric([role], value)
        yield sockets
        yield CounterMetricFamily("hub_broker_reconnects",
                                  "Times the Redis pub/sub connection came back after a loss",
                                  value=_reconnects[0])
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, COMMIT_BUCKETS), "+Inf"), _commit_counts):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily("hub_commit_seconds",
                                    "One command's commit and publish, seconds",
                                    buckets=buckets, sum_value=_commit_sum[0])


REGISTRY.register(_HubCollector())  # type: ignore[arg-type]

CONTENT_TYPE = CONTENT_TYPE_LATEST


def render() -> bytes:
    """Every metric in the Prometheus text exposition format (version 0.0.4)."""
    return generate_latest()
