#!/usr/bin/env python3
"""The scaling model of docs/scaling.md: what each process reads from Redis,
what each Redis shard does, and memory per process, for 10k / 100k / 1M
connected users over 1 / 6 / 50 processes, today (one stream every process
reads) and with the partitioned bus of issue 28.

Every constant below is a measurement on this machine kind (2 cores) or an
assumption, and says which. `python3 scripts/scaling_model.py` prints the
tables docs/scaling.md quotes; `--markdown` prints them as Markdown.
"""

import argparse
import math

# --- Measured (BENCHMARKS.md, "Several processes on Redis (issue 14)", and
# docs/scaling.md "Measured inputs"; 1 KiB payloads) ---
BYTES_IN_PER_EVENT = 1344  # into Redis per published event (INFO, one process)
BYTES_OUT_PER_EVENT_READ = 1215  # out of Redis per event per reading process
BUS_EVENTS_PER_S_PER_PROCESS = 64_363  # Redis bus end to end, one process
APPEND_PER_S_PER_CORE = 150_000  # today's append script (GET, EXISTS, XADD), 1 KiB
# A script doing XADD + SPUBLISH of the new id with the 1 KiB payload
# (concatenated in Lua), a 10 000-entry stream: 125 865–136 612/s; without
# the concatenation 173 812/s. The model takes the lower figure.
XADD_PUBLISH_PER_S_PER_CORE = 126_000
SUBSCRIPTION_BYTES_IN_REDIS = 228  # per sharded channel subscribed (20 000: +4.56 MB)
READ_ENTRIES_PER_S_PER_CORE = 694_000  # XRANGE COUNT 10 of 1 KiB entries
ENTRY_BYTES_IN_REDIS = 1_150  # memory per 1 KiB stream entry (INFO memory)
RSS_PER_STREAM = 4_300  # bytes per idle stream (19 000 streams)
WRITE_US_PER_STREAM = 12.0  # a broadcast's write per stream (10 000 in ~120 ms)

# --- Assumed (the workload; change them here) ---
CONNECTIONS_PER_USER = 1.5  # tabs and devices
USER_EVENTS_PER_USER_PER_S = 1 / 60  # one notification per user per minute
HEAVY_USER_EVENTS_PER_USER_PER_S = 1 / 6  # a busy product: ten per minute
BROADCASTS_PER_S = 1 / 60  # announcements
PARTITIONS = 256
SUBSCRIBERS_PER_USER_EVENT = 1.3  # processes holding one user's streams
HISTORY_WINDOW_S = 120  # what a partition's stream keeps for resumes
BASE_RSS = 35 * 2**20  # a process with no stream (measured: 31–35 MiB)

USERS = [10_000, 100_000, 1_000_000]
PROCESSES = [1, 6, 50]


def fmt(n, unit=""):
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g} {suffix}{unit}".strip()
    return f"{n:.3g} {unit}".strip()


def pct(x):
    return f"{100 * x:.0f} %" if x >= 0.1 else f"{100 * x:.2g} %"


def today(users, procs, rate):
    """One Redis stream; every process reads every event."""
    events = users * rate + BROADCASTS_PER_S
    read_per_proc = events
    out_bytes = procs * events * BYTES_OUT_PER_EVENT_READ
    redis_core = events / APPEND_PER_S_PER_CORE + procs * events / READ_ENTRIES_PER_S_PER_CORE
    proc_core = read_per_proc / BUS_EVENTS_PER_S_PER_PROCESS if procs > 1 else 0.0
    return {
        "events": events,
        "read_per_proc": read_per_proc,
        "read_bytes_per_proc": read_per_proc * BYTES_OUT_PER_EVENT_READ,
        "redis_in": events * BYTES_IN_PER_EVENT,
        "redis_out": out_bytes,
        "redis_core": redis_core,
        "proc_core_reading": proc_core,
        "shards": 1,
    }


def partitions_followed(users_per_proc):
    """Expected partitions holding at least one of a process's users, with
    users spread over processes by the load balancer (not by partition)."""
    return PARTITIONS * (1 - (1 - 1 / PARTITIONS) ** users_per_proc)


