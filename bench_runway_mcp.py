"""Benchmarks for runway_mcp.py, run by `make bench` against the fake Runway API of the tests.

Every figure is the median of several runs, printed beside a baseline measured in the same run, the
two alternating, because these machines are noisy. Nothing here needs the network or a Runway key.

    .venv/bin/python bench_runway_mcp.py            # everything (about two minutes)
    .venv/bin/python bench_runway_mcp.py startup    # one benchmark: startup, concurrency, overhead,
                                                    # polling, downloads, context, ratelimit or tasks
"""

import concurrent.futures
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import requests

import test_runway_mcp as t

WORK = Path(tempfile.mkdtemp(prefix="runway-mcp-bench-"))
FLOOR = WORK / "floor_server.py"
FLOOR.write_text("""\
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("floor")


@mcp.tool()
def noop() -> str:
    return "ok"


mcp.run()
""")
HEADERS = {"Authorization": f"Bearer {t.KEY}", "X-Runway-Version": "2024-11-06"}


class RawServer:
    """An MCP server subprocess driven with raw JSON-RPC over stdio; answers are timed on arrival."""

    def __init__(self, script: Path | str, env: dict):
        self.process = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.answers: dict[int, tuple[float, dict]] = {}
        self.arrived = threading.Condition()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "1"}})
        self.notify("notifications/initialized")

    def _read(self):
        for line in self.process.stdout:
            message = json.loads(line)
            if "id" in message:
                with self.arrived:
                    self.answers[message["id"]] = (time.perf_counter(), message)
                    self.arrived.notify_all()

    def notify(self, method: str, params: dict | None = None):
        self._write({"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})})

    def send(self, method: str, params: dict | None = None) -> int:
        self.next_id += 1
        self._write({"jsonrpc": "2.0", "id": self.next_id, "method": method, **({"params": params} if params else {})})
        return self.next_id

    def _write(self, message: dict):
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def wait(self, request_id: int, timeout: float = 300) -> tuple[float, dict]:
        with self.arrived:
            self.arrived.wait_for(lambda: request_id in self.answers, timeout)
            return self.answers.pop(request_id)

    def request(self, method: str, params: dict | None = None) -> dict:
        return self.wait(self.send(method, params))[1]

    def call(self, tool: str, arguments: dict) -> dict:
        return self.request("tools/call", {"name": tool, "arguments": arguments})["result"]

    def rss_mb(self) -> float:
        return rss_mb(self.process)

    def close(self):
        self.process.stdin.close()
        self.process.wait(30)


def rss_mb(process: subprocess.Popen) -> float:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def env_for(fake, out: Path, **extra) -> dict:
    """The server's environment for a benchmark. The duplicate guard is off: benchmarks repeat the same request on
    purpose, and each repeat must create (and poll) a task of its own."""
    return {**t.server_env(fake, out, RUNWAY_MCP_DEDUPE_S="0", **extra), "PATH": os.environ.get("PATH", "")}


def median(values) -> float:
    return statistics.median(values)


def alternate(runs: int, baseline, subject) -> tuple[list, list]:
    """Run baseline and subject in turn, `runs` times each."""
    base, mine = [], []
    for _ in range(runs):
        base.append(baseline())
        mine.append(subject())
    return base, mine


# 1. Startup ---------------------------------------------------------------------------------------


def spawn_to_tools_list(args: list[str], env: dict, cwd: Path) -> float:
    """Seconds from spawning a stdio server (`python <args>`) to its answer to tools/list."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    messages = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}}},
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]
    process.stdin.write("".join(json.dumps(m) + "\n" for m in messages).encode())
    process.stdin.flush()
    for line in process.stdout:
        if json.loads(line).get("id") == 2:
            break
    elapsed = time.perf_counter() - started
    process.stdin.close()
    process.wait(30)
    return elapsed


def bench_startup(fake) -> list[tuple]:
    """Both servers started the same way: as a script (as hosts are told to), then as a module (-m)."""
    env, here = env_for(fake, WORK / "startup"), Path(t.SERVER).parent
    rows = []
    for how, floor_args, our_args in (("python runway_mcp.py", [str(FLOOR)], [t.SERVER]),
                                      ("python -m runway_mcp", ["-m", FLOOR.stem], ["-m", "runway_mcp"])):
        floor, ours = alternate(10, lambda a=floor_args: spawn_to_tools_list(a, {**env, "PYTHONPATH": str(WORK)}, here),
                                lambda a=our_args: spawn_to_tools_list(a, env, here))
        ratio = median(ours) / median(floor)
        rows.append((f"Startup: spawn to tools/list over stdio, `{how}`", f"{median(ours) * 1000:.0f} ms",
                     f"{median(floor) * 1000:.0f} ms (MCPServer with one tool, started the same way)",
                     f"{ratio:.3f} x", "<= 1.15 x", ratio <= 1.15))
    return rows


# 2. Concurrency -----------------------------------------------------------------------------------


# Baselines run in a process of their own, as the server does, so neither shares the GIL with the fake.
PLAIN_WAITS = """
import sys, threading, time, requests
url, key, count, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
headers = {"Authorization": "Bearer " + key, "X-Runway-Version": "2024-11-06"}
def one():
    session = requests.Session()
    task = session.post(url + "/v1/text_to_video", headers=headers, json={
        "model": "gen4.5", "promptText": "x", "ratio": "1280:720", "duration": 5}).json()
    while True:
        time.sleep(interval)
        state = session.get(url + "/v1/tasks/" + task["id"], headers=headers).json()
        if state["status"] == "SUCCEEDED":
            session.get(state["output"][0]).content
            return
threads = [threading.Thread(target=one) for _ in range(count)]
started = time.perf_counter()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(time.perf_counter() - started)
"""
PLAIN_DOWNLOAD = """
import sys, time, requests
url, target = sys.argv[1], sys.argv[2]
session = requests.Session()
started = time.perf_counter()
with session.get(url, stream=True) as response, open(target, "wb") as f:
    for chunk in response.iter_content(1 << 20):
        f.write(chunk)
print(time.perf_counter() - started)
"""


def run_baseline(script: str, *args) -> float:
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, check=True)
    return float(done.stdout)


def plain_waits(fake, count: int, seconds: float, interval: float) -> float:
    """Baseline: `count` plain threads create a task, poll it every `interval` and download its output."""
    for _ in range(count):
        fake.plan(seconds=seconds, mime="video/mp4")
    return run_baseline(PLAIN_WAITS, fake.url, t.KEY, count, interval)


def server_waits(server: RawServer, fake, count: int, seconds: float) -> tuple[float, list[float]]:
    """`count` generate_video calls at once; tools/list latencies sampled every 50 ms meanwhile."""
    for _ in range(count):
        fake.plan(seconds=seconds, mime="video/mp4")
    started = time.perf_counter()
    calls = [server.send("tools/call", {"name": "generate_video", "arguments": {"prompt": "x"}}) for _ in range(count)]
    latencies = []
    while any(c not in server.answers for c in calls):
        sent = time.perf_counter()
        arrived, _ = server.wait(server.send("tools/list"))
        latencies.append(arrived - sent)
        time.sleep(0.05)
    finished = max(server.wait(c)[0] for c in calls)
    return finished - started, latencies


def bench_concurrency(fake) -> list[tuple]:
    interval, seconds, count = 1.0, 3.0, 64
    server = RawServer(t.SERVER, env_for(fake, WORK / "concurrency", RUNWAY_MCP_POLL_INTERVAL=str(interval),
                                         RUNWAY_MCP_MAX_WAIT="60"))
    latencies: list[float] = []

    def ours():
        elapsed, sampled = server_waits(server, fake, count, seconds)
        latencies.extend(sampled)
        return elapsed
    try:
        plain, mine = alternate(3, lambda: plain_waits(fake, count, seconds, interval), ours)
    finally:
        server.close()
    bound = seconds + 2 * interval + 0.5
    p95 = statistics.quantiles(latencies, n=20)[-1] * 1000
    return [(f"Concurrency: {count} waits on {seconds:.0f} s tasks (poll every {interval:.0f} s)",
             f"{median(mine):.2f} s", f"{median(plain):.2f} s ({count} plain requests threads)",
             f"{median(mine) / median(plain):.2f} x", f"<= {bound:.1f} s", median(mine) <= bound),
            ("Concurrency: tools/list meanwhile, p95", f"{p95:.1f} ms", f"{len(latencies)} samples", "", "< 100 ms",
             p95 < 100)]


# 3. Overhead of one call --------------------------------------------------------------------------


def bench_overhead(fake) -> list[tuple]:
    env = env_for(fake, WORK / "overhead")
    server, floor = RawServer(t.SERVER, env), RawServer(FLOOR, env)
    session = requests.Session()
    body = {"model": "gen4_image", "promptText": "x", "ratio": "1920:1080"}   # what generate_image sends

    def timed(action) -> float:
        started = time.perf_counter()
        action()
        return time.perf_counter() - started
    ours, posts, noops = [], [], []
    try:
        for i in range(60):
            results = (timed(lambda: server.call("generate_image", {"prompt": "x", "wait": False})),
                       timed(lambda: session.post(f"{fake.url}/v1/text_to_image", json=body, headers=HEADERS).json()),
                       timed(lambda: floor.call("noop", {})))
            if i >= 10:                                       # the first calls warm up imports and connections
                for values, value in zip((ours, posts, noops), results):
                    values.append(value)
    finally:
        server.close()
        floor.close()
    added = (median(ours) - median(posts) - median(noops)) * 1000
    return [("Overhead: generate_image(wait=False) through MCP", f"{median(ours) * 1000:.2f} ms",
             f"{median(posts) * 1000:.2f} ms POST + {median(noops) * 1000:.2f} ms no-op MCP call",
             f"+{added:.2f} ms", "< 10 ms added", added < 10)]


# 4. Polling economy -------------------------------------------------------------------------------


def polls_of(fake, task_id: str) -> list[float]:
    return [r["at"] for r in fake.seen("GET", f"/v1/tasks/{task_id}")]


def bench_polling(fake) -> list[tuple]:
    """Time scaled tenfold: a 6 s task polled every 0.5 s stands for a 60 s task polled every 5 s."""
    interval = 0.5
    server = RawServer(t.SERVER, env_for(fake, WORK / "polling", RUNWAY_MCP_POLL_INTERVAL=str(interval),
                                         RUNWAY_MCP_MAX_WAIT="60"))
    rows = []
    try:
        fake.reset()
        fake.plan(seconds=6.0, mime="video/mp4")
        done = server.call("generate_video", {"prompt": "x"})["structuredContent"]
        counted = len(polls_of(fake, done["task_id"]))
        time.sleep(3 * interval)
        after = len(polls_of(fake, done["task_id"])) - counted
        ideal = math.ceil(6.0 / interval)
        rows.append(("Polling: status requests for a 60 s task (5 s interval, time scaled 10x)", f"{counted}",
                     f"{ideal} (one per interval)", f"{counted / ideal:.2f} x", f"{ideal}, none after the end",
                     counted == ideal and after == 0))

        fake.plan(seconds=600.0, mime="video/mp4")
        handle = server.call("generate_video", {"prompt": "x", "max_wait_s": 2})["structuredContent"]
        counted = len(polls_of(fake, handle["task_id"]))
        time.sleep(3 * interval)
        after = len(polls_of(fake, handle["task_id"])) - counted
        rows.append(("Polling: after the wait bound (2 s)", f"{after} requests", f"{counted} before", "", "0 after",
                     after == 0))

        fake.plan(seconds=600.0, mime="video/mp4")
        known = set(fake.tasks)
        request_id = server.send("tools/call", {"name": "generate_video", "arguments": {"prompt": "x"}})
        time.sleep(4 * interval)
        [task_id] = set(fake.tasks) - known
        server.notify("notifications/cancelled", {"requestId": request_id, "reason": "bench"})
        cancelled_at = time.time()
        time.sleep(4 * interval)
        late = [at for at in polls_of(fake, task_id) if at > cancelled_at + 0.05]
        rows.append(("Polling: after a client cancel", f"{len(late)} requests", "", "", "0 after", not late))

        fake.plan(seconds=3.0, mime="video/mp4")
        fake.fail("GET", "/v1/tasks/", 429, headers={"Retry-After": "2"})
        retried = server.call("generate_video", {"prompt": "x"})["structuredContent"]
        times = polls_of(fake, retried["task_id"])
        gap = times[1] - times[0]
        rows.append(("Polling: pause after 429 with Retry-After: 2", f"{gap:.2f} s", f"{interval} s interval", "",
                     ">= 2 s", gap >= 2))
    finally:
        server.close()
    return rows


# 5. Downloads -------------------------------------------------------------------------------------


def bench_downloads(fake) -> list[tuple]:
    size = 200 * 1024 * 1024
    content, small = os.urandom(size), os.urandom(1024)
    out = WORK / "downloads"
    server = RawServer(t.SERVER, env_for(fake, out))
    session = requests.Session()
    growth: list[float] = []

    def finished_task(output: bytes = content) -> dict:
        fake.plan(polls=1, mime="video/mp4", content=output)
        return session.post(f"{fake.url}/v1/image_to_video", headers=HEADERS, json={
            "model": "gen4_turbo", "promptImage": "https://example.com/a.png", "ratio": "1280:720"}).json()

    def plain() -> float:
        task = finished_task()
        url = session.get(f"{fake.url}/v1/tasks/{task['id']}", headers=HEADERS).json()["output"][0]
        target = WORK / "plain.mp4"
        elapsed = run_baseline(PLAIN_DOWNLOAD, url, target)
        assert target.stat().st_size == size
        target.unlink()
        return elapsed

    def get_task(task: dict) -> float:
        """Seconds for get_task to fetch the task and save its output; the files are removed afterwards."""
        started = time.perf_counter()
        result = server.call("get_task", {"task_id": task["id"]})["structuredContent"]
        elapsed = time.perf_counter() - started
        path = Path(result["outputs"][0]["path"])
        assert path.stat().st_size == len(task["content"])
        path.unlink()
        path.with_name(path.name + ".json").unlink()
        return elapsed

    def ours() -> float:
        # What a call costs besides moving bytes (MCP round trip, the task GET, the sidecar), measured on a
        # 1 KB output just before, is taken off: on loopback 200 MB moves in well under a second.
        fixed = get_task({**finished_task(small), "content": small})
        task = {**finished_task(), "content": content}
        before, peak, sampling = server.rss_mb(), [0.0], [True]

        def sample():
            while sampling[0]:
                peak[0] = max(peak[0], server.rss_mb())
                time.sleep(0.005)
        sampler = threading.Thread(target=sample)
        sampler.start()
        elapsed = get_task(task)
        sampling[0] = False
        sampler.join()
        growth.append(peak[0] - before)
        return elapsed - fixed
    try:
        server.call("get_task", {"task_id": finished_task()["id"]})    # warm up: imports, first connection
        for path in out.glob("video_*"):
            path.unlink()
        plain_times, our_times = alternate(7, plain, ours)
    finally:
        server.close()
    ratio = median(plain_times) / median(our_times)
    mb = size / 1024 / 1024
    return [("Downloads: 200 MB output, throughput (per-call fixed cost taken off)", f"{mb / median(our_times):.0f} MB/s",
             f"{mb / median(plain_times):.0f} MB/s (plain requests stream to disk)", f"{ratio:.2f} x", ">= 0.8 x",
             ratio >= 0.8),
            ("Downloads: 200 MB output, server RSS growth", f"{max(growth):.1f} MB", "", "", "< 30 MB",
             max(growth) < 30)]


# 6. Context ---------------------------------------------------------------------------------------
# Bytes, not seconds: what a host puts into the model's context. A count has no noise, so the baseline is
# the official Runway MCP server as measured for issue 10 (6.3 KB for 10 tools, 631 B per tool).

OFFICIAL_PER_TOOL = 631


def wire(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def listed_tools(fake, tools: str = "") -> list[dict]:
    server = RawServer(t.SERVER, env_for(fake, WORK / "context", **({"RUNWAY_MCP_TOOLS": tools} if tools else {})))
    try:
        return server.request("tools/list")["result"]["tools"]
    finally:
        server.close()


def model_facing(tools: list[dict]) -> int:
    return sum(wire({k: tool.get(k) for k in ("name", "description", "inputSchema")}) for tool in tools)


def bench_context(fake) -> list[tuple]:
    tools = listed_tools(fake)
    original = [tool for tool in tools if tool["name"] in t.EXPECTED_TOOLS]
    size, per_tool = model_facing(tools), model_facing(tools) / len(tools)
    rows = [(f"Context: name + description + inputSchema, all {len(tools)} tools", f"{size / 1000:.1f} KB",
             f"{OFFICIAL_PER_TOOL} B per tool (official Runway server)", f"{per_tool / OFFICIAL_PER_TOOL:.2f} x",
             "<= 640 B per tool", per_tool <= 640),
            (f"Context: the same, the {len(original)} tools of issue 10", f"{model_facing(original) / 1000:.1f} KB",
             "32.6 KB before", f"{model_facing(original) / 32600:.2f} x", "<= 14 KB", model_facing(original) <= 14000)]
    schemas = sum(wire(tool["outputSchema"]) for tool in original if tool.get("outputSchema"))
    rows.append((f"Context: outputSchema, the {len(original)} tools of issue 10", f"{schemas / 1000:.1f} KB",
                 "31.9 KB before", f"{schemas / 31900:.2f} x", "<= 12 KB", schemas <= 12000))
    server = RawServer(t.SERVER, env_for(fake, WORK / "context"))
    try:
        index = server.call("list_models", {})
        details = [(wire(server.call("list_models", {"model": name})["content"][0]["text"]), name)
                   for name in t.rm.MODELS]
    finally:
        server.close()
    text = sum(wire(block["text"]) for block in index["content"])
    rows.append((f"Context: list_models() text, {len(t.rm.MODELS)} models", f"{text / 1000:.1f} KB "
                 f"({len(index['content'])} block)", "61.5 KB in 61 blocks before", f"{text / 61500:.2f} x",
                 "<= 5 KB", text <= 5000))
    rows.append(("Context: list_models() structured content", f"{wire(index['structuredContent']) / 1000:.1f} KB",
                 "41.9 KB before", f"{wire(index['structuredContent']) / text:.2f} x the text", "<= 2 x the text",
                 wire(index["structuredContent"]) <= 2 * text))
    largest, name = max(details)
    rows.append((f"Context: list_models(model=...), largest ({name})", f"{largest / 1000:.1f} KB", "", "",
                 "<= 2 KB", largest <= 2000))
    for group in t.rm.toolsets():
        subset = listed_tools(fake, group)
        rows.append((f"Context: RUNWAY_MCP_TOOLS={group} ({len(subset)} tools)",
                     f"{model_facing(subset) / 1000:.1f} KB", "", "", "", True))
    return rows


# 7. Rate limits ------------------------------------------------------------------------------------


def per_request(buckets, clients: list[str]) -> float:
    """Microseconds per request while these clients (in this order) are counted."""
    started = time.perf_counter()
    for client in clients:
        buckets.take(client)
    return (time.perf_counter() - started) / len(clients) * 1e6


def bench_ratelimit(fake) -> list[tuple]:
    """The cost of counting one request, with one client, and with 100,000 distinct ones (the table full, the
    least recently seen forgotten) against the same code in the same run."""
    one, many = [], []
    for _ in range(5):
        buckets = t.rm.Buckets(600, 60.0)
        one.append(per_request(buckets, ["10.0.0.1"] * 100_000))
        buckets = t.rm.Buckets(600, 60.0)
        addresses = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(100_000 + 50_000)]
        per_request(buckets, addresses[:t.rm.BUCKETS_MAX])               # fill the table
        many.append(per_request(buckets, addresses[t.rm.BUCKETS_MAX:]))  # each request now forgets one client
        assert len(buckets.table) <= t.rm.BUCKETS_MAX
    ratio = median(many) / median(one)
    return [("Rate limit: cost of one request with 100,000 clients counted (each forgetting the oldest)",
             f"{median(many):.2f} us", f"{median(one):.2f} us with one client", f"{ratio:.2f} x", "<= 2 x",
             ratio <= 2)]


# 8. MCP tasks -------------------------------------------------------------------------------------
# 1,000 generations in flight on one HTTP server: as MCP tasks (a ledger line each, no thread) and as the same
# 1,000 blocking calls (a worker thread each while one is free, the rest queued). Measured: the server's memory
# growth, and how long a status check takes meanwhile: tasks/get for a task, get_task beside blocking calls.

class HttpProcess:
    """runway_mcp.py serving HTTP in a process of its own (its log discarded: a thousand calls fill a pipe)."""

    def __init__(self, env: dict):
        self.url = f"http://127.0.0.1:{t.free_port()}"
        self.process = subprocess.Popen([sys.executable, t.SERVER, "--transport", "http", "--port",
                                         self.url.rsplit(":", 1)[1]], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        while True:
            try:
                requests.get(f"{self.url}/healthz", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)

    def send(self, session: requests.Session, method: str, params: dict, name: str, tasks: bool) -> dict:
        capabilities = {"extensions": {"io.modelcontextprotocol/tasks": {}}} if tasks else {}
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities}}}
        answer = session.post(f"{self.url}/mcp", json=body, timeout=600, headers={
            **t.MCP_HEADERS, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method, "Mcp-Name": name})
        if answer.headers.get("content-type", "").startswith("text/event-stream"):    # a wait streams: its last event
            return json.loads([line for line in answer.text.splitlines() if line.startswith("data: ")][-1][6:])
        return answer.json()

    def rss_mb(self) -> float:
        return rss_mb(self.process)

    def close(self):
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:           # a thousand calls still waiting: uvicorn would wait for each
            self.process.kill()
            self.process.wait(5)


POLL_S = 5.0        # the poll interval, which clients honour (pollIntervalMs): 1,000 tasks, 200 tasks/get a second


def paced(check: Callable[[int], float], total: int, rate: float) -> list[float]:
    """check(0), check(1), ... started `rate` times a second (however long each takes); their results."""
    with concurrent.futures.ThreadPoolExecutor(64) as checkers:
        started, futures = time.perf_counter(), []
        for n in range(total):
            time.sleep(max(0.0, started + n / rate - time.perf_counter()))
            futures.append(checkers.submit(check, n))
        return [future.result() for future in futures]


def in_flight(fake, as_tasks: bool, count: int = 1000, seconds: float = 20.0) -> tuple[float, list[float]]:
    """Memory growth (MB) with `count` generations in flight, and status-check latencies (s) sampled meanwhile."""
    for _ in range(count):
        fake.plan(seconds=seconds, mime="video/mp4")
    server = HttpProcess(env_for(fake, Path(tempfile.mkdtemp(dir=WORK)), RUNWAY_MCP_POLL_INTERVAL=str(POLL_S),
                                 RUNWAY_MCP_MAX_WAIT="600"))
    local = threading.local()

    def session() -> requests.Session:
        local.session = getattr(local, "session", None) or requests.Session()
        return local.session

    def generate(n: int) -> dict:
        arguments = {"name": "generate_video", "arguments": {"prompt": f"scene {n}"}}
        return server.send(session(), "tools/call", arguments, "generate_video", as_tasks)
    try:
        before = server.rss_mb()
        pool = concurrent.futures.ThreadPoolExecutor(64 if as_tasks else count)
        calls = [pool.submit(generate, n) for n in range(count)]
        if as_tasks:
            handles = [call.result()["result"]["taskId"] for call in calls]
        while len(fake.tasks) < min(count, t.rm.WORKER_THREADS):   # blocking: every worker thread busy waiting
            time.sleep(0.1)
        runway_tasks = list(fake.tasks)

        def check(n: int) -> float:
            started = time.perf_counter()
            if as_tasks:
                answer = server.send(session(), "tasks/get", {"taskId": handles[n % count]}, handles[n % count], True)
                assert answer["result"]["status"] == "working", answer
            else:
                answer = server.send(session(), "tools/call", {"name": "get_task", "arguments": {
                    "task_id": runway_tasks[n % len(runway_tasks)]}}, "get_task", False)
                assert "structuredContent" in answer["result"], answer      # queued behind the waits, it may be late
            return time.perf_counter() - started
        latencies = paced(check, 2 * count if as_tasks else 32, count / POLL_S)
        growth = server.rss_mb() - before
        pool.shutdown(wait=False, cancel_futures=True)
        return growth, latencies
    finally:
        server.close()


def bench_tasks(fake) -> list[tuple]:
    """Three runs as tasks (their medians), one as blocking calls (it takes a minute: the waits queue)."""
    count, growths, p95s = 1000, [], []
    for _ in range(3):
        fake.reset()
        growth, latencies = in_flight(fake, True, count)
        growths.append(growth)
        p95s.append(statistics.quantiles(latencies, n=20)[-1] * 1000)
    fake.reset()
    blocking_growth, blocking_latencies = in_flight(fake, False, count)
    growth, p95 = median(growths), median(p95s)
    blocking_p95 = statistics.quantiles(blocking_latencies, n=20)[-1] * 1000
    return [(f"MCP tasks: memory with {count} generations in flight", f"+{growth:.1f} MB",
             f"+{blocking_growth:.1f} MB as {count} blocking calls", f"{growth / blocking_growth:.2f} x",
             "< 50 MB", growth < 50),
            (f"MCP tasks: a status check with {count} in flight, p95 (tasks/get; get_task beside blocking calls)",
             f"{p95:.1f} ms", f"{blocking_p95:.0f} ms", f"{p95 / blocking_p95:.4f} x", "< 50 ms", p95 < 50)]


BENCHMARKS = {"startup": bench_startup, "concurrency": bench_concurrency, "overhead": bench_overhead,
              "polling": bench_polling, "downloads": bench_downloads, "context": bench_context,
              "ratelimit": bench_ratelimit, "tasks": bench_tasks}


def main(names: list[str]) -> int:
    fake, _ = t.serve_fake()
    rows = []
    for name in names or BENCHMARKS:
        print(f"running {name}...", file=sys.stderr, flush=True)
        fake.reset()
        rows += BENCHMARKS[name](fake)
    print(f"\nMachine: {os.cpu_count()} cores, Python {platform.python_version()}, mcp {version('mcp')}, "
          f"requests {version('requests')}, {platform.system()} {platform.machine()}\n")
    print("| Benchmark | runway_mcp | Baseline (same run) | Ratio | Target | Met |")
    print("|---|---|---|---|---|---|")
    for name, measured, baseline, ratio, target, met in rows:
        print(f"| {name} | {measured} | {baseline} | {ratio} | {target} | {'yes' if met else 'NO'} |")
    missed = [row[0] for row in rows if not row[-1]]
    print(f"\nTargets missed: {'; '.join(missed)} (README.md, Performance, says why)" if missed else
          "\nEvery target met.")
    return 0                # a measurement, not a gate: the README reports what is and is not met


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
