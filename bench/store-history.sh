#!/bin/bash
# espdfud's job store under a year of history: a jobs.db of JOBS finished
# jobs (default 1,000,000), made with the store's own API, then the real
# daemon on it, measured in one run:
#
#   1. the fill itself (time, file size);
#   2. startup: exec to READY=1 (sd_notify, read from our own NOTIFY_SOCKET)
#      and to the first `status` that says store_open, STARTS times;
#   3. `history` round trips from one client, REQUESTS each, for a port, no
#      filter, a result, an image, the last day, and a walk of 10 pages with
#      `before`;
#   4. queueing: FLASHES `flash` requests, one at a time, to an empty port
#      (the jobs wait there), with the image as an SCM_RIGHTS fd: store
#      commits per queued job (status.store_commits) and the round trip,
#      which includes the commit's fsync.
#
#   bench/store-history.sh [JOBS]
#
# Environment: BUILD (build directory, default build-bench, RelWithDebInfo),
# STARTS (5), REQUESTS (1000), FLASHES (800; the job table holds 1024 live
# jobs), KEEP=1 (keep the temporary directory: the database is ~1.5 GB, made
# under $TMPDIR or /var/tmp), README=1 (also write the figures into
# bench/README.md, between the store-history markers).
#
# A benchmark, not a test: it prints each goal as met or MISSED, never fails
# on one. Goals (the issue's): startup <= 1 s, history p99 <= 20 ms, exactly
# one commit per queued job.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
jobs=${1:-1000000}
build=${BUILD:-$top/build-bench}
starts=${STARTS:-5}
requests=${REQUESTS:-1000}
flashes=${FLASHES:-800}
image=$top/tests/fixtures/mkdfu/1/dfu.bin # esp32s2, 10256 bytes

"$top/tests/install-deps.sh"
# The bench's own: python3 drives the socket, sqlite3 shows the query plans.
missing=()
for pkg in python3 sqlite3; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target espdfud espdfuctl espdfu-store-fill >/dev/null

