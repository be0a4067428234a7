#!/usr/bin/env python3
"""The head-to-head of one `make bench` run: ours vs Nchan vs the naive
baseline, as a Markdown table (stdout) and charts (PNG), drawn from the
raw results (`target/bench/results.jsonl`, one JSON object per run).

    make charts                      # target/bench/results.jsonl -> benches/charts/
    scripts/charts.py RESULTS.jsonl OUT_DIR

Only what the run measured appears; a figure with several runs shows the
median (and, in the table, every run). Matplotlib comes from PyPI
(`make charts` installs it into .tools/python).
"""

import json
import statistics
import sys
from pathlib import Path

TARGETS = [("ours", "ours"), ("nchan", "Nchan"), ("baseline", "naive axum")]
COLOURS = {"ours": "#1f77b4", "nchan": "#d62728", "baseline": "#7f7f7f", "floor": "#2ca02c"}


def load(path):
    runs = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            runs.append(json.loads(line))
    return runs


def select(runs, scenario, target=None, **fields):
    """Runs of one scenario (and target), without variants, matching `fields`."""
    out = []
    for r in runs:
        if r.get("scenario") != scenario or "variant" in r:
            continue
        if target is not None and r.get("target") != target:
            continue
        if all(r.get(k) == v for k, v in fields.items()):
            out.append(r)
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def num(n):
    """A count with thin groups: 19 000."""
    return f"{n:,}".replace(",", " ")


def fmt(value, unit="", digits=1):
    if value is None:
        return "—"
    if isinstance(value, float) and digits:
        text = f"{value:,.{digits}f}"
    else:
        text = f"{round(value):,}"
    return text.replace(",", " ") + unit


