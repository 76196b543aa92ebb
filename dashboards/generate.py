#!/usr/bin/env python3
"""Writes the Grafana dashboards of this folder from the panel lists below.

    python3 dashboards/generate.py          # rewrites dashboards/*.json
    python3 dashboards/generate.py --check  # fails if a committed file differs

Every panel reads the `$datasource` variable; template variables come from
`label_values`; each panel has a unit, its thresholds, and a description that
says what a bad value means. The queries use the exporter's native names and
the recording rules of alerts/cloudfoundry.rules.yml. tests/dashboards.rs
checks the structure and runs every query against a real Prometheus.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def datasource_variable():
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(name, label, query, include_all=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "includeAll": include_all,
        "multi": include_all,
        "allValue": ".*" if include_all else None,
        "current": {},
        "hide": 0,
        "options": [],
        "regex": "",
    }


def steps(*points):
    """Threshold steps: the base colour, then (value, colour) pairs."""
    base, *rest = points
    out = [{"color": base, "value": None}]
    out += [{"color": colour, "value": value} for value, colour in rest]
    return {"mode": "absolute", "steps": out}


def panel(title, description, targets, unit, thresholds, kind="timeseries", width=8):
    return {
        "kind": kind,
        "title": title,
        "description": description,
        "targets": targets,
        "unit": unit,
        "thresholds": thresholds,
        "width": width,
    }


def target(expr, legend=""):
    return {"expr": expr, "legend": legend}


def build(uid, title, description, tags, variables, sections):
    panels, next_id, y = [], 1, 0
    for section, members in sections:
        panels.append({
            "id": next_id,
            "type": "row",
            "title": section,
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        })
        next_id += 1
        y += 1
        x = 0
        for p in members:
            if x + p["width"] > 24:
                x, y = 0, y + 8
            refs = "ABCDEFGH"
            entry = {
                "id": next_id,
                "type": p["kind"],
                "title": p["title"],
                "description": p["description"],
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": p["width"], "x": x, "y": y},
                "fieldConfig": {
                    "defaults": {
                        "unit": p["unit"],
                        "thresholds": p["thresholds"],
                        "color": {"mode": "thresholds" if p["kind"] != "timeseries" else "palette-classic"},
                    },
                    "overrides": [],
                },
                "options": {},
                "targets": [
                    {
                        "refId": refs[i],
                        "datasource": DATASOURCE,
                        "expr": t["expr"],
                        "legendFormat": t["legend"],
                        "range": True,
                        "instant": False,
                    }
                    for i, t in enumerate(p["targets"])
                ],
            }
            if p["kind"] == "timeseries":
                entry["fieldConfig"]["defaults"]["custom"] = {"thresholdsStyle": {"mode": "line"}}
                entry["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                                    "tooltip": {"mode": "multi"}}
            else:
                entry["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                    "colorMode": "value", "graphMode": "area"}
            panels.append(entry)
            next_id += 1
            x += p["width"]
        y += 8
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": tags,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "1m",
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [datasource_variable()] + variables},
        "panels": panels,
    }


D = 'bosh_deployment=~"$deployment"'

PLATFORM = build(
    "cf-platform-kpis",
    "Cloud Foundry: Platform KPIs",
    "The key performance and capacity indicators of a Cloud Foundry foundation, from cf-firehose-exporter's native series.",
    ["cloudfoundry", "cf-firehose-exporter"],
    [query_variable("deployment", "Deployment", 'label_values(CapacityTotalMemory{origin="rep"}, bosh_deployment)')],
    [
        ("Diego cell capacity", [
            panel("Cell memory remaining",
                  "Memory the Diego cells can still give to apps, as a share of their total. Below 35% large apps no longer fit and a failed cell's apps cannot all be placed elsewhere: add cells.",
                  [target(f"bosh_deployment:cf_cell_memory_remaining:ratio{{{D}}}", "{{bosh_deployment}}")],
                  "percentunit", steps("red", (0.2, "orange"), (0.35, "green")), kind="stat", width=6),
            panel("Cell disk remaining",
                  "Disk the Diego cells can still give to apps, as a share of their total. Below 35% staging and new instances start to fail for lack of disk.",
                  [target(f"bosh_deployment:cf_cell_disk_remaining:ratio{{{D}}}", "{{bosh_deployment}}")],
                  "percentunit", steps("red", (0.2, "orange"), (0.35, "green")), kind="stat", width=6),
            panel("Containers remaining",
                  "Containers the cells can still start (of 250 each by default). Near 0 a cell takes no more instances whatever its memory.",
                  [target(f'sum by (bosh_deployment) (CapacityRemainingContainers{{origin="rep",{D}}})', "{{bosh_deployment}}")],
                  "short", steps("red", (50, "orange"), (100, "green")), kind="stat", width=6),
            panel("Cells",
                  "Diego cells reporting capacity. A drop means cells are gone or no longer report: their apps are being moved.",
                  [target(f'count by (bosh_deployment) (CapacityTotalMemory{{origin="rep",{D}}})', "{{bosh_deployment}}")],
                  "short", steps("green"), kind="stat", width=6),
            panel("Memory remaining per cell",
                  "Each cell's free memory for apps. One cell far below the others hosts a memory-heavy app; all low means the foundation is full.",
                  [target(f'CapacityRemainingMemory{{origin="rep",{D}}}', "{{bosh_job_ip}}")],
                  "mbytes", steps("green"), width=12),
            panel("Disk remaining per cell",
                  "Each cell's free disk for apps. A cell near 0 cannot stage or start more instances.",
                  [target(f'CapacityRemainingDisk{{origin="rep",{D}}}', "{{bosh_job_ip}}")],
                  "mbytes", steps("green"), width=12),
        ]),
        ("Diego scheduling", [
            panel("LRPs missing and extra",
                  "Desired app instances that do not run (missing) and running ones nobody desires (extra). Above 5 for minutes (warn) or 10 (critical), Diego cannot place or converge apps.",
                  [target(f'max by (bosh_deployment) (LRPsMissing{{origin="bbs",{D}}})', "missing {{bosh_deployment}}"),
                   target(f'max by (bosh_deployment) (LRPsExtra{{origin="bbs",{D}}})', "extra {{bosh_deployment}}")],
                  "short", steps("green", (5, "orange"), (10, "red")), width=8),
            panel("LRPs running and desired",
                  "App instances running against those desired. A gap that does not close means instances crash or cannot be placed.",
                  [target(f'max by (bosh_deployment) (LRPsRunning{{origin="bbs",{D}}})', "running {{bosh_deployment}}"),
                   target(f'max by (bosh_deployment) (LRPsDesired{{origin="bbs",{D}}})', "desired {{bosh_deployment}}")],
                  "short", steps("green"), width=8),
            panel("Auctions failed",
                  "App instances the auctioneer could not place in 5 minutes. Any is a sign the cells are out of memory, disk or containers where the app must run.",
                  [target(f"sum by (bosh_deployment) (increase(AuctioneerLRPAuctionsFailed_total{{{D}}}[5m]))", "LRPs {{bosh_deployment}}"),
                   target(f"sum by (bosh_deployment) (increase(AuctioneerTaskAuctionsFailed_total{{{D}}}[5m]))", "tasks {{bosh_deployment}}")],
                  "short", steps("green", (0.5, "orange"), (1, "red")), width=8),
            panel("BBS request latency",
                  "The slowest BBS API request of each interval. Above 5 s (warn) or 10 s (critical), Diego's components time out against it.",
                  [target(f'max by (bosh_job_ip) (RequestLatency{{origin="bbs",{D}}})', "{{bosh_job_ip}}")],
                  "ns", steps("green", (5e9, "orange"), (1e10, "red")), width=12),
            panel("Cell state fetch duration",
                  "Time the auctioneer takes to read every cell's state. Above 2 s (warn) or 5 s (critical), placement slows down and auctions time out.",
                  [target(f'max by (bosh_job_ip) (AuctioneerFetchStatesDuration{{origin="auctioneer",{D}}})', "{{bosh_job_ip}}")],
                  "ns", steps("green", (2e9, "orange"), (5e9, "red")), width=12),
        ]),
        ("Routing", [
            panel("Router throughput",
                  "Requests through the gorouters. A sudden drop with no traffic change upstream means the routers or their load balancer fail.",
                  [target(f"bosh_deployment:cf_router_requests:rate5m{{{D}}}", "{{bosh_deployment}}")],
                  "reqps", steps("green"), width=8),
            panel("Router 5xx",
                  "Share of responses through the routers that are 5xx. Above 5% for minutes users see errors: find the apps with the most (the Apps dashboard) or the routers' own bad gateways.",
                  [target(f"bosh_deployment:cf_router_5xx:ratio_rate5m{{{D}}}", "{{bosh_deployment}}")],
                  "percentunit", steps("green", (0.01, "orange"), (0.05, "red")), width=8),
            panel("Router latency",
                  "Average time the routers take per request, backends included. Above 100 ms (warn) or 150 ms (critical) apps or the routers are slow.",
                  [target(f'avg by (bosh_job_ip) (latency{{origin="gorouter",{D}}})', "{{bosh_job_ip}}")],
                  "ms", steps("green", (100, "orange"), (150, "red")), width=8),
        ]),
        ("Cloud Controller and UAA", [
            panel("Cloud Controller outstanding requests",
                  "Requests each API VM is working on. Near 20 (its thread pool) for long, cf push and the API queue: scale the api instance group.",
                  [target(f'max by (bosh_job_ip) (requests_outstanding_gauge{{origin="cc",{D}}})', "{{bosh_job_ip}}")],
                  "short", steps("green", (15, "orange"), (20, "red")), width=8),
            panel("Cloud Controller 5xx",
                  "5xx answers of the Cloud Controller API per second. Any steady rate means cf commands fail for users.",
                  [target(f'sum by (bosh_deployment) (rate(http_status_5XX{{origin="cc",{D}}}[5m]))', "{{bosh_deployment}}")],
                  "reqps", steps("green", (0.1, "orange"), (1, "red")), width=8),
            panel("UAA requests in flight",
                  "Requests each UAA VM is serving. A climb with no more logins means UAA or its database is slow: tokens and logins wait.",
                  [target(f'max by (bosh_job_ip) (server_inflight_count{{origin="uaa",{D}}})', "{{bosh_job_ip}}")],
                  "short", steps("green", (50, "orange"), (100, "red")), width=8),
        ]),
        ("Loggregator", [
            panel("Envelopes into Loggregator",
                  "Envelopes per second the agents, Dopplers and RLPs take in. A fall means emitters or agents stopped; a sharp rise, a noisy app.",
                  [target(f'sum by (origin) (rate(ingress_total{{origin=~"loggregator.*",{D}}}[5m]))', "{{origin}}")],
                  "short", steps("green"), width=12),
            panel("Doppler drops",
                  "Share of the envelopes Dopplers take in that they drop. Above 1% logs and metrics are lost before any consumer: scale the dopplers or find the slow consumer.",
                  [target(f"bosh_deployment:cf_doppler_dropped:ratio_rate5m{{{D}}}", "{{bosh_deployment}}")],
                  "percentunit", steps("green", (0.001, "orange"), (0.01, "red")), width=12),
        ]),
    ],
)

A = 'organization_name=~"$org",space_name=~"$space",app_name=~"$app"'

APPS = build(
    "cf-apps",
    "Cloud Foundry: Apps",
    "Each app's CPU, memory and disk against its quota, HTTP traffic, errors and latency, and log rate, per instance, by org, space and app name.",
    ["cloudfoundry", "cf-firehose-exporter"],
    [
        query_variable("org", "Org", 'label_values(cpu{origin="rep"}, organization_name)'),
        query_variable("space", "Space", 'label_values(cpu{origin="rep",organization_name=~"$org"}, space_name)'),
        query_variable("app", "App", 'label_values(cpu{origin="rep",organization_name=~"$org",space_name=~"$space"}, app_name)'),
    ],
    [
        ("Containers", [
            panel("CPU per instance",
                  "Each instance's CPU, in percent of one core. Steady near its entitlement the app is throttled and slows down.",
                  [target(f'cpu{{origin="rep",{A}}}', "{{app_name}}/{{instance_id}}")],
                  "percent", steps("green", (80, "orange"), (95, "red")), width=8),
            panel("Memory against quota",
                  "Each instance's memory as a share of its quota. At 100% the instance is killed and restarted (out of memory).",
                  [target(f'memory{{origin="rep",{A}}} / memory_quota{{origin="rep",{A}}}', "{{app_name}}/{{instance_id}}")],
                  "percentunit", steps("green", (0.8, "orange"), (0.95, "red")), width=8),
            panel("Disk against quota",
                  "Each instance's disk as a share of its quota. At 100% writes fail inside the container.",
                  [target(f'disk{{origin="rep",{A}}} / disk_quota{{origin="rep",{A}}}', "{{app_name}}/{{instance_id}}")],
                  "percentunit", steps("green", (0.8, "orange"), (0.95, "red")), width=8),
        ]),
        ("HTTP", [
            panel("Requests by status",
                  "Requests per second routed to the app, by status code (each request counted once, at the router). A fall to 0 with users waiting means the app's routes are gone.",
                  [target(f"sum by (app_name, status_code) (app:cf_http_requests:rate5m{{{A}}})", "{{app_name}} {{status_code}}")],
                  "reqps", steps("green"), width=8),
            panel("5xx ratio",
                  "Share of the app's requests answered 5xx. Above 1% users see errors; 502 from the router means the app is not answering at all.",
                  [target(f'(sum by (app_name) (app:cf_http_requests:rate5m{{{A},status_code=~"5.."}}) '
                          f"or 0 * sum by (app_name) (app:cf_http_requests:rate5m{{{A}}})) "
                          f"/ sum by (app_name) (app:cf_http_requests:rate5m{{{A}}})", "{{app_name}}")],
                  "percentunit", steps("green", (0.01, "orange"), (0.05, "red")), width=8),
            panel("Latency percentiles",
                  "Median, 95th and 99th percentile of the request time, from the http_duration_seconds histogram. A 95th above 1 s is slow for users.",
                  [target(f"histogram_quantile({q}, sum by (le, app_name) (app:cf_http_duration_seconds_bucket:rate5m{{{A}}}))",
                          f"p{int(q * 100)} {{{{app_name}}}}") for q in (0.5, 0.95, 0.99)],
                  "s", steps("green", (0.5, "orange"), (1, "red")), width=8),
            panel("Requests per instance",
                  "Requests per second to each instance. One instance far above the others is a sign of sticky sessions or of the others failing.",
                  [target(f"sum by (app_name, instance_id) (rate(http_total{{{A}}}[5m]))", "{{app_name}}/{{instance_id}}")],
                  "reqps", steps("green"), width=12),
            panel("Response size",
                  "Average size of the app's responses. A jump is a change of content or of clients.",
                  [target(f"sum by (app_name) (rate(http_response_size_bytes_sum{{{A}}}[5m])) "
                          f"/ sum by (app_name) (rate(http_response_size_bytes_count{{{A}}}[5m]))", "{{app_name}}")],
                  "bytes", steps("green"), width=12),
        ]),
        ("Logs", [
            panel("Log lines per second",
                  "Lines the app writes, by stream (OUT, ERR). A burst of ERR lines tells of failures; a rate near the app's log rate limit loses lines.",
                  [target(f"sum by (app_name, message_type) (rate(log_messages_total{{{A}}}[5m]))", "{{app_name}} {{message_type}}")],
                  "short", steps("green"), width=12),
            panel("Log bytes per second",
                  "Bytes of logs the app writes. Loggregator and syslog drains carry every one of them.",
                  [target(f"sum by (app_name) (rate(log_bytes_total{{{A}}}[5m]))", "{{app_name}}")],
                  "Bps", steps("green"), width=12),
        ]),
    ],
)

I = 'instance=~"$instance"'

EXPORTER = build(
    "cf-firehose-exporter",
    "cf-firehose-exporter",
    "The exporter itself: is it streaming, keeping up and keeping everything.",
    ["cf-firehose-exporter"],
    [query_variable("instance", "Exporter", "label_values(cf_firehose_exporter_up, instance)")],
    [
        ("Stream", [
            panel("Streaming",
                  "1 while authenticated and reading the stream. 0 means every Cloud Foundry series is going stale: see the connect errors below and the exporter's log.",
                  [target(f"cf_firehose_exporter_up{{{I}}}", "{{instance}}")],
                  "bool", steps("red", (1, "green")), kind="stat", width=6),
            panel("Last envelope",
                  "Seconds since the last envelope arrived. A healthy foundation sends several a second; minutes mean the stream is stuck.",
                  [target(f"time() - cf_firehose_exporter_last_envelope_received_timestamp_seconds{{{I}}}", "{{instance}}")],
                  "s", steps("green", (60, "orange"), (300, "red")), kind="stat", width=6),
            panel("Open connections",
                  "Connections to Loggregator. Fewer than --doppler.connections means some are reconnecting.",
                  [target(f"cf_firehose_exporter_connections{{{I}}}", "{{instance}}")],
                  "short", steps("red", (1, "green")), kind="stat", width=6),
            panel("Series held",
                  "Series in the store. Near --metrics.max-series new series are dropped (see Series rejected).",
                  [target(f"cf_firehose_exporter_series{{{I}}}", "{{instance}}")],
                  "short", steps("green"), kind="stat", width=6),
            panel("Envelopes per second by type",
                  "What arrives, by event type (v1) or message (v2). A type that drops to 0 means its emitters or a filter stopped it.",
                  [target(f"sum by (event_type) (rate(cf_firehose_exporter_envelopes_received_total{{{I}}}[5m]))", "{{event_type}}")],
                  "short", steps("green"), width=12),
            panel("Envelopes dropped",
                  "Envelopes dropped before the store, by reason. queue_full means ingestion cannot keep up; any rate loses samples.",
                  [target(f"sum by (reason) (rate(cf_firehose_exporter_envelopes_dropped_total{{{I}}}[5m]))", "{{reason}}")],
                  "short", steps("green", (0.1, "red")), width=12),
        ]),
        ("Connections", [
            panel("Reconnects",
                  "Reconnections in the last hour, by reason. A few a day are Loggregator's own restarts; a steady rate means the connection keeps failing.",
                  [target(f"sum by (reason) (increase(cf_firehose_exporter_reconnects_total{{{I}}}[1h])) or on() vector(0)", "{{reason}}")],
                  "short", steps("green", (5, "orange"), (20, "red")), width=8),
            panel("Connect errors",
                  "Failed connection attempts in the last hour, by reason: uaa_credentials, unauthorized, rejected, unreachable. Each names what to fix.",
                  [target(f"sum by (reason) (increase(cf_firehose_exporter_connect_errors_total{{{I}}}[1h])) or on() vector(0)", "{{reason}}")],
                  "short", steps("green", (1, "orange"), (10, "red")), width=8),
            panel("Slow-consumer alerts",
                  "Signs in the last hour that Doppler drops envelopes for this exporter. Any: add connections or exporters on the same subscription.",
                  [target(f"increase(cf_firehose_exporter_slow_consumer_alerts_total{{{I}}}[1h])", "{{instance}}")],
                  "short", steps("green", (1, "red")), width=8),
            panel("Token requests",
                  "UAA token requests in the last hour, by result (none for the RLP, which takes certificates). Failures mean wrong credentials or an unreachable UAA.",
                  [target(f"sum by (result) (increase(cf_firehose_exporter_token_requests_total{{{I}}}[1h])) or on() vector(0)", "{{result}}")],
                  "short", steps("green"), width=8),
            panel("Decode errors",
                  "Frames per second that were not valid envelopes, counted and skipped. Any steady rate loses metrics.",
                  [target(f"rate(cf_firehose_exporter_decode_errors_total{{{I}}}[5m])", "{{instance}}")],
                  "short", steps("green", (0.01, "red")), width=8),
            panel("Series rejected",
                  "New series refused per second, by reason: cap (--metrics.max-series), conflict (one name as two types), name or label limits.",
                  [target(f"sum by (reason) (rate(cf_firehose_exporter_series_rejected_total{{{I}}}[5m]))", "{{reason}}")],
                  "short", steps("green", (0.01, "red")), width=8),
        ]),
        ("Scrapes", [
            panel("Scrape duration",
                  "Time the last scrape took to encode. Near the scrape timeout Prometheus gets no data: filter series or shard the exporter.",
                  [target(f"cf_firehose_exporter_scrape_duration_seconds{{{I}}}", "{{instance}}")],
                  "s", steps("green", (5, "orange"), (10, "red")), width=12),
            panel("Series expired",
                  "Series removed per second for not being updated within --metrics.expiration: apps and VMs that went away.",
                  [target(f"rate(cf_firehose_exporter_series_expired_total{{{I}}}[5m])", "{{instance}}")],
                  "short", steps("green"), width=12),
        ]),
        ("Remote-write", [
            panel("Samples written per second",
                  "Samples handed to each --remote-write.url, by result: sent, failed (refused by the store with a 4xx: out of its out-of-order window, a limit) or dropped (the queue was full). Empty without --remote-write.url.",
                  [target(f"sum by (endpoint, result) (rate(cf_firehose_exporter_remote_write_samples_total{{{I}}}[5m]))", "{{endpoint}} {{result}}")],
                  "short", steps("green"), width=8),
            panel("Queue",
                  "Samples waiting for each endpoint. Growing: the store is slow or down; at --remote-write.queue-capacity new samples are dropped.",
                  [target(f"cf_firehose_exporter_remote_write_queue_length{{{I}}}", "{{instance}} {{endpoint}}")],
                  "short", steps("green"), width=8),
            panel("Since the last request accepted",
                  "Time since each endpoint last accepted a request. More than a few seconds while envelopes arrive: look at the exporter's log and the retries.",
                  [target(f"time() - cf_firehose_exporter_remote_write_last_success_timestamp_seconds{{{I}}}", "{{instance}} {{endpoint}}")],
                  "s", steps("green", (30, "orange"), (300, "red")), width=8),
            panel("Request duration (p99)",
                  "The slowest requests to each endpoint. Near --remote-write.timeout requests fail and are retried.",
                  [target(f"histogram_quantile(0.99, sum by (le, endpoint) (rate(cf_firehose_exporter_remote_write_send_duration_seconds_bucket{{{I}}}[5m])))", "{{endpoint}}")],
                  "s", steps("green", (5, "orange"), (20, "red")), width=12),
            panel("Retries",
                  "Requests sent again in the last hour after a 5xx, a 429 or a network error. A steady rate means the store cannot keep up.",
                  [target(f"sum by (endpoint) (increase(cf_firehose_exporter_remote_write_retries_total{{{I}}}[1h])) or on() vector(0)", "{{endpoint}}")],
                  "short", steps("green", (10, "orange"), (100, "red")), width=12),
        ]),
    ],
)

DASHBOARDS = {
    "cf-platform-kpis.json": PLATFORM,
    "cf-apps.json": APPS,
    "cf-firehose-exporter.json": EXPORTER,
}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, dashboard in DASHBOARDS.items():
        text = json.dumps(dashboard, indent=2, sort_keys=False) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("not what dashboards/generate.py writes: " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
