"""mailstatd's figures in the Prometheus text format, served over HTTP (`metrics_port`, on the
loopback address `metrics_listen` by default).

The names follow Prometheus conventions (a `maildaemons_` prefix, `_total` for counters, base
units, a `protocol` label), so a site running several hosts adds them up in Prometheus with `sum`:

  maildaemons_connections_total{protocol}          counter  connections accepted
  maildaemons_bytes_received_total{protocol}       counter  from clients
  maildaemons_bytes_sent_total{protocol}           counter  to clients
  maildaemons_logins_total{protocol,result}        counter  result ok or failed
  maildaemons_connections_current{protocol}        gauge    open now
  maildaemons_connections_max_concurrent{protocol} gauge    most open at once, ever
  maildaemons_logged_in_sessions{protocol}         gauge    logged in now
  maildaemons_stats_ignored_events_total           counter  malformed events dropped
  maildaemons_collector_start_time_seconds         gauge    when the figures started

The counters survive mailstatd's restarts (its state file); the start time tells Prometheus
when they were reset all the same. Every scrape reads the figures at that moment through the
function it is given, which takes the lock the collector's loop holds while it changes them
(the HTTP server runs in a thread of its own: a slow scraper never delays an event). The
listening socket is bound by the caller before the daemon detaches, so a port in use is a
start-up error like any other.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import MetricsHandler

PREFIX = "maildaemons"
COUNTERS = (
    ("connections", "connections", "Connections accepted."),
    ("bytes_received", "bytes_in", "Bytes received from clients."),
    ("bytes_sent", "bytes_out", "Bytes sent to clients."),
)
GAUGES = (
    ("connections_current", "current", "Connections open now."),
    ("connections_max_concurrent", "max_concurrent", "Most connections open at once, ever."),
)


class FiguresCollector:
    """A prometheus_client collector over a function that returns the figures
    (common/stats/collector.Collector.metrics)."""

    def __init__(self, figures: Callable[[], dict[str, Any]]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self.figures()
        protocols: dict[str, dict[str, int]] = figures.get("protocols", {})
        for name, field, text in COUNTERS:
            family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["protocol"])
            for protocol, counts in protocols.items():
                family.add_metric([protocol], counts.get(field, 0))
            yield family
        for name, field, text in GAUGES:
            gauge = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=["protocol"])
            for protocol, counts in protocols.items():
                gauge.add_metric([protocol], counts.get(field, 0))
            yield gauge
        logins = CounterMetricFamily(
            f"{PREFIX}_logins", "Login attempts, by result.", labels=["protocol", "result"]
        )
        for protocol, counts in protocols.items():
            logins.add_metric([protocol, "ok"], counts.get("logins_ok", 0))
            logins.add_metric([protocol, "failed"], counts.get("logins_failed", 0))
        yield logins
        logged_in = GaugeMetricFamily(
            f"{PREFIX}_logged_in_sessions", "Sessions logged in now.", labels=["protocol"]
        )
        sessions: dict[str, int] = figures.get("logged_in", {})
        for protocol in protocols:
            logged_in.add_metric([protocol], sessions.get(protocol, 0))
        yield logged_in
        yield CounterMetricFamily(
            f"{PREFIX}_stats_ignored_events",
            "Malformed stats events the collector ignored.",
            value=figures.get("ignored_events", 0),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_collector_start_time_seconds",
            "When the figures started (Unix time).",
            value=figures.get("started", 0),
        )


def registry_for(figures: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(figures))
    return registry


class MetricsBindError(OSError):
    """The metrics port cannot be had; str() is the one line for the terminal."""

    def __str__(self) -> str:
        return str(self.strerror)


def bind(address: str, port: int) -> socket.socket:
    """The metrics listener, bound now (before the daemon detaches)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.strip("[]"), port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        text = f"cannot listen on {address} port {port} for metrics: {exc.strerror or exc}"
        raise MetricsBindError(exc.errno, text) from None
    return sock


def describe(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class QuietHandler(MetricsHandler):
    """No access line per scrape on stderr (the daemon logs what matters itself)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


def serve(sock: socket.socket, figures: Callable[[], dict[str, Any]]) -> ThreadingHTTPServer:
    """Serve GET /metrics on the bound socket from a daemon thread; returns the server so the
    caller can shut it down."""
    handler = type("Handler", (QuietHandler,), {"registry": registry_for(figures)})
    server = ThreadingHTTPServer(sock.getsockname()[:2], handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server
