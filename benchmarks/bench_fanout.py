"""Fleet fan-out: ``ollama-seed serve`` against Docker Distribution serving the same blob to many clients.

Both servers run as their own processes on 127.0.0.1 in the same run, each holding the same
blob in its own storage (Distribution: pushed into its filesystem storage; serve: an Ollama
store). Clients are ``curl`` processes that GET the blob with the body discarded
(``-o /dev/null``), all started at once. For each round and server it records the wall time from
the first start to the last exit, the server process's CPU seconds in the round (utime + stime of
the process and its reaped children, from ``/proc/<pid>/stat``) and its peak resident memory
during the round (``VmRSS`` polled every 20 ms). The servers alternate which goes first.

Scenarios (``--only`` picks some):

- ``plain``: 1, 8 and 32 clients over http (``--clients``);
- ``tls``: the same over https, one certificate for both servers (Distribution's ``http.tls``),
  curl asked for ``TLS_AES_128_GCM_SHA256`` so both encrypt with the same cipher (the one
  ``openssl speed -evp aes-128-gcm`` measures, reported as the physical reference);
- ``ranged``: 4 clients, each fetching the blob as 16 concurrent range requests (as ollama-seed
  and Ollama pull);
- ``miss``: 8 clients at once for a blob neither server has yet: serve ``--upstream`` and
  Distribution in proxy mode, both in front of a third (origin) Distribution; fresh caches each
  round; one upstream download each is expected, and checked for serve (its metrics);
- ``redirect``: serve only: 8 stock-Ollama clients (its User-Agent, redirects followed: the 307
  to another name of the server) against 8 plain ones;
- ``site``: serve only: 8 clients logging in (``--htpasswd``, bcrypt) to a server with
  ``--upstream``, ``--max-cache-size`` and ``/metrics`` scraped every 0.5 s, against the open server.

    python -m benchmarks.bench_fanout [--size 512Mi] [--rounds 2] [--clients 1,8,32] [--only plain,tls,...]

Writes ``benchmarks/results/<time>-fanout-<size>.{json,md,svg}`` (``--label`` adds to the name).
Needs ``/usr/bin/docker-registry`` (Debian's Distribution 2.8) and curl. Run it on a quiet
machine (docs/performance.md says how).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import fanout_report  # noqa: E402
from ollama_seed.core.units import parse_rate  # noqa: E402
from tests.support.model import BuiltModel, make_model  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.registry import HTTP_SECRET, REGISTRY_BIN  # noqa: E402
from tests.support.seed import seed_registry  # noqa: E402
from tests.support.tls import CertFiles, make_certs  # noqa: E402

REPO, TAG = "library/bench", "latest"
OLLAMA_UA = "ollama/0.12.3 (amd64 linux) Go/go1.24.0"
USER, PASSWORD = "bench", "bench-password"
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of *pid* and its reaped children, in seconds (0.0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / _TICK


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Server:
    """A server process and how clients reach it."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _env(work: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "HTTP", "HTTPS", "NO_PROXY"))}
    return {**keep, "HOME": str(work / "home"), "PYTHONPATH": str(ROOT)}


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, ca: Path | None, path: str = "/v2/") -> None:
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=2, verify=str(ca) if ca else False, trust_env=False) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url} exited:\n{log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if c.get(url + path).status_code in (200, 401):
                    return
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start:\n{log.read_text(errors='replace')[-2000:]}")


def start_distribution(
    name: str, storage: Path, work: Path, certs: CertFiles | None = None, proxy: str | None = None
) -> Server:
    port = free_port()
    tls = f"  tls:\n    certificate: {certs.cert}\n    key: {certs.key}\n" if certs else ""
    config = work / f"{name}.yml"
    config.write_text(
        (f"proxy:\n  remoteurl: {proxy}\n" if proxy else "")
        + f"version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {HTTP_SECRET}\n{tls}"
        "health:\n  storagedriver:\n    enabled: false\n"
    )
    log = work / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    url = f"{'https' if certs else 'http'}://127.0.0.1:{port}"
    server = Server(name, proc, url, log)
    try:
        _wait(url, proc, log, certs.ca if certs else None)
    except BaseException:
        server.stop()
        raise
    return server


SEED_ENV: dict[str, str] = {}  # --serve-env: extra environment for every serve process (A/B runs)


def start_seed(name: str, store: Path, work: Path, certs: CertFiles | None = None, *args: str) -> Server:
    port = free_port()
    tls = ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)] if certs else []
    log = work / f"{name}.log"
    argv = [sys.executable, "-m", "ollama_seed", "serve", "--models-dir", str(store), "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*argv, *tls, *args], stdout=out, stderr=subprocess.STDOUT, env={**_env(work), **SEED_ENV}
        )
    url = f"{'https' if certs else 'http'}://127.0.0.1:{port}"
    server = Server(name, proc, url, log)
    try:
        _wait(url, proc, log, certs.ca if certs else None, "/healthz")
    except BaseException:
        server.stop()
        raise
    return server