work=$(mktemp -d "${TMPDIR:-/var/tmp}/espdfu-store-bench.XXXXXX")
cleanup() {
    local pid
    if [[ -s $work/daemon.pid ]]; then
        pid=$(cat "$work/daemon.pid")
        kill "$pid" 2>/dev/null && sleep 1 && kill -9 "$pid" 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir "$work/state"
cat >"$work/espdfud.conf" <<EOF
[daemon]
socket = $work/espdfud.sock
state-dir = $work/state
group = $(id -gn)
wait-timeout-s = 604800
EOF

echo "filling $work/state/jobs.db with $jobs jobs..."
"$build/bench/espdfu-store-fill" "$work/state" "$jobs" >"$work/fill.txt"
cat "$work/fill.txt"

# The plans SQLite picks, for the report: the statements store_db_query()
# (daemon/store-db.c) builds for the requests below; keep them in step.
db=$work/state/jobs.db
old_sha=$(awk '$2 == "line-a-v1.4.2.bin" {print $3}' "$work/fill.txt")
new_sha=$(awk '$2 == "line-b-v3.1.0.bin" {print $3}' "$work/fill.txt")
since() {
    local t=$((($(date +%s) - $1) * 1000000))
    echo "finished >= $t AND id >= (SELECT min(id) FROM jobs INDEXED BY jobs_finished WHERE finished >= $t)"
}
{
    for q in "final = 1 AND path = '1-2.3' ORDER BY id DESC" \
        "final = 1 ORDER BY id DESC" \
        "final = 1 AND state = 'failed' ORDER BY id DESC" \
        "final = 1 AND sha256 = '$new_sha' ORDER BY id DESC" \
        "final = 1 AND $(since 86400) ORDER BY id DESC" \
        "final = 1 AND $(since 86400) ORDER BY id ASC" \
        "final = 1 AND path = '1-2.3' AND $(since 3600) ORDER BY id DESC" \
        "final = 1 AND sha256 = '$old_sha' AND $(since 2592000) ORDER BY id DESC" \
        "final = 1 AND path = '1-2.3' AND $(since 31536000) ORDER BY id DESC" \
        "final = 1 AND path = '1-2.3' AND id < 500000 ORDER BY id DESC"; do
        echo "WHERE $q LIMIT 50:"
        sqlite3 "file:$db?mode=ro" "EXPLAIN QUERY PLAN SELECT id, job FROM jobs WHERE $q LIMIT 50" |
            sed -e '/^QUERY PLAN$/d' -e 's/^/    /'
    done
} >"$work/plans.txt"

python3 - "$work" "$build" "$image" "$starts" "$requests" "$flashes" "$old_sha" "$new_sha" \
    "$top/bench/README.md" "${README:-0}" "$jobs" <<'PY'
import datetime, json, os, signal, socket, statistics, subprocess, sys
import threading, time

sys.path.insert(0, os.path.dirname(sys.argv[9]))  # bench/: the shared pieces
import espdfu_bench
from espdfu_bench import ms, pct

(work, build, image, starts, requests, flashes, old_sha, new_sha, readme, write_readme,
 n_jobs) = sys.argv[1:]
starts, requests, flashes, n_jobs = int(starts), int(requests), int(flashes), int(n_jobs)
sock_path = f"{work}/espdfud.sock"
notify_path = f"{work}/notify.sock"
daemon = [f"{build}/daemon/espdfud", "-c", f"{work}/espdfud.conf", "-f"]
now = time.perf_counter
rows = []  # (measure, value, goal, met)
queries = []  # the history requests, for the report


class Client(espdfu_bench.Client):
    def __init__(self, path=sock_path):
        super().__init__(path)


class Daemon:
    """espdfud under our own NOTIFY_SOCKET; timings from just before exec."""

    def __init__(self):
        for p in (notify_path,):
            if os.path.exists(p):
                os.unlink(p)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify_path)
        self.log = open(f"{work}/espdfud.log", "a")
        self.first_answer = self.store_open = None
        self.t0 = now()
        self.p = subprocess.Popen(daemon, stdout=self.log, stderr=self.log,
                                  env=dict(os.environ, NOTIFY_SOCKET=notify_path))
        with open(f"{work}/daemon.pid", "w") as f:
            f.write(str(self.p.pid))
        # Poll `status` from the first moment the socket answers until it says store_open.
        poller = threading.Thread(target=self.poll, daemon=True)
        poller.start()
        self.ready = None
        self.notify.settimeout(30)
        while self.ready is None:
            msg = self.notify.recv(4096).decode()
            if "READY=1" in msg.split("\n"):
                self.ready = now() - self.t0
        poller.join(30)
        if self.store_open is None:
            raise RuntimeError("status never said store_open")
        # Keep reading: sd_notify() blocks the daemon's loop once the datagram
        # queue (net.unix.max_dgram_qlen, 10 here) is full, as systemd would never let it be.
        self.stopping = False
        self.drainer = threading.Thread(target=self.drain, daemon=True)
        self.drainer.start()

    def drain(self):
        self.notify.settimeout(0.2)
        while not self.stopping:
            try:
                self.notify.recv(4096)
            except TimeoutError:
                pass

    def poll(self):
        deadline = self.t0 + 30
        c = None
        while now() < deadline:
            try:
                if c is None:
                    c = Client()
                st = c.call("status")
            except (FileNotFoundError, ConnectionRefusedError, EOFError, ConnectionResetError):
                if c:
                    c.close()
                c = None
                time.sleep(0.001)
                continue
            if self.first_answer is None:
                self.first_answer = now() - self.t0
            if st.get("store_open"):
                self.store_open = now() - self.t0
                break
            time.sleep(0.001)
        if c:
            c.close()

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.stopping = True
        self.drainer.join()
        os.unlink(f"{work}/daemon.pid")
        self.notify.close()
        self.log.close()


