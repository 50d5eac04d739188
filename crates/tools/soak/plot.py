"""Plots a soak run (minebox-soak's output directory) to a PNG.

Usage: plot.py OUT_DIR PNG
One row per process (descriptors, RSS, CPU), a row of load on top; quiet-ZMQ windows
shaded, reconnect storms as grey dashes, node restarts and the crash as red lines. Each
panel's title gives the Theil-Sen slope per hour over the second half (from verdict.json).
"""
import csv
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out, png = sys.argv[1], sys.argv[2]
verdict = json.load(open(f"{out}/verdict.json"))
figures = {f["process"]: f for f in verdict["figures"]}

series = defaultdict(lambda: defaultdict(list))
for r in csv.DictReader(open(f"{out}/samples.csv")):
    s = series[r["process"]]
    s["t"].append(float(r["t_secs"]) / 60)
    s["fds"].append(int(r["fds"]))
    s["sockets"].append(int(r["sockets"]))
    s["rss"].append(int(r["rss_kib"]) / 1024)
    s["cpu"].append(float(r["cpu_percent"]) if r["cpu_percent"] else float("nan"))

load = defaultdict(list)
for r in csv.DictReader(open(f"{out}/load.csv")):
    for k, v in r.items():
        load[k].append(float(v) if v else float("nan"))
load_t = [t / 60 for t in load["t_secs"]]

events = list(csv.DictReader(open(f"{out}/events.csv")))
order = [
    "minebox-stratum",
    "minebox-status",
    "minebox-supervisor",
    "minebox-snapshot-agent",
    "minebox-updater",
    "bitcoind",
    "minebox-soak",
]
procs = [p for p in order if p in series]

fig, axes = plt.subplots(len(procs) + 1, 3, figsize=(16, 2.6 * (len(procs) + 1)), sharex=True)
minutes = verdict["duration_secs"] / 60


def mark(ax):
    for a, b in verdict["quiet_windows_secs"]:
        ax.axvspan(a / 60, b / 60, color="#ffe9a8", alpha=0.6, lw=0)
    for e in events:
        t = float(e["t_secs"]) / 60
        if e["event"] == "storm":
            ax.axvline(t, color="grey", ls="--", lw=0.8)
        elif e["event"] in ("node-restart", "node-crash"):
            ax.axvline(t, color="red", lw=0.9, ls="-" if e["event"] == "node-restart" else ":")
    ax.axvline(minutes / 2, color="black", lw=0.5, alpha=0.4)
    ax.grid(alpha=0.3)


def delta(values):
    return [float("nan")] + [b - a for a, b in zip(values, values[1:])]


per_min = 60 / verdict["sample_secs"]
ax = axes[0][0]
ax.plot(load_t, load["miners_working"], label="miners with a job")
ax.set_title("Load: miners with work")
ax.legend(fontsize=7, loc="lower right")
ax = axes[0][1]
ax.plot(load_t, [d * per_min for d in delta(load["shares_accepted"])], label="shares accepted/min")
ax.plot(load_t, [d * per_min for d in delta(load["page_requests"])], label="page requests/min")
ax.plot(load_t, [d * per_min for d in delta(load["page_failures"])], label="page failures/min")
ax.set_title("Load: shares and page requests per minute")
ax.legend(fontsize=7, loc="lower right")
ax = axes[0][2]
ax.plot(load_t, load["streams_open"], label="event streams open")
ax.plot(load_t, [d * per_min for d in delta(load["hostile_stratum_connections"])], label="hostile stratum conns/min")
ax.plot(load_t, load["page_slowest_ms"], label="slowest page answer, ms")
ax.set_title("Load: streams, hostile clients, page latency")
ax.legend(fontsize=7, loc="upper right")
for ax in axes[0]:
    mark(ax)

for row, p in enumerate(procs, start=1):
    s = series[p]
    f = figures.get(p, {})
    judged = "" if f.get("judged") else " (not judged)"
    ax = axes[row][0]
    ax.plot(s["t"], s["fds"], ".-", ms=3, label="descriptors")
    ax.plot(s["t"], s["sockets"], ".-", ms=2, lw=0.7, alpha=0.7, label="of them sockets")
    ax.set_title(f"{p}{judged}: descriptors ({f.get('fds_per_hour', 0):+.1f}/h)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[row][1]
    ax.plot(s["t"], s["rss"], ".-", ms=3, color="tab:green")
    ax.set_title(f"{p}: RSS MiB ({f.get('rss_mib_per_hour', 0):+.2f} MiB/h)", fontsize=9)
    ax.set_ylim(bottom=0)
    ax = axes[row][2]
    ax.plot(s["t"], s["cpu"], ".-", ms=3, color="tab:orange")
    ax.set_title(f"{p}: CPU % of a core ({f.get('cpu_per_hour', 0):+.1f} pts/h)", fontsize=9)
    ax.set_ylim(bottom=0)
    for ax in axes[row]:
        mark(ax)
for ax in axes[-1]:
    ax.set_xlabel("minutes")

status = "PASS" if verdict["pass"] else "FAIL"
fig.suptitle(
    f"MineBox soak: {minutes:.0f} min, {verdict['miners']} miners, sampled every {verdict['sample_secs']:.0f} s - {status}. "
    "Shaded: node's ZMQ quiet; grey dashes: reconnect storms; red: node restart (dotted: kill -9); "
    "slopes: Theil-Sen over the second half",
    fontsize=10,
)
fig.tight_layout(rect=(0, 0, 1, 0.97))
fig.savefig(png, dpi=80)
print(f"plot: {png}")
