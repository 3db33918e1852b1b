"""The measuring half of bench/loop-load.sh (which fills the store, starts the
emulator and espdfud, and cleans up): the status prober, the hammer, the
phases and the report.

    python3 bench/loop_load.py WORK DAEMON_PID EMU_PID

Environment (set by loop-load.sh): JOBS, BOARDS, CLIENTS, CONNS_PER_UID,
UIDS, POLL, ROUNDS, INTERVAL_MS, WARMUP_S, README, IMAGE.
"""
import array
import asyncio
import datetime
import json
import os
import random
import select
import signal
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import espdfu_bench  # noqa: E402
from espdfu_bench import Client, ms, pct  # noqa: E402

work, daemon_pid, emu_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
env = os.environ
n_jobs = int(env.get("JOBS", "1000000"))
n_boards = int(env.get("BOARDS", "32"))
n_clients = int(env.get("CLIENTS", "200"))
conns_per_uid = int(env.get("CONNS_PER_UID", "10"))
uids = [int(u) for u in env.get("UIDS", "61001 61002 61003 61004 61005").split()]
poll = int(env.get("POLL", "100"))
rounds = int(env.get("ROUNDS", "2"))
interval = float(env.get("INTERVAL_MS", "10")) / 1000
warmup = float(env.get("WARMUP_S", "3"))
image = env["IMAGE"]
group_gid = int(env.get("GROUP_GID", "65534"))
sock_path = f"{work}/espdfud.sock"
emu_ctl = f"{work}/emu.sock"
now = time.monotonic
FINAL = {"succeeded", "failed", "cancelled", "interrupted", "expired"}
ports = [f"1-{h}.{p}" for h in range(1, 5) for p in range(1, 9)]  # the fill's


def boards_of(bus):
    """The boards of one round: bus B, ports B-1.1 .. B-4.8. A bus per round,
    each plugged three times (warm-up, A, B): espdfu-emu allocates devnums
    round robin and fails to enumerate once they wrap on a bus ("failed to
    symlink .../sys/dev/char/189:N ...: File exists")."""
    return [f"{bus}-{h}.{p}" for h in range(1, 5) for p in range(1, 9)][:n_boards]


if n_boards > len(ports):
    sys.exit("at most 32 boards")
n_conns = conns_per_uid * len(uids)
if n_clients % n_conns:
    sys.exit(f"CLIENTS ({n_clients}) must be a multiple of the connections ({n_conns})")
streams_per_conn = n_clients // n_conns
pipeline = env.get("PIPELINE", "0") == "1"
stopping = []  # the hammer's: set once it stops on purpose


def log(*a):
    print(*a, flush=True)


# ---- the emulator's control socket ----
class Emu:
    def __init__(self):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(emu_ctl)
        self.f = self.s.makefile("rb")

    def send(self, line):
        self.s.sendall((line + "\n").encode())
        reply = self.f.readline().decode().rstrip("\n")
        if not reply or reply.startswith("error"):
            raise RuntimeError(f"espdfu-emu: {line}: {reply}")
        return reply

    def report(self):
        return {b["path"]: b for b in json.loads(self.send("report"))}


