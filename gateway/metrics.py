"""Prometheus metrics, read from the store at scrape time (the same numbers `status` prints)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from gateway.spool import Spool

PREFIX = "mailcam_gateway_"


def snapshot(store: Spool) -> dict[str, Any]:
    """Everything a person or Prometheus wants to know, from the store."""
    stats = store.outbox_stats()
    counters = store.counters()
    stats["counters"] = counters
    stats["broker"] = store.get_kv("broker") or "unknown"
    stats["ingest_paused"] = store.get_kv("ingest_paused") == "1"
    stats["cloud"] = store.get_kv("cloud") or "unknown"
    return stats


class StoreCollector(Collector):
    def __init__(self, store: Spool) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        s = snapshot(self.store)
        depth = GaugeMetricFamily(PREFIX + "outbox_depth", "Items waiting for the cloud", labels=["kind"])
        for kind in ("capture", "telemetry", "delivered"):
            depth.add_metric([kind], s["depth"].get(kind, 0))
        yield depth
        yield GaugeMetricFamily(PREFIX + "outbox_oldest_age_seconds", "Age of the oldest queued item",
                                value=s["oldest_age_s"])
        yield GaugeMetricFamily(PREFIX + "outbox_bytes", "Bytes queued (outbox + partial captures)",
                                value=s["used_bytes"])
        yield GaugeMetricFamily(PREFIX + "partial_captures", "Captures being reassembled", value=s["partials"])
        yield GaugeMetricFamily(PREFIX + "held_items", "Uploads held for devices the cloud does not list",
                                value=s["held"])
        yield GaugeMetricFamily(PREFIX + "quarantined_dead_letters", "Dead letters kept with their bytes (replayable)",
                                value=s["dead_letters_replayable"])
        yield GaugeMetricFamily(PREFIX + "broker_connected", "1 when connected to the MQTT broker",
                                value=1 if s["broker"] == "connected" else 0)
        yield GaugeMetricFamily(PREFIX + "ingest_paused", "1 while ingest is paused (outbox full)",
                                value=1 if s["ingest_paused"] else 0)
        c = s["counters"]
        forwarded = CounterMetricFamily(PREFIX + "forwarded", "Items the cloud accepted", labels=["kind"])
        dead = CounterMetricFamily(PREFIX + "dead_lettered", "Items dead-lettered", labels=["reason"])
        for name, value in sorted(c.items()):
            if name.startswith("forwarded:"):
                forwarded.add_metric([name.split(":", 1)[1]], value)
            elif name.startswith("dead_lettered:"):
                dead.add_metric([name.split(":", 1)[1]], value)
        yield forwarded
        yield dead
        yield CounterMetricFamily(PREFIX + "retried", "Forwarding attempts that will be retried",
                                  value=c.get("retried", 0))
        yield CounterMetricFamily(PREFIX + "ingested_messages", "MQTT messages committed",
                                  value=c.get("ingested_messages", 0))
        yield CounterMetricFamily(PREFIX + "dropped_telemetry", "Telemetry dropped because the outbox was full",
                                  value=c.get("dropped_telemetry", 0))
        yield CounterMetricFamily(PREFIX + "duplicate_chunks", "Repeated chunks ignored",
                                  value=c.get("duplicate_chunks", 0))


def registry_for(store: Spool) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