def _curl(url: str, ca: Path | None, *extra: str) -> list[str]:
    tls = ["--cacert", str(ca), "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"] if ca else []
    return ["curl", "-sSf", "-o", "/dev/null", *tls, *extra, url]


def one_round(server: Server, argvs: list[list[str]], scrape: str | None = None) -> dict[str, Any]:
    """Run the client commands at once against *server*; wall, server CPU and peak RSS."""
    pid = server.proc.pid
    cpu0 = cpu_seconds(pid)
    peak = [rss_bytes(pid)]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_bytes(pid))

    def scraper() -> None:
        with httpx.Client(timeout=5, verify=False, trust_env=False) as c:
            while not done.wait(0.5):
                with contextlib.suppress(httpx.HTTPError):
                    c.get(scrape or "")

    threads = [threading.Thread(target=watch, daemon=True)]
    if scrape:
        threads.append(threading.Thread(target=scraper, daemon=True))
    for t in threads:
        t.start()
    started = time.monotonic()
    procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for a in argvs]
    errors = [p.communicate()[1] for p in procs]
    wall = time.monotonic() - started
    done.set()
    for t in threads:
        t.join()
    cpu = cpu_seconds(pid) - cpu0
    for p, err in zip(procs, errors, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"a client of {server.name} failed: {err.decode(errors='replace')[-400:]}")
    return {"wall": round(wall, 4), "cpu": round(cpu, 4), "rss": peak[0]}


