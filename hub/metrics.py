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
GC). The collectors are process-wide, as ``prometheus_client`` intends.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

__all__ = ["EVENTS", "count_event", "COMMIT_SECONDS", "REFUSALS", "SOCKETS", "SOCKET_CLOSES",
           "WEBHOOK_ATTEMPTS", "BROKER_RECONNECTS", "CONTENT_TYPE", "render"]

EVENTS = Counter("hub_events", "Events committed by this instance", ["event"])
COMMIT_SECONDS = Histogram(
    "hub_commit_seconds", "One command's commit and publish, seconds",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
             0.5, 1.0))
REFUSALS = Counter("hub_refusals", "Commands refused, by HTTP status", ["status"])
SOCKETS = Gauge("hub_sockets", "Open sockets", ["role"])
SOCKET_CLOSES = Counter("hub_socket_closes", "Sockets closed by the hub, by close code",
                        ["code"])
WEBHOOK_ATTEMPTS = Counter("hub_webhook_attempts", "Webhook attempts, by result", ["result"])
BROKER_RECONNECTS = Counter("hub_broker_reconnects",
                            "Times the Redis pub/sub connection came back after a loss")

CONTENT_TYPE = CONTENT_TYPE_LATEST

_event_counters: dict[str, Any] = {}


def count_event(event: str) -> None:
    """Count one committed event (its labelled counter looked up once, not per event)."""
    counter = _event_counters.get(event)
    if counter is None:
        counter = _event_counters[event] = EVENTS.labels(event)
    counter.inc()


def render() -> bytes:
    """Every metric in the Prometheus text exposition format (version 0.0.4)."""
    return generate_latest()
