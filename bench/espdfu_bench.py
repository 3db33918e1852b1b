"""Pieces the bench scripts share (bench/store-history.sh, bench/loop-load.py):
a blocking espdfud client, percentiles, the machine's description and the
README section writer. Standard library only."""
import json
import os
import platform
import socket
import sqlite3
import subprocess


def ms(x):
    return f"{x * 1000:.2f} ms"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Client:
    """One connection to espdfud's socket; call() waits for its own reply."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.settimeout(60)  # a hang is an error, not a bench that never ends
        self.buf = b""
        self.id = 0

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("espdfud closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, method, params=None, fd=None):
        self.id += 1
        req = {"id": self.id, "method": method}
        if params is not None:
            req["params"] = params
        data = (json.dumps(req, separators=(",", ":")) + "\n").encode()
        if fd is None:
            self.s.sendall(data)
        else:
            socket.send_fds(self.s, [data], [fd])
        while True:
            m = self.line()
            if m.get("id") == self.id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    def close(self):
        self.s.close()


def disk(path):
    try:
        dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", path],
                             capture_output=True, text=True).stdout.split()
        name = os.path.basename(dev[0])
        rota = open(f"/sys/block/{name}/queue/rotational").read().strip()
        kind = {"0": "non-rotational", "1": "rotational"}.get(rota, "?")
        return f"{dev[0]} ({dev[1]}, reports {kind})"
    except Exception:
        return "unknown"


def machine(path):
    """One line: CPUs, RAM, the disk holding path, SQLite, kernel."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.machine())
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return (f"{os.cpu_count()} CPUs ({cpu}), {ram:.0f} GiB RAM, disk {disk(path)}, "
            f"SQLite {sqlite3.sqlite_version}, kernel {platform.release()}")


def table(rows):
    """rows: (measure, value, goal, met: True/False/None) -> markdown lines."""
    out = ["| measure | result | goal | |", "| --- | --- | --- | --- |"]
    for m, v, g, ok in rows:
        out.append(f"| {m} | {v} | {g} | {'' if ok is None else ('met' if ok else '**MISSED**')} |")
    return out


def write_section(readme, marker, section):
    """Put section between <!-- marker:begin --> and <!-- marker:end --> in readme."""
    text = open(readme).read()
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    if begin in text and end in text:
        text = text[:text.index(begin) + len(begin)] + "\n" + section + text[text.index(end):]
        open(readme, "w").write(text)
        print(f"written into {readme}")
    else:
        print(f"{readme} has no {marker} markers; not written", flush=True)