def partitioned(users, procs, rate, per_user_live=True):
    """Issue 28: user events in their partition's stream (history) and, live,
    on the user's own channel (only processes holding that user's streams
    receive them); broadcasts and tag events on a wide stream every process
    reads. `per_user_live=False`: live delivery by reading whole partitions."""
    user_events = users * rate
    users_per_proc = users / procs
    if per_user_live:
        own = user_events / procs * SUBSCRIBERS_PER_USER_EVENT if procs > 1 else user_events
    else:
        own = user_events * partitions_followed(users_per_proc) / PARTITIONS
    read_per_proc = own + BROADCASTS_PER_S
    # Per user event: the append (XADD) and, per_user_live, one PUBLISH
    # delivered to ~1.3 processes (an entry read each).
    per_event_core = 1 / XADD_PUBLISH_PER_S_PER_CORE
    if per_user_live:
        per_event_core += min(SUBSCRIBERS_PER_USER_EVENT, procs) / READ_ENTRIES_PER_S_PER_CORE
        readers = min(SUBSCRIBERS_PER_USER_EVENT, procs)
    else:
        readers = procs * partitions_followed(users_per_proc) / PARTITIONS
        per_event_core += readers / READ_ENTRIES_PER_S_PER_CORE
    total_core = user_events * per_event_core + BROADCASTS_PER_S * procs / READ_ENTRIES_PER_S_PER_CORE
    # Shards: enough that none runs above half a core.
    shards = max(1, math.ceil(total_core / 0.5))
    return {
        "events": user_events + BROADCASTS_PER_S,
        "read_per_proc": read_per_proc,
        "read_bytes_per_proc": read_per_proc * BYTES_OUT_PER_EVENT_READ,
        "redis_in": (user_events + BROADCASTS_PER_S) * BYTES_IN_PER_EVENT,
        "redis_out": (user_events * readers + BROADCASTS_PER_S * procs)
        * BYTES_OUT_PER_EVENT_READ,
        "redis_core": total_core,
        "proc_core_reading": read_per_proc / BUS_EVENTS_PER_S_PER_PROCESS if procs > 1 else 0.0,
        "shards": shards,
        "per_shard_core": total_core / shards,
        "partitions_followed": partitions_followed(users_per_proc),
    }


def memory_per_proc(users, procs):
    streams = users * CONNECTIONS_PER_USER / procs
    return streams, BASE_RSS + streams * RSS_PER_STREAM


def broadcast_seconds_per_proc(users, procs):
    """Core time one broadcast costs each process (its own streams)."""
    return users * CONNECTIONS_PER_USER / procs * WRITE_US_PER_STREAM / 1e6


def emit(head, rows, markdown):
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        for r in [head] + rows:
            print("  ".join(r))
    print()


def tables(rate, markdown):
    reads, redis = [], []
    for users in USERS:
        for procs in PROCESSES:
            t = today(users, procs, rate)
            a = partitioned(users, procs, rate)
            b = partitioned(users, procs, rate, per_user_live=False)
            streams, rss = memory_per_proc(users, procs)
            shards = a["shards"]
            reads.append(
                [
                    fmt(users),
                    str(procs),
                    fmt(t["events"], "/s"),
                    f"{fmt(t['read_per_proc'], '/s')} · {fmt(t['read_bytes_per_proc'], 'B/s')} · {pct(t['proc_core_reading'])}",
                    f"{fmt(a['read_per_proc'], '/s')} · {fmt(a['read_bytes_per_proc'], 'B/s')} · {pct(a['proc_core_reading'])}",
                    f"{fmt(b['read_per_proc'], '/s')} ({b['partitions_followed']:.0f} of {PARTITIONS})",
                ]
            )
            redis.append(
                [
                    fmt(users),
                    str(procs),
                    f"{fmt(t['redis_out'], 'B/s')} · {pct(t['redis_core'])}",
                    f"{fmt(a['redis_out'], 'B/s')} · {pct(a['redis_core'])} · {shards}",
                    f"{fmt(streams)} · {fmt(rss, 'B')}",
                    fmt(t["events"] * HISTORY_WINDOW_S * ENTRY_BYTES_IN_REDIS, "B"),
                    f"{broadcast_seconds_per_proc(users, procs) * 1e3:.0f} ms",
                ]
            )
    emit(
        [
            "users",
            "processes",
            "events",
            "today: read per process (events · bytes · core)",
            "after, per-user live: read per process",
            "after, whole partitions followed",
        ],
        reads,
        markdown,
    )
    emit(
        [
            "users",
            "processes",
            "Redis today: out · CPU (one core)",
            "Redis after: out · CPU (all shards) · shards at ≤ 50 %",
            "streams · RSS per process",
            f"Redis memory for {HISTORY_WINDOW_S} s of replay",
            "one broadcast: core time per process",
        ],
        redis,
        markdown,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    for label, rate in (
        ("one notification per user per minute", USER_EVENTS_PER_USER_PER_S),
        ("ten per user per minute", HEAVY_USER_EVENTS_PER_USER_PER_S),
    ):
        print(f"\n{label}, {BROADCASTS_PER_S * 60:.0f} broadcast per minute, "
              f"{CONNECTIONS_PER_USER} streams per user, {PARTITIONS} partitions\n")
        tables(rate, args.markdown)


if __name__ == "__main__":
    main()
