"""F5 (parallel wrong passwords all checked; bcrypt shared threads with blob reads) and F6 (one
address's failures locked out every user behind it, valid credentials too)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ollama_seed.mirror.factory import create_app
from ollama_seed.mirror.site import SiteApp
from tests.mirror.security.conftest import basic
from tests.support.mirror import write_htpasswd

pytestmark = pytest.mark.anyio
USERS = {"alice": "alice-password", "bob": "bob-password", "mallory": "mallory-password"}


def failures(app: SiteApp) -> dict[str, float]:
    text = app.metrics.render().decode()
    return {
        s.labels["reason"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "ollama_seed_mirror_auth_failures_total"
    }


def client(app: SiteApp, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(address, 1)), base_url="http://m")


async def test_parallel_guesses_are_counted_before_the_check(tmp_path: Path, store: Path) -> None:
    app = create_app(store, htpasswd=write_htpasswd(tmp_path / "htpasswd", USERS, rounds=8), login_failures=(3, 60))
    codes: list[int] = []
    async with app, client(app, "10.0.0.66") as bad:

        async def guess(i: int) -> None:
            codes.append((await bad.get("/v2/", headers=basic("alice", f"guess-{i}"))).status_code)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(guess, i)
    checked = failures(app).get("bad-password", 0)
    assert checked <= 3, f"{checked} passwords were checked at once"  # before: all 40
    assert codes.count(429) >= 37


async def test_logins_have_their_own_threads(tmp_path: Path, store: Path) -> None:
    app = create_app(store, htpasswd=write_htpasswd(tmp_path / "htpasswd", USERS, rounds=10), login_failures=(1000, 60))
    order: list[str] = []
    async with app, client(app, "10.0.0.7") as good:
        assert (await good.get("/v2/", headers=basic("bob", USERS["bob"]))).status_code == 200  # remembered now

        async def bad_login(i: int) -> None:
            async with client(app, f"10.1.{i}.1") as c:
                await c.get("/v2/", headers=basic(f"nobody{i}", "x"))
            order.append("login")

        async def download() -> None:
            await anyio.sleep(0.05)
            r = await good.get("/v2/library/small/manifests/latest", headers=basic("bob", USERS["bob"]))
            assert r.status_code == 200
            order.append("download")

        async with anyio.create_task_group() as tg:
            for i in range(60):  # more than anyio's 40 default worker threads
                tg.start_soon(bad_login, i)
            tg.start_soon(download)
    # before: the download's file read queued behind the bcrypt checks in the shared worker threads
    assert order.index("download") < 20, order


async def test_others_failures_behind_one_address_lock_nobody_else_out(tmp_path: Path, store: Path) -> None:
    app = create_app(store, htpasswd=write_htpasswd(tmp_path / "htpasswd", USERS), login_failures=(3, 60))
    async with app, client(app, "192.168.1.1") as nat:  # a NAT or the reverse proxy: one address for all
        for i in range(10):
            await nat.get("/v2/", headers=basic("mallory", f"wrong-{i}"))
        assert (await nat.get("/v2/", headers=basic("mallory", "wrong"))).status_code == 429
        assert (await nat.get("/v2/", headers=basic("alice", USERS["alice"]))).status_code == 200  # before: 429


async def test_a_logged_in_client_is_never_rate_limited(tmp_path: Path, store: Path) -> None:
    app = create_app(store, htpasswd=write_htpasswd(tmp_path / "htpasswd", USERS), login_failures=(3, 60))
    async with app, client(app, "10.0.0.8") as c:
        good = basic("alice", USERS["alice"])
        assert (await c.get("/v2/", headers=good)).status_code == 200
        for i in range(10):  # someone guesses alice's password from the same address
            await c.get("/v2/", headers=basic("alice", f"guess-{i}"))
        assert (await c.get("/v2/", headers=basic("alice", "guess"))).status_code == 429
        assert (await c.get("/v2/", headers=good)).status_code == 200  # before: 429 for alice too
