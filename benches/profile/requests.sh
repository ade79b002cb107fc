#!/usr/bin/env bash
# Instructions the server spends per HTTP request, counted by valgrind's callgrind: stable
# on a noisy machine where wall-clock timings are not.
#
#   cargo build --release --bin consult-scheduler
#   bash benches/profile/requests.sh [refused|read|book] [REQUESTS]
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/DB bash benches/profile/requests.sh book 1000
#
# Starts the release binary as shipped (SQLite unless DATABASE_URL names an empty database,
# demo data, JSON log lines to a file) under callgrind on a free port, signs in as the demo
# patient, then zeroes the counters and sends REQUESTS (default 2000) requests over one
# kept-alive connection:
#   refused: the same booking again and again (every answer a 409 with next_available);
#   read:    one day of one doctor's availability (every answer a 200 from the kept answer);
#   book:    a new video booking each time, the demo doctors' free slots in turn (every
#            answer a 201; the whole process is counted, so also the journal's writes and
#            the session worker, which waits for the fake Vonage).
# Prints the instructions per request and writes the profile to target/profile/CASE.out;
# `callgrind_annotate --inclusive=yes target/profile/CASE.out` shows where they went.
# Needs valgrind and python3.
set -euo pipefail

case_name="${1:-refused}"
requests="${2:-2000}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${BIN:-$root/target/release/consult-scheduler}"
out="$root/target/profile"
[[ -x "$bin" ]] || { echo "build first: cargo build --release --bin consult-scheduler" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
mkdir -p "$out"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

CONSULT__SERVER__BIND="127.0.0.1:$port" \
CONSULT__SERVER__RATE_LIMIT_PER_S=0 \
CONSULT__DATABASE__URL="${DATABASE_URL:-sqlite://$work/profile.db}" \
CONSULT__LOG__FORMAT=json \
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" \
  >"$out/$case_name.log" 2>"$work/valgrind.err" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$port" "$case_name" "$requests" "$server" "$work" <<'EOF'
import datetime, glob, http.client, json, subprocess, sys, time

port, case, n, pid, work = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/healthz")
        c.getresponse().read()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("the server did not start")
        time.sleep(0.5)

def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    return r.status, r.read()

token = json.loads(call("POST", "/dev/sign-in", {"role": "patient"})[1])["token"]
doctor = json.loads(call("GET", "/patient/doctors", token=token)[1])["doctors"][0]["id"]
day = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
read = f"/patient/doctors/{doctor}/availability?from={day}&days=1"
slots = json.loads(call("GET", read, token=token)[1])["days"][0]["slots"]
start = next(s["start"] for s in slots if s["status"] == "available")
booking = {"doctor_id": doctor, "scheduled_at": start, "consult_mode": "video"}
status, _ = call("POST", "/patient/doctors/book", booking, token)
assert status == 201, status
free = []
if case == "book":
    doctors = [d["id"] for d in json.loads(call("GET", "/patient/doctors", token=token)[1])["doctors"]]
    for days_ahead in (3, 17, 31, 45):
        first = (datetime.date.today() + datetime.timedelta(days=days_ahead)).isoformat()
        for d in doctors:
            answer = json.loads(call("GET", f"/patient/doctors/{d}/availability?from={first}&days=14", token=token)[1])
            free += [(d, s["start"]) for day in answer.get("days", []) for s in day["slots"] if s["status"] == "available"]
    assert len(free) >= n + 50, f"only {len(free)} free slots"
# Warm up the path being measured (lazy statics, the kept answer, allocator pages).
def book_next():
    d, at = free.pop()
    return call("POST", "/patient/doctors/book", {"doctor_id": d, "scheduled_at": at, "consult_mode": "video"}, token)

for _ in range(50):
    if case == "refused":
        call("POST", "/patient/doctors/book", booking, token)
    elif case == "book":
        book_next()
    else:
        call("GET", read, token=token)

subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
want = {"refused": 409, "book": 201}.get(case, 200)
for _ in range(n):
    if case == "refused":
        status, _ = call("POST", "/patient/doctors/book", booking, token)
    elif case == "book":
        status, _ = book_next()
    else:
        status, _ = call("GET", read, token=token)
    assert status == want, status
subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
time.sleep(1)
EOF

dump="$(ls "$work"/cg.out.* | head -1)"
cp "$dump" "$out/$case_name.out"
total="$(grep -m1 '^summary:' "$dump" | awk '{print $2}')"
echo "case: $case_name, requests: $requests, instructions: $total, per request: $((total / requests))"
