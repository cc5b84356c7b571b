"""The PNG chart for bench/run.py: cost per operation against N, us and the peers, floors as lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (row op, label, colour, marker) for our own operations.
_OURS = [
    ("create (durable)", "create (durable)", "tab:blue", "o"),
    ("update (durable)", "update (durable)", "tab:cyan", "o"),
    ("delete (durable)", "delete (durable)", "tab:purple", "o"),
    ("fetch by id", "fetch by id", "tab:green", "s"),
    ("list page of 20", "list page of 20", "tab:olive", "s"),
    ("open (KDF apart)", "open (KDF apart)", "tab:gray", "^"),
]
_PEERS = [
    ("pykeepass add + save", "pykeepass add + save", "tab:red", "x"),
    ("pykeepass fetch (find_entries)", "pykeepass fetch", "tab:red", "+"),
    ("cryptfile set_password", "cryptfile set_password", "tab:orange", "x"),
    ("cryptfile get_password", "cryptfile get_password", "tab:orange", "+"),
]


def draw(results: dict[str, Any], path: Path) -> bool:
    """Write the chart; False (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on CI machines
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows: list[dict[str, Any]] = results["rows"]
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    for op, label, colour, marker in _OURS + _PEERS:
        pts = sorted((r["n"], r["median_s"]) for r in rows if r["op"] == op and r["n"])
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        style = "--" if op.startswith(("pykeepass", "cryptfile")) else "-"
        ax.plot(xs, [y * 1e3 for y in ys], style, color=colour, marker=marker, label=label)
    floors = results["floors"]
    ax.axhline(floors["fsync"]["median_s"] * 1e3, color="black", lw=0.8, ls=":", label="floor: append + fdatasync")
    crypto_label = "floor: secretbox open + msgpack decode"
    ax.axhline(floors["crypto"]["median_s"] * 1e3, color="tab:green", lw=0.8, ls=":", label=crypto_label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("secrets in the store (N)")
    ax.set_ylabel("median cost per operation (ms, log)")
    machine = results["machine"]
    ax.set_title(
        f"cbk-vault vs peers, {results['date'][:10]}, {machine['cpus']} CPU, load {results['load']['end'][0]:.1f}"
        + (" (quick)" if results["quick"] else "")
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