# ---- 1. the fill ----
fill = open(f"{work}/fill.txt").read().split()
fill_s, db_bytes, doc_bytes = float(fill[3]), int(fill[5]), int(fill[7])
rows.append(("fill: jobs, one transaction per 100,000",
             f"{n_jobs:,} in {fill_s:.1f} s ({n_jobs / fill_s:,.0f} jobs/s)", "", None))
rows.append(("jobs.db size", f"{db_bytes / 2**20:,.0f} MiB ({db_bytes / n_jobs:,.0f} B/job, "
             f"document {doc_bytes} B)", "", None))

# ---- 2. startup ----
ready, opened, answered = [], [], []
for i in range(starts):
    d = Daemon()
    ready.append(d.ready)
    opened.append(d.store_open)
    answered.append(d.first_answer)
    print(f"start {i + 1}: READY=1 {ms(d.ready)}, first status {ms(d.first_answer)}, "
          f"status with store_open {ms(d.store_open)}", flush=True)
    if i < starts - 1:
        d.stop()
# Cold: jobs.db dropped from the page cache first (clean pages only, so
# after a stop; a VM's host may still cache the disk).
cold = []
for i in range(starts):
    d.stop()
    for name in ("jobs.db", "jobs.db-wal"):
        try:
            fd = os.open(f"{work}/state/{name}", os.O_RDONLY)
        except FileNotFoundError:
            continue
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    d = Daemon()
    cold.append((d.ready, d.store_open))
    print(f"cold start {i + 1}: READY=1 {ms(d.ready)}, status with store_open {ms(d.store_open)}",
          flush=True)
rows.append(("startup: exec to READY=1, median / max",
             f"{ms(statistics.median(ready))} / {ms(max(ready))}", "<= 1 s", max(ready) <= 1))
rows.append(("startup: exec to status with store_open, median / max",
             f"{ms(statistics.median(opened))} / {ms(max(opened))}", "<= 1 s", max(opened) <= 1))
rows.append(("startup, jobs.db out of the page cache: exec to status with store_open, median / max",
             f"{ms(statistics.median(x[1] for x in cold))} / {ms(max(x[1] for x in cold))}",
             "<= 1 s", max(x[1] for x in cold) <= 1))

# ---- 3. history ----
c = Client()
hour, day, month, year = (int(time.time()) - x for x in (3600, 86400, 30 * 86400, 366 * 86400))
# (label, params, records expected: 50, or None when fewer match). The fill's
# newest job is an hour old: "since the last hour" finds almost nothing.
variants = [
    ("path 1-2.3", {"path": "1-2.3", "limit": 50}, 50),
    ("no filter", {"limit": 50}, 50),
    ("result failed", {"result": "failed", "limit": 50}, 50),
    ("sha256 of the current image", {"sha256": new_sha, "limit": 50}, 50),
    ("sha256 of an image retired 6 months ago", {"sha256": old_sha, "limit": 50}, 50),
    ("since the last day", {"since": day, "limit": 50}, 50),
    ("since the last day, oldest first (an export's first page)",
     {"since": day, "after": 0, "limit": 50}, 50),
    ("since the last hour (almost nothing that recent)", {"since": hour, "limit": 50}, None),
    ("path 1-2.3, since the last hour", {"path": "1-2.3", "since": hour, "limit": 50}, None),
    ("sha256 of the retired image, since 30 days", {"sha256": old_sha, "since": month, "limit": 50},
     None),
    ("path 1-2.3, since a year ago (every job matches)",
     {"path": "1-2.3", "since": year, "limit": 50}, 50),
]
budget = float(os.environ.get("BUDGET", "20"))  # s per variant: a slow one stops early
for name, params, expect in variants:
    lat = []
    first = c.call("history", params)
    got = len(first["records"])
    if expect is not None and got != expect:
        raise RuntimeError(f"history {params}: {got} records, expected {expect}")
    t_end = now() + budget
    while len(lat) < requests and (len(lat) < 20 or now() < t_end):
        t = now()
        c.call("history", params)
        lat.append(now() - t)
    p99 = pct(lat, 99)
    print(f"history {name}: {got} records, {len(lat)} requests: p50 {ms(pct(lat, 50))} "
          f"p99 {ms(p99)} max {ms(max(lat))}", flush=True)
    queries.append(f"- {name}: `{json.dumps(params, separators=(',', ':'))}`, {got} records")
    rows.append((f"history: {name}" + ("" if len(lat) == requests else f" ({len(lat)} requests)")
                 + ": p50 / p99 / max",
                 f"{ms(pct(lat, 50))} / {ms(p99)} / {ms(max(lat))}", "p99 <= 20 ms", p99 <= 0.020))

