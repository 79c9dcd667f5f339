"""Four clients pulling at once: ``ollama-seed serve`` vs ``docker-registry`` holding the same model.

Both servers run as their own processes on 127.0.0.1 in the same run. Each round starts four
client processes at the same instant against one server, waits for all of them, checks every
client's store, and records the wall time; the servers alternate which goes first. Throughput is
``4 * model size / wall time``; the ratio is mirror / registry (target: at least 0.80).

Clients: ``seed`` = ``python -m ollama_seed pull --insecure`` (16 ranged connections per blob,
sha256 verified, fsynced: what a site's hosts run); ``curl`` = one plain GET of the model blob to
/dev/null per client (the servers' raw serving speed, little client CPU).

    python -m benchmarks.bench_mirror [--size 256Mi] [--rounds 3] [--clients seed,curl] [--json OUT]

Needs ``/usr/bin/docker-registry`` (Debian package docker-registry) and curl for the curl clients.
Both servers keep their access logs on (their defaults), written to files.

``--site`` compares ``ollama-seed serve`` with itself instead, as a site runs it: plain http,
TLS (``--tls-cert``, a CA the run makes), a login (``--htpasswd``, bcrypt cost 10, HTTP Basic on
every request), and both; the same clients and rounds (the configurations alternate order per
round). Besides wall time it reads the server process's CPU time for each round
(``/proc/<pid>/stat``), so it reports bytes served per CPU-second of the server: the sizing
figure (a core serves that many bytes per second when the server is the bottleneck). Ratios:
TLS / plain and login / no login.

    python -m benchmarks.bench_mirror --site [--size 256Mi] [--rounds 3] [--clients curl,seed]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_seed.core.units import parse_rate  # noqa: E402
from tests.support.model import make_model  # noqa: E402
from tests.support.net import free_port  # noqa
from tests.support.registry import DockerRegistry  # noqa: E402
from tests.support.seed import seed_registry  # noqa: E402

REPO, TAG = "library/bench", "latest"
N_CLIENTS = 4


def env(home: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "HTTP", "HTTPS", "NO_PROXY"))}
    return {**keep, "HOME": str(home), "PYTHONPATH": str(ROOT)}


@contextlib.contextmanager
def mirror_process(
    models: Path,
    work: Path,
    extra: tuple[str, ...] = (),
    name: str = "mirror",
    verify: Any = True,
    holder: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[str]:
    port = free_port()
    log = (work / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ollama_seed", "serve", "--models-dir", str(models), "--port", str(port), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env(work / "home"),
    )
    if holder is not None:
        holder.append(proc)
    url = f"{'https' if '--tls-cert' in extra else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1, verify=verify).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ollama-seed serve did not start:\n{(work / f'{name}.log').read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def one_round(
    kind: str,
    url: str,
    work: Path,
    blob: str,
    size: int,
    manifest: bytes,
    client_env: dict[str, str] | None = None,
    curl_args: tuple[str, ...] = (),
) -> float:
    host = url.split("://", 1)[1]
    dirs = [work / f"client-{i}" for i in range(N_CLIENTS)]
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    if kind == "seed":
        insecure = ["--insecure"] if url.startswith("http://") else []
        argv = [
            [
                sys.executable,
                "-m",
                "ollama_seed",
                "pull",
                *insecure,
                "--progress",
                "none",
                "--models-dir",
                str(d),
                f"{host}/{REPO}:{TAG}",
            ]
            for d in dirs
        ]
    else:
        argv = [["curl", "-sf", *curl_args, "-o", "/dev/null", f"{url}/v2/{REPO}/blobs/{blob}"] for _ in dirs]
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            a, env={**env(work / "home"), **(client_env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for a in argv
    ]
    errors = [p.communicate()[1] for p in procs]
    wall = time.monotonic() - started
    for p, err in zip(procs, errors, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"a {kind} client failed against {url}: {err.decode(errors='replace')[-500:]}")
    if kind == "seed":
        for d in dirs:  # the pull verified every sha256; check the result landed whole
            got = (d / "manifests" / host / REPO / TAG).read_bytes()
            assert got == manifest, f"{d}: wrong manifest"
            assert (d / "blobs" / blob.replace(":", "-")).stat().st_size == size
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_mirror",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--size", default="256Mi", help="model layer size (default 256Mi)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="seed,curl", help="seed, curl, or both (comma-separated)")
    ap.add_argument("--json", type=Path, help="write the result here")
    ap.add_argument("--site", action="store_true", help="plain vs TLS vs login, ollama-seed serve only")
    a = ap.parse_args(argv)
    size = int(parse_rate(a.size))
    kinds = [k for k in a.clients.split(",") if k]
    work = Path(tempfile.mkdtemp(prefix="bench-mirror."))
    try:
        result = run_site(work, size, a.rounds, kinds) if a.site else run(work, size, a.rounds, kinds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run(work: Path, size: int, rounds: int, kinds: list[str]) -> dict[str, Any]:
    (work / "home").mkdir()
    model = make_model(work / "model", size_bytes=size, seed=7)
    layer = model.model_layer
    with DockerRegistry.start(work / "registry") as reg:
        seed_registry(reg.url, REPO, TAG, model)
        mirror_store = work / "mirror-store"  # the same model, in the layout Ollama and the mirror use
        model.expected_store(mirror_store, "registry.ollama.ai", REPO, TAG)
        shutil.rmtree(work / "model", ignore_errors=True)
        with mirror_process(mirror_store, work) as mirror_url:
            servers = {"docker-registry": reg.url, "ollama-seed serve": mirror_url}
            walls: dict[str, dict[str, list[float]]] = {k: {s: [] for s in servers} for k in kinds}
            for kind in kinds:
                one_round(kind, reg.url, work, layer.digest, layer.size, model.manifest)  # warm the page cache
                for r in range(rounds):
                    order = list(servers.items()) if r % 2 == 0 else list(reversed(servers.items()))
                    for name, url in order:
                        wall = one_round(kind, url, work, layer.digest, layer.size, model.manifest)
                        walls[kind][name].append(wall)
                        print(f"{kind:5} round {r + 1}: {name:18} {wall:6.2f} s", file=sys.stderr)
    out: dict[str, Any] = {
        "model_bytes": model.total_size,
        "layer_bytes": layer.size,
        "clients": N_CLIENTS,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "results": {},
    }
    for kind in kinds:
        per = model.total_size if kind == "seed" else layer.size
        summary: dict[str, dict[str, Any]] = {}
        for name, ws in walls[kind].items():
            med = statistics.median(ws)
            summary[name] = {
                "walls_s": [round(w, 3) for w in ws],
                "median_s": round(med, 3),
                "MB_per_s": round(N_CLIENTS * per / med / 1e6, 1),
            }
        ratio = summary["ollama-seed serve"]["MB_per_s"] / summary["docker-registry"]["MB_per_s"]
        out["results"][kind] = {**summary, "ratio_mirror_over_registry": round(ratio, 3)}
    return out


USER, PASSWORD = "bench", "bench-password-1"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_site(work: Path, size: int, rounds: int, kinds: list[str]) -> dict[str, Any]:
    import ssl

    from tests.support.mirror import write_htpasswd
    from tests.support.tls import make_certs

    (work / "home").mkdir()
    model = make_model(work / "model", size_bytes=size, seed=7)
    layer = model.model_layer
    store = work / "mirror-store"
    model.expected_store(store, "registry.ollama.ai", REPO, TAG)
    shutil.rmtree(work / "model", ignore_errors=True)
    certs = make_certs(work / "certs")
    htpasswd = write_htpasswd(work / "htpasswd", {USER: PASSWORD}, rounds=10)
    tls = ("--tls-cert", str(certs.cert), "--tls-key", str(certs.key))
    login = ("--htpasswd", str(htpasswd))
    configs = {"plain": (), "tls": tls, "login": login, "tls+login": (*tls, *login)}
    ca = ssl.create_default_context(cafile=str(certs.ca))
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        urls = {
            name: stack.enter_context(mirror_process(store, work, extra, name.replace("+", "-"), ca, procs))
            for name, extra in configs.items()
        }
        pids = {name: p.pid for name, p in zip(configs, procs, strict=True)}
        walls: dict[str, dict[str, list[float]]] = {k: {c: [] for c in configs} for k in kinds}
        cpus: dict[str, dict[str, list[float]]] = {k: {c: [] for c in configs} for k in kinds}
        for kind in kinds:
            for r in range(rounds + 1):  # round 0 warms the page cache and each server
                order = list(configs) if r % 2 == 0 else list(reversed(configs))
                for name in order:
                    client_env: dict[str, str] = {}
                    curl_args: tuple[str, ...] = ()
                    if "tls" in name:
                        client_env["SSL_CERT_FILE"] = str(certs.ca)
                        curl_args += ("--cacert", str(certs.ca))
                    if "login" in name:
                        client_env |= {"OLLAMA_SEED_REGISTRY_USER": USER, "OLLAMA_SEED_REGISTRY_PASSWORD": PASSWORD}
                        curl_args += ("-u", f"{USER}:{PASSWORD}")
                    cpu0 = cpu_seconds(pids[name])
                    wall = one_round(
                        kind, urls[name], work, layer.digest, layer.size, model.manifest, client_env, curl_args
                    )
                    cpu = cpu_seconds(pids[name]) - cpu0
                    if r:
                        walls[kind][name].append(wall)
                        cpus[kind][name].append(cpu)
                    print(f"{kind:5} round {r}: {name:10} {wall:6.2f} s, server CPU {cpu:5.2f} s", file=sys.stderr)
    out: dict[str, Any] = {
        "model_bytes": model.total_size,
        "layer_bytes": layer.size,
        "clients": N_CLIENTS,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "results": {},
    }
    for kind in kinds:
        per = N_CLIENTS * (model.total_size if kind == "seed" else layer.size)
        summary: dict[str, Any] = {}
        for name in configs:
            wall, cpu = statistics.median(walls[kind][name]), statistics.median(cpus[kind][name])
            summary[name] = {
                "walls_s": [round(w, 3) for w in walls[kind][name]],
                "median_s": round(wall, 3),
                "MB_per_s": round(per / wall / 1e6, 1),
                "server_cpu_s": round(cpu, 3),
                "MB_per_server_cpu_s": round(per / cpu / 1e6, 1) if cpu else None,
            }
        rate = {n: summary[n]["MB_per_s"] for n in configs}
        summary["ratio_tls_over_plain"] = round(rate["tls"] / rate["plain"], 3)
        summary["ratio_login_over_plain"] = round(rate["login"] / rate["plain"], 3)
        summary["ratio_tls_login_over_tls"] = round(rate["tls+login"] / rate["tls"], 3)
        out["results"][kind] = summary
    return out


if __name__ == "__main__":
    sys.exit(main())