# ---- children: the prober and the hammer ----
def fork(fn, *args):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001: report anything, then leave
            print(f"bench child {os.getpid()}: {e!r}", file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    return pid


def prober(out):
    """status every `interval` (the next one at once if a reply was late);
    records (send time, round trip)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    c = Client(sock_path)
    rec = array.array("d")
    tick = now()
    while not stop:
        t = now()
        c.call("status")
        rec.extend((t, now() - t))
        tick = max(tick + interval, now())
        while not stop and now() < tick:
            time.sleep(max(0.0, tick - now()))
    with open(out, "wb") as f:
        rec.tofile(f)


def request(rng):
    """One hammer request: (kind, params)."""
    limit = rng.randint(50, 1000)
    since = int(time.time()) - rng.randint(3600, 365 * 86400)
    path = rng.choice(ports)
    r = rng.random()
    if r < 0.2:
        return "jobs", "jobs", rng.choice([None, {"state": "active"}, {"path": path},
                                           {"limit": rng.randint(1, 100)}])
    if r < 0.5:
        return "history path", "history", {"path": path, "limit": limit}
    if r < 0.7:
        return "history since", "history", {"since": since, "limit": limit}
    if r < 0.85:
        return "history path+since", "history", {"path": path, "since": since, "limit": limit}
    return "history", "history", {"limit": limit}


class Conn(asyncio.Protocol):
    """A connection carrying several closed-loop request streams: each stream
    asks its next request as soon as its reply is in. With PIPELINE=1 every
    request is sent at once (up to streams_per_conn in flight, replies in
    order); by default one is in flight and the others wait on our side, since
    espdfud drops a connection with over 1 MiB of replies queued, which two
    pipelined `history` pages of 1000 exceed."""

    def __init__(self, rng, rec, errors, ready):
        self.rng, self.rec, self.errors, self.ready = rng, rec, errors, ready
        self.pending = []  # (asked, kind), oldest first
        self.waiting = []  # requests asked, not sent (one in flight unless pipeline)
        self.head = b""  # the start of the line being read
        self.id = 0
        self.sent = 0  # sent, not answered
        self.tr = None
        self.bytes = 0

    def connection_made(self, tr):
        self.tr = tr
        for _ in range(streams_per_conn):
            self.send()
        self.ready()

    def send(self):
        kind, method, params = request(self.rng)
        self.id += 1
        req = {"id": self.id, "method": method}
        if params is not None:
            req["params"] = params
        self.pending.append((now(), kind))
        self.waiting.append((json.dumps(req, separators=(",", ":")) + "\n").encode())
        self.flush()

    def flush(self):
        while self.waiting and (pipeline or self.sent == 0):
            self.tr.write(self.waiting.pop(0))
            self.sent += 1

    def data_received(self, data):
        self.bytes += len(data)
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                if len(self.head) < 64:
                    self.head += data[start:start + 64]
                return
            if len(self.head) < 64:
                self.head += data[start:min(nl, start + 64)]
            sent, kind = self.pending.pop(0)
            t = now()
            self.rec.setdefault(kind, array.array("d")).extend((t, t - sent))
            if b'"error"' in self.head[:40]:
                i = self.head.find(b'"code":"')
                code = self.head[i + 8:].split(b'"')[0].decode() if i >= 0 else "?"
                self.errors[f"{kind}: {code}"] = self.errors.get(f"{kind}: {code}", 0) + 1
            self.head = b""
            start = nl + 1
            self.sent -= 1
            self.send()

    def connection_lost(self, exc):
        if not stopping:
            self.errors["connection lost (dropped by espdfud)"] = self.errors.get(
                "connection lost (dropped by espdfud)", 0) + 1


def hammer(uid, seed, out_fd, ready_fd):
    os.setgroups([group_gid])
    os.setgid(group_gid)
    os.setuid(uid)
    rng = random.Random(seed)
    rec, errors = {}, {}
    conns = []
    up = [0]

    def ready():
        up[0] += 1
        if up[0] == conns_per_uid:
            os.write(ready_fd, b"r")

    async def main():
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        for _ in range(conns_per_uid):
            _, c = await loop.create_unix_connection(
                lambda: Conn(rng, rec, errors, ready), sock_path)
            conns.append(c)
        await stop
        stopping.append(1)
        for c in conns:
            c.tr.abort()

    t0, cpu0 = now(), os.times()
    asyncio.run(main())
    cpu = os.times()
    with os.fdopen(out_fd, "w") as f:
        json.dump({"rec": {k: v.tolist() for k, v in rec.items()}, "errors": errors,
                   "bytes": sum(c.bytes for c in conns), "wall": now() - t0,
                   "cpu": cpu.user + cpu.system - cpu0.user - cpu0.system}, f)


# ---- the controller ----
def cpu_of(pid):
    """user+system seconds of a process and its threads."""
    clk = os.sysconf("SC_CLK_TCK")
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / clk
    except (OSError, IndexError):
        return float("nan")


def threads_cpu(pid):
    """{tid: user+system seconds} of a process's threads."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        c = cpu_of(f"{pid}/task/{tid}")
        if c == c:  # not NaN: the thread was still there
            out[int(tid)] = c
    return out


mon = Client(sock_path)
emu = Emu()


def wait_devices(n, timeout=60):
    t_end = now() + timeout
    while mon.call("status")["devices"] != n:
        if now() > t_end:
            raise RuntimeError(f"espdfud never saw {n} devices")
        time.sleep(0.05)


def ended(st):
    return st["succeeded"] + st["failed"] + st["cancelled"]


def flash_round(label, boards):
    """Plug every board (new or replugged) and wait for its job to end.
    Returns the phase's figures."""
    before = emu.report()
    known = set(before)
    base = ended(mon.call("status"))
    wall0 = time.time()
    cpu_d0, cpu_e0, thr0 = cpu_of(daemon_pid), cpu_of(emu_pid), threads_cpu(daemon_pid)
    t0 = now()
    for b in boards:
        emu.send(f"plug {b} esp32s2:dfu,poll={poll}" if b not in known else f"replug {b} dfu")
    t_plugged = now()
    # Done when status counts them all as ended (polled 4 times a second: the
    # jobs themselves are read once, at the end).
    t_end = now() + 600
    while ended(mon.call("status")) < base + n_boards:
        if now() > t_end:
            raise RuntimeError(f"{label}: not every board flashed in 600 s")
        time.sleep(0.25)
    jobs = {}
    for j in mon.call("jobs", {"limit": 4 * n_boards})["jobs"]:
        if j["path"] in boards and j["created"] >= wall0 - 0.5:
            jobs[j["path"]] = j
    if len(jobs) != n_boards or any(j["state"] not in FINAL for j in jobs.values()):
        raise RuntimeError(f"{label}: {len(jobs)} jobs found for {n_boards} boards")
    t1 = max(j["finished"] for j in jobs.values()) - wall0 + t0  # monotonic, roughly
    cpu_d, cpu_e = cpu_of(daemon_pid) - cpu_d0, cpu_of(emu_pid) - cpu_e0
    thr = {t: c - thr0.get(t, 0.0) for t, c in threads_cpu(daemon_pid).items()}
    cpu_loop = thr.pop(daemon_pid, float("nan"))
    cpu_top = max(thr.values(), default=0.0)
    after = emu.report()
    for b in boards:
        emu.send(f"unplug {b}")
    wait_devices(0)
    bad = {p: j["state"] for p, j in jobs.items() if j["state"] != "succeeded"}
    if bad:
        raise RuntimeError(f"{label}: jobs did not succeed: {bad}")
    times = [j["finished"] - j["started"] for j in jobs.values()]
    transfers = sum(after[b]["control_transfers"] - before.get(b, {}).get("control_transfers", 0)
                    for b in boards)
    asked = [after[b]["asked_ms"] - before.get(b, {}).get("asked_ms", 0) for b in boards]
    span = max(j["finished"] for j in jobs.values()) - min(j["started"] for j in jobs.values())
    r = {"label": label, "t0": t0, "t1": t1, "plug_s": t_plugged - t0, "times": times,
         "span": span, "transfers": transfers, "asked_ms": asked,
         "late_ms": max(after[b]["max_poll_late_ms"] for b in boards),
         "cpu_daemon": cpu_d, "cpu_emu": cpu_e, "cpu_loop": cpu_loop, "cpu_top": cpu_top,
         "wall": t1 - t0}
    log(f"{label}: {n_boards} boards flashed; per board mean {statistics.mean(times):.2f} s, "
        f"max {max(times):.2f} s; all in {span:.1f} s; {transfers} control transfers "
        f"({transfers / span:,.0f}/s); espdfud CPU {cpu_d / r['wall']:.0%}, "
        f"(main thread {cpu_loop / r['wall']:.0%}, busiest other {cpu_top / r['wall']:.0%}), "
        f"espdfu-emu CPU {cpu_e / r['wall']:.0%}")
    return r


def main():
    prober_out = f"{work}/prober.bin"
    prober_pid = fork(prober, prober_out)
    kids = [prober_pid]
    phases = []
    hammer_runs = []
    try:
        for rnd in range(1, rounds + 1):
            boards = boards_of(rnd)
            log(f"round {rnd}: warm-up: {n_boards} new boards on {boards[0]}..{boards[-1]} "
                f"plugged and flashed (not counted)")
            flash_round(f"round {rnd}, warm-up", boards)
            phases.append(flash_round(f"round {rnd}, A (prober only)", boards))
            log(f"round {rnd}, B: {n_clients} request streams on {n_conns} connections "
                f"({len(uids)} uids), {warmup:.0f} s warm-up")
            rfd, wfd = os.pipe()
            hk = []
            h0 = now()
            for i, uid in enumerate(uids):
                out_r, out_w = os.pipe()  # the figures come back through it
                hk.append((fork(hammer, uid, 1000 * rnd + i, out_w, wfd), out_r))
                os.close(out_w)
            kids += [p for p, _ in hk]
            os.close(wfd)
            got = b""
            while len(got) < len(uids):
                if not select.select([rfd], [], [], 60)[0]:
                    raise RuntimeError("the hammer did not connect within 60 s")
                c = os.read(rfd, 16)
                if not c:
                    raise RuntimeError("a hammer process failed to connect (see above)")
                got += c
            os.close(rfd)
            time.sleep(warmup)
            b = flash_round(f"round {rnd}, B (hammered)", boards)
            phases.append(b)
            for p, _ in hk:
                os.kill(p, signal.SIGTERM)
            cpu_h = 0.0
            hrec, herr, hbytes = {}, {}, 0
            for p, out in hk:
                with os.fdopen(out) as f:
                    text = f.read()
                os.waitpid(p, 0)
                kids.remove(p)
                if not text:
                    raise RuntimeError("a hammer process failed (see above)")
                d = json.loads(text)
                cpu_h += d["cpu"]
                hbytes += d["bytes"]
                for k, v in d["rec"].items():
                    hrec.setdefault(k, []).extend(v)
                for k, v in d["errors"].items():
                    herr[k] = herr.get(k, 0) + v
            hammer_runs.append({"rec": hrec, "errors": herr, "bytes": hbytes, "cpu": cpu_h,
                                "wall": now() - h0, "phase": b})
    finally:
        for p in kids:
            try:
                os.kill(p, signal.SIGTERM)
                os.waitpid(p, 0)
            except ChildProcessError:
                pass
    rec = array.array("d")
    with open(prober_out, "rb") as f:
        rec.frombytes(f.read())
    samples = list(zip(rec[0::2], rec[1::2]))
    report(phases, hammer_runs, samples)


def report(phases, hammer_runs, samples):
    rows = []
    A = [p for p in phases if ", A" in p["label"]]
    B = [p for p in phases if ", B" in p["label"]]

    def rtts(ps):
        return [r for p in ps for t, r in samples if p["t0"] <= t <= p["t1"]]

    detail = []
    for name, ps in (("A, prober only", A), ("B, hammered", B)):
        xs = rtts(ps)
        over = sum(x > 0.010 for x in xs)
        p99 = pct(xs, 99)
        rows.append((f"status round trip, {name}: p50 / p99 / max ({len(xs)} requests)",
                     f"{ms(pct(xs, 50))} / {ms(p99)} / {ms(max(xs))}", "p99 <= 10 ms",
                     p99 <= 0.010))
        detail.append(f"- status round trips over 10 ms, {name}: {over} of {len(xs)}"
                      + (f"; over 50 ms: {sum(x > 0.050 for x in xs)}, over 100 ms: "
                         f"{sum(x > 0.100 for x in xs)}" if over else ""))
    for name, ps in (("A, prober only", A), ("B, hammered", B)):
        ts = [t for p in ps for t in p["times"]]
        rows.append((f"flash per board (job started to finished), {name}: mean / max",
                     f"{statistics.mean(ts):.2f} s / {max(ts):.2f} s", "", None))
    ratios = [statistics.mean(b["times"]) / statistics.mean(a["times"]) for a, b in zip(A, B)]
    ratio = statistics.mean(t for p in B for t in p["times"]) / \
        statistics.mean(t for p in A for t in p["times"])
    rows.append(("flash per board, mean B / mean A",
                 f"{ratio:.4f} (rounds: {', '.join(f'{r:.4f}' for r in ratios)})",
                 "<= 1.02", ratio <= 1.02))
    rmax = max(t for p in B for t in p["times"]) / max(t for p in A for t in p["times"])
    rows.append(("flash per board, max B / max A", f"{rmax:.4f}", "", None))
    for name, ps in (("A", A), ("B", B)):
        asked = statistics.mean(a for p in ps for a in p["asked_ms"]) / 1000
        rows.append((f"{name}: all {n_boards} flashes, first start to last end; "
                     f"the board's own waits per flash",
                     f"{statistics.mean(p['span'] for p in ps):.2f} s; {asked:.2f} s", "", None))
        rows.append((f"{name}: the bed's control transfers per second (all boards); worst "
                     f"poll answered late (the board's max so far)",
                     f"{statistics.mean(p['transfers'] / p['span'] for p in ps):,.0f}; "
                     f"{max(p['late_ms'] for p in ps)} ms", "", None))
        rows.append((f"{name}: CPU of espdfud (its main thread, the loop; its busiest other "
                     f"thread) / espdfu-emu, of one CPU",
                     f"{statistics.mean(p['cpu_daemon'] / p['wall'] for p in ps):.0%} "
                     f"({statistics.mean(p['cpu_loop'] / p['wall'] for p in ps):.0%}; "
                     f"{statistics.mean(p['cpu_top'] / p['wall'] for p in ps):.0%}) / "
                     f"{statistics.mean(p['cpu_emu'] / p['wall'] for p in ps):.0%}", "", None))
    # The hammer, over the hammered phases only.
    kinds = {}
    total = 0
    for h in hammer_runs:
        p = h["phase"]
        for k, v in h["rec"].items():
            lat = [v[i + 1] for i in range(0, len(v), 2) if p["t0"] <= v[i] <= p["t1"]]
            kinds.setdefault(k, []).extend(lat)
            total += len(lat)
    bwall = sum(p["wall"] for p in B)
    hwall = sum(h["wall"] for h in hammer_runs)
    rows.append((f"B: hammer requests answered per second ({n_clients} streams); replies read",
                 f"{total / bwall:,.0f}/s; "
                 f"{sum(h['bytes'] for h in hammer_runs) / 2**20 / hwall:,.0f} MiB/s", "", None))
    rows.append(("B: CPU of the hammer's processes (of one CPU)",
                 f"{sum(h['cpu'] for h in hammer_runs) / hwall:.0%}", "", None))
    for k in sorted(kinds):
        xs = kinds[k]
        if xs:
            rows.append((f"B: `{k}` as a stream sees it (behind up to "
                         f"{streams_per_conn - 1} others on its connection): p50 / p99 / max "
                         f"({len(xs)})",
                         f"{ms(pct(xs, 50))} / {ms(pct(xs, 99))} / {ms(max(xs))}", "", None))
    errors = {}
    for h in hammer_runs:
        for k, v in h["errors"].items():
            errors[k] = errors.get(k, 0) + v
    detail.append("- hammer errors: " + (", ".join(f"{k} {v}" for k, v in sorted(errors.items()))
                                         or "none"))
    date = datetime.date.today().isoformat()
    img = os.path.basename(os.path.dirname(os.path.dirname(image))) + "/" + \
        os.path.basename(os.path.dirname(image)) + "/" + os.path.basename(image)
    section = "\n".join(
        [f"### Measured ({date})", "", espdfu_bench.machine(work) + ".", "",
         f"{n_jobs:,} jobs in the store; {n_boards} boards (esp32s2, DFU mode, poll={poll} ms, "
         f"image `{img}`, {os.path.getsize(image) - 16:,} bytes); {rounds} rounds of A then B; "
         f"status every {interval * 1000:.0f} ms; {n_clients} request streams on {n_conns} "
         f"connections ({streams_per_conn} each, "
         + ("pipelined" if pipeline else "one request in flight per connection") +
         f") from {len(uids)} uids.", ""]
        + espdfu_bench.table(rows) + [""] + detail) + "\n"
    print()
    print(section)
    if env.get("README") == "1":
        espdfu_bench.write_section(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                "README.md"), "loop-load", section)


if __name__ == "__main__":
    main()