# A walk of 10 pages of one port, newest first, each from the last page's `next`.
walks, pages = [], []
for _ in range(max(1, requests // 10)):
    params, seen, t0 = {"path": "1-2.3", "limit": 50}, set(), now()
    for _ in range(10):
        t = now()
        r = c.call("history", params)
        pages.append(now() - t)
        ids = [j["id"] for j in r["records"]]
        assert len(ids) == 50 and not seen & set(ids) and ids == sorted(ids)
        seen |= set(ids)
        params = {"path": "1-2.3", "limit": 50, "before": r["next"]}
    walks.append(now() - t0)
p99 = pct(pages, 99)
print(f"history walk: page p50 {ms(pct(pages, 50))} p99 {ms(p99)}, "
      f"walk median {ms(statistics.median(walks))}", flush=True)
rows.append(("history: path 1-2.3, 10 pages by `before`, per page: p50 / p99 / max",
             f"{ms(pct(pages, 50))} / {ms(p99)} / {ms(max(pages))}", "p99 <= 20 ms", p99 <= 0.020))
rows.append(("the same, a whole 10-page walk, median / max",
             f"{ms(statistics.median(walks))} / {ms(max(walks))}", "", None))

# ---- 4. queueing ----
before = c.call("status")["store_commits"]
fd = os.open(image, os.O_RDONLY)
lat, ids = [], []
for i in range(flashes):
    t = now()
    r = c.call("flash", {"paths": ["9-9"], "name": "dfu.bin"}, fd=fd)
    lat.append(now() - t)
    ids += r["jobs"]
os.close(fd)
st = c.call("status")
after = st["store_commits"]
per_job = (after - before) / flashes
print(f"flash: {flashes} jobs queued, {after - before} commits, p50 {ms(pct(lat, 50))} "
      f"p99 {ms(pct(lat, 99))} max {ms(max(lat))}; queued {st['queued']}", flush=True)
rows.append((f"flash to an empty port, {flashes} one at a time: store commits per job",
             f"{per_job:.3f} ({after - before} commits)", "exactly 1", after - before == flashes))
rows.append(("flash round trip (includes the commit's fsync): p50 / p99 / max",
             f"{ms(pct(lat, 50))} / {ms(pct(lat, 99))} / {ms(max(lat))}", "", None))
c.close()
d.stop()

# ---- the report ----
machine = espdfu_bench.machine(work)
table = espdfu_bench.table(rows)
date = datetime.date.today().isoformat()
section = "\n".join([f"### Measured ({date})", "", machine + ".", "",
                     f"{n_jobs:,} jobs; {starts} starts; {requests} requests per `history` "
                     f"variant (or {os.environ.get('BUDGET', '20')} s); {flashes} flashes.", ""]
                    + table + ["", "The `history` requests (`since`: Unix seconds at the run):", ""]
                    + queries) + "\n"
print()
print(section)
print("query plans (sqlite3 EXPLAIN QUERY PLAN):")
print(open(f"{work}/plans.txt").read())
if write_readme == "1":
    espdfu_bench.write_section(readme, "store-history", section)
PY