def cell(values, unit="", digits=1):
    """The median in bold when there are several runs, each run after it."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return fmt(values[0], unit, digits)
    runs = " / ".join(fmt(v, "", digits) for v in values)
    return f"{fmt(median(values), unit, digits)} ({runs})"


def broadcast_runs(runs, target, rate):
    return select(runs, "broadcast", target, rate=rate) if rate else []


def first_broadcast(runs, target):
    """The first broadcast run of `target`: the only one on a fresh server
    (later runs start with the memory the allocator kept from earlier
    ones, which hides growth), so the one whose memory figures count."""
    return select(runs, "broadcast", target)[:1]


def rates(runs):
    return sorted({r.get("rate") for r in select(runs, "broadcast") if r.get("rate")})


def table(runs):
    rows = []
    floor = select(runs, "floor")

    def row(label, values_of, unit="", digits=1, floor_value=None):
        cells = [cell(values_of(t), unit, digits) for t, _ in TARGETS]
        if all(c == "—" for c in cells):
            return
        rows.append((label, cells, floor_value or ""))

    sizes = sorted({r["clients"] for r in select(runs, "idle") if not r.get("reuse")})
    for n in sizes:
        row(f"idle: RSS per stream, {num(n)} streams",
            lambda t: [r.get("bytes_per_connection") for r in select(runs, "idle", t, clients=n, reuse=False)],
            " B", 0)
    row("idle: per stream after a request on the connection",
        lambda t: [r.get("bytes_per_connection") for r in select(runs, "idle", t, reuse=True)], " B", 0)
    for n in sizes[-1:]:
        row(f"cold connects per second ({num(n)} streams, idle)",
            lambda t: [r.get("connects_per_second") for r in select(runs, "idle", t, clients=n, reuse=False)],
            "/s", 0)
    all_rates = rates(runs)
    floor_ms = median([f.get("write_loop_ms_median") for f in floor])
    for rate in all_rates:
        for p in ("p50", "p99"):
            row(f"broadcast 1 KiB at {rate}/s: {p}",
                lambda t: [r["latency_ms"][p] for r in broadcast_runs(runs, t, rate)], " ms", 1,
                floor_value=(f"{fmt(floor_ms, ' ms')} (one write loop)" if p == "p99" and floor_ms else None))
        row(f"broadcast at {rate}/s: deliveries lost",
            lambda t: [r["expected_deliveries"] - r["delivered"] for r in broadcast_runs(runs, t, rate)], "", 0)
    if all_rates:
        row("broadcast scenario: RSS per stream when idle (first run, fresh server)",
            lambda t: [r.get("idle_bytes_per_stream") for r in first_broadcast(runs, t)], " B", 0)
        row("… and after its broadcasts",
            lambda t: [r.get("loaded_bytes_per_stream") for r in first_broadcast(runs, t)], " B", 0)
    row("saturation: delivered/s (1 000 clients, 4 publishers)",
        lambda t: [r.get("delivered_per_second") for r in select(runs, "saturate", t)], "/s", 0)
    row("saturation: p99",
        lambda t: [r["latency_ms"]["p99"] for r in select(runs, "saturate", t)], " ms", 1)
    row("restart storm: 10 000 clients back, 100 stored each: all live",
        lambda t: [r["with_position"]["all_live_seconds"] for r in select(runs, "restart", t)], " s", 2)
    row("churn: streams left open after the cycles",
        lambda t: [r.get("open_after") for r in select(runs, "churn", t)], "", 0)
    row("churn: RSS growth",
        lambda t: [r.get("rss_growth_percent") for r in select(runs, "churn", t)], " %", 1)

    header = "| figure | " + " | ".join(name for _, name in TARGETS) + " | floor |"
    lines = [header, "|" + "---|" * (len(TARGETS) + 2)]
    for label, cells, floor_cell in rows:
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {floor_cell} |")
    return "\n".join(lines)


def charts(runs, out_dir):
    try:
        import matplotlib
    except ImportError:
        print("charts: no matplotlib here (`make charts` installs it); table only", file=sys.stderr)
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    # Latency distribution of each broadcast rate: the median run's
    # percentiles (by p99) per server.
    all_rates = rates(runs)
    if all_rates:
        fig, axes = plt.subplots(1, len(all_rates), figsize=(6 * len(all_rates), 4.2), squeeze=False)
        floor_ms = median([f.get("write_loop_ms_median") for f in select(runs, "floor")])
        for ax, rate in zip(axes[0], all_rates):
            for target, name in TARGETS:
                chosen = broadcast_runs(runs, target, rate)
                chosen = [r for r in chosen if r["latency_ms"].get("cdf")]
                if not chosen:
                    continue
                chosen.sort(key=lambda r: r["latency_ms"]["p99"])
                run = chosen[(len(chosen) - 1) // 2]
                cdf = run["latency_ms"]["cdf"]
                ax.plot(cdf, range(len(cdf)), label=f"{name} (p99 {run['latency_ms']['p99']:.0f} ms)",
                        color=COLOURS[target], linewidth=2)
            if floor_ms:
                ax.axvline(floor_ms, color=COLOURS["floor"], linestyle="--",
                           label=f"floor: a plain write loop ({floor_ms:.0f} ms)")
            clients = next((r["clients"] for r in select(runs, "broadcast")), 0)
            ax.set_title(f"Broadcast 1 KiB to {num(clients)} streams at {rate}/s")
            ax.set_xlabel("delivery latency (ms)")
            ax.set_ylabel("percentile of deliveries")
            ax.set_ylim(0, 100)
            ax.set_xlim(left=0)
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right")
        fig.tight_layout()
        path = out_dir / "broadcast-latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    # Memory per stream: idle at each size, then idle and after the
    # broadcasts in the broadcast scenario.
    groups = []
    sizes = sorted({r["clients"] for r in select(runs, "idle") if not r.get("reuse")})
    for n in sizes:
        groups.append((f"{num(n)} idle", lambda t, n=n: [
            r.get("bytes_per_connection") for r in select(runs, "idle", t, clients=n, reuse=False)]))
    if all_rates:
        groups.append(("10k, before\nbroadcasts", lambda t: [
            r.get("idle_bytes_per_stream") for r in first_broadcast(runs, t)]))
        groups.append(("10k, after\nbroadcasts", lambda t: [
            r.get("loaded_bytes_per_stream") for r in first_broadcast(runs, t)]))
    if groups:
        fig, ax = plt.subplots(figsize=(2.2 * len(groups) + 2, 4.2))
        width = 0.8 / len(TARGETS)
        for i, (target, name) in enumerate(TARGETS):
            heights = [median(values(target)) for _, values in groups]
            xs = [g + (i - (len(TARGETS) - 1) / 2) * width for g in range(len(groups))]
            bars = ax.bar(xs, [(h or 0) / 1024 for h in heights], width, label=name, color=COLOURS[target])
            for bar, h in zip(bars, heights):
                if h is not None:
                    ax.annotate(f"{h / 1024:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([label for label, _ in groups])
        ax.set_ylabel("server RSS per stream (KiB)")
        ax.set_title("Server memory per stream (lower is better)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / "rss-per-stream.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main():
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench/results.jsonl")
    out_dir = Path(sys.argv[2] if len(sys.argv) > 2 else "benches/charts")
    runs = load(results)
    if not runs:
        sys.exit(f"charts: no results in {results}")
    print(table(runs))
    for path in charts(runs, out_dir):
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