@dataclass
class Bench:
    work: Path
    model: BuiltModel
    certs: CertFiles
    rounds: int
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def blob(self) -> str:
        return self.model.model_layer.digest

    @property
    def size(self) -> int:
        return self.model.model_layer.size

    def record(self, scenario: str, clients: int, server: str, got: dict[str, Any], served: int) -> None:
        gb = served / 1e9
        row = {"scenario": scenario, "clients": clients, "server": server, **got, "bytes": served}
        row["cpu_per_gb"] = round(got["cpu"] / gb, 4)
        row["wall_per_gb"] = round(got["wall"] / gb, 4)
        self.results.append(row)
        print(
            f"  {scenario:9} {clients:3} clients  {server:12} {got['wall']:7.2f} s  "
            f"{row['cpu_per_gb']:5.2f} CPU-s/GB  RSS {got['rss'] / 2**20:6.0f} MiB",
            flush=True,
        )

    def blob_url(self, server: Server) -> str:
        return f"{server.url}/v2/{REPO}/blobs/{self.blob}"

    def whole(self, servers: list[Server], scenario: str, counts: list[int], ca: Path | None) -> None:
        for r in range(self.rounds):
            for n in counts:
                for server in servers if r % 2 == 0 else servers[::-1]:
                    got = one_round(server, [_curl(self.blob_url(server), ca) for _ in range(n)])
                    self.record(scenario, n, server.name, got, n * self.size)

    def ranged(self, servers: list[Server], clients: int = 4, parts: int = 16) -> None:
        step = -(-self.size // parts)
        spans = [(i * step, min(self.size, (i + 1) * step) - 1) for i in range(parts)]
        for r in range(self.rounds):
            for server in servers if r % 2 == 0 else servers[::-1]:
                argvs = [_curl(self.blob_url(server), None, "-r", f"{a}-{b}") for _ in range(clients) for a, b in spans]
                self.record("ranged", clients, server.name, one_round(server, argvs), clients * self.size)


def build(work: Path, size: int) -> tuple[BuiltModel, Path, Path]:
    """The model, a store holding it (for serve) and a Distribution storage holding it."""
    model = make_model(work / "model", size_bytes=size, seed=24)
    store = work / "store"
    model.expected_store(store, "registry.ollama.ai", REPO, TAG)
    storage = work / "distribution"
    seeder = start_distribution("seeder", storage, work)
    try:
        seed_registry(seeder.url, REPO, TAG, model)
    finally:
        seeder.stop()
    return model, store, storage


def run(args: argparse.Namespace) -> dict[str, Any]:
    size = int(parse_rate(args.size))
    counts = [int(c) for c in args.clients.split(",")]
    only = set(args.only.split(",")) if args.only else {"plain", "tls", "ranged", "miss", "redirect", "site"}
    base = Path(tempfile.mkdtemp(prefix="bench-fanout.", dir=args.work))
    (base / "home").mkdir()
    try:
        print(f"building a {size} byte blob in {base}", flush=True)
        model, store, storage = build(base, size)
        bench = Bench(base, model, make_certs(base / "certs"), args.rounds)
        with contextlib.ExitStack() as stack:
            plain = [
                stack.enter_context(_stopping(start_seed("serve", store, base))),
                stack.enter_context(_stopping(start_distribution("distribution", storage, base))),
            ]
            if "plain" in only:
                bench.whole(plain, "plain", counts, None)
            if "ranged" in only:
                bench.ranged(plain)
            if "redirect" in only:
                _redirect(bench, plain[0])
            if "site" in only:
                _site(bench, store, plain)
        if "tls" in only:
            with contextlib.ExitStack() as stack:
                tls = [
                    stack.enter_context(_stopping(start_seed("serve", store, base, bench.certs))),
                    stack.enter_context(_stopping(start_distribution("distribution", storage, base, bench.certs))),
                ]
                bench.whole(tls, "tls", [int(c) for c in args.tls_clients.split(",")], bench.certs.ca)
        if "miss" in only:
            _miss(bench, storage)
        return {
            "size": size,
            "rounds": args.rounds,
            "machine": _machine(),
            "openssl_aes_128_gcm_16k_bytes_per_s": _openssl_speed(),
            "results": bench.results,
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def _stopping(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def _redirect(bench: Bench, serve: Server) -> None:
    for r in range(bench.rounds):
        kinds = ["ollama", "direct"] if r % 2 == 0 else ["direct", "ollama"]
        for kind in kinds:
            extra = ("-L", "-A", OLLAMA_UA) if kind == "ollama" else ()
            got = one_round(serve, [_curl(bench.blob_url(serve), None, *extra) for _ in range(8)])
            bench.record("redirect", 8, f"serve-{kind}", got, 8 * bench.size)


def _site(bench: Bench, store: Path, plain: list[Server]) -> None:
    import bcrypt

    htpasswd = bench.work / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()}\n")
    site = start_seed(
        "serve-site",
        store,
        bench.work,
        None,
        "--htpasswd",
        str(htpasswd),
        "--upstream",
        plain[1].url,
        "--max-cache-size",
        str(4 * bench.size),
    )
    try:
        for r in range(bench.rounds):
            for server in [site, plain[0]] if r % 2 == 0 else [plain[0], site]:
                login = ("-u", f"{USER}:{PASSWORD}") if server is site else ()
                argvs = [_curl(bench.blob_url(server), None, *login) for _ in range(8)]
                got = one_round(server, argvs, scrape=f"{server.url}/metrics")
                bench.record("site", 8, server.name if server is site else "serve-open", got, 8 * bench.size)
    finally:
        site.stop()


def _miss(bench: Bench, storage: Path) -> None:
    origin = start_distribution("origin", storage, bench.work)
    try:
        for r in range(bench.rounds):
            for kind in ["serve", "distribution"] if r % 2 == 0 else ["distribution", "serve"]:
                fresh = bench.work / f"miss-{kind}-{r}"
                if kind == "serve":
                    server = start_seed("serve-miss", fresh, bench.work, None, "--upstream", origin.url)
                else:
                    server = start_distribution("distribution-miss", fresh, bench.work, proxy=origin.url)
                try:
                    got = one_round(server, [_curl(bench.blob_url(server), None) for _ in range(8)])
                    if kind == "serve":
                        text = httpx.get(f"{server.url}/metrics", trust_env=False).text
                        got["upstream_bytes"] = _metric(text, "ollama_seed_mirror_upstream_bytes_total")
                    bench.record("miss", 8, server.name.removesuffix("-miss"), got, 8 * bench.size)
                finally:
                    server.stop()
                    shutil.rmtree(fresh, ignore_errors=True)
    finally:
        origin.stop()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _openssl_speed() -> float | None:
    """``openssl speed -evp aes-128-gcm``: bytes per second of one core at 16 KiB records."""
    try:
        out = subprocess.run(
            ["openssl", "speed", "-elapsed", "-seconds", "1", "-bytes", "16384", "-evp", "aes-128-gcm"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.lower().startswith("aes-128-gcm"):
            return float(line.split()[-1].rstrip("k")) * 1000
    return None


def _machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in load], "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="512Mi")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--tls-clients", default="1,8,32")
    p.add_argument("--only", default="", help="comma-separated: plain,tls,ranged,miss,redirect,site")
    p.add_argument("--work", default=None, help="where the blob and the servers' storage go (default: a temp dir)")
    p.add_argument("--label", default="")
    p.add_argument("--serve-env", action="append", default=[], metavar="KEY=VALUE", help="for A/B runs of serve")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    SEED_ENV.update(kv.split("=", 1) for kv in args.serve_env)
    if not REGISTRY_BIN.exists() or shutil.which("curl") is None:
        print("needs /usr/bin/docker-registry (apt-get install docker-registry) and curl", file=sys.stderr)
        return 2
    result = run(args)
    result["summary"] = fanout_report.summarize(result)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{stamp}-fanout-{args.size}" + (f"-{args.label}" if args.label else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(fanout_report.markdown(result))
    (out / f"{name}.svg").write_text(fanout_report.svg(result))
    print(fanout_report.markdown(result))
    print(f"wrote {out / name}.{{json,md,svg}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
