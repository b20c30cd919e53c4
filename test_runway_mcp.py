"""Tests for runway_mcp.py: the executable spec.

Unit tests drive the client with `responses`; end-to-end tests run runway_mcp.py as a subprocess
under a real MCP client (stdio, mode "legacy", as desktop hosts use it) against FakeRunway, a
stateful stand-in for the Runway API served on 127.0.0.1 by this file. Nothing needs the network.
"""

import ast
import base64
import collections.abc
import concurrent.futures
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import itertools
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import typing
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest.mock import ANY
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx2
import pytest
import requests
import responses
import runwayml
from mcp import Client, MCPError, StdioServerParameters
from runwayml.types import AvatarVideoCreateParams, VoiceCreateParams, WorkflowRunParams
from runwayml.types import generate as sdk_generate
from mcp.server.elicitation import DeclinedElicitation
from mcp.types import ElicitResult
from typing_extensions import NotRequired, Required, is_typeddict

import runway_mcp as rm

HERE = Path(__file__).resolve().parent
SERVER = str(HERE / "runway_mcp.py")
KEY = "key_" + "0123456789abcdef" * 8
KEY2 = "key_" + "fedcba9876543210" * 8          # a second account: the fake serves both, and keeps them apart
KEY3, KEY4 = "key_" + "3" * 128, "key_" + "4" * 128       # two more, for tests of many accounts at once
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 4

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


##############################################################################
# Configuration
##############################################################################

def test_config_reads_every_variable(tmp_path):
    config = rm.load_config({
        "RUNWAY_API_KEY": KEY, "RUNWAYML_BASE_URL": "http://127.0.0.1:9/", "RUNWAY_MCP_OUTPUT_DIR": str(tmp_path),
        "RUNWAY_MCP_DOWNLOAD": "0", "RUNWAY_MCP_MAX_WAIT": "12.5", "RUNWAY_MCP_POLL_INTERVAL": "0.5"})
    assert config.api_key == KEY                        # the alias works
    assert config.base_url == "http://127.0.0.1:9"
    assert config.output_dir == tmp_path and config.output_dir.is_absolute()
    assert (config.download, config.max_wait, config.poll_interval) == (False, 12.5, 0.5)
    assert config.problems == () and config.warnings == ()


def test_config_defaults_work_without_a_key():
    config = rm.load_config({})
    assert config.api_key == "" and config.problems == ()
    assert config.base_url == "https://api.dev.runwayml.com"
    assert config.output_dir.is_absolute() and str(config.output_dir).startswith(str(Path.home()))
    assert 0 < config.max_wait < 60 and config.poll_interval == 5 and config.download


@pytest.mark.parametrize("url", ["http://api.example.com", "ftp://127.0.0.1", "api.dev.runwayml.com",
                                 "http://10.0.0.1:8000"])
def test_config_refuses_plain_http_except_loopback(url):
    config = rm.load_config({"RUNWAYML_BASE_URL": url})
    assert len(config.problems) == 1 and "RUNWAYML_BASE_URL" in config.problems[0]


@pytest.mark.parametrize("url", ["http://localhost:8080", "http://[::1]:9", "https://api.dev.runwayml.com/"])
def test_config_accepts_https_and_loopback_http(url):
    assert rm.load_config({"RUNWAYML_BASE_URL": url}).problems == ()


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "1e9"])
def test_config_falls_back_on_bad_numbers_and_says_so(value):
    config = rm.load_config({"RUNWAY_MCP_MAX_WAIT": value})
    assert config.max_wait == 45 and "RUNWAY_MCP_MAX_WAIT" in config.warnings[0] and config.problems == ()


@pytest.mark.parametrize("name", ["RUNWAY_MCP_BUDGET_CREDITS", "RUNWAY_MCP_CONFIRM_ABOVE"])
@pytest.mark.parametrize("value", ["ten", "-5", "nan"])
def test_a_spending_guard_that_cannot_be_read_stops_spending_rather_than_lifting(name, value):
    config = rm.load_config({name: value})
    assert len(config.problems) == 1 and name in config.problems[0] and "nothing is sent" in config.problems[0]


def test_config_warns_about_a_malformed_key_without_echoing_it():
    config = rm.load_config({"RUNWAYML_API_SECRET": "sk-not-a-runway-key-123"})
    assert config.warnings and "sk-not-a-runway-key-123" not in " ".join(config.warnings)


def test_config_reads_the_hosting_variables():
    config = rm.load_config({
        "RUNWAY_MCP_KEYS_FROM_CLIENTS": "1", "RUNWAY_MCP_RATE_LIMIT": " 30 / Min ", "RUNWAY_MCP_STATELESS": "1",
        "RUNWAY_MCP_ALLOWED_ORIGINS": "https://a.example/, https://b.example:8443,", "RUNWAY_MCP_STATE_SECRET": "s" * 32})
    assert config.keys_from_clients and config.stateless and config.rate_limit == (30, 60.0)
    assert config.allowed_origins == ("https://a.example", "https://b.example:8443") and config.state_secret == "s" * 32
    assert config.warnings == ()


@pytest.mark.parametrize("variable, value", [("RUNWAY_MCP_RATE_LIMIT", "60"), ("RUNWAY_MCP_RATE_LIMIT", "0/min"),
                                             ("RUNWAY_MCP_RATE_LIMIT", "5/fortnight"),
                                             ("RUNWAY_MCP_STATE_SECRET", "short-secret-31-characters-long")])
def test_config_ignores_a_bad_hosting_value_and_says_so_without_echoing_a_secret(variable, value):
    config = rm.load_config({variable: value})
    assert (config.rate_limit, config.state_secret) == (None, "") and variable in config.warnings[0]
    assert "secret" not in variable.lower() or value not in config.warnings[0]


# One application, configured explicitly ------------------------------------------------------------------

def test_importing_the_module_reads_no_environment_and_writes_nothing(tmp_path):
    """A project that vendors the file imports it: nothing of that process's environment may leak in, and nothing
    may appear on disk. HOME is read-only here, and every read of os.environ after the dependencies are loaded is
    recorded (pydantic itself reads PYDANTIC_DISABLE_PLUGINS whenever a model is defined). Then it creates a server:
    its logging stays as it was (MCPServer would configure the root logger)."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    home.chmod(0o555)
    probe = (f"import os, sys; sys.path.insert(0, {str(HERE)!r})\n"
             "import anyio, mcp.server.mcpserver, pydantic, starlette, requests\n"
             "seen = []\n"
             "class Spy(dict):\n"
             "    def __getitem__(self, key):\n"
             "        seen.append(key); return super().__getitem__(key)\n"
             "    def get(self, key, default=None):\n"
             "        seen.append(key); return super().get(key, default)\n"
             "os.environ = Spy(os.environ)\n"
             "import runway_mcp\n"
             "print(sorted(set(seen)))\n"
             "import logging\n"
             "runway_mcp.create_server(runway_mcp.load_config({}))\n"
             "print(logging.getLogger().handlers, logging.getLevelName(logging.getLogger().level))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=work, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": str(home), "RUNWAYML_API_SECRET": KEY,
                               "RUNWAY_MCP_OUTPUT_DIR": str(work / "out")})
    assert done.returncode == 0, done.stderr
    read, logging_after = done.stdout.splitlines()
    read = ast.literal_eval(read)
    assert not [name for name in read if name.startswith("RUNWAY") or name in ("HOME", "USERPROFILE")], read
    assert done.stderr == ""
    assert list(home.iterdir()) == [] and list(work.iterdir()) == []
    assert logging_after == "[] WARNING"


@pytest.mark.anyio
async def test_two_servers_with_their_own_configurations_serve_side_by_side(fake, tmp_path):
    first = rm.create_server(rm.load_config(server_env(fake, tmp_path / "a", RUNWAY_MCP_TOOLS="image,account",
                                                       RUNWAY_MCP_BUDGET_CREDITS="100", RUNWAY_MCP_MAX_WAIT="7")))
    second = rm.create_server(rm.load_config(server_env(fake, tmp_path / "b")))
    async with Client(first, mode="legacy") as one, Client(second, mode="legacy") as two:
        assert len((await one.list_tools()).tools) < len((await two.list_tools()).tools) == len(rm.TOOLS)
        assert "waits 7 s at most" in one.instructions and "waits 10 s at most" in two.instructions
        async with anyio.create_task_group() as group:
            for client in (one, two):
                group.start_soon(call, client, "generate_image", {"prompt": "side by side"})
        assert [p.parent.name for p in tmp_path.rglob("image_*.png")] and {
            p.parent.name for p in tmp_path.rglob("image_*.png")} == {"a", "b"}
        assert (await call(one, "get_account"))[1]["budget"]["limit"] == 100
        assert (await call(two, "get_account"))[1]["budget"] is None
        result, _ = await call(one, "generate_video", {"prompt": "x"})
        assert result.is_error and "RUNWAY_MCP_TOOLS" in result.content[0].text


def test_the_public_surface():
    """What a project that vendors the file may use, as tabulate's tests pin its signature."""
    assert rm.__all__ == ["Config", "load_config", "create_server", "http_app", "call_tool", "RunwayError"]
    assert str(inspect.signature(rm.load_config)) == ("(environ: collections.abc.Mapping[str, str] | None = None) -> "
                                                     "runway_mcp.Config")
    assert typing.get_type_hints(rm.create_server) == {"config": rm.Config, "return": rm.MCPServer}
    assert list(inspect.signature(rm.http_app).parameters) == ["config", "host"]
    assert list(inspect.signature(rm.call_tool).parameters) == ["config", "name", "arguments", "on_progress", "confirm"]
    assert rm.Config().output_dir == Path("~/Runway") and rm.Config().max_wait == 45


def test_a_project_calls_a_generation_from_python_with_its_own_configuration(fake, tmp_path):
    config = rm.Config(api_key=KEY, base_url=fake.url, output_dir=tmp_path / "mine", poll_interval=0.01)
    seen = []
    result = rm.call_tool(config, "generate_image", {"prompt": "a fox"}, on_progress=lambda *p: seen.append(p))
    assert not result.is_error and result.structured_content["status"] == "SUCCEEDED" and seen
    assert Path(result.structured_content["outputs"][0]["path"]).parent == tmp_path / "mine"
    asked = []
    video = rm.call_tool(rm.dataclasses.replace(config, confirm_above=10), "generate_video",
                         {"prompt": "a storm", "wait": False}, confirm=lambda question: asked.append(question))
    assert video.structured_content["status"] == "DECLINED" and asked == ["Generate 5 s of gen4.5 video for about "
                                                                          "60 credits?"]


@pytest.mark.anyio
async def test_a_project_calls_a_generation_from_async_code_in_a_thread(fake, tmp_path):
    config = rm.Config(api_key=KEY, base_url=fake.url, output_dir=tmp_path, poll_interval=0.01)
    with pytest.raises(RuntimeError, match=r"from async code, run it in a thread \(await asyncio.to_thread"):
        rm.call_tool(config, "generate_image", {"prompt": "a fox"})
    result = await anyio.to_thread.run_sync(rm.call_tool, config, "generate_image", {"prompt": "a fox"})
    assert not result.is_error and not fake.bodies("text_to_image")[1:]


@pytest.mark.anyio
async def test_a_project_mounts_the_server_in_its_own_app(fake, tmp_path):
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount
    runway = rm.http_app(rm.load_config(server_env(fake, tmp_path)))
    app = Starlette(routes=[Mount("/media", app=runway)], lifespan=lambda _: runway.lifespan())
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        async with http_client(f"http://127.0.0.1:{listening.getsockname()[1]}/media") as client:
            result, data = await call(client, "list_models", {"kind": "audio"})
            assert not result.is_error and data["models"]
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_server_reaching_into_an_mcp_that_moved_its_handlers_says_so():
    with pytest.raises(RuntimeError, match=r"mcp [0-9.]+ keeps its request handlers elsewhere.*install mcp 2.3"):
        rm._forget_prompts(object())


##############################################################################
# Errors
##############################################################################

@pytest.fixture
def api(monkeypatch, tmp_path):
    """Runway at https://runway.test, mocked with `responses`: api.account is an account on it (instant retries);
    api.configure(**changes) gives it other settings."""
    config = rm.load_config({"RUNWAYML_API_SECRET": KEY, "RUNWAYML_BASE_URL": "https://runway.test",
                             "RUNWAY_MCP_OUTPUT_DIR": str(tmp_path), "RUNWAY_MCP_POLL_INTERVAL": "0.01"})
    pauses = []
    monkeypatch.setattr(rm, "pause", pauses.append)
    with responses.RequestsMock(registry=responses.registries.OrderedRegistry) as mocked:
        mocked.pauses, mocked.account = pauses, rm.own_account(config)

        def configure(**changes):
            mocked.account = rm.own_account(rm.dataclasses.replace(mocked.account.config, **changes))
            return mocked.account
        mocked.configure = configure
        yield mocked


def test_400_lists_runway_issues_with_their_paths(api):
    api.post("https://runway.test/v1/text_to_image", status=400, json={
        "error": "Validation failed", "issues": [
            {"code": "invalid", "path": ["promptImage", 0, "uri"], "message": "Invalid data URI"},
            {"code": "too_big", "path": ["promptText"], "message": "String must contain at most 1000 characters"}]})
    with pytest.raises(rm.RunwayError) as caught:
        rm.create_task(api.account, "text_to_image", {"model": "gen4_image"})
    message = str(caught.value)
    assert "400" in message and "promptImage.0.uri: Invalid data URI" in message
    assert "promptText: String must contain at most 1000 characters" in message and "\n" not in message


@pytest.mark.parametrize("status, words", [
    (401, ["RUNWAYML_API_SECRET", "dev.runwayml.com"]),
    (404, ["no task", "deleted"]),
    (429, ["429", "get_account"]),
])
def test_error_statuses_become_one_readable_line(api, status, words):
    task_id = str(uuid.uuid4())
    for _ in range(4 if status == 429 else 1):
        api.get(f"https://runway.test/v1/tasks/{task_id}", status=status, json={"error": "nope"})
    with pytest.raises(rm.RunwayError) as caught:
        rm.fetch_task(api.account, task_id)
    assert all(w in str(caught.value) for w in words) and task_id in str(caught.value)
    assert caught.value.status == status


def test_requests_carry_the_key_and_version_and_nothing_else_holds_the_key(api):
    api.get("https://runway.test/v1/organization", json={"creditBalance": 5})
    assert rm.api(api.account, "GET", "/v1/organization") == {"creditBalance": 5}
    sent = api.calls[0].request.headers
    assert sent["Authorization"] == f"Bearer {KEY}" and sent["X-Runway-Version"] == "2024-11-06"
    assert "Authorization" not in rm.session().headers


def test_no_key_is_a_clear_error_and_sends_nothing(api):
    with pytest.raises(rm.RunwayError, match="RUNWAYML_API_SECRET"):
        rm.api(api.configure(api_key=""), "GET", "/v1/organization")
    assert len(api.calls) == 0


def test_error_messages_never_contain_the_key(api):
    api.post("https://runway.test/v1/text_to_video", status=400,
             json={"error": f"bad header Authorization: Bearer {KEY}"})
    with pytest.raises(rm.RunwayError) as caught:
        rm.create_task(api.account, "text_to_video", {})
    assert KEY not in str(caught.value) and "[redacted]" in str(caught.value)


##############################################################################
# Client: retries
##############################################################################

def test_get_retries_503_then_succeeds(api):
    task_id = str(uuid.uuid4())
    url = f"https://runway.test/v1/tasks/{task_id}"
    api.get(url, status=503)
    api.get(url, status=502)
    api.get(url, json={"id": task_id, "status": "RUNNING", "progress": 0.5})
    assert rm.fetch_task(api.account, task_id)["status"] == "RUNNING"
    assert len(api.calls) == 3 and len(api.pauses) == 2


def test_retry_after_is_honoured(api):
    task_id = str(uuid.uuid4())
    url = f"https://runway.test/v1/tasks/{task_id}"
    api.get(url, status=429, headers={"Retry-After": "3"})
    api.get(url, json={"id": task_id, "status": "PENDING"})
    rm.fetch_task(api.account, task_id)
    assert api.pauses == [3.0]


def test_a_long_retry_after_is_returned_at_once_not_slept(api):
    api.post("https://runway.test/v1/text_to_video", status=429, headers={"Retry-After": "3600"},
             json={"error": "Daily limit reached"})
    with pytest.raises(rm.RunwayError, match="429.*Daily limit reached"):
        rm.create_task(api.account, "text_to_video", {"model": "gen4.5"})
    assert len(api.calls) == 1 and api.pauses == []


@pytest.mark.parametrize("statuses", [[429, 200], [502, 200], [503, 503, 200]])
def test_create_retries_where_runway_cannot_have_created_a_task(api, statuses):
    for status in statuses:
        api.post("https://runway.test/v1/text_to_video", status=status,
                 json={"id": str(uuid.uuid4()), "estimatedCost": {"credits": 60}} if status == 200 else {})
    assert rm.create_task(api.account, "text_to_video", {"model": "gen4.5"})["estimatedCost"] == {"credits": 60}
    assert len(api.calls) == len(statuses)


@pytest.mark.parametrize("failure", [500, 504, requests.ReadTimeout("read timed out"),
                                     requests.ConnectionError("Connection reset by peer")])
def test_create_is_never_resent_where_a_task_may_exist(api, failure):
    if isinstance(failure, int):
        api.post("https://runway.test/v1/text_to_video", status=failure, json={"error": "boom"})
    else:
        api.post("https://runway.test/v1/text_to_video", body=failure)
    with pytest.raises(rm.RunwayError) as caught:
        rm.create_task(api.account, "text_to_video", {"model": "gen4.5"})
    assert len(api.calls) == 1
    assert "may have been created" in str(caught.value) and "list_tasks" in str(caught.value)


def test_create_retries_a_refused_connection(monkeypatch, tmp_path):
    with socket.socket() as s:                      # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    account = rm.own_account(rm.load_config({"RUNWAYML_API_SECRET": KEY,
                                             "RUNWAYML_BASE_URL": f"http://127.0.0.1:{port}"}))
    pauses = []
    monkeypatch.setattr(rm, "pause", pauses.append)
    with pytest.raises(rm.RunwayError, match="Could not reach Runway"):
        rm.create_task(account, "text_to_video", {"model": "gen4.5"})
    assert len(pauses) == 3                         # four attempts: nothing reached Runway, so retrying is safe


def test_get_retries_a_read_timeout(api):
    task_id = str(uuid.uuid4())
    url = f"https://runway.test/v1/tasks/{task_id}"
    api.get(url, body=requests.ReadTimeout("slow"))
    api.get(url, json={"id": task_id, "status": "SUCCEEDED", "output": []})
    assert rm.fetch_task(api.account, task_id)["status"] == "SUCCEEDED" and len(api.calls) == 2


def test_cancel_treats_404_as_already_cancelled(api):
    task_id = str(uuid.uuid4())
    api.delete(f"https://runway.test/v1/tasks/{task_id}", status=204)
    api.delete(f"https://runway.test/v1/tasks/{task_id}", status=404, json={"error": "Task not found"})
    assert rm.cancel(api.account, task_id) is True
    assert rm.cancel(api.account, task_id) is False


def test_downloads_never_carry_the_key(api, tmp_path):
    task_id = str(uuid.uuid4())
    api.get("https://cdn.test/out.png", body=PNG, content_type="image/png")
    path, mime, size = rm.download(api.account, "https://cdn.test/out.png", task_id, 1, "image")
    assert "Authorization" not in api.calls[0].request.headers
    assert path.read_bytes() == PNG and (mime, size) == ("image/png", len(PNG))
    assert path.parent == tmp_path and path.name == f"image_{task_id.replace('-', '')[:8]}_1.png"


@pytest.mark.parametrize("url", ["http://cdn.test/out.png", "ftp://cdn.test/out.png", "file:///etc/passwd"])
def test_a_link_runway_hands_back_is_fetched_only_over_https(api, tmp_path, url):
    with pytest.raises(rm.RunwayError, match="link is not an https URL; not fetched"):
        rm.download(api.account, url, str(uuid.uuid4()), 1, "image")
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\0" * 1024)
    api.post("https://runway.test/v1/uploads", json={"uploadUrl": url, "fields": {}, "runwayUri": "runway://u/1"})
    with pytest.raises(rm.RunwayError, match="the upload URL is not an https URL; not fetched"):
        rm.upload(api.account, rm.LocalFile(big, "image/png", big.stat().st_size))
    assert len(api.calls) == 1 and list(tmp_path.iterdir()) == [big]       # nothing fetched, posted or saved


##############################################################################
# Catalog
##############################################################################

def valid_value(model, field_name):
    """A value the catalog accepts for a field: its first allowed choice, or a placeholder."""
    allowed = model.choices.get(field_name)
    return next(iter(allowed)) if allowed and not isinstance(allowed, rm.Text) else f"<{field_name}>"


@pytest.mark.parametrize("name", list(rm.MODELS))
def test_every_model_accepts_its_own_defaults(name):
    model = rm.MODELS[name]
    for key, use in model.uses.items():
        endpoint, _, mode = key.partition(":")
        body = {"model": name, **({"mode": mode} if mode else {})}
        defaulted = {"ratio"} if use.ratios else set()
        defaulted |= {"duration"} if model.durations else set()
        body.update({f: valid_value(model, f) for f in rm._fields(use.needs) - defaulted - set(body)})
        body.update({f: [{"uri": "https://example.com/a.png"}] * n for f, n in model.min_items.items()
                     if len(body.get(f) or ()) < n})
        if body.get("duration") == "<duration>":
            body["duration"] = 3                    # e.g. mirelo_sfx_2_0: required, no range stated
        rm.apply_defaults(endpoint, body)
        assert rm.check_model(endpoint, body) == []
        if use.ratios and "ratio" in body:
            assert body["ratio"] in use.ratios


@pytest.mark.parametrize("name", [n for n, m in rm.MODELS.items() if any(u.ratios for u in m.uses.values())])
def test_every_model_refuses_a_wrong_ratio_listing_the_allowed_ones(name):
    endpoint, use = next((e, u) for e, u in rm.MODELS[name].uses.items() if u.ratios)
    body = {"model": name, "ratio": "7:3", **{f: "x" for f in rm._fields(use.needs) - {"ratio", "duration"}}}
    rm.apply_defaults(endpoint, body)
    body["ratio"] = "7:3"
    with pytest.raises(rm.RunwayError) as caught:
        rm.check_model(endpoint, body)
    assert "ratio='7:3'" in str(caught.value) and use.ratios[0] in str(caught.value)


def test_catalog_rules_name_the_argument():
    cases = [
        ("text_to_image", {"model": "gen4_image_turbo", "promptText": "x", "ratio": "1920:1080"},
         "gen4_image_turbo needs reference_images"),
        ("text_to_video", {"model": "gen4_turbo", "promptText": "x"}, "does not work on text_to_video"),
        ("text_to_video", {"model": "gen4.5", "promptText": "x", "ratio": "1280:720", "duration": 12},
         "duration=12 is not valid for gen4.5 on text_to_video; allowed: 2-10"),
        ("text_to_video", {"model": "veo3.1", "promptText": "x", "ratio": "1280:720", "duration": 5},
         "allowed: 4, 6, 8"),
        ("image_to_video", {"model": "kling2.5_turbo_pro", "promptImage": "u", "promptText": "x", "ratio": "1:1"},
         "kling2.5_turbo_pro does not take ratio"),
        ("text_to_video", {"model": "gen4.5", "promptText": "x", "ratio": "1280:720", "duration": 5,
                           "outputFormat": "avi"}, "options.outputFormat='avi'"),
        ("text_to_video", {"model": "seedance2", "promptText": "x", "duration": 20}, "4-15, auto"),
        ("text_to_video", {"model": "gen4.5", "promptText": "x" * 1001, "ratio": "1280:720", "duration": 5},
         "prompt has 1001 characters; gen4.5 takes at most 1000 characters on text_to_video"),
        ("text_to_video", {"model": "gen4.5", "promptText": "\U0001f3ac" * 501, "ratio": "1280:720", "duration": 5},
         "prompt has 1002 characters"),             # Runway counts UTF-16 code units: an emoji is two
        ("text_to_image", {"model": "muse_image", "promptText": "x", "ratio": "auto",
                           "referenceImages": [{"uri": "u"}, {"uri": "v", "tag": "cat"}]},
         "reference_images[1].tag: muse_image takes reference images without tags"),
        ("video_to_video", {"model": "klingO3_pro", "promptText": "x", "promptVideo": "v", "references": [{}] * 5},
         "references has 5 items; klingO3_pro takes at most 4 on video_to_video"),
        ("image_to_video", {"model": "klingO3_pro", "promptImage": "i", "ratio": "1920:1080", "references": [{}] * 8},
         "takes at most 7 on image_to_video"),
        ("text_to_video", {"model": "kling_4", "promptText": "x", "referenceVideos": [{}] * 6}, "at most 5"),
        ("text_to_speech", {"model": "eleven_v3", "promptText": "x", "voice": {}, "seed": 2**32},
         "seed=4294967296 is not valid for eleven_v3"),
    ]
    for endpoint, body, expected in cases:
        with pytest.raises(rm.RunwayError) as caught:
            rm.check_model(endpoint, body)
        assert expected in str(caught.value), str(caught.value)


# The catalog's oracle: Runway's own SDK ------------------------------------------------------------------------
# runwayml's request types (types/*_create_params.py, generated from Runway's OpenAPI spec) say, model by model,
# which fields a body takes, which are required, their enums, and in the field docs the limits: "up to 1000
# characters", "Up to 5 videos", "(0-4294967295)". The tests below read them and hold the catalog to them.

assert runwayml.__version__ == "5.24.0", "the catalog was checked against runwayml 5.24.0; update both together"

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10}
COUNT = r"(\d[\d,]*|" + "|".join(NUMBER_WORDS) + ")"


def _count(text: str) -> int:
    return NUMBER_WORDS.get(text.lower()) or int(text.replace(",", ""))


@dataclass
class SdkField:
    """What runwayml says about one body field."""

    enum: set | None = None          # the values of its Literal type, if it has one
    free: bool = False               # any string besides the enum (Literal[...] | str)
    text: bool = False
    number: bool = False
    listed: bool = False             # a list
    items: set | None = None         # for a list: the keys its items may have (None: untyped items)
    item_enums: dict = field(default_factory=dict)   # item key -> its Literal values
    chars: int | None = None         # "up to N characters"
    most: int | None = None          # a list's "up to N"
    fewest: int = 0                  # a list's "N to M": the fewest items it takes
    bounds: tuple | None = None      # a number's "between A and B", "from A to B", "(A-B)"
    doc: str = ""


def _attribute_docs(path: str) -> dict[tuple[str, str], str]:
    """(class, attribute) -> the docstring written under the attribute (only the source has it)."""
    docs = {}
    for cls in ast.parse(Path(path).read_text()).body:
        if isinstance(cls, ast.ClassDef):
            for node, after in zip(cls.body, cls.body[1:]):
                if (isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr)
                        and isinstance(after.value, ast.Constant)):
                    docs[cls.name, node.target.id] = " ".join(after.value.value.split())
    return docs


def _strip(hint) -> tuple[object, str | None, bool]:
    """A type without Annotated/Required: (type, its alias, whether it was Required)."""
    alias, required = None, False
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            alias = next((m.alias for m in hint.__metadata__ if getattr(m, "alias", None)), alias)
            hint = hint.__origin__
        elif origin in (Required, NotRequired):
            required = required or origin is Required
            hint = typing.get_args(hint)[0]
        else:
            return hint, alias, required


def _alternatives(hint) -> list:
    hint = _strip(hint)[0]
    if typing.get_origin(hint) is typing.Union:
        return [alt for arg in typing.get_args(hint) for alt in _alternatives(arg)]
    return [hint]


def _sdk_field(hint, doc: str) -> SdkField:
    alternatives = _alternatives(hint)
    info = SdkField(doc=doc, text=str in alternatives, number=any(a in (int, float) for a in alternatives))
    literals = [v for a in alternatives if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
    if literals:
        info.enum, info.free = set(literals), str in alternatives
    lists = [a for a in alternatives if typing.get_origin(a) is collections.abc.Iterable]
    if lists:
        info.listed, info.items = True, set()
        for item in _alternatives(typing.get_args(lists[0])[0]):
            if not is_typeddict(item):
                info.items = None
                break
            for key, item_hint in typing.get_type_hints(item, include_extras=True).items():
                key = _strip(item_hint)[1] or key
                info.items.add(key)
                values = [v for a in _alternatives(item_hint) if typing.get_origin(a) is typing.Literal
                          for v in typing.get_args(a)]
                info.item_enums.setdefault(key, set()).update(values)
        if match := re.search(rf"(?i)\bup to {COUNT}\b(?! ?(?:MB|seconds|characters))|\b{COUNT} to {COUNT} \w+",
                              doc):
            info.most = _count(match[1] or match[3])
            info.fewest = _count(match[2]) if match[2] else 0
    if info.text and (match := re.search(r"up to ([\d,]+) characters", doc)):
        info.chars = _count(match[1])
    if info.number and (match := re.search(r"(?:between|from) (-?[\d.]+)(?: \([^)]*\))? (?:and|to) (-?[\d.]+)"
                                           r"|\((-?[\d.]+)[–-](-?[\d.]+)\)", doc)):
        low, high = (match[1], match[2]) if match[1] else (match[3], match[4])
        info.bounds = (float(low), float(high.rstrip(".")))
    return info


def sdk_types(endpoint: str) -> str | None:
    """The runwayml module of an endpoint's request types, if the pinned runwayml has one."""
    name = f"runwayml.types.{endpoint}_create_params"
    return name if importlib.util.find_spec(name) else None


def load_sdk() -> dict[tuple[str, str], dict]:
    """(model, endpoint) -> {"fields": {API name: SdkField}, "required": {API names}}, from runwayml's types. An
    endpoint it has no types for is left to registry_gaps to name (so that every test still loads)."""
    table = {}
    for endpoint in rm.ENDPOINTS:
        if not (types := sdk_types(endpoint)):
            continue
        module = importlib.import_module(types)
        docs = _attribute_docs(module.__file__)
        union = getattr(module, "".join(p.capitalize() for p in endpoint.split("_")) + "CreateParams")
        for variant in typing.get_args(union) or (union,):
            hints = typing.get_type_hints(variant, include_extras=True)
            [model] = typing.get_args(_strip(hints.pop("model"))[0])
            fields, required = {}, set()
            for name, hint in hints.items():
                _, alias, is_required = _strip(hint)
                fields[alias or name] = _sdk_field(hint, docs.get((variant.__name__, name), ""))
                if is_required:
                    required.add(alias or name)
            table[model, endpoint] = {"fields": fields, "required": required}
    return table


SDK = load_sdk()
# The endpoints that take no catalog model, each with the runwayml type of its body.
SDK_BODIES = {"avatar_videos": AvatarVideoCreateParams, "voices": VoiceCreateParams, "workflows": WorkflowRunParams,
              **{f"generate/{kind}": getattr(sdk_generate, f"{kind.capitalize()}CreateParams")
                 for kind in ("image", "video", "audio")},
              **{f"recipes/{name}": getattr(importlib.import_module(f"runwayml.types.recipe_{name}_params"),
                                            f"Recipe{name.title().replace('_', '')}Params") for name in rm.RECIPES}}


def sdk_issues(hint, value, path=()) -> list[dict]:
    """Runway's validation of a value against one of runwayml's types: Zod-style issues, or []."""
    issue = lambda code, message: [{"code": code, "path": list(path), "message": message}]
    hint = _strip(hint)[0]
    if len(alternatives := _alternatives(hint)) > 1:
        found = [sdk_issues(alternative, value, path) for alternative in alternatives]
        return [] if [] in found else min(found, key=len)              # the issues of the closest alternative
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return issue("invalid_type", "Expected object")
        fields = {(_strip(h)[1] or name): h for name, h in typing.get_type_hints(hint, include_extras=True).items()}
        required = {(_strip(h)[1] or name) for name, h in typing.get_type_hints(hint, include_extras=True).items()
                    if _strip(h)[2]}
        found = [i for key in sorted(required - value.keys()) for i in sdk_issues(str, None, (*path, key))]
        found += [i for key in sorted(value.keys() - fields.keys())
                  for i in issue("unrecognized_keys", f"Unrecognized key: {key}")]
        return found + [i for key in value.keys() & fields.keys()
                        for i in sdk_issues(fields[key], value[key], (*path, key))]
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        ok = any(type(value) is type(v) and value == v for v in typing.get_args(hint))
        return [] if ok else issue("invalid_enum_value", f"Invalid enum value {value!r}")
    if origin in (collections.abc.Iterable, dict):
        if not isinstance(value, list if origin is collections.abc.Iterable else dict):
            return issue("invalid_type", f"Expected {origin.__name__}")
        item = typing.get_args(hint)[-1]
        pairs = enumerate(value) if isinstance(value, list) else value.items()
        return [i for key, v in pairs for i in sdk_issues(item, v, (*path, key))]
    types = {str: str, bool: bool, int: int, float: int | float, type(None): type(None), object: object}[hint]
    ok = isinstance(value, types) and (hint is bool or not isinstance(value, bool))
    return [] if ok else issue("invalid_type", f"Expected {hint.__name__}")
# Limits the catalog enforces that runwayml's docs do not state, each with where it comes from.
BEYOND_SDK = {
    ("gemini_2.5_flash", "referenceImages"): "runway-api.md 3.4: at most 3 references",
    ("ideogram_4_0", "referenceImages"): "runway-api.md 3.4: one image to remix",
    ("hailuo3", "referenceAudio"): "runway-api.md 3.1 [SPEC]: at most 3 items",
    ("seedance2", "referenceAudio"): "runway-api.md 3.1 [SPEC]: at most 3 items",
    ("seedance2_fast", "referenceAudio"): "runway-api.md 3.1 [SPEC]: at most 3 items",
    ("seedance2_mini", "referenceAudio"): "runway-api.md 3.1 [SPEC]: at most 3 items",
    ("seedance2_5", "referenceAudio"): "runway-api.md 3.1 [SPEC]: at most 10 items",
    ("wan3", "referenceAudio"): "runway-api.md 3.1 [SPEC]: at most 5 items",
    ("wan3", "referenceVideos"): "runway-api.md 3.1 [SPEC]: at most 5 items",
    ("wan3_prime", "referenceAudio"): "runway-api.md 3.1 [SPEC]: at most 5 items",
    ("wan3_prime", "referenceVideos"): "runway-api.md 3.1 [SPEC]: at most 5 items",
    ("seed_audio", "referenceAudios"): "runway-api.md 3.6: at most 3 (the SDK says 'Up to three' of a str list)",
    ("eleven_v3", "speed"): "runway-api.md 3.8: 0.7-1.2",
    ("*", "cfgScale"): "runwayml's doc: 0 gives the model maximum freedom, 1 follows the prompt most strictly",
    ("gen4_turbo", "duration"): "runway-api.md 3.1 [SPEC]: 2-10",
    ("grok_imagine_1_5", "duration"): "runway-api.md 3.1 [SPEC]: 1-15",
    ("hailuo3", "duration"): "runway-api.md 3.1 [SPEC]: 5-15",
    ("happyhorse_1_0", "duration"): "runway-api.md 3.1 [SPEC]: 3-15",
    ("wan3", "duration"): "runway-api.md 3.1 [SPEC]: 2-30",
    ("seed_audio", "pitchRate"): "runway-api.md 3.6: -12..12 semitones",
    ("seed_audio", "loudnessRate"): "runway-api.md 3.6: -50..100",
    ("seed_audio", "speechRate"): "runway-api.md 3.6: -50..100",
    ("seedream5_pro", "outputCount"): "runway-api.md 3.4: 1-4",
    ("seedream5_lite", "outputCount"): "runway-api.md 3.4: 1-4",
}


def _catalog_uses():
    """(model, endpoint, Use) for every endpoint of every model (modes are checked through their endpoint)."""
    return [(name, key, use) for name, model in rm.MODELS.items() for key, use in model.uses.items() if ":" not in key]


def test_the_catalog_has_exactly_the_models_and_endpoints_of_runways_sdk():
    assert {(name, endpoint) for name, endpoint, _ in _catalog_uses()} == set(SDK)


@pytest.mark.parametrize("name, endpoint", sorted(SDK))
def test_catalog_fields_and_enums_agree_with_runways_sdk(name, endpoint):
    sdk, model = SDK[name, endpoint], rm.MODELS[name]
    use = model.uses[endpoint]
    assert rm._fields(use.needs) == sdk["required"], "required fields"
    assert rm._fields(use.takes) == set(sdk["fields"]) - sdk["required"], "optional fields"
    allowed = rm.rules(model, use)
    for field_name, spec in sdk["fields"].items():
        if spec.enum is None or spec.enum <= {"reference", "extend", "edit"} and field_name != "mode":
            continue
        if field_name == "ratio":
            assert set(use.ratios) == spec.enum, "ratios"
        elif field_name == "duration":
            assert {d for d in allowed["duration"] if not isinstance(d, int) or spec.enum} >= spec.enum - {None}
        else:
            assert set(allowed[field_name]) == spec.enum, field_name


def _catalog_limits(name, endpoint) -> dict[str, tuple]:
    """The limits the catalog enforces on one model's endpoint: field -> ("chars" | "items" | "bounds", value)."""
    model, use = rm.MODELS[name], rm.MODELS[name].uses[endpoint]
    fields = rm._fields(use.needs) | rm._fields(use.takes)
    limits = {f: ("items", most) for f, most in rm.caps(model, use).items() if f in fields}
    for field_name, allowed in rm.rules(model, use).items():
        if field_name not in fields:
            continue
        if isinstance(allowed, rm.Text):
            limits[field_name] = ("chars", allowed.most)
        elif isinstance(allowed, rm.Between):
            limits[field_name] = ("bounds", (allowed.low, allowed.high))
        elif isinstance(allowed, range):
            limits[field_name] = ("bounds", (allowed.start, allowed.stop - 1))
        elif field_name == "duration" and (numbers := [v for v in allowed if isinstance(v, int | float)]):
            limits[field_name] = ("bounds", (min(numbers), max(numbers)))
    return limits


def _sdk_limits(name, endpoint) -> dict[str, tuple]:
    """The limits runwayml states for one model's endpoint, in the same shape."""
    limits = {}
    for field_name, spec in SDK[name, endpoint]["fields"].items():
        if spec.chars is not None:
            limits[field_name] = ("chars", spec.chars)
        elif spec.most is not None and spec.listed:
            limits[field_name] = ("items", spec.most)
        elif spec.bounds is not None:
            limits[field_name] = ("bounds", spec.bounds)
    return limits


@pytest.mark.parametrize("name, endpoint", sorted(SDK))
def test_catalog_limits_agree_with_runways_sdk(name, endpoint):
    """Every length, list cap and numeric range the SDK states is enforced; any other one has its source named."""
    stated, enforced = _sdk_limits(name, endpoint), _catalog_limits(name, endpoint)
    for field_name, limit in stated.items():
        assert enforced.get(field_name) == limit, f"{field_name}: runwayml says {limit}"
    for field_name in enforced.keys() - stated.keys():
        if SDK[name, endpoint]["fields"][field_name].enum:
            continue                                # an enum of numbers, checked value by value above
        assert (name, field_name) in BEYOND_SDK or ("*", field_name) in BEYOND_SDK, (
            f"{field_name}: {enforced[field_name]} is enforced, runwayml does not say so: name the source in BEYOND_SDK")


@pytest.mark.parametrize("name, endpoint", sorted(SDK))
def test_catalog_minimum_counts_agree_with_runways_sdk(name, endpoint):
    """A list the SDK says takes "N to M" items is refused with fewer than N, on that endpoint."""
    stated = {f: spec.fewest for f, spec in SDK[name, endpoint]["fields"].items() if spec.listed and spec.fewest}
    model = rm.MODELS[name]
    assert {f: n for f, n in model.min_items.items() if f in SDK[name, endpoint]["fields"]} == stated


@pytest.mark.parametrize("name", [n for n, e in SDK if e == rm.T2I and "referenceImages" in SDK[n, e]["fields"]])
def test_reference_image_tags_agree_with_runways_sdk(name):
    assert rm.MODELS[name].tags == ("tag" in SDK[name, rm.T2I]["fields"]["referenceImages"].items)


@pytest.mark.parametrize("name", [n for n, e in SDK if e == rm.I2V])
def test_last_frames_agree_with_runways_sdk(name):
    frames = SDK[name, rm.I2V]["fields"]["promptImage"]
    takes_last = "last" in frames.item_enums.get("position", set()) or re.search(r"\blast\b", frames.doc) is not None
    assert rm.MODELS[name].last_frame == takes_last


def test_catalog_accepts_what_it_used_to_refuse():
    body = {"model": "kling_4", "promptText": "x", "promptImage": [{"uri": "a", "position": "first"},
                                                                  {"uri": "b", "position": "last"}]}
    assert rm.check_model("image_to_video", body) == [] and rm.MODELS["kling_4"].last_frame
    assert rm.check_model("text_to_video", {"model": "gen4.5", "promptText": "x" * 1000, "ratio": "1280:720",
                                            "duration": 5}) == []


# Beyond models: recipes, the router, avatar videos, voices, workflows. Their shape rules (rm.Obj, rm.ListOf, ...)
# are held to runwayml's types field by field: the same fields, the same required ones, the same values.

def _alias_hints(typed) -> dict[str, object]:
    return {(_strip(hint)[1] or name): hint for name, hint in typing.get_type_hints(typed, include_extras=True).items()}


def _field_doc(typed, api_name: str) -> str:
    python_name = next(n for n, h in typing.get_type_hints(typed, include_extras=True).items()
                       if (_strip(h)[1] or n) == api_name)
    return _attribute_docs(inspect.getsourcefile(typed)).get((typed.__name__, python_name), "")


def _bounds(rule):
    if isinstance(rule, rm.ListOf):
        return rule.fewest, rule.most
    if isinstance(rule, range):
        return rule.start, rule.stop - 1
    return None


# Limits the shape rules enforce that runwayml's docs do not state as "(A-B)", each with where it comes from.
BEYOND_SDK_SHAPES = {
    "recipes/marketing_stock_image.prompt": "runway-api.md 3.15 [SPEC]: at most 3500 characters",
    "generate/audio.input.referenceAudios": "runwayml's doc: clips are named @Audio1, @Audio2 and @Audio3",
}


def assert_rule_is_runways(rule, hint, where: str, skip=()):
    """A shape rule says what runwayml's type says, down to every nested field and value."""
    alternatives = [a for a in _alternatives(hint) if a is not type(None)]
    if isinstance(rule, rm.Choice):
        assert len(alternatives) == len(rule.shapes), where
        for n, (value, shape) in enumerate(rule.shapes.items()):
            if rule.key is None:
                typed = alternatives[n]
            else:
                [typed] = [a for a in alternatives if typing.get_args(_strip(_alias_hints(a)[rule.key])[0]) == (value,)]
            assert_rule_is_runways(shape, typed, f"{where}[{value}]", skip)
        return
    if type(rule) is tuple and not rm._types(rule):
        literals = {v for a in alternatives for v in typing.get_args(a)}
        assert {typing.get_origin(a) for a in alternatives} == {typing.Literal} and set(rule) == literals, where
        return
    if rule == rm.PRIMITIVE:
        assert set(alternatives) == {str, float, bool}, where
        return
    [hint] = alternatives
    if isinstance(rule, rm.Obj):
        assert is_typeddict(hint), where
        fields = {k: v for k, v in _alias_hints(hint).items() if k not in skip}
        assert set(rule.fields) == set(fields), f"{where}: fields"
        assert rm._fields(rule.needs) == {k for k, h in fields.items() if _strip(h)[2]}, f"{where}: required"
        for name, sub in rule.fields.items():
            stated = re.search(r"\((\d+)[–-](\d+)(?: \w+)?\)", _field_doc(hint, name))
            path = f"{where}.{name}"
            if stated:
                assert _bounds(sub) == (int(stated[1]), int(stated[2])), f"{path}: runwayml says {stated[0]}"
            elif _bounds(sub) not in (None, (0, None)) or isinstance(sub, rm.Text):
                assert path in BEYOND_SDK_SHAPES, f"{path}: a limit runwayml does not state; name its source"
            if isinstance(sub, rm.MediaRule):             # "... containing an encoded image"
                assert all(f"encoded {kind}" in _field_doc(hint, name) for kind in sub.kinds), path
            assert_rule_is_runways(sub, fields[name], path)
    elif isinstance(rule, rm.ListOf):
        assert typing.get_origin(hint) is collections.abc.Iterable, where
        assert_rule_is_runways(rule.item, typing.get_args(hint)[0], f"{where}[]")
    elif isinstance(rule, rm.MediaRule):
        assert hint is str, where
    else:
        expected = {range: int, rm.Text: str, rm.Between: float}.get(type(rule), rule)
        assert hint is expected, f"{where}: runwayml has {hint}, the rule {rule}"


@pytest.mark.parametrize("name", sorted(rm.RECIPES))
def test_recipes_agree_with_runways_sdk(name):
    recipe, typed = rm.RECIPES[name], SDK_BODIES[f"recipes/{name}"]
    assert_rule_is_runways(recipe.inputs, typed, f"recipes/{name}", skip={"version"})
    versions = {v for variant in _alternatives(typed)
                for v in typing.get_args(_strip(_alias_hints(variant)["version"])[0])}
    assert set(recipe.versions) | {rm.UNSAFE_LATEST} == versions and list(recipe.versions) == sorted(recipe.versions)


@pytest.mark.parametrize("kind", sorted(rm.ROUTER_INPUTS))
def test_router_inputs_agree_with_runways_sdk(kind):
    typed = _alias_hints(SDK_BODIES[f"generate/{kind}"])
    assert set(typed) == {"configId", "input"}
    assert_rule_is_runways(rm.ROUTER_INPUTS[kind], typed["input"], f"generate/{kind}.input")


def test_workflow_values_agree_with_runways_sdk():
    node_outputs = _strip(_alias_hints(WorkflowRunParams)["nodeOutputs"])[0]
    assert_rule_is_runways(rm.WORKFLOW_VALUE, typing.get_args(typing.get_args(node_outputs)[1])[1], "nodeOutputs")


def test_avatar_presets_voices_and_voice_design_agree_with_runways_sdk():
    body = _alias_hints(AvatarVideoCreateParams)
    literal = lambda hint, key: {v for a in _alternatives(hint) if key in _alias_hints(a)
                                 for v in typing.get_args(_strip(_alias_hints(a)[key])[0])}
    assert typing.get_args(_strip(body["model"])[0]) == (rm.AVATAR_MODEL,)
    assert set(rm.AVATAR_PRESETS) == literal(body["avatar"], "presetId")
    text = next(a for a in _alternatives(body["speech"]) if "text" in _alias_hints(a))
    assert set(rm.LIVE_VOICES) == literal(_alias_hints(text)["voice"], "presetId")
    source = _alias_hints(VoiceCreateParams)["from"]
    assert rm.VOICE_DESIGN_MODEL in literal(source, "model")


@pytest.mark.parametrize("output_format, credits", [(None, 60), ("mp4", 60), ("prores", 85), ("png_sequence", 85),
                                                    ("hdr10", 160), ("hdr_exr_sequence", 160)])
def test_gen4_5_estimates_include_the_output_format_surcharge(output_format, credits):
    body = {"model": "gen4.5", "promptText": "x", "ratio": "1280:720", "duration": 5, "outputFormat": output_format}
    assert rm.estimate_credits(body) == credits


def test_unknown_models_pass_through_with_a_note():
    notes = rm.check_model("text_to_video", {"model": "gen9_future", "promptText": "x", "anything": 1})
    assert notes and "nothing was checked locally" in notes[0]


def test_describe_shortens_runs():
    assert rm._describe((*range(4, 16), "auto")) == "4-15, auto"
    assert rm._describe(range(2, 11)) == "2-10"
    assert rm._describe((4, 6, 8)) == "4, 6, 8"
    assert rm._describe((5, 6)) == "5, 6"


##############################################################################
# Waiting
##############################################################################

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_for_returns_a_handle_at_the_bound_without_polling_past_it(api, monkeypatch):
    task_id = str(uuid.uuid4())
    url = f"https://runway.test/v1/tasks/{task_id}"
    for _ in range(20):
        api.get(url, json={"id": task_id, "status": "RUNNING", "progress": 0.3})
    clock = FakeClock()
    reports = []
    api.configure(poll_interval=5.0)
    task = rm.wait_for(api.account, task_id, 44, task={"id": task_id, "status": "PENDING"},
                       on_poll=lambda p, e: reports.append((p.task["status"], e)), sleep=clock.sleep, clock=clock).task
    assert task["status"] == "RUNNING"
    assert len(api.calls) == 8                      # at 5, 10, ... 40 s: the next would pass 44 s
    assert clock.now == 40
    api.reset()                                     # the unused replies are expected


def test_wait_for_stops_at_a_terminal_status(api):
    task_id = str(uuid.uuid4())
    url = f"https://runway.test/v1/tasks/{task_id}"
    api.get(url, json={"id": task_id, "status": "RUNNING", "progress": 0.5})
    api.get(url, json={"id": task_id, "status": "SUCCEEDED", "output": []})
    clock = FakeClock()
    task = rm.wait_for(api.account, task_id, 100, sleep=clock.sleep, clock=clock).task
    assert task["status"] == "SUCCEEDED" and len(api.calls) == 2


def test_wait_for_survives_failed_polls_and_backs_off(api):
    task_id = str(uuid.uuid4())
    url = f"https://runway.test/v1/tasks/{task_id}"
    api.get(url, status=503)
    api.get(url, status=429, headers={"Retry-After": "7"})
    api.get(url, body=requests.ConnectionError("reset"))
    api.get(url, body="{not json")
    api.get(url, json={"id": task_id, "status": "SUCCEEDED", "output": []})
    clock = FakeClock()
    task = rm.wait_for(api.account, task_id, 1000, task={"id": task_id, "status": "PENDING"}, sleep=clock.sleep, clock=clock).task
    assert task["status"] == "SUCCEEDED" and len(api.calls) == 5
    assert clock.now >= 7                           # Retry-After was honoured


def test_after_a_passing_failure_polling_resumes_within_an_interval_and_backs_off_only_while_failing(api,
                                                                                                   monkeypatch):
    api.configure(poll_interval=5.0)
    task_id = str(uuid.uuid4())
    url = f"https://runway.test/v1/tasks/{task_id}"
    replies = [503, 503, 200, 503, 200, 503, 503, 503, 200]
    for status in replies:
        api.get(url, status=status, json={"id": task_id, "status": "RUNNING", "progress": 0.5})
    api.get(url, json={"id": task_id, "status": "SUCCEEDED", "output": []})
    clock, polls = FakeClock(), {}
    rm.wait_for(api.account, task_id, 1000, task={"id": task_id, "status": "PENDING"}, sleep=clock.sleep, clock=clock,
                on_poll=lambda poll, elapsed: polls.setdefault(id(poll), (clock.now, poll)))   # not the heartbeats
    polled_at = [at for at, _ in polls.values()]
    pauses = [round(b - a, 6) for a, b in zip(polled_at, polled_at[1:])]
    # after each reply: 503 -> about one interval; a second 503 -> up to two; after a 200 -> exactly one
    assert 2.5 <= pauses[1] <= 5 and 5 <= pauses[2] <= 10 and pauses[3] == 5
    assert 2.5 <= pauses[4] <= 5 and pauses[5] == 5
    assert 2.5 <= pauses[6] <= 5 and 5 <= pauses[7] <= 10 and 10 <= pauses[8] <= 20 and pauses[9] == 5
    assert len(api.calls) == len(replies) + 1


def test_wait_for_gives_up_on_a_task_that_stays_gone(api):
    task_id = str(uuid.uuid4())
    for _ in range(3):
        api.get(f"https://runway.test/v1/tasks/{task_id}", status=404, json={"error": "Task not found"})
    with pytest.raises(rm.RunwayError, match="no task") as caught:
        rm.wait_for(api.account, task_id, 10, sleep=lambda s: None)
    assert caught.value.task_id == task_id and len(api.calls) == 3


def test_wait_for_rides_out_a_passing_404(api):
    task_id = str(uuid.uuid4())
    api.get(f"https://runway.test/v1/tasks/{task_id}", status=404, json={"error": "Task not found"})
    api.get(f"https://runway.test/v1/tasks/{task_id}", json={"id": task_id, "status": "SUCCEEDED", "output": []})
    assert rm.wait_for(api.account, task_id, 10, sleep=lambda s: None).task["status"] == "SUCCEEDED"


def test_ledger_skips_a_line_cut_short_by_a_crash(api, tmp_path):
    rm.ledger(api.account).append(dict(task_id="a", created_at="2026-01-01T00:00:00+00:00", status="PENDING"))
    rm.ledger(api.account).append(dict(task_id="b", created_at="2026-01-02T00:00:00+00:00", status="PENDING"))
    rm.ledger(api.account).append(dict(task_id="a", status="SUCCEEDED"))
    with open(tmp_path / "tasks.jsonl", "a") as f:
        f.write('{"task_id": "c", "creat')
    tasks = rm.ledger(api.account).tasks()
    assert [t["task_id"] for t in tasks] == ["b", "a"] and tasks[1]["status"] == "SUCCEEDED"
    rm.ledger(api.account).append(dict(task_id="d", created_at="2026-01-03T00:00:00+00:00", status="PENDING"))
    assert [t["task_id"] for t in rm.ledger(api.account).tasks()] == ["d", "b", "a"]       # the next line is not lost
    assert rm.ledger(api.account).find("a")["status"] == "SUCCEEDED" and rm.ledger(api.account).find("c") == {}


def test_ledger_sees_lines_other_processes_append(api, tmp_path):
    rm.ledger(api.account).append(dict(task_id="mine", created_at=rm._now()))
    with open(tmp_path / "tasks.jsonl", "a") as f:          # another server process sharing the directory
        f.write(json.dumps({"task_id": "theirs", "created_at": rm._now()}) + "\n")
    assert [t["task_id"] for t in rm.ledger(api.account).tasks()] == ["theirs", "mine"]


def test_ledger_appends_from_many_threads_never_interleave(api, tmp_path):
    def write(n):
        for i in range(50):
            rm.ledger(api.account).append(dict(task_id=f"{n}-{i}", created_at=rm._now(), prompt="x" * 3000))
    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "tasks.jsonl").read_text().splitlines()
    assert len(lines) == 400 and all(json.loads(line)["prompt"] == "x" * 3000 for line in lines)


##############################################################################
# Media
##############################################################################

def media(value, kinds=("image",)):
    return rm.Media(value, kinds, "image")


def test_local_files_are_recognised_by_content_not_name(api, tmp_path):
    disguised = tmp_path / "photo.mp4"
    disguised.write_bytes(PNG)
    assert rm.local_file(api.account, media(str(disguised))).mime == "image/png"
    song = tmp_path / "song.png"
    song.write_bytes(b"ID3" + bytes(600))
    with pytest.raises(rm.RunwayError, match="image takes image; .*song.png holds audio/mpeg"):
        rm.local_file(api.account, media(str(song)))


def test_home_paths_and_file_uris_name_local_files(api, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "a.png").write_bytes(PNG)
    assert rm.local_file(api.account, media("~/a.png")).path == tmp_path / "a.png"
    assert rm.local_file(api.account, media((tmp_path / "a.png").as_uri())).path == tmp_path / "a.png"
    assert rm.local_file(api.account, media("https://example.com/a.png")) is None


def test_an_unreadable_file_is_named(api, tmp_path, monkeypatch):
    (tmp_path / "locked.png").write_bytes(PNG)
    monkeypatch.setattr(rm.os, "access", lambda path, mode: False)     # tests run as root, who reads anything
    with pytest.raises(rm.RunwayError, match="locked.png is not readable"):
        rm.local_file(api.account, media(str(tmp_path / "locked.png")))


@pytest.fixture
def over_http(tmp_path):
    """The module as served over HTTP with RUNWAY_MCP_INPUT_ROOT=<tmp>/root."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "in.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    (root / "sub" / "up").symlink_to(tmp_path)
    config = rm.load_config({"RUNWAY_MCP_INPUT_ROOT": str(root), "RUNWAY_MCP_OUTPUT_DIR": str(tmp_path / "out")})
    return root.resolve(), rm.own_account(rm.dataclasses.replace(config, transport="http"))


def test_over_http_local_paths_are_read_only_below_the_input_root(over_http):
    root, account = over_http
    assert rm.local_file(account, media("in.png")).path == root / "in.png"
    assert rm.local_file(account, media(str(root / "sub" / ".." / "in.png"))).path == root / "in.png"
    for escape in ["../secret.png", str(root.parent / "secret.png"), "link.png", "sub/up/secret.png",
                   (root.parent / "secret.png").as_uri(), "/etc/passwd"]:
        with pytest.raises(rm.RunwayError, match="outside the input root"):
            rm.local_file(account, media(escape))


def test_over_http_without_an_input_root_no_local_file_is_read(over_http):
    root, account = over_http
    account = rm.own_account(rm.dataclasses.replace(account.config, input_root=None))
    with pytest.raises(rm.RunwayError, match="does not read local files for HTTP clients"):
        rm.local_file(account, media(str(root / "in.png")))


def test_output_names_cannot_leave_the_output_directory():
    name = rm.output_name("../video", "../../etc/passwd", 3, "/sh")
    assert "/" not in name and ".." not in name and name.endswith("_3.sh")


def test_delete_output_refuses_anything_but_a_saved_output(api, tmp_path):
    (tmp_path / "tasks.jsonl").write_text("{}")
    (tmp_path.parent / "elsewhere.png").write_bytes(PNG)
    (tmp_path / "link.png").symlink_to(tmp_path.parent / "elsewhere.png")
    for name in ["../elsewhere.png", "tasks.jsonl", "link.png", "missing.png", ".", "sub/x.png"]:
        with pytest.raises(rm.RunwayError, match="name="):
            rm.delete_output(api.account, name, confirm=True)
    assert (tmp_path.parent / "elsewhere.png").exists() and (tmp_path / "link.png").is_symlink()


def test_partial_downloads_left_by_a_killed_process_are_swept(api, tmp_path):
    stale, fresh = tmp_path / ".video_x_1.mp4.abc.part", tmp_path / ".video_y_1.mp4.def.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    rm._sweep_partial_downloads.__wrapped__(tmp_path)            # the undecorated sweep: it runs once per process
    assert not stale.exists() and fresh.exists()


def test_upload_bodies_stream_from_disk_with_a_known_length(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(MP4 * 100)
    body = rm.Multipart({"key": "k"}, rm.LocalFile(path, "video/mp4", path.stat().st_size))
    raw = b"".join(body)
    assert len(raw) == len(body) and MP4 * 100 in raw and raw.count(b"Content-Disposition") == 2


##############################################################################
# Fake Runway API
##############################################################################

@dataclass
class Plan:
    """How the next task behaves: `polls` GETs (or `seconds`, if given) until it ends with `outcome`."""

    polls: int = 2
    outcome: str = "SUCCEEDED"
    outputs: int = 1
    mime: str = "image/png"
    throttled: int = 0
    failure: str = "The output was flagged by moderation"
    failure_code: str = "SAFETY.OUTPUT.IMAGE"
    seconds: float | None = None       # finish by the clock instead of by counting GETs (benchmarks)
    content: bytes | None = None       # the output file's bytes; default a tiny PNG or MP4
    node_errors: dict | None = None    # a workflow run's failed nodes, as Runway reports them


@dataclass
class Fault:
    method: str
    path: str                  # prefix
    status: int | None = None
    action: str | None = None  # reset | hang | garbage
    headers: dict = field(default_factory=dict)
    body: dict | None = None
    times: int = 1


# The workflows the fake has published: one with two versions (newest first), and its graph's nodes.
WORKFLOWS = [{"name": "Product shots", "versions": [
    {"id": "5f0c1a2e-1111-4c2b-9d3e-000000000002", "version": 2, "createdAt": "2026-11-20T10:00:00.000Z"},
    {"id": "5f0c1a2e-1111-4c2b-9d3e-000000000001", "version": 1, "createdAt": "2026-11-01T10:00:00.000Z"}]}]
WORKFLOW_ID = WORKFLOWS[0]["versions"][0]["id"]
WORKFLOW_NODES = [{"id": "node-prompt", "type": "text", "name": "Prompt", "outputs": {"text": "a bottle"}},
                  {"id": "node-product", "type": "image-input", "name": "Product photo"},
                  {"id": "node-out-1", "type": "generate-image", "name": "Hero shot"}]


class FakeRunway:
    """A stateful stand-in for the Runway API: tasks advance one state per GET."""

    def __init__(self):
        self.lock = threading.Lock()
        self.url = ""
        self.reset()

    def reset(self):
        with self.lock:
            self.tasks: dict[str, dict] = {}
            self.requests: list[dict] = []
            self.faults: list[Fault] = []
            self.files: dict[str, tuple[bytes, str]] = {}
            self.plans: list[Plan] = []
            self.uploads: dict[str, dict] = {}
            self.balance = 1000
            self.echo_key = False
            self.voices: list[dict] = []
            self.revoked: set[str] = set()                  # keys Runway has revoked: 401 from now on
            self.redirects: dict[str, str] = {}             # output file name -> where its link redirects
            self.documents: dict[str, tuple[int, dict, bytes]] = {}     # path -> a page served to anyone (OAuth)
            self.dripping = 0                                   # "drip" documents being sent now

    # Scripting ------------------------------------------------------------------------------------
    def plan(self, **kwargs):
        self.plans.append(Plan(**kwargs))

    def fail(self, method, path, status=None, *, action=None, headers=None, body=None, times=1):
        self.faults.append(Fault(method, path, status, action, headers or {}, body, times))

    def finish(self, task_id):
        with self.lock:
            self.tasks[task_id]["plan"].polls = self.tasks[task_id]["gets"] + 1

    def seen(self, method=None, prefix="", key=None):
        return [r for r in self.requests if (method is None or r["method"] == method) and r["path"].startswith(prefix)
                and key in (None, r.get("key"))]

    def bodies(self, endpoint):
        return [r["json"] for r in self.seen("POST", f"/v1/{endpoint}")]

    # Serving --------------------------------------------------------------------------------------
    def handle(self, method, path, headers, raw):
        with self.lock:
            record = {"method": method, "path": path, "headers": headers, "raw": raw, "json": None, "at": time.time()}
            self.requests.append(record)
            if raw and headers.get("Content-Type", "").startswith("application/json"):
                record["json"] = json.loads(raw)
            for fault in self.faults:
                if fault.method == method and path.startswith(fault.path) and fault.times > 0:
                    fault.times -= 1
                    if fault.action:
                        return fault.action, fault.headers, b""
                    return fault.status, fault.headers, json.dumps(fault.body or {"error": "scripted"}).encode()
            if path == "/files" and method == "DELETE":            # the tests' switch: Runway's links expire
                self.files.clear()
                return 204, {}, b""
            if path.startswith("/files/") and path[len("/files/"):] in self.redirects:
                return 302, {"Location": self.redirects[path[len("/files/"):]]}, b""
            if path.startswith("/files/"):
                content, mime = self.files.get(path[len("/files/"):], (None, None))
                return (200, {"Content-Type": mime}, content) if content else (404, {}, b"")
            if method == "GET" and path in self.documents:
                return self.documents[path]
            if path.startswith("/upload/") and method == "POST":       # the presigned URL: no key needed
                self.uploads[path] = {"content_type": headers.get("Content-Type", ""), "raw": raw}
                return 204, {}, b""
            record["key"] = headers.get("Authorization", "").removeprefix("Bearer ")
            if record["key"] not in (KEY, KEY2, KEY3, KEY4) or record["key"] in self.revoked:
                return 401, {}, b'{"error": "Unauthorized"}'
            if headers.get("X-Runway-Version") != "2024-11-06":
                return 400, {}, b'{"error": "Missing X-Runway-Version"}'
            return self.route(method, path, record["json"], record["key"])

    def route(self, method, path, body, key):
        parts = path.strip("/").split("/")
        if method == "POST" and len(parts) == 2 and parts[1] not in ("uploads", "voices"):
            return self.create(parts[1], body, key)
        if method == "POST" and len(parts) == 3 and parts[1] in ("recipes", "generate", "workflows"):
            if parts[1] == "workflows" and not any(v["id"] == parts[2] for w in WORKFLOWS for v in w["versions"]):
                return 404, {}, b'{"error": "Workflow not found"}'
            return self.create("/".join(parts[1:]), body, key)
        if parts[:2] == ["v1", "workflow_invocations"] and len(parts) == 3 and method == "GET":
            task = self.tasks.get(parts[2])
            if task is None or task["key"] != key or not task["endpoint"].startswith("workflows/"):
                return 404, {}, b'{"error": "Workflow invocation not found"}'
            return 200, {}, json.dumps(self.invocation(task)).encode()
        if parts[:2] == ["v1", "workflows"] and method == "GET":
            if len(parts) == 2:
                return 200, {}, json.dumps({"data": WORKFLOWS}).encode()
            found = next(({**v, "name": w["name"]} for w in WORKFLOWS for v in w["versions"] if v["id"] == parts[2]),
                         None)
            if found is None:
                return 404, {}, b'{"error": "Workflow not found"}'
            return 200, {}, json.dumps({**found, "description": "Product shots", "updatedAt": found["createdAt"],
                                        "graph": {"nodes": WORKFLOW_NODES, "edges": [], "version": 1}}).encode()
        if parts[:2] == ["v1", "voices"]:
            return self.voice(method, parts[2:], body, key)
        if parts[:2] == ["v1", "tasks"] and len(parts) == 3:
            task = self.tasks.get(parts[2])
            if task is None or task["key"] != key or (method == "DELETE" and task["deleted"]):   # others' too
                return 404, {}, b'{"error": "Task not found"}'
            if method == "DELETE":
                task["deleted"] = True
                return 204, {}, b""
            return 200, {}, json.dumps(self.advance(task)).encode()
        if path == "/v1/uploads" and method == "POST":
            upload_id = uuid.uuid4().hex
            return 200, {}, json.dumps({"uploadUrl": f"{self.url}/upload/{upload_id}",
                                        "fields": {"key": f"uploads/{upload_id}", "policy": "eyJ4IjoxfQ=="},
                                        "runwayUri": f"runway://uploads/{upload_id}"}).encode()
        if path == "/v1/organization" and method == "GET":
            return 200, {}, json.dumps({
                "creditBalance": self.balance,
                "tier": {"maxMonthlyCreditSpend": 10000,
                         "models": {"gen4.5": {"maxConcurrentGenerations": 2, "maxDailyGenerations": 200}}},
                "usage": {"models": {"gen4.5": {"dailyGenerations": len(self.tasks)}}}}).encode()
        return 404, {}, b'{"error": "Not found"}'

    def create(self, endpoint, body, key=KEY):
        typed = SDK_BODIES.get(endpoint.split("/")[0] if endpoint.startswith("workflows/") else endpoint)
        issues = sdk_issues(typed, body) if typed else self.check(endpoint, body)
        if issues:
            return 400, {}, json.dumps({"error": "Validation failed", "issues": issues}).encode()
        task_id = str(uuid.uuid4())
        plan = self.plans.pop(0) if self.plans else Plan(mime="video/mp4" if "video" in endpoint else "image/png")
        self.tasks[task_id] = {"id": task_id, "endpoint": endpoint, "body": body, "plan": plan, "gets": 0,
                               "deleted": False, "created": time.time(), "key": key}
        if endpoint.startswith("generate/"):                # the router says what it chose
            return 200, {}, json.dumps({"id": task_id, "routing": {
                "configId": body["configId"], "model": "gen4.5", "provider": "runway", "estimatedCost": {"credits": 40},
                "resolvedInput": {"duration": 5, "ratio": "1280:720", "resolution": "720p"},
                "resolvedSettings": {"optimizeFor": "cost", "priceCeiling": None}}}).encode()
        if endpoint == "avatar_videos" or endpoint.startswith("workflows/"):      # no estimate
            return 200, {}, json.dumps({"id": task_id}).encode()
        return 200, {}, json.dumps({"id": task_id, "estimatedCost": {"credits": 60}}).encode()

    def invocation(self, task):
        """A workflow run as Runway reports it: a task's states, outputs by node, failed nodes."""
        state = self.advance(task)
        if state["status"] == "SUCCEEDED":
            urls = state["output"]
            state["output"] = {"node-out-1": urls[:1], **({"node-out-2": urls[1:]} if urls[1:] else {})}
        if task["plan"].node_errors:
            state["nodeErrors"] = task["plan"].node_errors
        return state

    def voice(self, method, rest, body, key):
        if method == "POST" and not rest:
            if issues := sdk_issues(VoiceCreateParams, body):
                return 400, {}, json.dumps({"error": "Validation failed", "issues": issues}).encode()
            voice = {"id": str(uuid.uuid4()), "name": body["name"], "description": body.get("description"),
                     "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "status": "PROCESSING",
                     "key": key, "from": body["from"], "gets": 0}
            self.voices.append(voice)
            return 200, {}, json.dumps({"id": voice["id"]}).encode()
        mine = [v for v in self.voices if v["key"] == key]
        if method == "GET" and not rest:
            page = [self.voice_state(v) for v in mine[:100]]
            return 200, {}, json.dumps({"data": page, "hasMore": False, "nextCursor": None}).encode()
        found = next((v for v in mine if rest and v["id"] == rest[0]), None)
        if method == "GET" and found:
            found["gets"] += 1
            return 200, {}, json.dumps(self.voice_state(found)).encode()
        return 404, {}, b'{"error": "Voice not found"}'

    def voice_state(self, voice):
        shown = {k: v for k, v in voice.items() if k not in ("key", "from", "gets")}
        if voice["gets"] >= 1 and "fail" not in voice["name"]:
            return {**shown, "status": "READY", "previewUrl": f"{self.url}/files/voice-{voice['id']}.mp3"}
        if voice["gets"] >= 1:
            return {**shown, "status": "FAILED", "failureReason": "The sample has more than one speaker"}
        return shown

    @staticmethod
    def check(endpoint, body):
        """Runway's validation, as runwayml's types state it: Zod-style issues, or []."""
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return [{"code": "invalid_type", "path": ["model"], "message": "Required"}]
        issues = [{"code": "invalid_type", "path": [k], "message": "Expected a value, received null"}
                  for k, v in body.items() if v is None]
        spec = SDK.get((body["model"], endpoint))
        if spec is None:
            return issues + [{"code": "invalid_union_discriminator", "path": ["model"],
                              "message": f"Invalid model for {endpoint}"}]
        issues += [{"code": "invalid_type", "path": [k], "message": "Required"} for k in spec["required"] - set(body)]
        issues += [{"code": "unrecognized_keys", "path": [k], "message": f"Unrecognized key: {k}"}
                   for k in set(body) - set(spec["fields"]) - {"model"}]
        for key, value in body.items():
            rule = spec["fields"].get(key)
            if rule is None or value is None:
                continue
            if rule.enum and not rule.free and not isinstance(value, list | dict) and value not in rule.enum:
                issues.append({"code": "invalid_enum_value", "path": [key], "message": f"Invalid enum value {value!r}"})
            if rule.chars and isinstance(value, str) and rm._utf16_length(value) > rule.chars:
                issues.append({"code": "too_big", "path": [key], "message": f"At most {rule.chars} characters"})
            if isinstance(value, list) and rule.most and len(value) > rule.most:
                issues.append({"code": "too_big", "path": [key], "message": f"At most {rule.most} items"})
            if isinstance(value, list) and rule.items:
                issues += [{"code": "unrecognized_keys", "path": [key, i, k], "message": f"Unrecognized key: {k}"}
                           for i, item in enumerate(value) if isinstance(item, dict) for k in set(item) - rule.items]
            if rule.bounds and isinstance(value, int | float) and not rule.bounds[0] <= value <= rule.bounds[1]:
                issues.append({"code": "too_big", "path": [key], "message": f"Between {rule.bounds}"})
        return issues

    def advance(self, task):
        task["gets"] += 1
        plan, n = task["plan"], task["gets"]
        base = {"id": task["id"], "createdAt": "2026-11-21T00:00:00.000Z"}
        if task["deleted"]:
            return {**base, "status": "CANCELLED", "cost": {"credits": 0}}
        if plan.seconds is not None:
            elapsed = time.time() - task["created"]
            if elapsed < plan.seconds:
                return {**base, "status": "RUNNING", "progress": round(elapsed / plan.seconds, 3)}
        elif n < plan.polls:
            if n <= plan.throttled:
                return {**base, "status": "THROTTLED", "estimatedCost": {"credits": 60}}
            return {**base, "status": "RUNNING", "progress": round(min(0.99, n / min(plan.polls, 20)), 3),
                    "estimatedCost": {"credits": 60}}
        if plan.outcome == "FAILED":
            return {**base, "status": "FAILED", "failure": plan.failure, "failureCode": plan.failure_code,
                    "cost": {"credits": 0}}
        urls = []
        for i in range(1, plan.outputs + 1):
            name = f"{task['id']}_{i}.{rm.EXTENSIONS[plan.mime]}"
            self.files.setdefault(name, (plan.content or (PNG if plan.mime.startswith("image") else MP4), plan.mime))
            urls.append(f"{self.url}/files/{name}?sig=abc" + (f"&echo={KEY}" if self.echo_key else ""))
        return {**base, "status": plan.outcome, "output": urls, "cost": {"credits": 50}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True        # headers and body go out as two writes: no 40 ms delayed-ACK stall
    fake: FakeRunway

    def log_message(self, *args):
        pass

    def _serve(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, body = self.fake.handle(self.command, urlsplit(self.path).path, dict(self.headers), raw)
        if status == "reset":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if status == "hang":
            time.sleep(float(headers.get("seconds", 3)))
            self.close_connection = True
            return
        if status == "drip":                        # a body that comes a byte at a time, `seconds` apart
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with self.fake.lock:
                self.fake.dripping += 1
            try:
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(float(headers["seconds"]))
            except OSError:
                pass                                # the client hung up
            finally:
                with self.fake.lock:
                    self.fake.dripping -= 1
            return
        if status == "garbage":
            status, body = 200, b"<html>not json"
        if status == "cut":                         # a download that breaks off halfway
            content, mime = self.fake.files[urlsplit(self.path).path[len("/files/"):]]
            self.send_response(200)
            self.send_header("Content-Type", mime)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content[:len(content) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.send_response(status)
        headers = {"Content-Type": "application/json", **headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _serve


def serve_fake() -> tuple[FakeRunway, ThreadingHTTPServer]:
    """A FakeRunway on a free 127.0.0.1 port, served from a daemon thread (also used by the benchmark)."""
    fake = FakeRunway()
    server = type("FakeServer", (ThreadingHTTPServer,), {"request_queue_size": 1024})   # bursts: a backlog, not resets
    httpd = server(("127.0.0.1", 0), type("Handler", (_Handler,), {"fake": fake}))
    httpd.daemon_threads = True
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return fake, httpd


@pytest.fixture(scope="session")
def fake_server():
    fake, httpd = serve_fake()
    yield fake
    httpd.shutdown()


@pytest.fixture
def fake(fake_server):
    fake_server.reset()
    return fake_server


##############################################################################
# Fixtures: the server in this process, or as a real process
##############################################################################

@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


def server_env(fake, out_dir, **extra):
    env = {"RUNWAYML_API_SECRET": KEY, "RUNWAYML_BASE_URL": fake.url, "RUNWAY_MCP_OUTPUT_DIR": str(out_dir),
           "RUNWAY_MCP_POLL_INTERVAL": "0.01", "RUNWAY_MCP_MAX_WAIT": "10"}
    env.update({k: v for k, v in extra.items() if v is not None})
    return {k: v for k, v in env.items() if v != ""}


class InFlight:
    """The tool calls still running in worker threads (a cancelled call's thread ends at its next checkpoint)."""

    def __init__(self):
        self.count, self.condition = 0, threading.Condition()

    def run(self, original):
        def counted(*args):
            with self.condition:
                self.count += 1
            try:
                return original(*args)
            finally:
                with self.condition:
                    self.count -= 1
                    self.condition.notify_all()
        return counted

    def wait_idle(self, timeout):
        with self.condition:
            return self.condition.wait_for(lambda: self.count == 0, timeout)


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "outputs"         # not created: the server makes it when it first needs it


@pytest.fixture(scope="module")
def module_server():
    """One server for a module's tests, which each give it their own configuration (see serve): building a server
    is cheap, but each new connection to one costs a client about 15 ms (it fetches and checks the tool list)."""
    return rm.create_server(rm.Config())


def reconfigure(server, config):
    """Give the tests' server another configuration (a server in service keeps the one it was created with)."""
    server.config = config
    server.exposed, server.warnings = rm.exposed_tools(config.tools)


@pytest.fixture
def serve(monkeypatch, fake, out_dir, module_server):
    """The server in this process, configured as `runway_mcp.py` started with server_env(**extra) would be:
    serve.server, serve.config and serve.account (its own) are the latest.

    Call it again within a test to change a variable. At teardown every tool call the test started must have
    ended: none may poll the fake (or write to a folder) after its test is over.
    """
    calls = InFlight()
    monkeypatch.setattr(rm, "_run_in_thread", calls.run(rm._run_in_thread))

    def configure(transport="stdio", **extra):
        configure.env = server_env(fake, out_dir, **extra)
        configure.config = rm.dataclasses.replace(rm.load_config(configure.env), transport=transport)
        configure.server, configure.account = module_server, rm.own_account(configure.config)
        reconfigure(module_server, configure.config)
        return module_server
    configure()
    yield configure
    assert calls.wait_idle(10), "a tool call outlived its test"


class ToServer:
    """An MCP client of the server `serve` made last (JSON-RPC with initialize, as desktop hosts speak): after
    serve(...) its next call reaches the new server. Each connection lives in a task of its own in `group`, so
    that calls from any task may use it and it closes where it opened."""

    def __init__(self, serve, group, **options):
        self.serve, self.group, self.options, self.connected = serve, group, options, (None, None)

    async def _keep(self, server, *, task_status):
        async with Client(server, **{"mode": "legacy", **self.options}) as connected:
            task_status.started(connected)
            await anyio.sleep_forever()

    async def current(self) -> Client:
        """The client connected to the latest server (connected on first use)."""
        server = self.serve.server
        if self.connected[0] is not server:
            self.connected = (server, await self.group.start(self._keep, server))
        return self.connected[1]

    def __getattr__(self, name):
        async def forward(*args, **kwargs):
            return await getattr(await self.current(), name)(*args, **kwargs)
        return forward


@contextlib.asynccontextmanager
async def connected_to(serve, **options):
    """A ToServer whose connections close when the block ends."""
    async with anyio.create_task_group() as group:
        yield ToServer(serve, group, **options)
        group.cancel_scope.cancel()


@pytest.fixture(scope="module")
async def connection(module_server):
    """An MCP client connected to the module's server (JSON-RPC with initialize, as desktop hosts speak)."""
    async with Client(module_server, mode="legacy") as connected:
        yield connected


@pytest.fixture
def client(serve, connection):
    """The in-process client, with the server configured for this test."""
    return connection


def spawn(env):
    return Client(StdioServerParameters(command=sys.executable, args=[SERVER], env=env, cwd=str(HERE)),
                  mode="legacy")


NODE_TOOLS = HERE / ".tools" / "node_modules" / ".bin"
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
needs_uv = pytest.mark.skipif(UV is None, reason="uv is not installed (make test installs it into .venv)")


def needs_node_tool(name):
    return pytest.mark.skipif(not (NODE_TOOLS / name).exists(),
                              reason=f"{name} is not in .tools (make test installs it with npm; is npm installed?)")


def plain_env(**extra):
    """What a host passes: PATH and HOME, this machine's network settings (its CA bundle, any proxy), and what the
    host's config says. uv reaches PyPI with them when its cache does not have a package yet."""
    network = {k: v for k, v in os.environ.items() if re.search(r"SSL|CERT|CA_BUNDLE|PROXY", k, re.IGNORECASE)}
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", "/tmp"), **network, **extra}


@pytest.fixture(scope="module")
async def stdio(fake_server, tmp_path_factory):
    """runway_mcp.py as a subprocess over stdio, shared by this module's tests of what only a real process and
    transport show (each waits for its calls to end)."""
    # Its tests repeat identical requests on purpose, each a new task: no duplicate guard here.
    async with spawn(server_env(fake_server, tmp_path_factory.mktemp("stdio"), RUNWAY_MCP_DEDUPE_S="0")) as connected:
        yield connected


async def call(client, tool, args=None, progress=None):
    result = await client.call_tool(tool, args or {}, progress_callback=progress)
    return result, result.structured_content


async def refused(client, fake, tool, args, expected) -> str:
    """Call a tool that must refuse with a message saying `expected`, having sent Runway nothing; the message."""
    result, _ = await call(client, tool, args)
    assert result.is_error and expected in result.content[0].text, result.content[0].text
    assert fake.requests == []
    return result.content[0].text


GENERATION_TOOLS = {"generate_image", "generate_video", "edit_video", "upscale_video", "upscale_image",
                    "generate_speech", "generate_sound_effect", "animate_character", "change_voice", "dub_audio",
                    "isolate_voice", "generate_sound_for_video", "convert_to_hdr"}
EXPECTED_TOOLS = GENERATION_TOOLS | {"get_task", "wait_for_task", "cancel_task", "list_tasks", "list_models",
                                     "get_account", "upload_file", "list_outputs", "delete_output"}


@pytest.mark.anyio
async def test_tools_are_listed_with_schemas(stdio):
    tools = {t.name: t for t in (await stdio.list_tools()).tools}
    assert EXPECTED_TOOLS <= set(tools)
    assert tools["generate_image"].input_schema["required"] == ["prompt"]
    assert tools["get_task"].input_schema["required"] == ["task_id"]
    for name in ("generate_image", "generate_video", "get_task", "wait_for_task", "cancel_task"):
        assert set(tools[name].output_schema["properties"]) >= {"task_id", "status", "progress", "outputs",
                                                                 "estimated_credits", "cost_credits", "next"}
    for name in GENERATION_TOOLS:
        assert "credit" in tools[name].description and tools[name].annotations.open_world_hint
        assert {"wait", "max_wait_s", "model", "options", "dry_run"} <= set(tools[name].input_schema["properties"])
    video = tools["generate_video"].input_schema["properties"]
    assert {"prompt", "image", "last_image", "ratio", "duration"} <= set(video)


@pytest.mark.anyio
async def test_only_tools_that_change_nothing_say_they_are_read_only(client):
    """Hosts decide what to ask the person by these hints: get_task and wait_for_task save files and write the
    ledger, so they are not read-only."""
    tools = (await client.list_tools()).tools
    assert {t.name for t in tools if t.annotations.read_only_hint} == {
        "list_tasks", "list_models", "list_outputs", "get_account", "list_workflows", "list_voices"}
    paid = {name for name, d in rm.TOOLS.items() if d.annotations is rm.PAID}
    assert all(t.annotations.open_world_hint for t in tools if t.name in paid | {"get_task", "wait_for_task"})


@pytest.mark.anyio
async def test_the_sdks_line_for_a_failed_tool_names_the_tool_not_the_error(client, out_dir, caplog):
    caplog.set_level(logging.INFO)
    result, _ = await call(client, "delete_output", {"name": "nothing.png", "confirm": True})
    assert result.is_error and str(out_dir) in result.content[0].text          # the caller is told where
    lines = [r.getMessage() for r in caplog.records if r.name == "mcp.server.mcpserver.server"]
    assert "Tool 'delete_output' failed" in lines and not [line for line in lines if str(out_dir) in line]


def wire_size(value) -> int:
    """Bytes as a host sends it to the model: compact JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def model_facing(tool) -> dict:
    wire = tool.model_dump(by_alias=True, exclude_none=True)
    return {k: wire.get(k) for k in ("name", "description", "inputSchema")}


@pytest.mark.anyio
async def test_the_tool_list_fits_the_agents_context_budget(client):
    """Every host sends each tool's name, description and input schema to the model in every conversation."""
    tools = (await client.list_tools()).tools
    sizes = {t.name: wire_size(model_facing(t)) for t in tools}
    assert sum(sizes[name] for name in EXPECTED_TOOLS) <= 14_000, sizes
    assert sum(sizes.values()) <= 640 * len(sizes), sizes
    assert sum(wire_size(t.output_schema) for t in tools if t.name in EXPECTED_TOOLS and t.output_schema) <= 12_000
    def keywords(schema):
        """Every keyword used in a schema (not property names)."""
        if not isinstance(schema, dict):
            return set()
        found = set(schema) - {"properties"}
        for key, value in schema.items():
            for child in (value.values() if key == "properties" else value if isinstance(value, list) else [value]):
                found |= keywords(child)
        return found
    for t in tools:
        assert not {"title", "$defs", "$ref"} & (keywords(t.input_schema) | keywords(t.output_schema)), t.name
        for name, spec in t.input_schema["properties"].items():
            assert {"type": "null"} not in spec.get("anyOf", []), (t.name, name)


@pytest.mark.anyio
async def test_list_results_are_one_text_block_and_list_models_fits_its_budget(client, fake):
    await call(client, "generate_image", {"prompt": "a"})
    await call(client, "generate_image", {"prompt": "b"})
    for tool in ("list_tasks", "list_outputs"):
        result, data = await call(client, tool)
        [block] = result.content
        assert len(block.text.splitlines()) == 2, block.text
    result, index = await call(client, "list_models")
    [block] = result.content
    assert wire_size(block.text) <= 5_000 and wire_size(index) <= 2 * wire_size(block.text)
    for name in rm.MODELS:
        result, detail = await call(client, "list_models", {"model": name})
        assert len(result.content) == 1 and wire_size(result.content[0].text) <= 2_000, name


def exposed(variable):
    """The tools RUNWAY_MCP_TOOLS=variable exposes, and the warnings it gives."""
    return rm.exposed_tools(rm.load_config({"RUNWAY_MCP_TOOLS": variable}).tools)


def test_toolsets_name_groups_or_tools_and_bring_the_task_tools_along():
    groups = rm.toolsets()
    assert exposed("") == (None, [])
    assert exposed("image, get_account") == ({*groups["image"], *groups["tasks"], "get_account"}, [])
    assert exposed("files") == (set(groups["files"]), [])                          # nothing to resume
    tools, warnings = exposed("video,imagez")
    assert set(groups["video"]) <= tools
    assert "'imagez' is not a toolset or tool" in warnings[0] and "image, video, audio" in warnings[0]
    tools, warnings = exposed("nothing")
    assert tools is None and len(warnings) == 2


@pytest.mark.anyio
async def test_a_toolset_lists_and_serves_only_its_tools(client, serve, fake):
    everything = {t.name for t in (await client.list_tools()).tools}
    assert everything == set(rm.TOOLS)                                       # every tool has a group
    serve(RUNWAY_MCP_TOOLS="audio")
    listed = {t.name for t in (await client.list_tools()).tools}
    assert listed == {*rm.toolsets()["audio"], *rm.toolsets()["tasks"]}
    result, _ = await call(client, "generate_image", {"prompt": "x"})
    assert result.is_error and "RUNWAY_MCP_TOOLS" in result.content[0].text and fake.requests == []
    result, _ = await call(client, "generate_sound_effect", {"prompt": "rain", "dry_run": True})
    assert not result.is_error


@pytest.mark.anyio
async def test_image_is_generated_and_saved(client, fake, out_dir):
    result, data = await call(client, "generate_image", {"prompt": "a red fox in snow"})
    assert not result.is_error, result.content
    body = fake.bodies("text_to_image")[0]
    assert body == {"model": "gen4_image", "promptText": "a red fox in snow", "ratio": "1920:1080"}
    assert data["status"] == "SUCCEEDED" and data["estimated_credits"] == 60 and data["cost_credits"] == 50
    [output] = data["outputs"]
    path = Path(output["path"])
    assert path.is_absolute() and path.parent == out_dir and path.read_bytes() == PNG
    assert output["mime_type"] == "image/png" and output["bytes"] == len(PNG)
    assert str(path) in result.content[0].text and data["task_id"] in result.content[0].text
    assert not list(out_dir.glob("*.part"))


@pytest.mark.anyio
async def test_image_to_video_sends_first_and_last_frames(client, fake):
    result, data = await call(client, "generate_video", {
        "prompt": "the door opens", "model": "veo3.1_fast", "image": "https://example.com/a.png",
        "last_image": "https://example.com/b.png", "duration": 8, "options": {"audio": False}})
    assert not result.is_error, result.content
    assert fake.bodies("image_to_video") == [{
        "model": "veo3.1_fast", "promptText": "the door opens", "ratio": "1280:720", "duration": 8, "audio": False,
        "promptImage": [{"uri": "https://example.com/a.png", "position": "first"},
                        {"uri": "https://example.com/b.png", "position": "last"}]}]
    assert data["outputs"][0]["path"].endswith(".mp4")


@pytest.mark.anyio
async def test_text_to_video_defaults_to_gen4_5_five_seconds_landscape(client, fake):
    result, _ = await call(client, "generate_video", {"prompt": "waves at dusk", "wait": False})
    assert not result.is_error
    assert fake.bodies("text_to_video") == [{"model": "gen4.5", "promptText": "waves at dusk", "ratio": "1280:720",
                                             "duration": 5}]


@pytest.mark.anyio
async def test_a_long_video_returns_a_handle_and_wait_for_task_finishes_it(client, serve, fake):
    serve(RUNWAY_MCP_MAX_WAIT="0.5", RUNWAY_MCP_CANCEL_ON_ABORT="1")
    fake.plan(polls=10**6, mime="video/mp4")
    started = time.monotonic()
    result, data = await call(client, "generate_video", {"prompt": "a long take"})
    assert time.monotonic() - started < 5
    assert not result.is_error and data["status"] == "RUNNING" and 0 < data["progress"] < 1
    assert "wait_for_task" in data["next"] and data["task_id"] in data["next"] and data["outputs"] == []
    listed = (await client.call_tool("list_tasks", {})).structured_content["tasks"]
    assert listed[0]["task_id"] == data["task_id"] and listed[0]["status"] == "RUNNING"
    fake.finish(data["task_id"])
    result, done = await call(client, "wait_for_task", {"task_id": data["task_id"]})
    assert not result.is_error and done["status"] == "SUCCEEDED"
    assert Path(done["outputs"][0]["path"]).read_bytes() == MP4


@pytest.mark.anyio
async def test_progress_arrives_and_never_decreases(stdio, fake):
    fake.plan(polls=8, throttled=2, mime="video/mp4")
    seen = []

    async def progress(value, total, message):
        seen.append((value, total, message))
    result, _ = await call(stdio, "generate_video", {"prompt": "x"}, progress=progress)
    await anyio.sleep(0.05)                     # callbacks may land just after the result
    assert not result.is_error and len(seen) >= 8
    values = [v for v, _, _ in seen]
    assert values == sorted(values) and values[-1] == 1.0 and all(t == 1.0 for _, t, _ in seen)
    messages = " ".join(m for _, _, m in seen)
    assert "THROTTLED" in messages and "RUNNING" in messages and "SUCCEEDED" in messages
    assert all(re.search(r" · \d+s$", m) for _, _, m in seen), messages           # each says the seconds waited


@pytest.mark.anyio
async def test_failed_task_is_an_error_with_the_failure_and_task_id(client, fake):
    fake.plan(polls=2, outcome="FAILED")
    result, data = await call(client, "generate_image", {"prompt": "x"})
    assert result.is_error
    assert data["status"] == "FAILED" and data["failure_code"] == "SAFETY.OUTPUT.IMAGE"
    assert "moderation" in data["failure"] and data["task_id"] in result.content[0].text
    assert "prompt" in data["next"]


@pytest.mark.anyio
async def test_cancel_task_sends_delete_and_a_second_cancel_is_fine(client, fake):
    _, data = await call(client, "generate_video", {"prompt": "x", "wait": False})
    for expected in ("cancelled", "already cancelled"):
        result, cancelled = await call(client, "cancel_task", {"task_id": data["task_id"]})
        assert not result.is_error and cancelled["status"] == "CANCELLED" and expected in cancelled["notes"][0]
    assert [r["path"] for r in fake.seen("DELETE")] == [f"/v1/tasks/{data['task_id']}"] * 2


@pytest.mark.anyio
async def test_a_client_cancel_stops_polling_at_once(stdio, fake):
    fake.plan(polls=10**6, mime="video/mp4")
    with anyio.move_on_after(0.5):
        await stdio.call_tool("generate_video", {"prompt": "x", "max_wait_s": 60})
    polls = len(fake.seen("GET", "/v1/tasks/"))
    assert polls > 5                             # it was polling every 10 ms...
    await anyio.sleep(0.4)
    assert len(fake.seen("GET", "/v1/tasks/")) <= polls + 1     # ...and stopped (one may be in flight)
    result, _ = await call(stdio, "list_models", {"kind": "image"})
    assert not result.is_error                   # the server is still serving


@pytest.mark.anyio
async def test_polling_survives_503_and_429(client, fake):
    fake.plan(polls=4, mime="video/mp4")
    fake.fail("GET", "/v1/tasks/", 503, times=2)
    fake.fail("GET", "/v1/tasks/", 429, headers={"Retry-After": "0"}, times=1)
    result, data = await call(client, "generate_video", {"prompt": "x"})
    assert not result.is_error and data["status"] == "SUCCEEDED"
    assert len(fake.seen("GET", "/v1/tasks/")) == 4 + 3


@pytest.mark.anyio
async def test_a_500_on_create_is_not_resent(client, fake):
    fake.fail("POST", "/v1/text_to_image", 500)
    result, _ = await call(client, "generate_image", {"prompt": "x"})
    assert result.is_error and len(fake.seen("POST")) == 1
    assert "may have been created" in result.content[0].text and "list_tasks" in result.content[0].text


@pytest.mark.anyio
async def test_an_invalid_ratio_sends_nothing(client, fake):
    result, _ = await call(client, "generate_image", {"prompt": "x", "ratio": "4:3"})
    assert result.is_error and fake.requests == []
    text = result.content[0].text
    assert "ratio='4:3'" in text and "1920:1080" in text and "\n" not in text


IMAGE, VIDEO, AUDIO = "https://example.com/in.png", "https://example.com/in.mp4", "https://example.com/in.mp3"
# endpoint -> (tool, {API field it needs: (argument, value given, value Runway must receive)})
RECIPES = {
    "text_to_image": ("generate_image", {"promptText": ("prompt", "a fox", "a fox"),
                                         "referenceImages": ("reference_images", [IMAGE], [{"uri": IMAGE}])}),
    "image_to_video": ("generate_video", {"promptImage": ("image", IMAGE, IMAGE), "promptText": ("prompt", "go", "go")}),
    "text_to_video": ("generate_video", {"promptText": ("prompt", "waves", "waves")}),
    "video_to_video": ("edit_video", {"videoUri": ("video", VIDEO, VIDEO), "promptVideo": ("video", VIDEO, VIDEO),
                                      "promptText": ("prompt", "snow", "snow")}),
    "character_performance": ("animate_character", {
        "character": ("character", IMAGE, {"type": "image", "uri": IMAGE}),
        "reference": ("reference", VIDEO, {"type": "video", "uri": VIDEO})}),
    "sound_effect": ("generate_sound_effect", {"promptText": ("prompt", "a door", "a door"),
                                               "duration": ("duration", 3, 3)}),
    "text_to_speech": ("generate_speech", {"promptText": ("text", "Hello", "Hello"),
                                           "voice": ("voice", "noah", {"type": "runway-preset", "presetId": "Noah"})}),
    "speech_to_speech": ("change_voice", {"media": ("media", AUDIO, {"type": "audio", "uri": AUDIO}),
                                          "voice": ("voice", "Maggie", {"type": "runway-preset", "presetId": "Maggie"})}),
    "voice_dubbing": ("dub_audio", {"audioUri": ("audio", AUDIO, AUDIO), "targetLang": ("target_language", "es", "es")}),
    "voice_isolation": ("isolate_voice", {"audioUri": ("audio", AUDIO, AUDIO)}),
    "video_to_audio": ("generate_sound_for_video", {"videoUri": ("video", VIDEO, VIDEO), "duration": ("duration", 8, 8)}),
    "video_to_hdr": ("convert_to_hdr", {"videoUri": ("video", VIDEO, VIDEO)}),
    "video_upscale": ("upscale_video", {"videoUri": ("video", VIDEO, VIDEO),
                                        "targetFramerate": ("frame_rate", "60", "60")}),
    "image_upscale": ("upscale_image", {"imageUri": ("image", IMAGE, IMAGE)}),
}


def registry_gaps() -> list[str]:
    """What the endpoints in the registry lack, each a line saying what to add where: a new endpoint needs its entry
    in ENDPOINTS, its models in MODELS, its tool, and an example call here (RECIPES); the rest follows."""
    gaps = []
    for endpoint, entry in rm.ENDPOINTS.items():
        if entry.tool not in rm.TOOLS:
            gaps.append(f"{endpoint}: no tool {entry.tool}; define it with @generation(..., {endpoint!r})")
        if endpoint not in rm.MODELS.get(entry.default, rm.Model("", "", {})).uses:
            gaps.append(f"{endpoint}: its default model {entry.default} has no use on it in MODELS")
        if endpoint not in RECIPES:
            gaps.append(f"{endpoint}: add an example call of {entry.tool} to RECIPES in test_runway_mcp.py")
        if not sdk_types(endpoint):
            gaps.append(f"{endpoint}: runwayml {runwayml.__version__} (the catalog's oracle) has no types for it: pin "
                        "a runwayml that has them in the Makefile's TEST_DEPS")
    gaps += [f"{name}: {key} is not in ENDPOINTS" for name, model in rm.MODELS.items() for key in model.uses
             if key.partition(":")[0] not in rm.ENDPOINTS]
    return gaps


def test_every_endpoint_has_its_models_its_tool_and_an_example():
    assert not (gaps := registry_gaps()), "the endpoint registry lacks:\n" + "\n".join(gaps)


@pytest.fixture
def another_endpoint(monkeypatch):
    """The registry, catalog and tools as they would be with one more endpoint, text_to_gif: its entry, its model
    and its tool, and nothing else. Everything is put back after (and the tools built again)."""
    for name in ("ENDPOINTS", "MODELS", "TOOLS", "GENERATORS", "_DESCRIBED"):
        monkeypatch.setattr(rm, name, dict(getattr(rm, name)))
    monkeypatch.setattr(rm, "_LISTED", {})          # the tools as listed so far: built again with the new one
    rm._built_tools.cache_clear()
    rm.ENDPOINTS["text_to_gif"] = rm.Endpoint("gif", "generate_gif", "gifmaker", "image")
    rm.MODELS["gifmaker"] = rm.Model("image", "Animated GIFs from a prompt", {"text_to_gif": rm.Use((), "promptText")},
                                     credits="3 per image")

    @rm.generation("Generate GIF", "text_to_gif")
    def generate_gif(prompt: rm.Prompt, model: rm.ModelName = "gifmaker") -> rm.TaskRequest:
        """Make an animated GIF from a prompt.

        {cost}
        """
        return rm.TaskRequest("text_to_gif", {"model": model, "promptText": prompt})
    yield
    rm._built_tools.cache_clear()


@pytest.mark.anyio
async def test_a_new_endpoint_is_its_registry_entry_its_models_and_its_tool(another_endpoint, fake, tmp_path):
    async with Client(rm.create_server(rm.load_config(server_env(fake, tmp_path))), mode="legacy") as client:
        tools = (await client.list_tools()).tools
        dry = await client.call_tool("generate_gif", {"prompt": "a cat", "dry_run": True})
    [gif] = [t for t in tools if t.name == "generate_gif"]
    assert gif.description.endswith("Costs 3 credits per image (gifmaker).") and "generate_gif" in rm.toolsets()["image"]
    assert {"name": "generate_gif", "description": "Make an animated GIF from a prompt."} in manifest_tools(tools)
    assert "gif=text_to_gif" in rm.model_index() and "gifmaker* gif 3/image" in rm.model_index()
    assert dry.content[0].text.startswith("DRY_RUN: POST /v1/text_to_gif") and "about 3 credits" in dry.content[0].text
    assert rm.exposed_tools(("image",))[0] >= {"generate_gif", "get_task"}
    assert registry_gaps() == ["text_to_gif: add an example call of generate_gif to RECIPES in test_runway_mcp.py",
                               f"text_to_gif: runwayml {runwayml.__version__} (the catalog's oracle) has no types for "
                               "it: pin a runwayml that has them in the Makefile's TEST_DEPS"]


# Every use of every model (an endpoint without an example in RECIPES is left to registry_gaps to name).
USES = [(name, key) for name, model in rm.MODELS.items() for key in model.uses if key.partition(":")[0] in RECIPES]


def minimal_request(name, key):
    """The smallest valid call for one use of a model: (tool, arguments, the body Runway must receive)."""
    endpoint, _, mode = key.partition(":")
    model, use = rm.MODELS[name], rm.MODELS[name].uses[key]
    tool, recipe = RECIPES[endpoint]
    args, body = {"model": name, "wait": False}, {"model": name}
    if mode:
        args["mode"] = body["mode"] = mode
    for api_field in sorted(rm._fields(use.needs)):
        if api_field == "ratio":
            args["ratio"] = body["ratio"] = use.ratios[-1]
        elif api_field == "duration" and model.durations:
            args["duration"] = body["duration"] = max(d for d in model.durations if isinstance(d, int))
        elif api_field != "mode":
            argument, given, sent = recipe[api_field]
            args[argument], body[api_field] = given, sent
    for api_field in model.min_items:                   # an optional list that needs items when sent: e.g. 1-4 images
        argument, given, sent = recipe[api_field]
        args[argument], body[api_field] = given, sent
    return tool, args, body


@pytest.mark.anyio
@pytest.mark.parametrize("name, key", USES)
async def test_every_model_is_reachable_and_sends_exactly_the_right_body(client, fake, name, key):
    tool, args, expected = minimal_request(name, key)
    result, data = await call(client, tool, args)
    assert not result.is_error, result.content[0].text
    assert data["status"] == "PENDING" and data["estimated_credits"] == 60
    [sent] = fake.bodies(key.partition(":")[0])
    assert sent == expected


def invalid_requests():
    """For every model: a wrong ratio, a wrong duration and a missing input, each with what the error names."""
    for name, key in USES:
        model, use = rm.MODELS[name], rm.MODELS[name].uses[key]
        tool, args, _ = minimal_request(name, key)
        if use.ratios:
            yield pytest.param(tool, {**args, "ratio": "7:3"}, "ratio='7:3'", id=f"{name}-{key}-ratio")
        if model.durations and key.startswith(("image_to", "text_to_video")):
            yield pytest.param(tool, {**args, "duration": 99}, "duration=99", id=f"{name}-{key}-duration")
        endpoint_recipe = RECIPES[key.partition(":")[0]][1]
        for api_field in sorted(rm._fields(use.needs) & {"promptText", "referenceImages"}):
            argument = endpoint_recipe[api_field][0]
            required_by_schema = inspect.signature(getattr(rm, tool)).parameters[argument].default is inspect._empty
            yield pytest.param(tool, {k: v for k, v in args.items() if k != argument},
                               f"{argument} is required" if required_by_schema else f"needs {argument}",
                               id=f"{name}-{key}-missing-{argument}")


@pytest.mark.anyio
@pytest.mark.parametrize("tool, args, expected", list(invalid_requests()))
async def test_invalid_requests_send_nothing_and_name_the_argument(client, fake, tool, args, expected):
    await refused(client, fake, tool, args, expected)


@pytest.mark.anyio
@pytest.mark.parametrize("tool, args, expected", [
    ("generate_video", {"prompt": "x", "model": "veo3.1", "last_image": IMAGE}, "last_image needs image"),
    ("generate_video", {"prompt": "x", "model": "gen4.5", "image": IMAGE, "last_image": IMAGE},
     "gen4.5 takes only a first frame"),
    ("generate_video", {"prompt": "x", "model": "gen4_turbo"}, "does not work on text_to_video"),
    ("generate_image", {"prompt": "x", "options": {"outputFormat": "png"}}, "does not take options.outputFormat"),
    ("generate_image", {"prompt": "x", "options": {"promptText": "y"}}, "options.promptText is the prompt argument"),
    ("generate_image", {"prompt": "x", "reference_images": [IMAGE] * 4}, "takes at most 3"),
    ("edit_video", {"video": VIDEO, "model": "seedance2_5", "mode": "extend"}, "needs prompt"),
    ("edit_video", {"video": VIDEO, "model": "seedance2_5", "mode": "edit", "prompt": "x", "duration": 5},
     "allowed: auto"),
    ("edit_video", {"video": VIDEO, "model": "seedance2_5", "mode": "extend", "prompt": "x", "ratio": "1280:720"},
     "does not take ratio"),
    ("generate_speech", {"text": "hi", "voice": "Darth"}, "not a Runway voice preset"),
    ("generate_speech", {"text": "hi", "model": "seed_audio", "voice": "Maya"}, "voice_sample"),
    ("generate_sound_effect", {"prompt": "boom", "duration": 45}, "allowed: 0.5-30"),
    ("animate_character", {"character": "https://example.com/who", "reference": VIDEO}, "pass character_kind"),
    ("upscale_image", {"image": IMAGE, "options": {"sharpen": 101}}, "options.sharpen=101"),
    ("upscale_video", {"video": VIDEO, "model": "enhance_frame_rate"}, "needs frame_rate"),
    ("generate_image", {"prompt": "x", "reference_images": ["http://example.com/a.png"]}, "not an https:// URL"),
    ("generate_video", {"prompt": "x", "image": "data:audio/mpeg;base64,AAAA"}, "image takes image"),
])
async def test_rules_beyond_ratio_and_duration(client, fake, tool, args, expected):
    await refused(client, fake, tool, args, expected)


@pytest.mark.anyio
async def test_dry_run_shows_the_exact_body_and_an_estimate_and_sends_nothing(client, fake):
    data_uri = "data:image/png;base64," + base64.b64encode(PNG * 40).decode()
    result, data = await call(client, "generate_video", {
        "prompt": "a slow pan", "image": data_uri, "duration": 8, "dry_run": True})
    assert not result.is_error and fake.requests == []
    assert data["status"] == "DRY_RUN" and data["task_id"] is None and data["estimated_credits"] == 96
    request = data["request"]
    assert request["method"] == "POST" and request["url"] == f"{fake.url}/v1/image_to_video"
    assert request["body"] == {"model": "gen4.5", "promptText": "a slow pan", "promptImage": "<data:image/png URI, 4 KB>",
                               "ratio": "1280:720", "duration": 8}
    assert "base64" not in result.content[0].text and "96" in result.content[0].text


@pytest.mark.anyio
async def test_unknown_models_pass_through_and_runway_issues_come_back_with_paths(client, fake):
    result, data = await call(client, "generate_video", {"prompt": "x", "model": "gen5_preview", "dry_run": True})
    assert not result.is_error and "nothing was checked locally" in data["notes"][0]
    fake.fail("POST", "/v1/text_to_video", 400, body={"error": "Validation failed", "issues": [
        {"code": "invalid_union_discriminator", "path": ["model"], "message": "Invalid model for text_to_video"},
        {"code": "too_big", "path": ["promptText"], "message": "Too long"}]})
    result, _ = await call(client, "generate_video", {"prompt": "x", "model": "gen5_preview"})
    assert result.is_error and len(fake.seen("POST")) == 1
    assert "model: Invalid model for text_to_video; promptText: Too long" in result.content[0].text


@pytest.mark.anyio
async def test_a_small_local_png_goes_as_a_data_uri(client, fake, tmp_path):
    frame = tmp_path / "frame.png"
    frame.write_bytes(PNG)
    result, _ = await call(client, "generate_video", {"prompt": "x", "image": str(frame), "wait": False})
    assert not result.is_error, result.content[0].text
    assert fake.bodies("image_to_video")[0]["promptImage"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert fake.seen("POST", "/v1/uploads") == []


@pytest.mark.anyio
async def test_a_large_local_video_is_uploaded_once_and_the_upload_host_never_sees_the_key(client, fake, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(MP4 + os.urandom(4_200_000))            # past the 5 MB data: URI limit once encoded
    for again in (False, True):                             # the second a deliberate new task: no duplicate guard
        result, _ = await call(client, "edit_video", {"video": str(clip), "prompt": "snow", "wait": False,
                                                      "new": again})
        assert not result.is_error, result.content[0].text
    assert len(fake.seen("POST", "/v1/uploads")) == 1          # the second call reuses the runway:// URI
    [(path, upload)] = fake.uploads.items()
    assert all("Authorization" not in r["headers"] for r in fake.seen("POST", "/upload/"))
    assert upload["content_type"].startswith("multipart/form-data; boundary=")
    assert b'name="key"' in upload["raw"] and b'name="file"; filename="clip.mp4"' in upload["raw"]
    assert clip.read_bytes() in upload["raw"]
    sent = [b["videoUri"] for b in fake.bodies("video_to_video")]
    assert sent == [f"runway://uploads/{path.rsplit('/', 1)[1]}"] * 2


class CountingDigests(collections.OrderedDict):
    """content_digest's cache, counting the digests it computes: each is one whole read of a file."""
    computed = 0

    def __setitem__(self, key, value):
        type(self).computed += 1
        super().__setitem__(key, value)


@pytest.mark.anyio
async def test_a_local_file_is_read_whole_once_per_call_and_not_again_while_unchanged(client, fake, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setattr(rm, "_DIGESTS", CountingDigests())
    monkeypatch.setattr(CountingDigests, "computed", 0)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(MP4 + os.urandom(4_200_000))            # uploaded: hashed for the duplicate guard and the cache
    arguments = {"video": str(clip), "prompt": "snow", "wait": False}
    for expected in (1, 1):                                 # the second: the same task, found by the same digest
        result, _ = await call(client, "edit_video", arguments)
        assert not result.is_error and CountingDigests.computed == expected, result.content[0].text
    clip.write_bytes(MP4 + os.urandom(4_200_000))            # changed: read again
    result, _ = await call(client, "edit_video", arguments)
    assert CountingDigests.computed == 2 and len(fake.bodies("video_to_video")) == 2


@pytest.mark.anyio
async def test_upload_file_returns_a_runway_uri_and_its_expiry(client, fake, tmp_path):
    clip = tmp_path / "voice.wav"
    clip.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + os.urandom(4000))
    result, first = await call(client, "upload_file", {"path": str(clip)})
    assert not result.is_error and first["uri"].startswith("runway://") and first["mime_type"] == "audio/wav"
    expires = datetime.fromisoformat(first["expires_at"])
    assert 23 * 3600 < (expires - datetime.now(UTC)).total_seconds() <= 24 * 3600
    _, second = await call(client, "upload_file", {"path": str(clip)})
    assert second["reused"] and second["uri"] == first["uri"] and len(fake.uploads) == 1


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def broken_data_uris(kind: str):
    """data: URIs that must not reach Runway: (value, what the error says)."""
    mime, good = ("image/png", PNG) if kind == "image" else ("video/mp4", MP4)
    other, other_bytes = ("image/jpeg", b"\xff\xd8\xff\xe0" + bytes(40)) if kind == "image" else ("image/png", PNG)
    return [
        (f"data:{mime};base64,{b64(good)[:-4]}!!!!", "base64 is broken"),
        (f"data:{mime};base64,{b64(good)[:-1]}", "base64 is broken"),                    # padding cut off
        (f"data:{mime};base64,{b64(other_bytes)}", f"says {mime}, but its bytes are {other}"),
        (f"data:{mime};base64,{b64(b'plain text, not media at all')}", "not a recognised image, video or audio"),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("tool, argument, args", [
    ("generate_video", "image", {"prompt": "x"}), ("edit_video", "video", {"prompt": "x"}),
    ("upscale_video", "video", {}), ("upscale_image", "image", {}),
    ("animate_character", "character", {"reference": VIDEO, "character_kind": "image"}),
])
async def test_a_broken_data_uri_is_refused_before_anything_is_sent(client, fake, tool, argument, args):
    kind = "video" if argument == "video" else "image"
    for value, expected in broken_data_uris(kind):
        result, _ = await call(client, tool, {**args, argument: value})
        assert result.is_error and expected in result.content[0].text and argument in result.content[0].text, (
            result.content[0].text)
    good = f"data:{'image/png' if kind == 'image' else 'video/mp4'};base64,{b64(PNG if kind == 'image' else MP4)}"
    result, data = await call(client, tool, {**args, argument: good, "dry_run": True})
    assert not result.is_error, result.content[0].text
    assert fake.requests == []


def test_fifos_sockets_and_devices_are_refused_without_being_opened(api, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "sock.png"))
        for path, what in [(tmp_path / "pipe.png", "is a FIFO"), (tmp_path / "sock.png", "is a socket"),
                           (Path("/dev/zero"), "is a device"), (tmp_path, "is a directory")]:
            with pytest.raises(rm.RunwayError, match=what):
                rm.local_file(api.account, rm.Media(str(path), ("image", "video"), "character"))
    with pytest.raises(rm.RunwayError, match="is a FIFO"):      # swapped in after the checks: still not opened
        rm._open_checked(tmp_path / "pipe.png", "character", "pipe.png")


def bad_inputs(tmp: Path):
    (tmp / "notes.txt").write_text("not media")
    (tmp / "anim.gif").write_bytes(b"GIF89a" + bytes(100))
    (tmp / "song.mp3").write_bytes(b"ID3" + bytes(100))
    with open(tmp / "huge.mp4", "wb") as f:                 # sparse: 201 MB on paper, nothing on disk
        f.write(MP4)
        f.truncate(201 * 1024 * 1024)
    return [
        (str(tmp / "missing.png"), f"no file at {tmp / 'missing.png'}"),
        (str(tmp), "is a directory"),
        (str(tmp / "notes.txt"), "is not a recognised image, video or audio file"),
        (str(tmp / "song.mp3"), "image takes image"),
        (str(tmp / "anim.gif"), "does not take image/gif"),
        (str(tmp / "huge.mp4"), "up to 200 MB"),
        ("http://example.com/a.png", "not an https:// URL"),
        ("ftp://example.com/a.png", "not an https:// URL"),
        ("https://example.com/" + "a" * 2100, "at most 2048"),
        ("data:image/png;base64," + "A" * 6_000_000, "pass the file's path"),
        ("data:image/png,rawbytes", "not a base64 data: URI"),
    ]


@pytest.mark.anyio
async def test_bad_media_arguments_are_refused_by_name_and_send_nothing(client, fake, tmp_path):
    for value, expected in bad_inputs(tmp_path):
        result, _ = await call(client, "generate_video", {"prompt": "x", "image": value})
        assert result.is_error and expected in result.content[0].text, (value[:60], result.content[0].text)
        assert "image" in result.content[0].text
    assert fake.requests == []


@pytest.mark.anyio
async def test_an_image_result_carries_a_link_a_preview_and_a_sidecar(client, fake, out_dir):
    result, data = await call(client, "generate_image", {"prompt": "a lighthouse", "seed": 7})
    path = Path(data["outputs"][0]["path"])
    link, preview = result.content[1], result.content[2]
    assert link.type == "resource_link" and link.uri == f"runway-mcp://outputs/{path.name}" == data["outputs"][0]["uri"]
    assert link.mime_type == "image/png" and link.size == len(PNG)
    assert preview.type == "image" and base64.b64decode(preview.data) == PNG
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["task_id"] == data["task_id"] and sidecar["tool"] == "generate_image"
    assert sidecar["model"] == "gen4_image" and sidecar["prompt"] == "a lighthouse"
    assert sidecar["arguments"]["seed"] == 7 and sidecar["cost_credits"] == 50 and sidecar["estimated_credits"] == 60
    assert sidecar["source_url"].startswith(fake.url + "/files/") and sidecar["created_at"]


# Saved outputs as resources, and the viewer ----------------------------------------------------------------

@pytest.mark.anyio
async def test_saved_outputs_are_resources_newest_first(client, fake, out_dir):
    _, image = await call(client, "generate_image", {"prompt": "a kite"})
    _, video = await call(client, "generate_video", {"prompt": "a kite flying"})
    listed = (await client.list_resources()).resources
    assert [r.uri for r in listed if r.uri.startswith("runway-mcp://")] == [video["outputs"][0]["uri"],
                                                                            image["outputs"][0]["uri"]]
    by_uri = {r.uri: r for r in listed}
    assert by_uri[image["outputs"][0]["uri"]].mime_type == "image/png" and by_uri[image["outputs"][0]["uri"]].size == len(PNG)
    assert by_uri[rm.VIEWER_URI].mime_type == "text/html;profile=mcp-app"
    templates = (await client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["runway-mcp://outputs/{name}"]
    [content] = (await client.read_resource(video["outputs"][0]["uri"])).contents
    assert content.mime_type == "video/mp4" and base64.b64decode(content.blob) == MP4


@pytest.mark.anyio
async def test_only_saved_outputs_are_resources(client, fake, out_dir):
    _, image = await call(client, "generate_image", {"prompt": "a kite"})
    (out_dir / ".video_x_1.mp4.abc.part").write_bytes(MP4)
    (out_dir.parent / "secret.png").write_bytes(PNG)
    for name in ["tasks.jsonl", Path(image["outputs"][0]["path"]).name + ".json", ".video_x_1.mp4.abc.part",
                 "missing.png", "..%2Fsecret.png", "../secret.png", "%2E%2E/secret.png", ""]:
        with pytest.raises(MCPError) as caught:
            await client.read_resource(f"runway-mcp://outputs/{name}")
        assert caught.value.code in (-32002, -32602), name
    for uri in ["runway-mcp://elsewhere/x.png", "file:///etc/passwd", "ui://runway-mcp/other"]:
        with pytest.raises(MCPError) as caught:
            await client.read_resource(uri)
        assert caught.value.code == -32002 and uri in str(caught.value), uri


@pytest.mark.anyio
async def test_an_output_too_large_to_send_whole_says_where_it_is(client, fake, out_dir, monkeypatch):
    monkeypatch.setattr(rm, "RESOURCE_MAX_BYTES", 1000)
    _, video = await call(client, "generate_video", {"prompt": "x"})
    with pytest.raises(MCPError) as caught:
        await client.read_resource(video["outputs"][0]["uri"])
    message = str(caught.value)
    assert video["outputs"][0]["path"] in message and "/files/" in message and "1 KB" in message


@pytest.mark.anyio
async def test_a_saved_output_feeds_the_next_call_by_its_uri(client, serve, fake):
    _, image = await call(client, "generate_image", {"prompt": "a red fox"})
    serve(transport="http", RUNWAY_MCP_INPUT_ROOT="")   # as over HTTP, the server's own files are still readable
    result, data = await call(client, "generate_video", {"prompt": "it runs", "image": image["outputs"][0]["uri"],
                                                         "wait": False})
    assert not result.is_error, result.content[0].text
    assert fake.bodies("image_to_video")[0]["promptImage"] == "data:image/png;base64," + b64(PNG)
    result, _ = await call(client, "animate_character", {"character": image["outputs"][0]["uri"], "reference": VIDEO,
                                                         "wait": False})
    assert fake.bodies("character_performance")[0]["character"]["type"] == "image"
    result, _ = await call(client, "generate_video", {"prompt": "x", "image": "runway-mcp://outputs/tasks.jsonl"})
    assert result.is_error and "image='tasks.jsonl' is not a saved output" in result.content[0].text


@pytest.mark.anyio
async def test_list_outputs_gives_one_files_full_record(client, fake):
    _, image = await call(client, "generate_image", {"prompt": "a lighthouse at dusk", "seed": 3})
    name = Path(image["outputs"][0]["path"]).name
    result, data = await call(client, "list_outputs", {"name": name})
    [found] = data["outputs"]
    assert found["record"]["task_id"] == image["task_id"] and found["record"]["arguments"]["seed"] == 3
    assert found["uri"] == image["outputs"][0]["uri"] and found["record"]["cost_credits"] == 50
    text = result.content[0].text
    assert "prompt: a lighthouse at dusk" in text and "model: gen4_image" in text and "source_url: " in text
    result, _ = await call(client, "list_outputs", {"name": "../tasks.jsonl"})
    assert result.is_error and "name=" in result.content[0].text


@pytest.mark.anyio
async def test_every_task_tool_names_the_viewer_and_the_viewer_is_an_mcp_app(client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    task_tools = set(rm.GENERATORS) | {"generate_batch", "get_task", "wait_for_task", "cancel_task"}
    for name, tool in tools.items():
        meta = tool.meta or {}
        if name in task_tools:
            assert meta["ui"]["resourceUri"] == meta["ui/resourceUri"] == "ui://runway-mcp/viewer", name
        else:
            assert "ui" not in meta, name
    [content] = (await client.read_resource("ui://runway-mcp/viewer")).contents
    assert content.mime_type == "text/html;profile=mcp-app" and content.text.startswith("<!DOCTYPE html>")
    assert content.meta["ui"]["csp"]["resourceDomains"] == rm.OUTPUT_HOSTS
    assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*href=|@import|url\(http", content.text)   # self-contained


@pytest.mark.anyio
async def test_only_served_capabilities_are_advertised_and_unknown_names_get_proper_errors(client, caplog):
    capabilities = client.server_capabilities
    assert capabilities.prompts is None and capabilities.resources is not None and capabilities.tools is not None
    for ask, code in [(lambda: client.get_prompt("nope"), -32601), (lambda: client.list_prompts(), -32601),
                      (lambda: client.read_resource("runway-mcp://outputs/nope.png"), -32002),
                      (lambda: client.read_resource("ui://nope"), -32002)]:
        with pytest.raises(MCPError) as caught:
            await ask()
        assert caught.value.code == code
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text   # no traceback


@pytest.mark.anyio
async def test_a_video_result_links_the_file_without_inlining_it(client, fake):
    result, _ = await call(client, "generate_video", {"prompt": "x"})
    assert [c.type for c in result.content] == ["text", "resource_link"]
    assert result.content[1].mime_type == "video/mp4" and result.content[1].size == len(MP4)


@pytest.mark.anyio
async def test_with_downloads_off_only_links_come_back(client, serve, fake, out_dir):
    serve(RUNWAY_MCP_DOWNLOAD="0")
    result, data = await call(client, "generate_image", {"prompt": "x"})
    assert data["outputs"][0]["path"] is None and data["outputs"][0]["url"].startswith(fake.url)
    assert result.content[1].uri == data["outputs"][0]["url"] and fake.seen("GET", "/files/") == []
    assert not [p for p in out_dir.iterdir() if rm.is_output(p)]


@pytest.mark.anyio
async def test_an_expired_output_link_is_refreshed_from_the_task(client, fake):
    fake.fail("GET", "/files/", 403)
    result, data = await call(client, "generate_image", {"prompt": "x"})
    assert not result.is_error and Path(data["outputs"][0]["path"]).read_bytes() == PNG
    gets = [r["path"] for r in fake.seen("GET")]
    assert gets[-3].startswith("/files/") and gets[-2].startswith("/v1/tasks/") and gets[-1].startswith("/files/")


@pytest.mark.anyio
async def test_a_download_cut_off_midway_is_retried_and_leaves_no_partial_file(client, fake, out_dir, monkeypatch):
    monkeypatch.setattr(rm, "backoff", lambda attempt, *args: 0.0)        # the pause between tries
    fake.plan(polls=1, mime="video/mp4")
    fake.fail("GET", "/files/", action="cut")
    result, data = await call(client, "generate_video", {"prompt": "x"})
    assert Path(data["outputs"][0]["path"]).read_bytes() == MP4 and len(fake.seen("GET", "/files/")) == 2
    fake.plan(polls=1, mime="video/mp4")
    fake.fail("GET", "/files/", action="cut", times=3)
    result, data = await call(client, "generate_video", {"prompt": "y"})
    assert not result.is_error and data["status"] == "SUCCEEDED" and data["outputs"][0]["path"] is None
    assert "not saved" in data["notes"][0] and data["task_id"] in result.content[0].text
    assert not list(out_dir.glob(f"*_{data['task_id'][:8]}_*")) and not list(out_dir.glob(".*.part"))


@pytest.mark.anyio
async def test_list_outputs_and_delete_output(client, fake):
    _, image = await call(client, "generate_image", {"prompt": "a red kite"})
    _, video = await call(client, "generate_video", {"prompt": "a kite flying"})
    _, listed = await call(client, "list_outputs", {"kind": "image", "limit": 5})
    newest = listed["outputs"][0]
    assert all(item["kind"] == "image" for item in listed["outputs"])
    assert newest["path"] == image["outputs"][0]["path"] and newest["prompt"] == "a red kite"
    assert newest["task_id"] == image["task_id"] and newest["bytes"] == len(PNG) and newest["model"] == "gen4_image"
    _, everything = await call(client, "list_outputs", {"limit": 2})
    assert [o["path"] for o in everything["outputs"]] == [video["outputs"][0]["path"], image["outputs"][0]["path"]]
    path = Path(newest["path"])
    result, _ = await call(client, "delete_output", {"name": path.name})
    assert result.is_error and "confirm=true" in result.content[0].text and path.exists()
    result, deleted = await call(client, "delete_output", {"name": path.name, "confirm": True})
    assert not result.is_error and deleted == {"deleted": [path.name, path.name + ".json"], "freed_bytes": len(PNG)}
    assert not path.exists() and not path.with_name(path.name + ".json").exists()


@pytest.mark.anyio
async def test_get_account_reports_balance_limits_and_usage(client, fake):
    result, data = await call(client, "get_account")
    assert not result.is_error
    assert data["credit_balance"] == 1000 and data["max_monthly_credit_spend"] == 10000
    assert data["models"] == [{"model": "gen4.5", "used_today": 0, "daily_limit": 200, "concurrency_limit": 2}]


@pytest.mark.anyio
async def test_list_models_gives_an_index_and_one_models_detail(client):
    result, everything = await call(client, "list_models")
    [block] = result.content
    assert [row[0] for row in everything["models"]] == [*rm.MODELS, *rm.OTHERS]
    for name in rm.MODELS:
        assert re.search(rf"^{re.escape(name)}\*? ", block.text, re.MULTILINE), name
    assert "\nrun_recipe: ad_localization image, marketing_stock_image image, multi_shot_video video," in block.text
    assert "\ngenerate_avatar_video: gwm1_avatars\ngenerate_with_router: router:video, router:image, router:audio" \
           in block.text
    defaults = {e for row in everything["models"] for e in row[4].split()}
    assert defaults == {e for m in rm.MODELS.values() for e in m.uses if ":" not in e}   # one per endpoint
    assert "gen4.5* i2v,t2v 12/s" in block.text and everything["endpoints"]["i2v"] == "image_to_video"
    _, video = await call(client, "list_models", {"kind": "video"})
    assert {row[1] for row in video["models"]} == {"video"} and "gen4.5" in {row[0] for row in video["models"]}
    assert {"product_ad", "gwm1_avatars", "router:video"} <= {row[0] for row in video["models"]}
    result, gen45 = await call(client, "list_models", {"model": "gen4.5"})
    detail = result.content[0].text
    assert gen45["models"] == [["gen4.5", "video", "i2v t2v", "12 per second", "image_to_video text_to_video"]]
    assert gen45["detail"] == detail and "duration: 2-10" in detail and "prompt: at most 1000 characters" in detail
    assert "text_to_video (generate_video): needs duration, prompt, ratio; takes contentModeration, outputFormat, " \
           "proresProfile, seed; ratio 1280:720, 720:1280" in detail
    assert "+5/s with outputFormat prores, png_sequence" in detail and "prores, png_sequence, hdr10" in detail
    _, seedance = await call(client, "list_models", {"model": "seedance2_5"})
    assert "video_to_video mode extend: needs prompt, video" in seedance["detail"]
    result, _ = await call(client, "list_models", {"model": "gen9"})
    assert result.is_error and "model='gen9' is not in the catalog" in result.content[0].text


@pytest.mark.anyio
async def test_no_key_lists_tools_and_calls_say_which_variable(client, serve, fake):
    serve(RUNWAYML_API_SECRET="")
    assert EXPECTED_TOOLS <= {t.name for t in (await client.list_tools()).tools}
    result, _ = await call(client, "generate_image", {"prompt": "x"})
    assert result.is_error and "RUNWAYML_API_SECRET" in result.content[0].text
    assert fake.requests == []


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_hundred_waits_run_together(client, serve, fake):
    """The SDK's default 40 worker threads would leave 60 of these queued; all must poll at once."""
    serve(RUNWAY_MCP_POLL_INTERVAL="0.2")        # 500 polls a second in all: enough to show, light on 2 cores
    for _ in range(100):
        fake.plan(polls=10**6, mime="video/mp4")
    results = []

    async def generate(n):
        results.append(await client.call_tool("generate_video", {"prompt": f"take {n}", "max_wait_s": 30}))
    async with anyio.create_task_group() as group:
        for n in range(100):
            group.start_soon(generate, n)
        with anyio.fail_after(20):
            while len({r["path"] for r in fake.seen("GET", "/v1/tasks/")}) < 100:
                await anyio.sleep(0.05)
            started = time.monotonic()
            await client.list_tools()
            assert time.monotonic() - started < 1
        for task_id in list(fake.tasks):
            fake.finish(task_id)
    assert len(results) == 100 and not any(r.is_error for r in results)


##############################################################################
# End to end: spending (the budget, the duplicate guard, confirmation, batches)
##############################################################################

def ledger_line(out_dir, hours_ago, credits, **fields):
    """A task in the ledger as another process (or an earlier run) wrote it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    at = datetime.fromtimestamp(time.time() - hours_ago * 3600, UTC).isoformat(timespec="seconds")
    record = {"task_id": str(uuid.uuid4()), "created_at": at, "status": "SUCCEEDED", "model": "gen4.5",
              "endpoint": "text_to_video", "estimated_credits": credits, **fields}
    with open(out_dir / "tasks.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


@pytest.mark.anyio
async def test_the_budget_refuses_the_task_that_would_pass_it_and_sends_nothing(client, serve, fake):
    serve(RUNWAY_MCP_BUDGET_CREDITS="100")
    result, first = await call(client, "generate_video", {"prompt": "one", "wait": False})      # 60 credits
    assert not result.is_error
    result, _ = await call(client, "generate_video", {"prompt": "two", "wait": False})
    text = result.content[0].text
    assert result.is_error and "RUNWAY_MCP_BUDGET_CREDITS=100" in text and "60 committed" in text
    assert "about 60" in text and "enough frees up at" in text and "(in 24.0 h)" in text
    assert len(fake.seen("POST")) == 1
    _, account = await call(client, "get_account")
    assert account["budget"] == {"limit": 100, "committed": 60, "remaining": 40, "window_hours": 24}
    result, _ = await call(client, "generate_image", {"prompt": "cheap", "wait": False})     # 8 credits: fits
    assert not result.is_error and len(fake.seen("POST")) == 2


@pytest.mark.anyio
async def test_the_budget_counts_the_final_cost_and_frees_as_tasks_age_out(client, serve, fake, out_dir):
    ledger_line(out_dir, hours_ago=25, credits=90)                  # outside the window
    ledger_line(out_dir, hours_ago=23, credits=90, cost_credits=30)  # its final cost counts, not its estimate
    serve(RUNWAY_MCP_BUDGET_CREDITS="80")
    result, _ = await call(client, "generate_video", {"prompt": "x", "wait": False})
    assert result.is_error and "30 committed" in result.content[0].text and "(in 1.0 h)" in result.content[0].text
    result, _ = await call(client, "generate_video", {"prompt": "x", "duration": 2, "wait": False})   # 24 credits
    assert not result.is_error and len(fake.seen("POST")) == 1


@pytest.mark.anyio
async def test_a_price_unknown_here_is_refused_under_a_budget_until_runway_has_estimated_that_model(client, serve,
                                                                                                   fake):
    serve(RUNWAY_MCP_BUDGET_CREDITS="1000")
    request = {"prompt": "x", "model": "kling_4", "duration": 5, "wait": False}
    result, _ = await call(client, "generate_video", request)
    assert result.is_error and "cannot be priced here" in result.content[0].text and fake.requests == []
    serve()                                                     # no budget: one task, Runway estimates it (60 for 5 s)
    await call(client, "generate_video", {**request, "prompt": "first"})
    serve(RUNWAY_MCP_BUDGET_CREDITS="1000")
    result, dry = await call(client, "generate_video", {**request, "duration": 10, "dry_run": True})
    assert dry["estimated_credits"] == 120 and "learned from Runway's figures for 1 earlier kling_4 task, per second" \
        in " ".join(dry["notes"])
    result, _ = await call(client, "generate_video", request)
    assert not result.is_error and len(fake.seen("POST")) == 2


@pytest.mark.anyio
async def test_a_repeated_request_returns_the_first_task_instead_of_paying_twice(client, fake):
    result, first = await call(client, "generate_image", {"prompt": "a red kite"})
    result, again = await call(client, "generate_image", {"prompt": "a red kite"})
    assert not result.is_error and again["task_id"] == first["task_id"] and len(fake.seen("POST")) == 1
    assert "identical to task" in again["notes"][0] and "new=true" in again["notes"][0]
    assert again["outputs"][0]["path"] == first["outputs"][0]["path"]           # its saved output, not a new file
    result, second = await call(client, "generate_image", {"prompt": "a red kite", "new": True})
    assert second["task_id"] != first["task_id"] and len(fake.seen("POST")) == 2
    result, other = await call(client, "generate_image", {"prompt": "a red kite", "seed": 1})   # not identical
    assert other["task_id"] not in (first["task_id"], second["task_id"])


@pytest.mark.anyio
async def test_a_failed_or_cancelled_task_never_blocks_a_new_one(client, fake):
    fake.plan(polls=2, outcome="FAILED")
    _, failed = await call(client, "generate_image", {"prompt": "x"})
    assert failed["status"] == "FAILED"
    result, retried = await call(client, "generate_image", {"prompt": "x"})
    assert retried["task_id"] != failed["task_id"] and retried["status"] == "SUCCEEDED"
    _, running = await call(client, "generate_video", {"prompt": "y", "wait": False})
    fake.tasks[running["task_id"]]["deleted"] = True              # cancelled on Runway's side; the ledger says PENDING
    result, new = await call(client, "generate_video", {"prompt": "y", "wait": False})
    assert new["task_id"] != running["task_id"] and len(fake.seen("POST")) == 4


@pytest.mark.anyio
async def test_a_repeat_of_a_running_task_waits_on_it(client, serve, fake):
    fake.plan(seconds=0.5, mime="video/mp4")
    _, first = await call(client, "generate_video", {"prompt": "slow", "wait": False})
    result, again = await call(client, "generate_video", {"prompt": "slow"})
    assert again["task_id"] == first["task_id"] and again["status"] == "SUCCEEDED" and len(fake.seen("POST")) == 1


@pytest.mark.anyio
async def test_identical_requests_at_once_create_one_task(client, fake):
    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(call, client, "generate_image", {"prompt": "together", "wait": False})
    assert len(fake.seen("POST")) == 1


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_budget_and_the_duplicate_guard_hold_across_a_restart(client, serve, fake, out_dir):
    """A host restarts the server mid-wait: a new process reads what the old one created from the ledger."""
    serve(RUNWAY_MCP_BUDGET_CREDITS="100")
    fake.plan(polls=10**6, mime="video/mp4")
    _, first = await call(client, "generate_video", {"prompt": "one", "wait": False})        # this process
    calls = [("generate_video", {"prompt": "one", "wait": False}), ("generate_video", {"prompt": "two"})]
    messages, _, _ = raw_session(server_env(fake, out_dir, RUNWAY_MCP_BUDGET_CREDITS="100"), calls,
                                 close_when=lambda answers: {1, 2} <= answers.keys())       # the next one
    answers = {m["id"]: m["result"] for m in messages if m.get("id") in (1, 2)}
    assert answers[1]["structuredContent"]["task_id"] == first["task_id"]       # not paid for twice
    assert answers[2]["isError"] and "60 committed" in answers[2]["content"][0]["text"]
    assert len(fake.seen("POST")) == 1


def confirming(serve, answer, mode="legacy"):
    """An in-process client whose person answers every confirmation with `answer`; it records the questions."""
    asked = []

    async def elicit(context, params):
        asked.append(params.message)
        return ElicitResult(action=answer, content={} if answer == "accept" else None)

    @contextlib.asynccontextmanager
    async def connected():
        async with connected_to(serve, elicitation_callback=elicit) as client:
            client.options["mode"] = mode
            client.asked = asked
            yield client
    return connected()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
@pytest.mark.parametrize("answer, posts", [("accept", 1), ("decline", 0), ("cancel", 0)])
async def test_a_spend_above_the_threshold_waits_for_the_persons_word(serve, fake, mode, answer, posts):
    serve(RUNWAY_MCP_CONFIRM_ABOVE="50")
    async with confirming(serve, answer, mode) as client:
        result, data = await call(client, "generate_video", {"prompt": "a storm", "duration": 10, "wait": False})
        assert client.asked == ["Generate 10 s of gen4.5 video for about 120 credits?"]
        assert len(fake.seen("POST")) == posts
        if posts:
            assert not result.is_error and data["status"] == "PENDING"
        else:
            assert result.is_error and data["status"] == "DECLINED" and "Do not try again" in data["next"]
        await call(client, "generate_image", {"prompt": "small", "wait": False})      # 8 credits: not asked
        assert len(client.asked) == 1 and len(fake.seen("POST")) == posts + 1


@pytest.mark.anyio
async def test_a_client_that_cannot_confirm_is_refused_with_the_threshold_named(client, serve, fake):
    serve(RUNWAY_MCP_CONFIRM_ABOVE="50")
    result, _ = await call(client, "generate_video", {"prompt": "a storm", "duration": 10})
    text = result.content[0].text
    assert result.is_error and "RUNWAY_MCP_CONFIRM_ABOVE=50" in text and "cannot ask" in text and "unset" in text
    assert fake.requests == []
    result, _ = await call(client, "generate_video", {"prompt": "a storm", "duration": 10, "dry_run": True})
    assert not result.is_error                                             # a dry run spends nothing: never asked


@pytest.mark.anyio
@pytest.mark.parametrize("answer, posts", [("accept", 1), ("decline", 0), ("cancel", 0)])
async def test_a_voice_has_no_stated_price_so_it_is_confirmed_first(serve, fake, answer, posts):
    serve(RUNWAY_MCP_CONFIRM_ABOVE="50")
    narrator = {"name": "Narrator", "prompt": "A warm, calm narrator with a low voice"}
    async with confirming(serve, answer) as client:
        result, _ = await call(client, "create_voice", narrator)
        assert client.asked == ["Create the voice 'Narrator', at a cost Runway does not state?"]
        assert len(fake.bodies("voices")) == posts and result.is_error == (posts == 0)
        if not posts:
            assert "declined" in result.content[0].text and "Do not try again" in result.content[0].text
            return
        _, again = await call(client, "create_voice", narrator)          # the same voice comes back: not asked
        assert again["notes"] and len(client.asked) == 1 and len(fake.bodies("voices")) == 1
        result, _ = await call(client, "create_voice", {"name": "Other"})  # refused anyway: not asked
        assert result.is_error and "pass prompt" in result.content[0].text and len(client.asked) == 1


@pytest.mark.anyio
async def test_a_spend_of_unknown_cost_is_asked_about_whatever_the_threshold(serve, fake):
    serve(RUNWAY_MCP_CONFIRM_ABOVE="1000")
    async with confirming(serve, "decline") as client:                 # a recipe never run here: no estimate yet
        result, data = await call(client, "run_recipe", {"recipe": "marketing_stock_image",
                                                         "inputs": {"prompt": "a sunlit kitchen, a coffee mug"}})
        assert client.asked == ["Generate 1 marketing_stock_image image for a cost Runway sets at creation?"]
        assert result.is_error and data["status"] == "DECLINED" and fake.requests == []


@pytest.mark.anyio
async def test_a_client_that_cannot_confirm_an_unpriced_spend_is_told_to_unset_the_threshold(client, serve, fake):
    serve(RUNWAY_MCP_CONFIRM_ABOVE="50")
    result, _ = await call(client, "create_voice", {"name": "Narrator", "prompt": "A warm, calm narrator voice"})
    text = result.content[0].text
    assert result.is_error and "a cost not known here, which is always asked about" in text
    assert "nothing was sent: unset RUNWAY_MCP_CONFIRM_ABOVE" in text and fake.bodies("voices") == []


BATCH = [{"tool": "generate_image", "arguments": {"prompt": "a fox"}},
         {"tool": "generate_video", "arguments": {"prompt": "a fox runs", "duration": 4}},
         {"tool": "generate_speech", "arguments": {"text": "hello there"}}]


@pytest.mark.anyio
@pytest.mark.parametrize("item, expected", [
    ({"tool": "generate_video", "arguments": {"prompt": "x", "duration": 99}}, "requests[3] (generate_video): duration=99"),
    ({"tool": "generate_image", "arguments": {}}, "requests[3].arguments.prompt is required"),
    ({"tool": "get_task", "arguments": {"task_id": "x"}}, "requests[3].tool='get_task' is not a generation tool"),
    ({"tool": "generate_image", "arguments": {"prompt": "x", "wait": False}}, "requests[3].arguments.wait: set it "
                                                                               "on the batch"),
    ({"tool": "generate_video", "arguments": {"prompt": "x", "image": "http://no"}}, "requests[3] (generate_video): image"),
])
async def test_one_bad_item_refuses_the_whole_batch_and_sends_nothing(client, fake, item, expected):
    await refused(client, fake, "generate_batch", {"requests": [*BATCH, item]}, expected)


@pytest.mark.anyio
async def test_a_batch_creates_each_task_once_and_returns_every_result(client, serve, fake):
    fake.plan(mime="image/png")
    fake.plan(mime="video/mp4")
    fake.plan(mime="audio/mpeg")
    seen = []

    async def progress(value, total, message):
        seen.append((value, total))
    result, data = await call(client, "generate_batch", {"requests": BATCH}, progress=progress)
    await anyio.sleep(0.05)
    assert not result.is_error and [item["status"] for item in data["items"]] == ["SUCCEEDED"] * 3
    assert [r["path"] for r in fake.seen("POST")] == ["/v1/text_to_image", "/v1/text_to_video", "/v1/text_to_speech"]
    assert data["estimated_credits"] == 8 + 48 + 1                 # gen4_image 1080p, gen4.5 4 s, 11 characters
    assert [Path(item["outputs"][0]["path"]).suffix for item in data["items"]] == [".png", ".mp4", ".mp3"]
    assert seen[-1] == (3, 3) and all(total == 3 for _, total in seen)
    assert result.content[0].text.startswith("[0] SUCCEEDED") and len(rm.ledger(serve.account).tasks()) == 3
    result, again = await call(client, "generate_batch", {"requests": BATCH, "wait": False})
    assert [i["task_id"] for i in again["items"]] == [i["task_id"] for i in data["items"]]     # all reused
    assert len(fake.seen("POST")) == 3


@pytest.mark.anyio
async def test_a_batch_is_estimated_budgeted_and_confirmed_as_one(serve, fake):
    serve(RUNWAY_MCP_BUDGET_CREDITS="50")
    async with confirming(serve, "accept") as client:
        result, dry = await call(client, "generate_batch", {"requests": BATCH, "dry_run": True})
        assert not result.is_error and dry["estimated_credits"] == 57 and fake.requests == []
        assert [item["status"] for item in dry["items"]] == ["DRY_RUN"] * 3
        result, _ = await call(client, "generate_batch", {"requests": BATCH})
        assert result.is_error and "these 3 tasks about 57" in result.content[0].text and fake.requests == []
        serve(RUNWAY_MCP_CONFIRM_ABOVE="20")
        result, data = await call(client, "generate_batch", {"requests": BATCH, "wait": False})
        assert client.asked == ["Create 3 tasks (1 gen4_image image, 4 s of gen4.5 video, 1 eleven_multilingual_v2 "
                                "audio) for about 57 credits?"]
        assert not result.is_error and len(fake.seen("POST")) == 3


# Spending controls fail closed: an adversarial review saw each of these let credits through ----------------

@pytest.mark.anyio
async def test_a_budget_refuses_every_spend_while_the_ledger_cannot_be_read(client, serve, fake, out_dir):
    serve(RUNWAY_MCP_BUDGET_CREDITS="20")
    (out_dir / "tasks.jsonl").mkdir(parents=True)                   # a directory: unreadable and unwritable
    for n in range(3):
        result, _ = await call(client, "generate_image", {"prompt": f"take {n}", "wait": False})
        text = result.content[0].text
        assert result.is_error and "cannot be read or written" in text and "nothing was sent" in text, text
    assert fake.seen("POST") == []
    _, account = await call(client, "get_account")
    assert account["budget"]["committed"] is None and account["budget"]["remaining"] == 0
    result, _ = await call(client, "list_tasks")
    assert result.is_error and "tasks.jsonl" in result.content[0].text


@pytest.mark.anyio
async def test_a_budget_refuses_when_the_reservation_cannot_be_written(client, serve, fake, monkeypatch):
    serve(RUNWAY_MCP_BUDGET_CREDITS="100")

    def full(self, record):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(rm.Ledger, "append", full)
    result, _ = await call(client, "generate_image", {"prompt": "x", "wait": False})
    assert result.is_error and "No space left on device" in result.content[0].text and fake.seen("POST") == []


@pytest.mark.anyio
async def test_a_create_whose_record_is_lost_still_counts_against_the_budget(client, serve, fake, monkeypatch):
    """The credits are reserved in the ledger before the create is sent: a crash or a failed write after it
    cannot make the spend disappear from the window."""
    serve(RUNWAY_MCP_BUDGET_CREDITS="100")
    append = rm.Ledger.append

    def task_lines_lost(self, record):
        if "task_id" in record:
            raise OSError(5, "Input/output error")
        append(self, record)
    monkeypatch.setattr(rm.Ledger, "append", task_lines_lost)
    result, first = await call(client, "generate_video", {"prompt": "one", "wait": False})          # 60 credits
    assert not result.is_error and "could not record the task" in " ".join(first["notes"])
    result, _ = await call(client, "generate_video", {"prompt": "two", "wait": False})
    assert result.is_error and "60 committed" in result.content[0].text and len(fake.seen("POST")) == 1
    _, account = await call(client, "get_account")
    assert account["budget"]["committed"] == 60


@pytest.mark.anyio
async def test_a_create_runway_refused_gives_its_reservation_back(client, serve, fake):
    serve(RUNWAY_MCP_BUDGET_CREDITS="100")
    fake.fail("POST", "/v1/text_to_video", 400, body={"error": "Invalid prompt"})
    result, _ = await call(client, "generate_video", {"prompt": "one", "wait": False})
    assert result.is_error and "Invalid prompt" in result.content[0].text
    _, account = await call(client, "get_account")
    assert account["budget"]["committed"] == 0                      # certainly not made: nothing counts
    fake.fail("POST", "/v1/text_to_video", 500)
    result, _ = await call(client, "generate_video", {"prompt": "two", "wait": False})
    assert result.is_error and "may have been created" in result.content[0].text
    _, account = await call(client, "get_account")
    assert account["budget"]["committed"] == 60                     # perhaps made: it counts


@pytest.mark.anyio
@pytest.mark.parametrize("tool, arguments", [
    ("generate_video", {"prompt": "a storm", "duration": 10, "wait": False}),
    ("generate_batch", {"requests": [{"tool": "generate_video", "arguments": {"prompt": "a storm", "duration": 10}}],
                        "wait": False})])
async def test_a_retry_after_the_earlier_task_failed_asks_the_person_again(serve, fake, tool, arguments):
    """The ledger still says PENDING when the agent retries; Runway says FAILED. Skipping the question because an
    identical task existed would create a second task nobody confirmed."""
    serve(RUNWAY_MCP_CONFIRM_ABOVE="5")
    fake.plan(polls=1, outcome="FAILED", mime="video/mp4")
    async with confirming(serve, "accept") as client:
        await call(client, tool, arguments)
        assert len(client.asked) == 1 and len(fake.seen("POST")) == 1
        result, _ = await call(client, tool, arguments)
        assert not result.is_error, result.content[0].text
        assert len(client.asked) == 2 and len(fake.seen("POST")) == 2


def test_a_spend_that_needs_a_yes_is_refused_when_the_reason_for_not_asking_no_longer_holds():
    config = rm.Config(confirm_above=5)
    unasked = rm.consent_of(rm.AcceptedElicitation[rm.Any].model_construct(data=rm.Unasked(rm.REUSED)))
    with pytest.raises(rm.RunwayError, match="they were not asked: when the call began, an identical recent task "
                                             "was to be reused, and that no longer holds; nothing was sent"):
        rm.authorised(config, unasked, rm.Estimate(60, "the catalog's price hint"))
    assert rm.authorised(config, unasked, rm.Estimate(4, "the catalog's price hint"))          # below: fine
    said_yes = rm.consent_of(rm.AcceptedElicitation(data=rm.Confirm()))
    assert rm.authorised(config, said_yes, rm.Estimate(None, "no price"))
    assert not rm.authorised(config, rm.consent_of(DeclinedElicitation()), rm.Estimate(60, "hint"))


@pytest.mark.anyio
async def test_identical_batches_at_once_create_each_task_once(client, fake):
    items = {"requests": [{"tool": "generate_image", "arguments": {"prompt": f"frame {n}"}} for n in range(3)],
             "wait": False}
    results = []

    async def run():
        results.append(await call(client, "generate_batch", items))
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(run)
    assert len(fake.seen("POST")) == 3
    ids = [[item["task_id"] for item in data["items"]] for _, data in results]
    assert ids[0] == ids[1] == ids[2]


@pytest.mark.anyio
async def test_batches_at_once_under_a_budget_are_each_all_or_nothing(client, serve, fake):
    serve(RUNWAY_MCP_BUDGET_CREDITS="150")
    results = []

    async def run(n):
        batch = [{"tool": "generate_video", "arguments": {"prompt": f"shot {n}.{i}"}} for i in range(2)]   # 120
        results.append(await call(client, "generate_batch", {"requests": batch, "wait": False}))
    async with anyio.create_task_group() as group:
        for n in range(2):
            group.start_soon(run, n)
    assert len(fake.seen("POST")) == 2
    [(refused_batch, _)] = [(r, d) for r, d in results if r.is_error]
    assert "over budget" in refused_batch.content[0].text and "nothing was sent" in refused_batch.content[0].text


@pytest.mark.anyio
async def test_a_batch_that_fails_part_way_returns_the_tasks_it_created(client, fake):
    fake.fail("POST", "/v1/text_to_speech", 400, body={"error": "Voice unavailable"})
    batch = [*BATCH, {"tool": "generate_image", "arguments": {"prompt": "after"}}]
    result, data = await call(client, "generate_batch", {"requests": batch, "wait": False})
    text = result.content[0].text
    assert result.is_error and [item["status"] for item in data["items"]] == ["PENDING", "PENDING"]
    assert "requests[2] (generate_speech) failed, and the batch stopped there" in text and "Voice unavailable" in text
    assert "the 2 before it were created" in text and "the 1 after it were not sent" in text
    assert all(item["task_id"] in text for item in data["items"])
    assert [r["path"] for r in fake.seen("POST")] == ["/v1/text_to_image", "/v1/text_to_video", "/v1/text_to_speech"]


# A second adversarial review, of the fixes above ----------------------------------------------------------

def test_an_estimate_is_a_finite_number_of_zero_or_more_or_none():
    for bad in (-8000.0, float("nan"), float("inf")):
        assert rm.priced(bad, "x").credits is None
    assert rm.priced(0, "x").credits == 0 and rm.priced(12.5, "x").credits == 12.5
    seen = [{"endpoint": "generate/video", "status": "SUCCEEDED", "estimated_credits": 40,
             "arguments": {"configId": "c", "input": {"duration": 5}}}]
    assert rm.estimate("generate/video", {"configId": "c", "input": {"duration": 10}}, seen).credits == 80
    for duration in (-1000, 0, float("nan")):                    # a count that cannot be priced is not priced
        assert rm.estimate("generate/video", {"configId": "c", "input": {"duration": duration}}, seen).credits is None


def test_a_failed_or_cancelled_task_teaches_no_price():
    failed = [{"endpoint": "avatar_videos", "status": status, "cost_credits": 0, "arguments": {"model": "x"}}
              for status in ("FAILED", "CANCELLED")]
    assert rm.estimate("avatar_videos", {"model": "gwm1_avatars"}, failed).credits is None
    guessed = [{"endpoint": "avatar_videos", "status": "PENDING", "estimated_credits": 3, "estimate_from": "here",
                "arguments": {}}]
    assert rm.estimate("avatar_videos", {}, guessed).credits is None           # its own guess, not Runway's
    paid = [{"endpoint": "avatar_videos", "status": "SUCCEEDED", "cost_credits": 30, "arguments": {}}]
    assert rm.estimate("avatar_videos", {}, paid).credits == 30


@pytest.mark.anyio
async def test_a_batch_with_an_item_that_cannot_be_priced_is_refused_whole_under_a_budget(client, serve, fake):
    await call(client, "generate_with_router", {"config_id": "c", "kind": "video", "input": {"duration": 5},
                                                "wait": False})                          # Runway estimates 40
    serve(RUNWAY_MCP_BUDGET_CREDITS="100")
    fake.reset()
    batch = [*[{"tool": "generate_video", "arguments": {"prompt": f"take {n}", "duration": 10}} for n in range(5)],
             {"tool": "generate_with_router", "arguments": {"config_id": "c", "kind": "video",
                                                            "input": {"duration": -1000}}}]
    result, _ = await call(client, "generate_batch", {"requests": batch, "wait": False})
    assert result.is_error and "cannot be priced" in result.content[0].text and fake.seen("POST") == []


@pytest.mark.anyio
async def test_after_a_failed_avatar_video_the_next_is_asked_about_again(serve, fake):
    serve(RUNWAY_MCP_CONFIRM_ABOVE="5")
    fake.plan(polls=1, outcome="FAILED", mime="video/mp4")
    async with confirming(serve, "accept") as client:
        await call(client, "generate_avatar_video", {"avatar": "influencer", "text": "one"})
        await call(client, "generate_avatar_video", {"avatar": "influencer", "text": "two", "wait": False})
        assert len(client.asked) == 2 and len(fake.seen("POST")) == 2


@pytest.mark.anyio
async def test_a_create_answered_without_json_keeps_its_reservation_and_says_a_task_may_exist(client, serve, fake):
    serve(RUNWAY_MCP_BUDGET_CREDITS="100")
    fake.fail("POST", "/v1/text_to_video", action="garbage")           # 200, and a body that is not JSON
    result, _ = await call(client, "generate_video", {"prompt": "x", "wait": False})
    assert result.is_error and "may have been created" in result.content[0].text
    _, account = await call(client, "get_account")
    assert account["budget"]["committed"] == 60


@pytest.mark.anyio
async def test_a_cancelled_batch_gives_back_the_credits_it_reserved(client, serve, fake):
    serve(RUNWAY_MCP_BUDGET_CREDITS="1000")
    fake.fail("POST", "/v1/text_to_video", 429, headers={"Retry-After": "3"})   # the first create waits 3 s
    batch = [{"tool": "generate_video", "arguments": {"prompt": f"shot {n}", "duration": 10}} for n in range(4)]
    with anyio.move_on_after(0.5):
        await client.call_tool("generate_batch", {"requests": batch, "wait": False})
    with anyio.fail_after(5):
        while True:                                             # the cancelled call's thread stops at its pause
            _, account = await call(client, "get_account")
            if account["budget"]["committed"] == 0:
                break
            await anyio.sleep(0.05)
    assert fake.seen("POST", "/v1/text_to_video") and not fake.tasks


@pytest.mark.anyio
async def test_a_batch_asks_about_an_item_whose_running_twin_may_fail_before_it_runs(serve, fake):
    serve(RUNWAY_MCP_CONFIRM_ABOVE="50")
    fake.plan(polls=2, outcome="FAILED", mime="video/mp4")    # RUNNING to the question, FAILED to the create
    storm = {"tool": "generate_video", "arguments": {"prompt": "a storm", "duration": 10}}
    calm = {"tool": "generate_video", "arguments": {"prompt": "a calm sea", "duration": 10}}
    async with confirming(serve, "accept") as client:
        await call(client, "generate_batch", {"requests": [storm], "wait": False})
        result, data = await call(client, "generate_batch", {"requests": [storm, calm], "wait": False})
        assert client.asked[-1].startswith("Create 2 tasks") and "about 240 credits" in client.asked[-1]
        assert len(fake.seen("POST")) == 3 and not result.is_error


@pytest.mark.anyio
async def test_text_that_is_not_valid_unicode_is_refused_before_anything_is_sent(client, fake, serve):
    result, _ = await call(client, "generate_with_router", {"config_id": "c", "kind": "image",
                                                            "input": {"promptText": "a fox \ud800"}})
    assert result.is_error and "lone UTF-16 surrogate" in result.content[0].text and fake.requests == []
    rm.ledger(serve.account).append({"task_id": "t", "created_at": rm._now(), "prompt": "odd \ud800"})
    assert rm.ledger(serve.account).find("t")["prompt"].startswith("odd")          # the line was written


##############################################################################
# End to end: recipes, avatar videos, the model router, published workflows, voices
##############################################################################
# The fake checks every body against runwayml's own type for its endpoint (SDK_BODIES), so a request it accepts
# is one Runway's SDK would have sent.

PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.fixture
def media_files(tmp_path):
    """A local PNG, MP4 and MP3, as a person would pass them."""
    files = {"png": tmp_path / "product.png", "mp4": tmp_path / "clip.mp4", "mp3": tmp_path / "line.mp3"}
    files["png"].write_bytes(PNG)
    files["mp4"].write_bytes(MP4)
    files["mp3"].write_bytes(PLAYABLE_MP3)
    return {kind: str(path) for kind, path in files.items()}


def recipe_example(name, files):
    """A valid run of each recipe, with every media form: a local file, a URL, a bare URI for an {uri} object."""
    return {
        "ad_localization": {"referenceImage": {"uri": files["png"]}, "targetLanguage": "ja"},
        "marketing_stock_image": {"prompt": "sunlit kitchen, oat milk carton", "outputCount": 2, "quality": "low",
                                  "referenceImage": IMAGE},
        "multi_shot_video": {"mode": "custom", "duration": 10, "ratio": "720:1280", "firstFrame": files["png"],
                             "shots": [{"duration": 3, "prompt": "wide"}, {"duration": 3, "prompt": "close"},
                                       {"duration": 4, "prompt": "logo"}]},
        "product_ad": {"productImages": [files["png"], {"uri": IMAGE}], "styleImages": [IMAGE], "duration": 8,
                       "audio": False, "userConcept": "calm morning"},
        "product_campaign_image": {"image": files["png"], "prompt": "high-key fashion editorial"},
        "product_swap": {"newProductImages": [{"uri": files["png"], "view": "front"}], "originalProductImage": IMAGE,
                         "referenceVideo": files["mp4"], "resolution": "1080p"},
        "product_ugc": {"characterImage": IMAGE, "productImage": files["png"], "ratio": "1080:1920",
                        "productInfo": "a reusable bottle"},
    }[name]


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(rm.RECIPES))
async def test_each_recipe_sends_a_body_runways_sdk_accepts_and_saves_what_it_makes(client, serve, fake, media_files,
                                                                                name):
    fake.plan(mime="video/mp4" if rm.RECIPES[name].kind == "video" else "image/png", outputs=2)
    result, data = await call(client, "run_recipe", {"recipe": name, "inputs": recipe_example(name, media_files)})
    assert not result.is_error and data["status"] == "SUCCEEDED", result.content[0].text
    [body] = fake.bodies(f"recipes/{name}")
    assert body["version"] == rm.RECIPES[name].versions[-1]               # the newest dated version, never latest
    sent, given = json.dumps(body), json.dumps(recipe_example(name, media_files))
    assert media_files["png"] not in sent and ("data:image/png;base64," in sent) == (media_files["png"] in given)
    assert [Path(o["path"]).suffix for o in data["outputs"]] == [".mp4" if "video" in rm.RECIPES[name].kind
                                                                  else ".png"] * 2
    [task] = rm.ledger(serve.account).tasks()
    assert (task["tool"], task["model"], task["endpoint"]) == ("run_recipe", name, f"recipes/{name}")
    assert json.loads(Path(data["outputs"][0]["path"] + ".json").read_text())["tool"] == "run_recipe"


@pytest.mark.anyio
@pytest.mark.parametrize("recipe, inputs, version, expected", [
    ("product_ad", {"productImages": []}, None, "inputs.productImages has 0 items; it takes 1-10"),
    ("product_ad", {"productImages": [IMAGE] * 11}, None, "inputs.productImages has 11 items; it takes 1-10"),
    ("product_ad", {"productImages": [IMAGE], "styleImages": [IMAGE] * 5}, None, "inputs.styleImages has 5 items"),
    ("product_ad", {"productImages": [IMAGE], "duration": 16}, None, "inputs.duration=16 does not fit: it takes one "
                                                                     "of: 4-15"),
    ("product_ad", {"productImages": [IMAGE], "duration": 8.5}, None, "inputs.duration=8.5"),
    ("product_ad", {"productImages": [IMAGE], "audio": "yes"}, None, "inputs.audio='yes' does not fit: it takes "
                                                                     "true or false"),
    ("product_ad", {"productImages": [IMAGE], "ratio": "16:9"}, None, "inputs.ratio='16:9' does not fit"),
    ("product_ad", {"productImages": [IMAGE], "colour": "red"}, None, "inputs.colour is not a field here; it takes "
                                                                      "productImages: list of 1-10 image"),
    ("product_ad", {"productImages": [IMAGE]}, "2025-01", "version='2025-01' is not a version of product_ad; "
                                                          "versions: 2026-06, 2026-07, or unsafe-latest"),
    ("product_ad", {"productImages": [IMAGE], "version": "2026-06"}, None, "inputs.version: pass it as the version"),
    ("product_ad", {"productImages": ["http://insecure.example/a.png"]}, None, "inputs.productImages[0].uri"),
    ("product_ad", {"productImages": [{"url": IMAGE}]}, None, "inputs.productImages[0].uri is required"),
    ("product_swap", {"newProductImages": [{"uri": IMAGE, "view": "top"}], "originalProductImage": IMAGE,
                      "referenceVideo": VIDEO}, None, "inputs.newProductImages[0].view='top' does not fit"),
    ("product_swap", {"newProductImages": [IMAGE], "originalProductImage": IMAGE, "referenceVideo": PNG_URI},
     None, "inputs.referenceVideo.uri takes video; this data: URI holds image/png"),
    ("ad_localization", {"referenceImage": IMAGE}, None, "inputs.targetLanguage is required"),
    ("ad_localization", {"referenceImage": IMAGE, "targetLanguage": "klingon"}, None, "inputs.targetLanguage="),
    ("marketing_stock_image", {"prompt": "x" * 3501}, None, "inputs.prompt has 3501 characters; it takes at most 3500"),
    ("marketing_stock_image", {"prompt": "x", "outputCount": 5}, None, "inputs.outputCount=5"),
    ("multi_shot_video", {"prompt": "a story"}, None, "inputs.mode=None is not one of: auto, custom"),
    ("multi_shot_video", {"mode": "custom", "shots": [{"duration": 5, "prompt": "a"}] * 2}, None,
     "inputs.shots has 2 items; it takes 3-5"),
    ("multi_shot_video", {"mode": "custom", "shots": [{"duration": 3, "prompt": "a"}] * 3}, None,
     "inputs.shots: the shots' durations add up to 9 s, and must add up to inputs.duration (10 s)"),
    ("multi_shot_video", {"mode": "auto", "prompt": "a", "shots": []}, None, "inputs.shots is not a field here"),
    ("product_ugc", "a bottle", None, "inputs: Input should be a valid dictionary"),
])
async def test_recipe_inputs_that_do_not_fit_are_refused_by_name_and_send_nothing(client, fake, recipe, inputs,
                                                                                  version, expected):
    text = await refused(client, fake, "run_recipe", {"recipe": recipe, "inputs": inputs, "version": version}, expected)
    assert "\n" not in text


@pytest.mark.anyio
async def test_a_recipe_dry_run_then_the_real_one_then_its_twin(client, serve, fake):
    inputs = {"image": IMAGE, "prompt": "gorpcore editorial"}
    result, dry = await call(client, "run_recipe", {"recipe": "product_campaign_image", "inputs": inputs,
                                                    "version": "unsafe-latest", "dry_run": True})
    assert dry["status"] == "DRY_RUN" and dry["request"]["body"] == {
        "image": {"uri": IMAGE}, "prompt": "gorpcore editorial", "version": "unsafe-latest"}
    assert dry["estimated_credits"] is None and "no price hint for product_campaign_image" in " ".join(dry["notes"])
    assert fake.requests == []
    _, first = await call(client, "run_recipe", {"recipe": "product_campaign_image", "inputs": inputs})
    _, again = await call(client, "run_recipe", {"recipe": "product_campaign_image", "inputs": inputs})
    assert again["task_id"] == first["task_id"] and len(fake.seen("POST")) == 1          # not paid for twice
    _, learned = await call(client, "run_recipe", {"recipe": "product_campaign_image", "dry_run": True,
                                                   "inputs": {**inputs, "prompt": "another"}})
    assert learned["estimated_credits"] == 60                     # Runway's estimate for the first, learned
    serve(RUNWAY_MCP_BUDGET_CREDITS="100")
    result, _ = await call(client, "run_recipe", {"recipe": "product_ad", "inputs": {"productImages": [IMAGE]}})
    assert result.is_error and "cannot be priced here" in result.content[0].text and len(fake.seen("POST")) == 1


@pytest.mark.anyio
async def test_prices_runway_does_not_publish_are_learned_from_earlier_runs(client, fake):
    """Recipes and the router: from Runway's estimate at creation; avatar videos: from what the last one cost."""
    avatar = {"avatar": "influencer", "text": "Hello!"}
    _, unknown = await call(client, "generate_avatar_video", {**avatar, "dry_run": True})
    assert unknown["estimated_credits"] is None
    await call(client, "generate_avatar_video", avatar)                            # costs 50, estimated nothing
    _, learned = await call(client, "generate_avatar_video", {**avatar, "text": "Bye!", "dry_run": True})
    assert learned["estimated_credits"] == 50 and "learned from Runway's figures for 1 earlier gwm1_avatars" in \
        " ".join(learned["notes"])
    routed = {"config_id": "cheap", "kind": "video", "input": {"promptText": "a boat", "duration": 5}}
    await call(client, "generate_with_router", routed)                            # estimated 40 for 5 s
    _, longer = await call(client, "generate_with_router", {**routed, "dry_run": True,
                                                            "input": {"promptText": "a boat", "duration": 10}})
    assert longer["estimated_credits"] == 80                                     # 8 per second, for 10 s


@pytest.mark.anyio
async def test_a_batch_can_hold_a_recipe_and_an_avatar_video(client, fake):
    result, data = await call(client, "generate_batch", {"requests": [
        {"tool": "run_recipe", "arguments": {"recipe": "product_campaign_image",
                                             "inputs": {"image": IMAGE, "prompt": "studio"}}},
        {"tool": "generate_avatar_video", "arguments": {"avatar": "influencer", "text": "Hi!"}}]})
    assert not result.is_error and [i["status"] for i in data["items"]] == ["SUCCEEDED"] * 2
    assert [r["path"] for r in fake.seen("POST")] == ["/v1/recipes/product_campaign_image", "/v1/avatar_videos"]
    result, _ = await call(client, "generate_batch", {"requests": [
        {"tool": "run_recipe", "arguments": {"recipe": "product_ad", "inputs": {"productImages": []}}}]})
    assert result.is_error and "requests[0] (run_recipe): inputs.productImages has 0 items" in result.content[0].text
    result, _ = await call(client, "generate_batch", {"requests": [{"tool": "run_recipe", "arguments": {
        "recipe": "product_ad", "inputs": {"productImages": [IMAGE]}, "options": {"duration": 5}}}]})
    assert result.is_error and "options: run_recipe takes no options" in result.content[0].text
    assert len(fake.seen("POST")) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("arguments, speech", [
    ({"avatar": "Influencer", "text": "Welcome back!", "voice": "Clara"},
     {"type": "text", "text": "Welcome back!", "voice": {"type": "preset", "presetId": "clara"}}),
    ({"avatar": "9b1c7c52-6f0e-4f7e-a1a4-1d2f3c4b5a69", "text": "Hello", "voice": "0f6d3e1a-voice"},
     {"type": "text", "text": "Hello", "voice": {"type": "custom", "id": "0f6d3e1a-voice"}}),
    ({"avatar": "cooking-teacher", "audio": "local mp3"}, {"type": "audio", "audio": "data:audio/mpeg;base64,"}),
])
async def test_an_avatar_speaks_a_script_or_a_recording(client, fake, media_files, arguments, speech):
    arguments = {k: media_files["mp3"] if v == "local mp3" else v for k, v in arguments.items()}
    fake.plan(mime="video/mp4")
    result, data = await call(client, "generate_avatar_video", arguments)
    assert not result.is_error and data["status"] == "SUCCEEDED" and data["outputs"][0]["path"].endswith(".mp4")
    [body] = fake.bodies("avatar_videos")
    assert body["model"] == "gwm1_avatars" and body["speech"]["type"] == speech["type"]
    if speech["type"] == "audio":
        assert body["speech"]["audio"].startswith(speech["audio"])
    else:
        assert body["speech"] == speech
    custom = not arguments["avatar"].lower() in rm.AVATAR_PRESETS
    assert body["avatar"] == ({"type": "custom", "avatarId": arguments["avatar"]} if custom else
                              {"type": "runway-preset", "presetId": arguments["avatar"].lower()})
    assert data["estimated_credits"] is None and data["cost_credits"] == 50          # Runway gives no estimate


@pytest.mark.anyio
@pytest.mark.parametrize("arguments, expected", [
    ({"avatar": "influencer"}, "pass text (a script for the avatar to speak) or audio"),
    ({"avatar": "influencer", "text": "hi", "audio": AUDIO}, "one of them"),
    ({"avatar": "influencer", "audio": AUDIO, "voice": "clara"}, "voice goes with text"),
    ({"avatar": "influencr", "text": "hi"}, "avatar='influencr' is not a preset; did you mean 'influencer'?"),
    ({"avatar": "influencer", "text": "hi", "voice": "clar"}, "voice='clar' is not a preset; did you mean 'clara'?"),
    ({"avatar": "influencer", "audio": PNG_URI}, "audio takes audio; this data: URI holds image/png"),
])
async def test_an_avatar_request_that_cannot_work_is_refused_and_sends_nothing(client, fake, arguments, expected):
    await refused(client, fake, "generate_avatar_video", arguments, expected)


@pytest.mark.anyio
async def test_the_router_routes_and_says_which_model_it_chose(client, serve, fake, media_files):
    fake.plan(mime="video/mp4")
    result, data = await call(client, "generate_with_router", {"config_id": "cheap-video", "kind": "video", "input": {
        "promptText": "a paper boat", "duration": 5, "aspectRatio": "16:9",
        "referenceImages": [{"role": "first", "uri": media_files["png"]}],
        "keyframes": [{"at": 2.5, "uri": IMAGE}], "contentModeration": {"publicFigureThreshold": "low"}}})
    assert not result.is_error and data["status"] == "SUCCEEDED"
    assert "the router chose gen4.5 (runway)" in data["notes"] and data["estimated_credits"] == 40
    [body] = fake.bodies("generate/video")
    assert body["configId"] == "cheap-video" and body["input"]["referenceImages"][0]["uri"].startswith("data:image/")
    [task] = rm.ledger(serve.account).tasks()
    assert (task["model"], task["prompt"]) == ("gen4.5", "a paper boat")
    for kind, value in [("image", {"promptText": "a fox", "outputCount": 3, "resolution": "2k"}),
                        ("audio", {"promptText": "Hello there", "type": "speech",
                                   "voice": {"type": "reference-audio", "audioUri": media_files["mp3"]}})]:
        result, data = await call(client, "generate_with_router", {"config_id": "c", "kind": kind, "input": value})
        assert not result.is_error, result.content[0].text
    assert len(fake.seen("POST")) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("kind, value, expected", [
    ("image", {}, "input.promptText is required"),
    ("image", {"promptText": "x", "aspectRatio": "7:3"}, "input.aspectRatio='7:3' does not fit"),
    ("image", {"promptText": "x", "outputCount": 11}, "input.outputCount=11"),
    ("video", {"referenceImages": [{"role": "first", "uri": IMAGE}, {"role": "first", "uri": IMAGE}]},
     "input.referenceImages: at most one item may have role 'first'"),
    ("video", {"keyframes": [{"uri": IMAGE}]}, "input.keyframes[0] needs one of: seconds and uri or at and uri"),
    ("video", {"promptText": "x", "seed": "42"}, "input.seed='42' does not fit: it takes a whole number"),
    ("video", {"promptText": "x", "seed": True}, "input.seed=True does not fit: it takes a whole number"),
    ("audio", {"promptText": "x", "type": "speech", "voice": {"type": "preset", "presetId": "Darth"}},
     "input.voice.presetId='Darth' does not fit"),
    ("audio", {"promptText": "x", "type": "music"}, "input.type='music'"),
])
async def test_router_input_that_does_not_fit_is_refused_by_name_and_sends_nothing(client, fake, kind, value,
                                                                                   expected):
    await refused(client, fake, "generate_with_router", {"config_id": "c", "kind": kind, "input": value}, expected)


@pytest.mark.anyio
async def test_workflows_are_listed_with_their_versions_and_nodes(client, fake):
    result, data = await call(client, "list_workflows")
    [block] = result.content
    assert block.text == f"Product shots: v2 {WORKFLOW_ID}, v1 {WORKFLOWS[0]['versions'][1]['id']}"
    assert [v["version"] for v in data["workflows"][0]["versions"]] == [2, 1]
    result, detail = await call(client, "list_workflows", {"workflow_id": WORKFLOW_ID})
    lines = result.content[0].text.splitlines()
    assert lines[0] == f"Product shots v2 ({WORKFLOW_ID}): Product shots" and lines[1].startswith("3 nodes")
    assert lines[2].startswith('node-prompt: {"type": "text", "name": "Prompt"') and len(detail["nodes"]) == 3
    result, _ = await call(client, "list_workflows", {"workflow_id": "00000000-0000-0000-0000-000000000000"})
    assert result.is_error and "404" in result.content[0].text


@pytest.mark.anyio
async def test_a_workflow_run_is_created_polled_listed_and_saved_node_by_node(client, fake, media_files):
    fake.plan(outputs=2, mime="image/png", polls=3,
              node_errors={"node-x": {"message": "Upscale failed", "nodeName": "Upscale", "failureCode": "INTERNAL"}})
    result, started = await call(client, "run_workflow", {"workflow_id": WORKFLOW_ID, "wait": False, "inputs": {
        "node-prompt": {"text": "a bottle on a beach", "strength": 0.7, "hd": True},
        "node-product": {"image": {"type": "image", "uri": media_files["png"]}}}})
    assert not result.is_error and started["status"] == "PENDING"
    [body] = fake.bodies(f"workflows/{WORKFLOW_ID}")
    assert body["nodeOutputs"]["node-prompt"] == {"text": {"type": "primitive", "value": "a bottle on a beach"},
                                                  "strength": {"type": "primitive", "value": 0.7},
                                                  "hd": {"type": "primitive", "value": True}}
    assert body["nodeOutputs"]["node-product"]["image"]["uri"].startswith("data:image/png;base64,")
    result, done = await call(client, "wait_for_task", {"task_id": started["task_id"]})
    assert done["status"] == "SUCCEEDED" and len(done["outputs"]) == 2 and all(o["path"] for o in done["outputs"])
    assert "workflow node Upscale failed: Upscale failed (INTERNAL)" in done["notes"]
    assert fake.seen("GET", f"/v1/workflow_invocations/{started['task_id']}") and not fake.seen("GET", "/v1/tasks/")
    _, again = await call(client, "get_task", {"task_id": started["task_id"]})
    assert [o["path"] for o in again["outputs"]] == [o["path"] for o in done["outputs"]]       # saved once
    _, listed = await call(client, "list_tasks")
    assert listed["tasks"][0]["tool"] == "run_workflow" and listed["tasks"][0]["model"] == WORKFLOW_ID
    result, _ = await call(client, "cancel_task", {"task_id": started["task_id"]})
    assert result.is_error and "Runway has no way to cancel one" in result.content[0].text
    assert not fake.seen("DELETE")
    result, _ = await call(client, "run_workflow", {"workflow_id": WORKFLOWS[0]["versions"][1]["id"]})
    assert not result.is_error                                     # no inputs: the workflow's own defaults


@pytest.mark.anyio
@pytest.mark.parametrize("inputs, expected", [
    ({"node-a": {"img": {"type": "gif", "uri": IMAGE}}}, "inputs.node-a.img.type='gif' is not one of: primitive, "
                                                          "image, video, audio"),
    ({"node-a": {"text": [1, 2]}}, "inputs.node-a.text.value=[1, 2] does not fit: it takes text or a number or "
                                   "true or false"),
    ({"node-a": {"img": {"type": "image", "uri": "ftp://a/b.png"}}}, "inputs.node-a.img.uri"),
    ({"node-a": {"img": {"type": "video", "uri": IMAGE, "extra": 1}}}, "inputs.node-a.img.extra is not a field"),
    ({"node-a": "x"}, "inputs: Input should be a valid dictionary"),
])
async def test_workflow_inputs_that_do_not_fit_are_refused_by_name_and_send_nothing(client, fake, inputs, expected):
    await refused(client, fake, "run_workflow", {"workflow_id": WORKFLOW_ID, "inputs": inputs}, expected)


@pytest.mark.anyio
async def test_voices_are_designed_or_cloned_waited_for_listed_and_not_made_twice(client, serve, fake, media_files):
    result, designed = await call(client, "create_voice", {"name": "Narrator", "description": "warm, calm",
                                                           "prompt": "A warm, calm narrator with a low voice"})
    assert not result.is_error and designed["status"] == "READY" and designed["preview_url"].endswith(".mp3")
    assert f"generate_avatar_video(voice='{designed['id']}')" in result.content[0].text
    [body] = fake.bodies("voices")
    assert body == {"name": "Narrator", "description": "warm, calm", "from": {
        "type": "text", "model": "eleven_ttv_v3", "prompt": "A warm, calm narrator with a low voice"}}
    _, again = await call(client, "create_voice", {"name": "Narrator", "description": "warm, calm",
                                                   "prompt": "A warm, calm narrator with a low voice"})
    assert again["id"] == designed["id"] and "returned it instead of making a second" in again["notes"][0]
    result, cloned = await call(client, "create_voice", {"name": "Me", "audio": media_files["mp3"]})
    assert cloned["status"] == "READY" and fake.bodies("voices")[1]["from"]["audio"].startswith("data:audio/mpeg")
    result, failed = await call(client, "create_voice", {"name": "fail twice", "audio": AUDIO})
    assert result.is_error and failed["failure"] == "The sample has more than one speaker"
    result, listed = await call(client, "list_voices")
    assert [v["name"] for v in listed["voices"]] == ["Narrator", "Me", "fail twice"]
    assert result.content[0].text.splitlines()[0].startswith(f"{designed['id']} READY \"Narrator\" \"warm, calm\"")
    serve(RUNWAY_MCP_BUDGET_CREDITS="1000")
    posts = len(fake.seen("POST"))
    result, _ = await call(client, "create_voice", {"name": "Other", "prompt": "A bright, quick young voice"})
    assert result.is_error and "states no price for creating a voice" in result.content[0].text
    assert len(fake.seen("POST")) == posts
    for arguments, expected in [({"name": "x"}, "pass prompt"), ({"name": "x", "prompt": "too short"}, "prompt"),
                                ({"name": "x", "prompt": "p" * 30, "audio": AUDIO}, "one of them")]:
        result, _ = await call(client, "create_voice", arguments)
        assert result.is_error and expected in result.content[0].text


def test_each_new_toolset_brings_the_task_tools_when_it_creates_tasks():
    for group in ("recipes", "avatars", "workflows", "router"):
        assert exposed(group)[0] == set(rm.toolsets()[group]) | set(rm.toolsets()["tasks"])
    assert exposed("voices")[0] == {"list_voices", "create_voice"}


##############################################################################
# End to end: faults
##############################################################################

class Listener:
    """A TCP service on this machine that Runway's links must never reach: it counts connections and bytes."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port, self.connections, self.received = self.socket.getsockname()[1], 0, b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.socket.accept()
                self.connections += 1
                connection.settimeout(0.5)
                with contextlib.suppress(OSError), connection:
                    self.received += connection.recv(65536)

    def close(self):
        self.socket.close()


@pytest.fixture
def listener():
    service = Listener()
    yield service
    service.close()


@pytest.mark.anyio
@pytest.mark.parametrize("where, why", [
    ("https://169.254.169.254/latest/meta-data/iam", "private, loopback"), ("https://10.1.2.3/secret", "private"),
    ("https://0.0.0.0:{port}/secret", "private"), ("https://127.0.0.1:{port}/latest/meta-data", "private"),
    ("https://[::ffff:127.0.0.1]:{port}/x", "private"), ("http://127.0.0.1:{port}/x", "not an https URL")])
async def test_an_output_link_that_redirects_inward_is_not_followed(client, fake, out_dir, listener, where, why):
    fake.plan(polls=1)
    _, created = await call(client, "generate_image", {"prompt": "x", "wait": False})
    fake.redirects[f"{created['task_id']}_1.png"] = where.format(port=listener.port)
    result, data = await call(client, "wait_for_task", {"task_id": created["task_id"]})
    assert data["status"] == "SUCCEEDED" and data["outputs"][0]["path"] is None
    assert "not fetched" in " ".join(data["notes"]) and why in " ".join(data["notes"])
    assert listener.connections == 0 and not [p for p in out_dir.iterdir() if rm.is_output(p)]


@pytest.mark.anyio
async def test_a_name_that_passed_its_check_is_still_refused_at_an_inward_address(client, fake, listener,
                                                                                 monkeypatch):
    """A name can resolve one way when checked and another way when connected: the connection checks too."""
    monkeypatch.setattr(rm, "check_link", lambda config, url, what: None)
    fake.plan(polls=1)
    _, created = await call(client, "generate_image", {"prompt": "x", "wait": False})
    fake.redirects[f"{created['task_id']}_1.png"] = f"http://localhost:{listener.port}/secret"
    _, data = await call(client, "wait_for_task", {"task_id": created["task_id"]})
    assert data["outputs"][0]["path"] is None and "reached 127.0.0.1" in " ".join(data["notes"])
    assert listener.received == b""                                 # connected, refused, closed: nothing asked


@pytest.mark.anyio
async def test_an_output_link_that_redirects_within_runway_is_followed(client, fake):
    fake.plan(polls=1)
    _, created = await call(client, "generate_image", {"prompt": "x", "wait": False})
    fake.redirects[f"{created['task_id']}_1.png"] = "/files/moved.png?sig=new"          # a relative hop
    fake.files["moved.png"] = (PNG, "image/png")
    _, data = await call(client, "wait_for_task", {"task_id": created["task_id"]})
    assert Path(data["outputs"][0]["path"]).read_bytes() == PNG


def test_an_upload_slot_at_an_inward_address_is_refused_before_sending(api, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\0" * 1024)
    api.post("https://runway.test/v1/uploads", json={"uploadUrl": "https://10.0.0.7/bucket", "fields": {},
                                                     "runwayUri": "runway://u/1"})
    with pytest.raises(rm.RunwayError, match=r"the upload URL points to 10\.0\.0\.7 \(10\.0\.0\.7\), a private"):
        rm.upload(api.account, rm.LocalFile(big, "image/png", big.stat().st_size))
    assert len(api.calls) == 1


POLL_FAULTS = {
    "429 without Retry-After": {"status": 429},
    "429 with Retry-After": {"status": 429, "headers": {"Retry-After": "1"}},
    "500": {"status": 500}, "502": {"status": 502}, "503": {"status": 503}, "504": {"status": 504},
    "connection reset": {"action": "reset"},
    "read timeout": {"action": "hang", "headers": {"seconds": "0.5"}},
    "malformed JSON": {"action": "garbage"},
    "404 once": {"status": 404},
}


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list(POLL_FAULTS))
async def test_polling_survives(client, fake, fault, monkeypatch):
    monkeypatch.setattr(rm, "poll_timeout", lambda config: (5.0, 0.25))      # the read timeout of a status check
    fake.plan(polls=3, mime="video/mp4")
    fake.fail("GET", "/v1/tasks/", **POLL_FAULTS[fault])
    started = time.monotonic()
    result, data = await call(client, "generate_video", {"prompt": "x"})
    assert not result.is_error and data["status"] == "SUCCEEDED", result.content[0].text
    assert time.monotonic() - started >= float(POLL_FAULTS[fault].get("headers", {}).get("Retry-After", 0))
    assert len(fake.seen("GET", "/v1/tasks/")) == 3 + 1 and len(fake.seen("POST")) == 1


@pytest.mark.anyio
async def test_faults_past_the_wait_bound_return_the_resumable_handle(client, serve, fake):
    serve(RUNWAY_MCP_MAX_WAIT="0.2")
    fake.plan(polls=10**6, throttled=10**6, mime="video/mp4")
    result, data = await call(client, "generate_video", {"prompt": "x"})
    assert not result.is_error and data["status"] == "THROTTLED" and "wait_for_task" in data["next"]
    fake.fail("GET", "/v1/tasks/", 503, times=10**6)
    result, again = await call(client, "wait_for_task", {"task_id": data["task_id"]})
    assert not result.is_error and again["task_id"] == data["task_id"] and again["status"] == "THROTTLED"
    assert "latest status check failed" in again["notes"][0] and "503" in again["notes"][0]


@pytest.mark.anyio
async def test_a_task_that_stays_gone_is_an_error_that_names_it(client, fake):
    _, data = await call(client, "generate_video", {"prompt": "x", "wait": False})
    fake.tasks.clear()
    result, _ = await call(client, "wait_for_task", {"task_id": data["task_id"]})
    assert result.is_error and data["task_id"] in result.content[0].text and "404" in result.content[0].text


@pytest.mark.anyio
@pytest.mark.parametrize("status, posts", [(429, 2), (502, 2), (503, 2), (500, 1), (504, 1)])
async def test_create_is_retried_only_where_no_task_can_exist(client, fake, status, posts):
    fake.fail("POST", "/v1/text_to_image", status, headers={"Retry-After": "0"})
    result, _ = await call(client, "generate_image", {"prompt": "x", "wait": False})
    assert len(fake.seen("POST", "/v1/text_to_image")) == posts
    assert result.is_error == (posts == 1)
    if posts == 1:
        text = result.content[0].text
        assert "may have been created" in text and "list_tasks" in text and "get_account" in text


def test_create_is_not_resent_after_a_read_timeout(fake, monkeypatch, tmp_path):
    account = rm.own_account(rm.load_config(server_env(fake, tmp_path)))
    monkeypatch.setattr(rm, "API_TIMEOUT", (5.0, 0.3))
    fake.fail("POST", "/v1/text_to_video", action="hang", headers={"seconds": "1"})
    started = time.monotonic()
    with pytest.raises(rm.RunwayError, match="may have been created.*list_tasks"):
        rm.create_task(account, "text_to_video", {"model": "gen4.5", "promptText": "x", "ratio": "1280:720",
                                                  "duration": 5})
    assert time.monotonic() - started < 0.9         # the read timeout, not the connection the fake drops after 1 s
    assert len(fake.seen("POST")) == 1


@pytest.mark.anyio
async def test_an_unwritable_output_directory_still_returns_the_task_and_its_links(client, serve, fake, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    serve(RUNWAY_MCP_OUTPUT_DIR=str(tmp_path / "a-file" / "out"))
    result, data = await call(client, "generate_image", {"prompt": "x"})
    assert not result.is_error and data["status"] == "SUCCEEDED" and data["task_id"]
    assert data["outputs"][0]["path"] is None and data["outputs"][0]["url"].startswith(fake.url)
    notes = " ".join(data["notes"])
    assert "could not record the task" in notes and "output 1 was not saved" in notes and "get_task" in notes


def test_a_full_disk_is_reported_and_leaves_nothing_behind(api, monkeypatch, tmp_path):
    task_id = str(uuid.uuid4())
    api.get("https://cdn.test/big.mp4", body=MP4, content_type="video/mp4", headers={"Content-Length": str(len(MP4))})
    monkeypatch.setattr(rm.shutil, "disk_usage", lambda path: rm.shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    notes = []
    outputs = rm.save_outputs(api.account, {"id": task_id, "status": "SUCCEEDED", "output": ["https://cdn.test/big.mp4"]}, notes)
    assert outputs[0]["path"] is None and "only 0 KB is free" in notes[0] and list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_cancel_on_abort_also_cancels_the_runway_task(client, serve, fake):
    serve(RUNWAY_MCP_MAX_WAIT="0.5", RUNWAY_MCP_CANCEL_ON_ABORT="1")
    fake.plan(polls=10**6, mime="video/mp4")
    with anyio.move_on_after(0.5):
        await client.call_tool("generate_video", {"prompt": "x", "max_wait_s": 60})
    with anyio.fail_after(5):
        while not fake.seen("DELETE"):
            await anyio.sleep(0.02)
    [task_id] = fake.tasks
    assert [r["path"] for r in fake.seen("DELETE")] == [f"/v1/tasks/{task_id}"]


@pytest.mark.anyio
async def test_without_cancel_on_abort_the_runway_task_is_left_running(client, fake):
    fake.plan(polls=10**6, mime="video/mp4")
    with anyio.move_on_after(0.3):
        await client.call_tool("generate_video", {"prompt": "x", "max_wait_s": 60})
    await anyio.sleep(0.3)
    assert fake.seen("DELETE") == []


def raw_session(env, calls, *args, close_when=lambda answers: True, timeout=30):
    """Drive runway_mcp.py over raw stdio: initialize, the calls, then close stdin once `close_when(answers)`.

    Returns (every stdout message, stderr, seconds from closing stdin to exit).
    """
    import subprocess
    process = subprocess.Popen([sys.executable, SERVER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, text=True)
    messages = [{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
                {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    messages += [{"jsonrpc": "2.0", "id": i, "method": "tools/call",
                  "params": {"name": name, "arguments": arguments, "_meta": {"progressToken": i}}}
                 for i, (name, arguments) in enumerate(calls, 1)]
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True).start()   # never let it fill up
    process.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
    process.stdin.flush()
    seen, answers = [], {}
    deadline = time.monotonic() + timeout
    while not close_when(answers):
        line = process.stdout.readline()
        assert line and time.monotonic() < deadline, "the server stopped answering"
        seen.append(json.loads(line))
        if "id" in seen[-1]:
            answers[seen[-1]["id"]] = seen[-1]
    closed = time.monotonic()
    process.stdin.close()
    process.wait(timeout)
    exited = time.monotonic() - closed
    seen += [json.loads(line) for line in process.stdout.read().splitlines()]
    time.sleep(0.1)                                     # let the stderr reader catch up
    return seen, "".join(errors), exited


@pytest.mark.slow
def test_closing_stdin_ends_the_process_promptly_even_with_requests_in_flight(fake, tmp_path):
    """Two downloads stall (a download may wait 60 s between bytes) while three waits poll: the host closes stdin."""
    for polls in (1, 1, 10**6, 10**6, 10**6):
        fake.plan(polls=polls, mime="video/mp4")
    fake.fail("GET", "/files/", action="hang", headers={"seconds": "8"}, times=2)
    env = server_env(fake, tmp_path, RUNWAY_MCP_POLL_INTERVAL="0.2", RUNWAY_MCP_MAX_WAIT="60")
    busy = lambda answers: (len(fake.seen("GET", "/files/")) == 2
                            and len({r["path"] for r in fake.seen("GET", "/v1/tasks/")}) == 5)
    _, _, exited = raw_session(env, [("generate_video", {"prompt": f"take {n}"}) for n in range(5)], close_when=busy)
    assert exited < 1.5                   # not the 8 s the stalled downloads would take
    created = {json.loads(line)["task_id"] for line in (tmp_path / "tasks.jsonl").read_text().splitlines()}
    assert created == set(fake.tasks) and len(created) == 5        # every paid task is in the ledger


##############################################################################
# End to end: hostile input
##############################################################################

JUNK = {"deep": [{"er": [{"est": [None, 1e308, "\x00"]}]}]}
NESTED: dict = {}
_level = NESTED
for _ in range(60):
    _level["a"] = {}
    _level = _level["a"]
STRINGS = [12345, ["a"], JUNK, "", "x" * 100_000]
NUMBERS = [-1, "nan", "inf", 1e308, 10**30, "ten", [1], JUNK]
BOOLEANS = ["maybe", 2, [], JUNK]
CHOICES = ["zzz", 5, "", JUNK]
MEDIA = STRINGS + ["../../../../etc/passwd", "file:///etc/shadow", "/dev/zero", "http://evil.example/a.png",
                   "ftp://evil.example/a", "data:text/html;base64,PGgxPg==", "javascript:alert(1)", "\x00\x01",
                   "~/../../root/.ssh/id_rsa", "https://" + "a" * 3000]
HOSTILE = {
    "prompt": STRINGS, "text": STRINGS, "model": STRINGS + ["../../v1/organization", "gen4.5\nX-Injected: 1"],
    "ratio": STRINGS[:4] + ["16x9", "1:0", "-1280:720", "9999999:1", "\U0001f3ac", "1280:720; DROP TABLE"],
    "duration": NUMBERS + [0, "forever"], "seed": NUMBERS, "max_wait_s": NUMBERS, "limit": NUMBERS + [0],
    "num_speakers": NUMBERS, "expression_intensity": NUMBERS + [9], "scale_factor": NUMBERS + [3],
    "wait": BOOLEANS, "dry_run": BOOLEANS, "loop": BOOLEANS, "confirm": BOOLEANS, "body_control": BOOLEANS,
    "remove_background_noise": BOOLEANS,
    "options": ["a string", [1, 2], {"promptText": "dup"}, {"__proto__": {"x": 1}}, NESTED, {"a" * 1000: 1}],
    "task_id": ["../../v1/organization", "", "x" * 200, "17f20503-6c24-4c16-946b-35dbbce2af2f/../../x",
                "%2e%2e%2f", 42, JUNK],
    "name": ["../tasks.jsonl", "/etc/passwd", "", "a" * 300, "..", ".uploads.json", "tasks.jsonl", JUNK],
    "kind": CHOICES + ["pdf"], "mode": CHOICES, "target_language": CHOICES + ["klingon"], "frame_rate": CHOICES,
    "flavor": CHOICES, "output_format": CHOICES, "character_kind": CHOICES, "media_kind": CHOICES,
    "resolution": CHOICES, "voice": ["", "Darth", "x" * 100, 5, JUNK], "language": ["x" * 50, 5, "klingon", JUNK],
    "reference_images": ["not a list", [1, 2], [{"uri": 5}], [{"uri": IMAGE, "tag": "1bad"}], [IMAGE] * 100,
                         [{"url": IMAGE}], [MEDIA[5]]],
    "references": ["not a list", [1, 2], [IMAGE] * 100, ["http://evil.example/a.png"]],
    "requests": ["not a list", [], [{"tool": 5}], [{"tool": "generate_image"}], JUNK,
                 [{"tool": "generate_image", "arguments": {"prompt": "x"}}] * 21,
                 [{"tool": "generate_image", "arguments": {"prompt": "x", "bogus": 1}}],
                 [{"tool": "../v1/organization", "arguments": {}}]],
    "recipe": CHOICES, "version": ["2025-01", 5, "", "x" * 100, JUNK],
    "inputs": ["not an object", [1, 2], JUNK, NESTED, {"image": IMAGE}, {"image": 5, "prompt": "x"},
               {"image": "http://evil.example/a.png", "prompt": "x"}, {"image": IMAGE, "prompt": "x", "bogus": 1}],
    "input": ["not an object", [1, 2], JUNK, NESTED, {"promptText": 5}, {"promptText": "x", "bogus": 1},
              {"promptText": "x", "referenceImages": [{"uri": "http://evil.example/a.png"}]}],
    "avatar": ["", "influencr", 5, "x" * 200, JUNK], "config_id": ["../v1/organization", "", "a b", 5, JUNK],
    "workflow_id": ["../v1/organization", "", "x" * 200, "a/b", 5, JUNK], "description": ["x" * 2000, 5, JUNK],
}
for _name in ("image", "last_image", "video", "audio", "character", "reference", "media", "voice_sample", "path"):
    HOSTILE[_name] = MEDIA
VALID = {  # the smallest valid call of each tool; each test below spoils one argument of it
    "generate_image": {"prompt": "x"}, "generate_video": {"prompt": "x"}, "edit_video": {"video": VIDEO},
    "upscale_video": {"video": VIDEO}, "upscale_image": {"image": IMAGE}, "generate_speech": {"text": "hi"},
    "generate_sound_effect": {"prompt": "x"}, "animate_character": {"character": IMAGE, "reference": VIDEO},
    "change_voice": {"media": AUDIO, "voice": "Maya"}, "dub_audio": {"audio": AUDIO, "target_language": "es"},
    "isolate_voice": {"audio": AUDIO}, "generate_sound_for_video": {"video": VIDEO, "duration": 5},
    "convert_to_hdr": {"video": VIDEO}, "get_task": {"task_id": str(uuid.uuid4())},
    "wait_for_task": {"task_id": str(uuid.uuid4())}, "cancel_task": {"task_id": str(uuid.uuid4())},
    "list_tasks": {}, "list_models": {}, "get_account": {}, "upload_file": {"path": __file__}, "list_outputs": {},
    "delete_output": {"name": "x.png"}, "generate_batch": {"requests": [{"tool": "generate_image",
                                                                       "arguments": {"prompt": "x"}}]},
    "run_recipe": {"recipe": "product_campaign_image", "inputs": {"image": IMAGE, "prompt": "x"}},
    "generate_avatar_video": {"avatar": "influencer", "text": "hi"},
    "generate_with_router": {"config_id": "c", "kind": "image", "input": {"promptText": "x"}},
    "list_workflows": {}, "run_workflow": {"workflow_id": WORKFLOW_ID}, "list_voices": {},
    "create_voice": {"name": "Narrator", "prompt": "a warm and calm narrator voice"},
}
# A generation tool not named above is called as its endpoint's example in RECIPES has it, with its default model.
VALID.update({entry.tool: {k: v for k, v in minimal_request(entry.default, endpoint)[1].items() if k != "wait"}
              for endpoint, entry in rm.ENDPOINTS.items() if entry.tool not in VALID and endpoint in RECIPES
              and endpoint in rm.MODELS.get(entry.default, rm.Model("", "", {})).uses})
# Where any text is a fair value: a voice's name is only a label, and a voice may be any id of the person's own.
FAIR_TEXT = {("create_voice", "name"), ("generate_avatar_video", "voice")}


def test_every_tool_has_a_valid_call_for_the_hostile_input_tests():
    assert not (missing := sorted(set(rm.TOOLS) - set(VALID))), f"add the smallest valid call of {missing} to VALID"
HOSTILE_CALLS = [(tool, argument) for tool in VALID for argument in HOSTILE
                 if argument in inspect.signature(getattr(rm, tool)).parameters and (tool, argument) not in FAIR_TEXT]


@pytest.mark.anyio
@pytest.mark.parametrize("tool, argument", HOSTILE_CALLS)
async def test_hostile_arguments_get_a_clean_error_naming_them_and_reach_nothing(client, fake, tool, argument):
    for value in HOSTILE[argument]:
        fake.reset()
        paid = tool in rm.GENERATORS or tool == "generate_batch"                # wait: False, should one get through
        result = await client.call_tool(tool, {**VALID[tool], **({"wait": False} if paid else {}), argument: value})
        text = result.content[0].text
        shown = repr(value)[:40]
        assert result.is_error, f"{tool}({argument}={shown}) was accepted: {text[:200]}"
        assert "\n" not in text and "Traceback" not in text, f"{tool}({argument}={shown}): {text[:300]}"
        assert argument in text, f"{tool}({argument}={shown}) did not name the argument: {text[:300]}"
        assert not fake.seen("POST") and not fake.seen("DELETE"), f"{tool}({argument}={shown}) reached Runway"
    assert (await client.list_tools()).tools                   # and the server is still serving


##############################################################################
# End to end: secrets
##############################################################################

def test_a_whole_session_writes_only_protocol_to_stdout_and_the_key_nowhere(fake, tmp_path):
    """Hosts other than the SDK choke on a stray line on stdout: every line of a whole session must parse as
    JSON-RPC (raw_session reads them all, also after stdin closes). And Runway echoes the key in an error, a
    failure and an output URL, while -v logs every request: the key must appear nowhere the server writes."""
    fake.fail("POST", "/v1/text_to_image", 400, body={"error": f"Invalid header Authorization: Bearer {KEY}"})
    fake.plan(polls=2, outcome="FAILED", failure=f"echo {KEY}")
    fake.plan(polls=2, mime="image/png")
    fake.echo_key = True
    calls = [("generate_image", {"prompt": "a"}), ("generate_image", {"prompt": "b"}),
             ("generate_image", {"prompt": "c"}), ("get_account", {}), ("get_task", {"task_id": "bad"})]
    messages, stderr, _ = raw_session(server_env(fake, tmp_path), calls, "-v",
                                      close_when=lambda answers: len(answers) == len(calls) + 1)
    assert len([m for m in messages if "id" in m]) == len(calls) + 1 and all(m["jsonrpc"] == "2.0" for m in messages)
    assert any(m.get("method") == "notifications/progress" for m in messages)
    # The three calls run at once, so which meets the 400, the failure or the success is not fixed.
    outcomes = {(r.get("structuredContent") or {}).get("status", "ERROR"): r for m in messages if m.get("id") in (1, 2, 3)
                for r in [m["result"]]}
    assert sorted(outcomes) == ["ERROR", "FAILED", "SUCCEEDED"] and outcomes["SUCCEEDED"]["structuredContent"][
        "outputs"][0]["path"]
    assert "created text_to_image task" in stderr
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert any("[redacted]" in text for text in written)            # the echoed key was there to leak
    everything = json.dumps(messages) + stderr + "".join(written)
    assert KEY not in everything and KEY[4:] not in everything and f"Bearer {KEY[:8]}" not in everything


##############################################################################
# End to end: HTTP transport
##############################################################################

TOKEN = "s3cret-token-for-tests"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_servers(*envs, args=()):
    """Server processes serving HTTP, one per environment, started together; their URLs."""
    import subprocess
    ports = [free_port() for _ in envs]
    processes = [subprocess.Popen([sys.executable, SERVER, "--transport", "http", "--port", str(port), *args],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for env, port in zip(envs, ports)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for process, url in zip(processes, urls):
            for _ in range(400):
                try:
                    requests.get(f"{url}/healthz", timeout=1)
                    break
                except requests.ConnectionError:
                    assert process.poll() is None, process.communicate()[1]
                    time.sleep(0.05)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


@contextlib.contextmanager
def http_server(env, *args):
    with http_servers(env, args=args) as (url,):
        yield url


class SharedHttp:
    """One uvicorn, on a thread and event loop of its own, for every in-process HTTP test: it serves whichever test's
    app is current. (uvicorn pauses 0.1 s whenever it stops, and these tests are many.)"""

    def __init__(self):
        import asyncio
        import uvicorn
        self.app, self.loop = None, None
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(self.route, interface="asgi3", lifespan="off", log_config=None,
                                                log_level="warning"))

        async def serve():
            self.loop = asyncio.get_running_loop()
            await server.serve(sockets=[listening])
        threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
        while not server.started:
            time.sleep(0.01)

    async def route(self, scope, receive, send):
        from starlette.responses import PlainTextResponse
        await (self.app or PlainTextResponse("no test is serving", status_code=503))(scope, receive, send)

    @contextlib.contextmanager
    def serving(self, app):
        """`app` as the one served, its lifespan held by a task of the server's loop for as long as it is."""
        import asyncio
        started, stop = threading.Event(), asyncio.Event()

        async def hold():
            async with app.lifespan():
                started.set()
                await stop.wait()
        held = asyncio.run_coroutine_threadsafe(hold(), self.loop)
        assert started.wait(10), held.exception(0)
        previous, self.app = self.app, app             # nested: another instance, until it ends
        try:
            yield self.url
        finally:
            self.app = previous
            self.loop.call_soon_threadsafe(stop.set)
            held.result(10)
            for thread in threading.enumerate():       # an MCP task's background work ends with its test
                if thread.name.startswith(("watching ", "saving ")):
                    thread.join(10)


@functools.cache
def shared_http() -> SharedHttp:
    return SharedHttp()


def http_in_process(config, host="127.0.0.1"):
    """The HTTP transport of a server with this configuration, in this process, on a real socket, so that a test's
    blocking requests and its async clients both reach it."""
    return shared_http().serving(rm.http_app(config, host))


@pytest.fixture
def over_http_in_process(serve):
    """A server over HTTP in this process, as `--transport http` with server_env(**extra) would serve."""
    def configure(**extra):
        serve(**extra)
        return http_in_process(serve.config)
    return configure


def http_client(url, token=None, **headers):
    from mcp.client.streamable_http import streamable_http_client
    http = httpx2.AsyncClient(headers={**({"Authorization": f"Bearer {token}"} if token else {}), **headers},
                              timeout=30)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy")


def modern_call(url, key, tool, arguments, *, headers=None, **meta):
    """One 2026-07-28 tools/call as a raw HTTP request (no session, no initialize), with `meta` in its _meta."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments,
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}, **meta}}}
    return requests.post(f"{url}/mcp", json=body, timeout=10, headers={
        **MCP_HEADERS, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": tool,
        **({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})})


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.anyio
async def test_http_serves_mcp_with_progress_and_keeps_dns_rebinding_protection(fake, tmp_path):
    fake.plan(polls=6, mime="video/mp4")
    frame = tmp_path / "frame.png"
    frame.write_bytes(PNG)
    env = server_env(fake, tmp_path, RUNWAY_MCP_ALLOWED_HOSTS="mcp.example.com, proxy.internal")
    with http_server(env) as url:
        seen = []

        async def progress(value, total, message):
            seen.append(value)
        async with http_client(url) as client:
            assert EXPECTED_TOOLS <= {t.name for t in (await client.list_tools()).tools}
            result, data = await call(client, "generate_video", {"prompt": "x"}, progress=progress)
            assert not result.is_error and data["status"] == "SUCCEEDED" and len(seen) >= 5
            [content] = (await client.read_resource(data["outputs"][0]["uri"])).contents   # what it made, remotely
            assert base64.b64decode(content.blob) == MP4 and content.mime_type == "video/mp4"
            result, _ = await call(client, "edit_video", {"video": data["outputs"][0]["uri"], "prompt": "snow",
                                                          "dry_run": True})
            assert not result.is_error, result.content[0].text           # its own files: no input root needed
            fake.reset()
            result, _ = await call(client, "generate_video", {"prompt": "x", "image": str(frame)})
            assert result.is_error and "RUNWAY_MCP_INPUT_ROOT" in result.content[0].text and fake.requests == []
        assert requests.get(f"{url}/healthz", timeout=5).text == "ok"
        post = lambda **headers: requests.post(f"{url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers},
                                               timeout=5)
        assert post(Host="evil.example").status_code == 421
        assert post(Origin="http://evil.example").status_code == 403
        assert post(Host="mcp.example.com").status_code == 200
        assert post(Host="proxy.internal:8443", Origin="https://proxy.internal:8443").status_code == 200


@pytest.mark.anyio
async def test_over_http_a_fifo_is_refused_at_once_inside_and_outside_the_input_root(over_http_in_process, fake,
                                                                                    tmp_path):
    """A FIFO with no writer blocks whoever opens it: no path may be opened before it has been checked."""
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "inside.png")
    os.mkfifo(tmp_path / "outside.png")
    calls = [("animate_character", "character", {"reference": VIDEO}), ("change_voice", "media", {"voice": "Maya"}),
             ("generate_video", "image", {"prompt": "x"}), ("upload_file", "path", {})]
    with over_http_in_process(RUNWAY_MCP_INPUT_ROOT=str(root)) as url:
        async with http_client(url) as client:
            for tool, argument, args in calls:
                for path, expected in [("inside.png", "is a FIFO"), (str(root / "inside.png"), "is a FIFO"),
                                       (str(tmp_path / "outside.png"), "outside the input root"),
                                       ("../outside.png", "outside the input root")]:
                    with anyio.fail_after(1):
                        result, _ = await call(client, tool, {**args, argument: path})
                    assert result.is_error and expected in result.content[0].text, (tool, result.content[0].text)
            with anyio.fail_after(2):                       # no worker thread is stuck in open()
                results = [await call(client, "list_models", {"kind": "audio"}) for _ in range(3)]
            assert not any(result.is_error for result, _ in results)
    assert fake.requests == []


@pytest.mark.anyio
async def test_http_requires_the_token_when_one_is_set(over_http_in_process):
    with over_http_in_process(RUNWAY_MCP_HTTP_TOKEN=TOKEN) as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            response = requests.post(f"{url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers}, timeout=5)
            assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        health = requests.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 200 and health.text == "ok"
        async with http_client(url, TOKEN) as client:
            result, data = await call(client, "list_models", {"kind": "audio"})
    assert not result.is_error and data["models"]


# Hosting: many people, their own keys, many instances -----------------------------------------------------

SERVER_KEY = "key_" + "5" * 128                 # the operator's own key: never to be spent for a client


def spent_with(fake, key):
    return [r for r in fake.requests if r.get("key") == key]


@pytest.mark.anyio
async def test_each_client_spends_its_own_key_and_sees_only_its_own_tasks_and_files(over_http_in_process, fake,
                                                                                    out_dir, caplog):
    caplog.set_level(logging.DEBUG)                         # everything the server logs, to look for the keys in
    out_dir.mkdir(parents=True, exist_ok=True)
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAYML_API_SECRET=SERVER_KEY,
                              RUNWAY_MCP_INPUT_ROOT=str(out_dir)) as url:                # a root over every account
        async with http_client(url, KEY) as alice, http_client(url, KEY2) as bob:
            _, mine = await call(alice, "generate_image", {"prompt": "the same fox"})
            _, theirs = await call(bob, "generate_image", {"prompt": "the same fox"})   # another account: not a twin
            assert mine["status"] == theirs["status"] == "SUCCEEDED" and mine["task_id"] != theirs["task_id"]
            assert len(spent_with(fake, KEY)) > 1 and len(spent_with(fake, KEY2)) > 1
            assert spent_with(fake, SERVER_KEY) == [] and {r["key"] for r in fake.requests if "key" in r} == {KEY, KEY2}
            _, tasks = await call(bob, "list_tasks")
            assert [t["task_id"] for t in tasks["tasks"]] == [theirs["task_id"]]
            _, files = await call(bob, "list_outputs")
            assert [f["uri"] for f in files["outputs"]] == [theirs["outputs"][0]["uri"]]
            assert mine["outputs"][0]["uri"] not in {r.uri for r in (await bob.list_resources()).resources}
            with pytest.raises(MCPError) as caught:
                await bob.read_resource(mine["outputs"][0]["uri"])
            assert caught.value.code == -32002
            for tool in ("get_task", "wait_for_task", "cancel_task"):
                result, _ = await call(bob, tool, {"task_id": mine["task_id"]})
                assert result.is_error and "no task" in result.content[0].text, (tool, result.content[0].text)
            name = mine["outputs"][0]["path"]                   # a tenant sees its files by name: no server path
            assert name == Path(name).name and str(out_dir) not in json.dumps([mine, theirs, tasks, files])
            [alices] = [p for p in out_dir.rglob(name)]
            result, _ = await call(bob, "delete_output", {"name": name, "confirm": True})
            assert result.is_error and alices.exists() and str(out_dir) not in result.content[0].text
            result, _ = await call(bob, "generate_video", {"prompt": "x", "image": mine["outputs"][0]["uri"]})
            assert result.is_error and "is not a saved output" in result.content[0].text
            result, _ = await call(bob, "generate_video", {"prompt": "x", "image": str(alices)})
            assert result.is_error and "is not one of your outputs" in result.content[0].text
            assert str(out_dir) not in result.content[0].text
            [bobs] = [p for p in out_dir.rglob(theirs["outputs"][0]["path"])]
            result, _ = await call(bob, "generate_video", {"prompt": "x", "image": str(bobs), "dry_run": True})
            assert not result.is_error and str(out_dir) not in result.content[0].text, result.content[0].text
    assert not fake.tasks[mine["task_id"]]["deleted"]
    folders = sorted(p.name for p in (out_dir / "accounts").iterdir())
    assert len(folders) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", f) for f in folders)       # 128 bits, keyed
    written = "".join(p.read_text(errors="replace") for p in out_dir.rglob("*") if p.is_file()) + caplog.text
    assert not [key for key in (KEY, KEY2, KEY[4:], KEY2[4:]) if key in written]         # in no file, no log
    calls = [json.loads(r.getMessage()) for r in caplog.records if r.name == "runway_mcp.calls"]
    assert {c["account"] for c in calls} == set(folders)                   # one structured line per call
    assert {"tool", "outcome", "duration_s", "task_id", "account"} == set(calls[0])
    assert any(c["tool"] == "generate_image" and c["outcome"] == "ok" and c["task_id"] == mine["task_id"]
               for c in calls)


@pytest.mark.anyio
async def test_without_a_good_key_a_request_gets_401_and_reaches_nothing(over_http_in_process, fake):
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAYML_API_SECRET=SERVER_KEY) as url:
        for headers in ({}, {"Authorization": "Bearer sk-not-runway"}, {"Authorization": KEY},
                        {"Authorization": f"Bearer {KEY}x"}, {"Authorization": f"Basic {KEY}"}):
            response = requests.post(f"{url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers}, timeout=5)
            assert response.status_code == 401 and "Authorization: Bearer key_" in response.json()["error"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer") and KEY not in response.text
        assert requests.get(f"{url}/healthz", timeout=5).text == "ok"
    assert fake.requests == []


@pytest.mark.anyio
async def test_a_key_runway_refuses_gets_401_and_leaves_nothing_on_disk_or_in_memory(over_http_in_process, fake,
                                                                                     out_dir):
    ledgers = len(rm._LEDGERS)
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAYML_API_SECRET=SERVER_KEY) as url:
        for n in range(5):                                          # well-formed, but no key Runway knows
            made_up = "key_" + f"a{n}" * 64
            response = requests.post(f"{url}/mcp", json=INITIALIZE, timeout=5,
                                     headers={**MCP_HEADERS, "Authorization": f"Bearer {made_up}"})
            assert response.status_code == 401 and "Runway refused your key" in response.json()["error"]
            assert made_up not in response.text
    assert [r["path"] for r in fake.requests] == ["/v1/organization"] * 5
    assert not out_dir.exists() and len(rm._LEDGERS) == ledgers


@pytest.mark.anyio
async def test_a_key_is_checked_with_runway_once_and_a_revoked_one_loses_access_within_minutes(
        over_http_in_process, fake, monkeypatch, out_dir):
    clock, verdicts = FakeClock(), rm.KeyVerdicts.__init__           # Runway's verdicts age by this clock alone
    monkeypatch.setattr(rm.KeyVerdicts, "__init__", lambda self, config: verdicts(self, config, clock))
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAYML_API_SECRET=SERVER_KEY) as url:
        async with http_client(url, KEY) as alice:
            _, made = await call(alice, "generate_image", {"prompt": "a fox"})
            for tool in ("list_tasks", "list_outputs", "list_models"):
                assert not (await call(alice, tool))[0].is_error
        assert len(fake.seen("GET", "/v1/organization")) == 1     # asked once, not per request
        fake.revoked.add(KEY)
        async with http_client(url, KEY) as alice:                  # still trusted for a moment: Runway says 401
            result, _ = await call(alice, "generate_video", {"prompt": "x", "wait": False})
            text = result.content[0].text
            assert result.is_error and "Runway rejected your API key (401)" in text and "RUNWAYML_API_SECRET" not in text
        clock.sleep(rm.KEY_TRUSTED_S)                                # revoked within 5 minutes
        for request in ({"method": "tools/call", "params": {"name": "list_tasks", "arguments": {}}},
                        {"method": "resources/read", "params": {"uri": made["outputs"][0]["uri"]}},
                        {"method": "tools/call", "params": {"name": "delete_output",
                                                            "arguments": {"name": made["outputs"][0]["path"],
                                                                          "confirm": True}}}):
            response = requests.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 2, **request}, timeout=5,
                                     headers={**MCP_HEADERS, "Authorization": f"Bearer {KEY}"})
            assert response.status_code == 401 and "Runway refused your key" in response.json()["error"], request
    assert list(out_dir.rglob(made["outputs"][0]["path"]))                          # nothing was deleted


@pytest.mark.anyio
async def test_a_session_answers_only_the_account_that_opened_it(over_http_in_process, fake):
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAYML_API_SECRET=SERVER_KEY) as url:
        as_alice = {**MCP_HEADERS, "Authorization": f"Bearer {KEY}"}
        opened = requests.post(f"{url}/mcp", json=INITIALIZE, headers=as_alice, timeout=5)
        session = {"Mcp-Session-Id": opened.headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-06-18"}
        as_bob = {**MCP_HEADERS, **session, "Authorization": f"Bearer {KEY2}"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert requests.post(f"{url}/mcp", json=listing, headers=as_bob, timeout=5).status_code == 404
        assert requests.delete(f"{url}/mcp", headers=as_bob, timeout=5).status_code == 404
        mine = requests.post(f"{url}/mcp", json=listing, headers={**as_alice, **session}, timeout=5)
        assert mine.status_code == 200 and "generate_image" in mine.text


@pytest.mark.anyio
async def test_a_confirmation_in_progress_answers_only_the_account_that_began_it(over_http_in_process, fake):
    """2026-07-28: the confirmation's sealed request state is bound to the account; another cannot complete it."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    call_video = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "generate_video", "arguments": {"prompt": "a storm", "wait": False}, "_meta": meta}}
    modern = {**MCP_HEADERS, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call",
              "Mcp-Name": "generate_video"}
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAY_MCP_CONFIRM_ABOVE="5") as url:
        asked = requests.post(f"{url}/mcp", json=call_video, headers={**modern, "Authorization": f"Bearer {KEY}"},
                              timeout=5).json()["result"]
        [question] = asked["inputRequests"]
        answered = {**call_video, "params": {**call_video["params"], "requestState": asked["requestState"],
                                             "inputResponses": {question: {"action": "accept", "content": {}}}}}
        stolen = requests.post(f"{url}/mcp", json=answered, headers={**modern, "Authorization": f"Bearer {KEY2}"},
                               timeout=5)
        assert stolen.json()["error"]["code"] == -32602 and fake.seen("POST") == []
        own = requests.post(f"{url}/mcp", json=answered, headers={**modern, "Authorization": f"Bearer {KEY}"},
                            timeout=5)
        assert own.json()["result"]["structuredContent"]["status"] == "PENDING" and len(fake.seen("POST")) == 1


@pytest.mark.anyio
async def test_one_accounts_stalled_create_does_not_delay_another(over_http_in_process, fake):
    fake.fail("POST", "/v1/text_to_image", action="hang", headers={"seconds": "1"})
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAY_MCP_BUDGET_CREDITS="1000") as url:
        async with http_client(url, KEY) as alice, http_client(url, KEY2) as bob, anyio.create_task_group() as group:
            group.start_soon(call, alice, "generate_image", {"prompt": "stalled", "wait": False})
            while not fake.seen("POST", "/v1/text_to_image"):
                await anyio.sleep(0.01)
            started = time.monotonic()
            result, _ = await call(bob, "generate_image", {"prompt": "quick", "wait": False})
            assert not result.is_error and time.monotonic() - started < 0.5


@pytest.mark.anyio
async def test_rotating_keys_does_not_escape_the_rate_limit(over_http_in_process, fake):
    with over_http_in_process(RUNWAY_MCP_RATE_LIMIT="2/min", RUNWAY_MCP_KEYS_FROM_CLIENTS="1") as url:
        statuses = [modern_call(url, key, "generate_image", {"prompt": "x", "wait": False}).status_code
                    for key in (KEY, KEY2, KEY3, KEY4)]
        assert statuses == [200, 200, 429, 429] and len(fake.seen("POST")) == 2


@pytest.mark.anyio
async def test_a_request_without_a_working_key_is_refused_before_its_body_is_read(over_http_in_process, fake):
    """With the rate limit on, nothing buffers a body before the credential: a keyless client declaring 15 MB gets
    its 401 at once, without sending a byte of it."""
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAY_MCP_RATE_LIMIT="30/min") as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            raw.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer nonsense\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 15000000\r\n\r\n")
            assert raw.recv(4096).startswith(b"HTTP/1.1 401")


@pytest.mark.anyio
async def test_an_account_holds_a_bounded_number_of_sessions(over_http_in_process, fake, monkeypatch):
    monkeypatch.setattr(rm, "SESSIONS_PER_ACCOUNT", 3)
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1") as url:
        opening = lambda key: requests.post(f"{url}/mcp", json=INITIALIZE, timeout=5,
                                            headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"})
        opened = [opening(KEY) for _ in range(3)]
        assert all(r.status_code == 200 for r in opened)
        refused = opening(KEY)
        assert refused.status_code == 429 and "3 open MCP sessions" in refused.json()["error"]
        escaped = json.dumps(INITIALIZE).replace('"initialize"', '"\\u0069nitialize"')     # the same to a JSON reader
        assert requests.post(f"{url}/mcp", data=escaped, timeout=5, headers={
            **MCP_HEADERS, "Authorization": f"Bearer {KEY}"}).status_code == 429
        batched = json.dumps([INITIALIZE])
        assert requests.post(f"{url}/mcp", data=batched, timeout=5, headers={
            **MCP_HEADERS, "Authorization": f"Bearer {KEY}"}).status_code == 429
        assert opening(KEY2).status_code == 200                         # another account is not affected
        ended = requests.delete(f"{url}/mcp", timeout=5, headers={
            **MCP_HEADERS, "Authorization": f"Bearer {KEY}", "Mcp-Session-Id": opened[0].headers["Mcp-Session-Id"],
            "MCP-Protocol-Version": "2025-06-18"})
        assert ended.status_code == 200 and opening(KEY).status_code == 200


def test_an_account_holds_its_bounded_number_of_sessions_however_slowly_it_sends(over_http_in_process, fake,
                                                                                monkeypatch):
    """Initializes whose headers all arrive before any body: each takes its slot as its body is read, not when its
    session id goes out, so that only the cap's number open."""
    monkeypatch.setattr(rm, "SESSIONS_PER_ACCOUNT", 3)
    body = json.dumps(INITIALIZE).encode()
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1") as url:
        port, held = int(url.rsplit(":", 1)[1]), []
        for _ in range(6):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            held[-1].sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode() +
                             b"\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json"
                             b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        time.sleep(0.3)
        for connection in held:
            connection.sendall(body)
        statuses = sorted(int(connection.recv(64).split()[1]) for connection in held)
        for connection in held:
            connection.close()
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_a_body_too_large_is_refused_whole_not_read_in_part(over_http_in_process, fake):
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1") as url:
        big = {**INITIALIZE, "params": {**INITIALIZE["params"], "padding": "x" * (rm.MAX_BODY + 1)}}
        answer = requests.post(f"{url}/mcp", json=big, timeout=10, headers={**MCP_HEADERS,
                                                                            "Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 413 and "over 16 MB" in answer.json()["error"]


def test_a_session_idle_past_its_time_is_not_counted_again_when_its_id_comes_back(over_http_in_process, fake,
                                                                                   monkeypatch):
    monkeypatch.setattr(rm, "SESSIONS_PER_ACCOUNT", 2)
    monkeypatch.setattr(rm, "SESSION_IDLE_S", 0.3)
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {KEY}"}
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1") as url:
        opening = lambda: requests.post(f"{url}/mcp", json=INITIALIZE, timeout=5, headers=headers)
        old = [opening().headers["Mcp-Session-Id"] for _ in range(2)]
        time.sleep(0.5)
        requests.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, timeout=5, headers={
            **headers, "Mcp-Session-Id": old[0], "MCP-Protocol-Version": "2025-06-18"})   # an id that has gone
        assert [opening().status_code for _ in range(2)] == [200, 200]
        refused = opening()
    assert refused.status_code == 429 and "holds 2 open MCP sessions" in refused.json()["error"]


@pytest.mark.anyio
async def test_keys_never_seen_before_are_limited_per_address(over_http_in_process, fake, monkeypatch):
    monkeypatch.setattr(rm, "NEW_KEYS", (3, 60.0))
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1") as url:
        statuses = [requests.post(f"{url}/mcp", json=INITIALIZE, timeout=5, headers={
            **MCP_HEADERS, "Authorization": f"Bearer key_{n:0128x}"}).status_code for n in range(6)]
        assert statuses == [401, 401, 401, 429, 429, 429]
        assert len(fake.seen("GET", "/v1/organization")) == 3
        assert requests.post(f"{url}/mcp", json=INITIALIZE, timeout=5, headers={
            **MCP_HEADERS, "Authorization": f"Bearer {KEY}", **ELSEWHERE}).status_code == 200   # another address


@pytest.mark.anyio
async def test_a_long_server_path_is_hidden_from_a_tenant_even_when_shortened(over_http_in_process, fake, tmp_path):
    root = tmp_path / ("shared-inputs-for-every-tenant-mounted-from-a-network-volume-" * 2)
    root.mkdir()
    with over_http_in_process(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAY_MCP_INPUT_ROOT=str(root)) as url:
        async with http_client(url, KEY) as alice:
            result, _ = await call(alice, "generate_video", {"prompt": "x", "image": "f" * 120 + ".png"})
            text = result.content[0].text
            assert result.is_error and "no file at" in text and "shared-inputs" not in text and str(tmp_path) not in text


def test_the_accounts_secret_is_made_once_whole_and_kept_private(tmp_path):
    made = []
    threads = [threading.Thread(target=lambda: made.append(rm._accounts_secret.__wrapped__(tmp_path)))
               for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 20 and len(set(made)) == 1 and len(made[0]) == 32
    secret = tmp_path / ".accounts-secret"
    secret.chmod(0o644)
    assert rm._accounts_secret.__wrapped__(tmp_path) == made[0] and secret.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("address", ["64:ff9b::a9fe:a9fe", "64:ff9b::a00:5", "2002:a9fe:a9fe::", "::a9fe:a9fe",
                                     "::ffff:0:a9fe:a9fe", "::ffff:10.0.0.1", "fe80::1", "fd00::1"])
def test_ipv6_addresses_that_carry_an_inward_ipv4_one_are_refused(address):
    assert not rm._reachable(address, 443, None)
    assert rm._reachable("2606:4700:4700::1111", 443, None) and rm._reachable("::1", 9, 9)


def test_rate_limit_buckets_stay_bounded_however_many_clients(monkeypatch):
    monkeypatch.setattr(rm, "BUCKETS_MAX", 1000)
    buckets = rm.Buckets(1, 60.0)
    for n in range(5000):
        assert buckets.take(f"10.0.{n // 256}.{n % 256}") == 0
    assert len(buckets.table) == 1000
    assert buckets.take("10.0.19.135") > 0                          # the most recent are still remembered


# Another address, through this machine as a proxy (uvicorn trusts X-Forwarded-For from 127.0.0.1).
ELSEWHERE = {"X-Forwarded-For": "203.0.113.9"}


@pytest.mark.anyio
async def test_the_rate_limit_answers_429_with_retry_after_and_sends_nothing(over_http_in_process, fake):
    with over_http_in_process(RUNWAY_MCP_RATE_LIMIT="2/min", RUNWAY_MCP_KEYS_FROM_CLIENTS="1") as url:
        async with http_client(url, KEY) as alice:
            for n in range(2):
                result, _ = await call(alice, "generate_image", {"prompt": f"take {n}", "wait": False})
                assert not result.is_error
            for _ in range(5):                                          # status calls: their own, larger budget
                assert not (await call(alice, "list_tasks"))[0].is_error
        posted = len(fake.seen("POST"))
        call_image = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": "generate_image", "arguments": {"prompt": "third"}}}
        response = requests.post(f"{url}/mcp", json=call_image, timeout=5,
                                 headers={**MCP_HEADERS, "Authorization": f"Bearer {KEY}"})
        assert response.status_code == 429 and 1 <= int(response.headers["Retry-After"]) <= 30
        assert "2 calls that create tasks per 60 s" in response.json()["error"] and len(fake.seen("POST")) == posted
        async with http_client(url, KEY2, **ELSEWHERE) as bob:      # another client has its own allowance
            assert not (await call(bob, "generate_image", {"prompt": "mine", "wait": False}))[0].is_error


@pytest.mark.anyio
async def test_browser_origins_get_cors_only_when_allowed(over_http_in_process):
    allowed, other = "https://app.example.com", "https://evil.example"
    with over_http_in_process(RUNWAY_MCP_ALLOWED_ORIGINS=allowed, RUNWAY_MCP_HTTP_TOKEN=TOKEN) as url:
        preflight = lambda origin: requests.options(f"{url}/mcp", timeout=5, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, mcp-session-id"})
        ok = preflight(allowed)
        assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == allowed
        assert "POST" in ok.headers["Access-Control-Allow-Methods"]
        assert "authorization" in ok.headers["Access-Control-Allow-Headers"].lower()
        refused = preflight(other)
        assert refused.status_code == 400 and "Access-Control-Allow-Origin" not in refused.headers
        post = lambda origin: requests.post(f"{url}/mcp", json=INITIALIZE, timeout=5, headers={
            **MCP_HEADERS, "Origin": origin, "Authorization": f"Bearer {TOKEN}"})
        answered = post(allowed)
        assert answered.status_code == 200 and answered.headers["Access-Control-Allow-Origin"] == allowed
        assert "mcp-session-id" in answered.headers["Access-Control-Expose-Headers"].lower()
        assert answered.headers["Mcp-Session-Id"]
        blocked = post(other)
        assert blocked.status_code == 403 and "Access-Control-Allow-Origin" not in blocked.headers   # rebinding
        assert requests.post(f"{url}/mcp", json=INITIALIZE, timeout=5, headers={
            **MCP_HEADERS, "Origin": allowed}).status_code == 401                                    # token still


class RoundRobin(httpx2.AsyncBaseTransport):
    """A load balancer without sticky sessions, as an httpx transport: each request goes to the next instance."""

    def __init__(self, urls):
        self.ports, self.sent = itertools.cycle(int(u.rsplit(":", 1)[1]) for u in urls), []
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request):
        request.url = request.url.copy_with(port=next(self.ports))
        self.sent.append(request.url.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


def balanced_client(urls, answer):
    """A 2026-07-28 client behind a round-robin balancer, whose person answers every confirmation with `answer`."""
    from mcp.client.streamable_http import streamable_http_client
    balancer = RoundRobin(urls)
    http = httpx2.AsyncClient(transport=balancer, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    async def elicit(context, params):
        client.asked.append(params.message)
        return ElicitResult(action=answer, content={})
    client = Client(streamable_http_client(f"{urls[0]}/mcp", http_client=http), mode="2026-07-28",
                    elicitation_callback=elicit)
    client.asked, client.balancer = [], balancer
    return client


@pytest.mark.slow
@pytest.mark.anyio
async def test_instances_sharing_the_output_folder_and_the_state_secret_serve_as_one(fake, tmp_path):
    """No sticky sessions, no state in one process alone: what one instance created, another waits on, lists,
    dedupes and reads; a confirmation begun on one is finished on another, given the same state secret."""
    fake.plan(seconds=0.5, mime="video/mp4")
    env = lambda secret: server_env(fake, tmp_path / "shared", RUNWAY_MCP_STATELESS="1", RUNWAY_MCP_HTTP_TOKEN=TOKEN,
                                    RUNWAY_MCP_CONFIRM_ABOVE="100", RUNWAY_MCP_STATE_SECRET=secret)
    with http_servers(env("s" * 40), env("s" * 40), env("t" * 40)) as (first, second, stranger):
        async with http_client(first, TOKEN) as one, http_client(second, TOKEN) as two:
            result, created = await call(one, "generate_video", {"prompt": "a long take", "wait": False})
            assert not result.is_error
            result, done = await call(two, "wait_for_task", {"task_id": created["task_id"]})
            assert done["status"] == "SUCCEEDED" and Path(done["outputs"][0]["path"]).parent == tmp_path / "shared"
            _, listed = await call(two, "list_tasks")
            assert listed["tasks"][0]["task_id"] == created["task_id"] and listed["tasks"][0]["status"] == "SUCCEEDED"
            _, again = await call(one, "generate_video", {"prompt": "a long take"})        # the twin, via the ledger
            assert again["task_id"] == created["task_id"] and len(fake.seen("POST")) == 1
            [content] = (await one.read_resource(done["outputs"][0]["uri"])).contents     # saved by the other
            assert content.mime_type == "video/mp4"
            storm = {"prompt": "a storm", "duration": 10, "wait": False}                  # 120 credits: asked
            result, _ = await call(one, "generate_video", storm)       # a legacy client: no session to ask on
            assert result.is_error and "can ask only clients speaking MCP 2026-07-28" in result.content[0].text
            assert len(fake.seen("POST")) == 1
        async with balanced_client([first, second], "accept") as client:
            result, data = await call(client, "generate_video", storm)
            assert not result.is_error and data["status"] == "PENDING" and len(fake.seen("POST")) == 2
        assert client.asked == ["Generate 10 s of gen4.5 video for about 120 credits?"]
        assert set(client.balancer.sent) == {int(first.rsplit(":", 1)[1]), int(second.rsplit(":", 1)[1])}
        async with balanced_client([first, stranger], "accept") as client:   # another secret cannot open the state
            with pytest.raises(MCPError, match="requestState"):
                await call(client, "generate_video", {**storm, "prompt": "another storm"})
        assert client.asked and len(fake.seen("POST")) == 2


def test_http_refuses_a_public_bind_without_a_token(main, capsys):
    assert main("--transport", "http", "--host", "0.0.0.0", "--port", str(free_port())) == 2
    stderr = capsys.readouterr().err
    assert "RUNWAY_MCP_HTTP_TOKEN" in stderr and len([line for line in stderr.splitlines() if "refusing" in line]) == 1


def test_http_refuses_a_token_and_client_keys_together(main, serve, capsys):
    serve(RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAY_MCP_HTTP_TOKEN=TOKEN)
    assert main("--transport", "http", "--port", str(free_port())) == 2
    stderr = capsys.readouterr().err
    assert "unset RUNWAY_MCP_HTTP_TOKEN" in stderr and TOKEN not in stderr


# The viewer in a real browser -----------------------------------------------------------------------------
# Headless Chromium as the host: the official ext-apps AppBridge (bundled by esbuild) renders the viewer in a
# sandboxed iframe with the CSP its resource declares, and forwards the view's tools/call and resources/read to
# runway_mcp.py over stdio, running against the fake API. Real media, so that players really load: a 1 s H.264
# MP4 (64x64) and a 0.5 s MP3, made with ffmpeg for these tests.

PLAYABLE_MP4 = base64.b64decode(
    "AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAANGbW9vdgAAAGxtdmhkAAAAAAAAAAAAAAAAAAAD6AAAA+gAAQAAAQAAAAAAAAAA"
    "AAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAnB0cmFrAAAAXHRr"
    "aGQAAAADAAAAAAAAAAAAAAABAAAAAAAAA+gAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAEAA"
    "AABAAAAAAAAkZWR0cwAAABxlbHN0AAAAAAAAAAEAAAPoAAAAAAABAAAAAAHobWRpYQAAACBtZGhkAAAAAAAAAAAAAAAAAABAAAAAQABVxAAA"
    "AAAALWhkbHIAAAAAAAAAAHZpZGUAAAAAAAAAAAAAAABWaWRlb0hhbmRsZXIAAAABk21pbmYAAAAUdm1oZAAAAAEAAAAAAAAAAAAAACRkaW5m"
    "AAAAHGRyZWYAAAAAAAAAAQAAAAx1cmwgAAAAAQAAAVNzdGJsAAAAu3N0c2QAAAAAAAAAAQAAAKthdmMxAAAAAAAAAAEAAAAAAAAAAAAAAAAA"
    "AAAAAEAAQABIAAAASAAAAAAAAAABFUxhdmM1OS4zNy4xMDAgbGlieDI2NAAAAAAAAAAAAAAAGP//AAAAMWF2Y0MBQsAK/+EAGGdCwAqmERCb"
    "ARAAAAMAEAAAAwEA8SJhGAEABmjIQgOSyAAAABBwYXNwAAAAAQAAAAEAAAAUYnRydAAAAAAAACRwAAAkcAAAABhzdHRzAAAAAAAAAAEAAAAI"
    "AAAIAAAAABRzdHNzAAAAAAAAAAEAAAABAAAAHHN0c2MAAAAAAAAAAQAAAAEAAAAIAAAAAQAAADRzdHN6AAAAAAAAAAAAAAAIAAAD4QAAABkA"
    "AAAaAAAAGwAAABYAAAAZAAAAHQAAABMAAAAUc3RjbwAAAAAAAAABAAADdgAAAGJ1ZHRhAAAAWm1ldGEAAAAAAAAAIWhkbHIAAAAAAAAAAG1k"
    "aXJhcHBsAAAAAAAAAAAAAAAALWlsc3QAAAAlqXRvbwAAAB1kYXRhAAAAAQAAAABMYXZmNTkuMjcuMTAwAAAACGZyZWUAAASWbWRhdAAAAnIG"
    "Bf//btxF6b3m2Ui3lizYINkj7u94MjY0IC0gY29yZSAxNjQgcjMwOTUgYmFlZTQwMCAtIEguMjY0L01QRUctNCBBVkMgY29kZWMgLSBDb3B5"
    "bGVmdCAyMDAzLTIwMjIgLSBodHRwOi8vd3d3LnZpZGVvbGFuLm9yZy94MjY0Lmh0bWwgLSBvcHRpb25zOiBjYWJhYz0wIHJlZj0xNiBkZWJs"
    "b2NrPTE6MDowIGFuYWx5c2U9MHgxOjB4MTMxIG1lPXVtaCBzdWJtZT0xMCBwc3k9MSBwc3lfcmQ9MS4wMDowLjAwIG1peGVkX3JlZj0xIG1l"
    "X3JhbmdlPTI0IGNocm9tYV9tZT0xIHRyZWxsaXM9MiA4eDhkY3Q9MCBjcW09MCBkZWFkem9uZT0yMSwxMSBmYXN0X3Bza2lwPTEgY2hyb21h"
    "X3FwX29mZnNldD0tMiB0aHJlYWRzPTIgbG9va2FoZWFkX3RocmVhZHM9MSBzbGljZWRfdGhyZWFkcz0wIG5yPTAgZGVjaW1hdGU9MSBpbnRl"
    "cmxhY2VkPTAgYmx1cmF5X2NvbXBhdD0wIGNvbnN0cmFpbmVkX2ludHJhPTAgYmZyYW1lcz0wIHdlaWdodHA9MCBrZXlpbnQ9MjUwIGtleWlu"
    "dF9taW49OCBzY2VuZWN1dD00MCBpbnRyYV9yZWZyZXNoPTAgcmNfbG9va2FoZWFkPTYwIHJjPWNyZiBtYnRyZWU9MSBjcmY9NDAuMCBxY29t"
    "cD0wLjYwIHFwbWluPTAgcXBtYXg9NjkgcXBzdGVwPTQgaXBfcmF0aW89MS40MCBhcT0xOjEuMDAAgAAAAWdliIIThiKABgeujBnevfz/gRZs"
    "x6P/4lkQAEQxvq/oBJ3pZMGUlnLHwh40WKZc4lJW/G5I978CgEECBAFYcQUH7BCY5f6rsD9jw+IY//DRwdMZpb+JHLqEgEcAAQGQgUDWHIml"
    "gbsgLvj+AG+UxBLnn+vDXGnGC8ZlSKfr4JOtrNuCWsMjEQQACAWCsPffM0ZKwZkdfDb7cPh+EzlFTO/4tgGbXh6wHWO/x5eeHTI2n/FP6wYc"
    "ZbGAd4DCuqd52Lus+z+kJIYQ//wQEBgPQZB59tNzMXr//7MEJYDiEcyZG5gtmMI9cFAMKHm+vCj5tOvDATAsMCOMFn0PtMouTQI+s0UfHkqI"
    "oRzr671hQfMIo27MIgA84SA4HcVkYB3uE7+wLzWGnmF8voHgsQAOOvv173cIgACAMPAYC7DylSxh8buvljC2P4dHC4BxdfeNYsvh/LfEIUDg"
    "BFxRdE02K4DOPJBJdxglwAAAABVBmhwnFYnxNdedcQtx4ITO7vSLVfYAAAAWQZoqDcakJfT+kVoEYk9nv06ow7WdgAAAABdBmjsNxqx0f+jy"
    "L+X29YrL+Gta9qff4AAAABJBmkkBHG+unVY76xX/BFrU6mAAAAAVQZpZQVxqwlCbXMPgi3vd+skX1EWmAAAAGUGaaYGcb57/z6fax31jOfHH"
    "5NS+CLWvIMAAAAAPQZp5wIcasdH69W9VOjqA"
)
PLAYABLE_MP3 = base64.b64decode(
    "SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjU5LjI3LjEwMAAAAAAAAAAAAAAA/+M4wAAAAAAAAAAAAEluZm8AAAAPAAAACQAAA2AAVVVVVVVV"
    "VVVVVVVqampqampqampqaoCAgICAgICAgICAlZWVlZWVlZWVlZWqqqqqqqqqqqqqqsDAwMDAwMDAwMDA1dXV1dXV1dXV1dXq6urq6urq6urq"
    "6v//////////////AAAAAExhdmM1OS4zNwAAAAAAAAAAAAAAACQCYAAAAAAAAANgGNVEmAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAA/+MYxAANIJaceUwAAAgLdwL3ve973vSlKUpSnXve97/O007EMCYEwJiOf8OBAEMTh///nOn3f0ghy/uxAAwf"
    "4Y6VJoiwyxM//+MYxAYOcPKUAZRQAOOaK1HKELf4WeEcgd4wBjwknAO+SEaSHgdCKJzCSAyBRFYRQiv/yEej044iEv+EgaEp0Gn/////////"
    "/+MYxAcN6KZAAd4AAP/////5UlsAgAk1hCAIYEIKBg1gtGDmI8Yc8ixjCCGGF6CYYGYGgOAjL7g4A1IV1Or///fVgRe0wIIy/+MYxAoM2KY0"
    "AAa8RCSNAlOPYMMAUs23aCzPQD/MJ0EIwMgCygApRNE5UrDrH////////q/9Vf//+AF5p6NHTwMuHOQ4MNMQ/+MYxBENMKY0AAa8RBN4R/00"
    "MQyzC0A6MEcBswHgEjAEAILPpeMDx////////3//rf//+Tt6l0DgEwITApsDIcEj0GEB0UYH/+MYxBcMeKY0AAb8RCMASA6hYC4AgHhgAZEA"
    "Imyx2///////////1P///jGAGAADfQMAIBwMCwEgEAvAxGjLAx9m1A6vxbA3/+MYxCANOKZAAVYAAKQ/gMGwIAMAwCQAgXgJAKI+GYEKISB/"
    "////s4cSwyj/////YhFFbEVPf85RHQv63Q3mGS4VwAAo2ydd/+MYxCYWuZqIIZuAAN//CwsG7xkxjxKZE///KZByudIubrL///+bol83BcPA"
    "//+Aw8D4DDwf//xpomNNJd//+auQcKbkAA///+MYxAYM0Lq1GcMYA2Zl/ZmZlLjBmDCigYCAm1AQJv6qgLDfigoU/oKDHfiCjf/EGCv6ChR3"
    "4gx3/2pMQU1FMy4xMDCqqqqq"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VIEW_HOST = r"""// A test host for the viewer: real Chromium, the official ext-apps AppBridge, the real server over stdio.
// Usage: node harness.mjs <config.json>; prints a JSON report on stdout.
import {spawn} from "node:child_process";
import {readFileSync} from "node:fs";
import {createInterface} from "node:readline";
import {build} from "esbuild";
import puppeteer from "puppeteer-core";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));

class StdioServer {
  constructor(env) {
    this.process = spawn(config.python, [config.server], {env, stdio: ["pipe", "pipe", "pipe"]});
    this.pending = new Map();
    this.nextId = 1;
    this.stderr = "";
    this.process.stderr.on("data", (chunk) => { this.stderr += chunk; });
    createInterface({input: this.process.stdout}).on("line", (line) => {
      const message = JSON.parse(line);
      const waiting = message.id !== undefined && this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      message.error ? waiting.reject(new Error(`${message.error.code} ${message.error.message}`))
                    : waiting.resolve(message.result);
    });
  }
  send(message) { this.process.stdin.write(JSON.stringify(message) + "\n"); }
  request(method, params) {
    const id = this.nextId++;
    this.send({jsonrpc: "2.0", id, method, params});
    return new Promise((resolve, reject) => this.pending.set(id, {resolve, reject}));
  }
  async start() {
    await this.request("initialize", {protocolVersion: "2025-11-25", clientInfo: {name: "browser-test", version: "1"},
      capabilities: {extensions: {"io.modelcontextprotocol/ui": {mimeTypes: ["text/html;profile=mcp-app"]}}}});
    this.send({jsonrpc: "2.0", method: "notifications/initialized"});
    return this;
  }
  close() { this.process.stdin.end(); }
}

const HOST = `
import {AppBridge, PostMessageTransport} from "@modelcontextprotocol/ext-apps/app-bridge";
window.initialized = 0;
window.bridges = {};
window.mount = async (name, server, html, csp, input, result, theme) => {
  const frame = document.createElement("iframe");
  frame.name = name;
  frame.setAttribute("sandbox", "allow-scripts");
  frame.style.cssText = "width: 640px; height: 700px; border: 0";
  frame.srcdoc = html.replace("<head>", '<head><meta http-equiv="Content-Security-Policy" content="' + csp + '">');
  document.body.replaceChildren(frame);
  await new Promise((resolve) => frame.addEventListener("load", resolve, {once: true}));
  const bridge = new AppBridge(null, {name: "browser-test-host", version: "1"}, {serverTools: {}, serverResources: {}},
                              {hostContext: {theme}});
  window.bridges[name] = bridge;
  bridge.oncalltool = (params) => window.mcpRequest(server, "tools/call", params);
  bridge.onreadresource = (params) => window.mcpRequest(server, "resources/read", params);
  const ready = new Promise((resolve) => { bridge.oninitialized = () => { window.initialized += 1; resolve(); }; });
  await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
  await ready;
  await bridge.sendToolInput({arguments: input});
  await bridge.sendToolResult(result);
};
`;

function cspFor(resource, extra = []) {
  const domains = [...((resource._meta?.ui?.csp?.resourceDomains) || []), ...extra].join(" ");
  return `default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; ` +
         `img-src 'self' data: ${domains}; media-src 'self' data: ${domains}; connect-src 'none'; ` +
         `frame-src 'none'; object-src 'none'; base-uri 'self'`;
}

const report = {scenarios: {}, console: [], violations: []};
const servers = {saved: await new StdioServer(config.env).start(),
                 unsaved: await new StdioServer({...config.env, RUNWAY_MCP_DOWNLOAD: "0"}).start()};
const browser = await puppeteer.launch({executablePath: config.chromium, headless: true, userDataDir: config.profile,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]});
try {
  const page = await browser.newPage();
  page.on("console", (message) => {
    report.console.push(`${message.type()}: ${message.text()}`);
    if (/Content Security Policy/i.test(message.text())) report.violations.push(message.text());
  });
  await page.exposeFunction("mcpRequest", (server, method, params) => servers[server].request(method, params));
  const bundle = await build({stdin: {contents: HOST, resolveDir: config.tools}, bundle: true, write: false,
                              format: "iife", platform: "browser", logLevel: "silent"});
  await page.setContent(`<!DOCTYPE html><html><body><script>${bundle.outputFiles[0].text}</script></body></html>`);
  const [viewer] = (await servers.saved.request("resources/read", {uri: config.viewer})).contents;

  const results = {};
  async function view(step) {
    const server = step.server || "saved";
    const result = results[step.name] = step.again ? results[step.again]
      : await servers[server].request("tools/call", {name: step.tool, arguments: step.input});
    if (step.clearFiles) await fetch(`${config.fake}/files`, {method: "DELETE"});   // Runway's links are gone
    await page.evaluate((...args) => window.mount(...args), step.name, server, viewer.text,
                        cspFor(viewer, server === "unsaved" ? [config.fake] : []), step.input || {}, result,
                        step.theme || "light");
    return {frame: page.frames().find((frame) => frame.name() === step.name), result};
  }
  async function media(frame, selector) {
    await frame.waitForSelector(`${selector}[data-loaded="true"]`, {timeout: 20000});
    return frame.$eval(selector, (node) => ({scheme: (node.currentSrc || node.src).split(":")[0],
      ready: node.readyState ?? (node.complete && node.naturalWidth > 0 ? 4 : 0)}));
  }
  async function text(frame) { return frame.$eval("main", (node) => node.innerText); }

  for (const step of config.steps) {
    const entry = report.scenarios[step.name] = {};
    try {
      const {frame, result} = await view(step);
      entry.status = result.structuredContent?.status;
      if (step.click) {
        await frame.waitForSelector("button");
        entry.before = await text(frame);
        await frame.click("button");
        await frame.waitForFunction(() => !document.querySelector("button"), {timeout: 20000});
      }
      if (step.media) entry.media = await media(frame, step.media);
      if (step.alsoMedia) entry.alsoMedia = await media(frame, step.alsoMedia);
      entry.text = await text(frame);
      if (step.theme) {
        const scheme = () => frame.evaluate(() => getComputedStyle(document.documentElement).colorScheme);
        entry.themes = [await scheme()];
        await page.evaluate((name) => window.bridges[name].setHostContext({theme: "light"}), step.name);
        await frame.waitForFunction(() => getComputedStyle(document.documentElement).colorScheme === "light",
                                    {timeout: 5000}).catch(() => {});
        entry.themes.push(await scheme());
      }
      entry.height = await frame.evaluate(() => document.documentElement.style.height);
    } catch (error) {
      entry.error = String(error.stack || error);
    }
  }
  report.initialized = await page.evaluate(() => window.initialized);
} finally {
  await browser.close();
  for (const server of Object.values(servers)) server.close();
  report.stderr = servers.saved.stderr.slice(-3000);
  console.log(JSON.stringify(report));
}
"""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
@needs_node_tool("esbuild")
def test_the_viewer_shows_every_result_in_a_real_browser(fake, tmp_path):
    for plan in ({"mime": "image/png"}, {"mime": "video/mp4", "content": PLAYABLE_MP4},
                 {"mime": "audio/mpeg", "content": PLAYABLE_MP3},
                 {"seconds": 1.5, "mime": "video/mp4", "content": PLAYABLE_MP4},
                 {"outcome": "FAILED"}, {"mime": "image/png"},
                 {"mime": "image/png"}, {"mime": "audio/mpeg", "content": PLAYABLE_MP3}):
        fake.plan(**plan)
    steps = [
        {"name": "image", "tool": "generate_image", "input": {"prompt": "a red fox"}, "media": "img", "theme": "dark"},
        {"name": "video", "tool": "generate_video", "input": {"prompt": "waves"}, "media": "video"},
        {"name": "audio", "tool": "generate_speech", "input": {"text": "hello"}, "media": "audio"},
        {"name": "link_gone", "again": "video", "clearFiles": True, "media": "video"},
        {"name": "running", "tool": "generate_video", "input": {"prompt": "a long take", "max_wait_s": 0.3},
         "click": True, "media": "video"},
        {"name": "failed", "tool": "generate_image", "input": {"prompt": "x"}},
        {"name": "not_saved", "server": "unsaved", "tool": "generate_image", "input": {"prompt": "y"}, "media": "img"},
        {"name": "batch", "tool": "generate_batch", "media": "img", "alsoMedia": "audio", "input": {"requests": [
            {"tool": "generate_image", "arguments": {"prompt": "a cat"}},
            {"tool": "generate_speech", "arguments": {"text": "meow"}}]}},
    ]
    config = {"python": sys.executable, "server": SERVER, "chromium": CHROMIUM, "profile": str(tmp_path / "profile"),
              "tools": str(HERE / ".tools"), "viewer": rm.VIEWER_URI, "fake": fake.url, "steps": steps,
              "env": plain_env(**server_env(fake, tmp_path / "out"))}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "host.mjs").write_text(VIEW_HOST)
    (tmp_path / "node_modules").symlink_to(HERE / ".tools" / "node_modules")     # where its imports resolve
    done = subprocess.run(["node", str(tmp_path / "host.mjs"), str(tmp_path / "config.json")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    seen = report["scenarios"]
    assert not [name for name, entry in seen.items() if "error" in entry], json.dumps(seen, indent=1)[:4000]
    assert report["initialized"] == len(steps)                            # every view completed the handshake
    for name in ("image", "video", "audio", "link_gone"):
        assert seen[name]["media"]["scheme"] == "data" and seen[name]["media"]["ready"] >= 2, name
        assert seen[name]["height"].endswith("px"), name                  # an explicit height
    assert "gen4_image" in seen["image"]["text"] and "a red fox" in seen["image"]["text"]
    assert "credits" in seen["image"]["text"] and seen["image"]["themes"] == ["dark", "light"]
    assert seen["running"]["status"] == "RUNNING" and "Keep waiting" in seen["running"]["before"]
    assert seen["running"]["text"].startswith("SUCCEEDED") and seen["running"]["media"]["scheme"] == "data"
    assert seen["failed"]["status"] == "FAILED" and "flagged by moderation (SAFETY.OUTPUT.IMAGE)" in seen["failed"]["text"]
    assert seen["not_saved"]["media"]["scheme"] == "http"                # Runway's link, nothing saved
    assert seen["batch"]["media"]["ready"] >= 2 and seen["batch"]["alsoMedia"]["ready"] >= 2    # a section each
    assert "a cat" in seen["batch"]["text"] and "meow" in seen["batch"]["text"]
    assert report["violations"] == [], report["violations"]
    assert not [line for line in report["console"] if line.startswith("error:")], report["console"]


##############################################################################
# End to end: MCP tasks (the 2026-07-28 extension), over raw JSON-RPC
##############################################################################

TASKS = "io.modelcontextprotocol/tasks"
HANDLE_FIELDS = {"resultType", "taskId", "status", "statusMessage", "createdAt", "lastUpdatedAt", "ttlMs",
                 "pollIntervalMs"}


class Modern:
    """A 2026-07-28 client over raw HTTP (no session), declaring the tasks extension on every request unless told
    not to: the requests Claude Code and the Inspector send, field by field."""

    def __init__(self, url, key=None, tasks=True, **capabilities):
        self.url, self.key = url, key
        self.capabilities = {**capabilities, **({"extensions": {TASKS: {}}} if tasks else {})}

    def send(self, method, params=None, name=None, capabilities=None) -> dict:
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": self.capabilities if capabilities is None else capabilities}
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**(params or {}), "_meta": meta}}
        headers = {**MCP_HEADERS, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method,
                   **({"Mcp-Name": name} if name else {}), **({"Authorization": f"Bearer {self.key}"} if self.key else {})}
        answer = requests.post(f"{self.url}/mcp", json=body, headers=headers, timeout=10).json()
        meta = answer.get("result", {}).get("_meta", {})
        if meta.pop("io.modelcontextprotocol/serverInfo", None) and not meta:      # on every answer: not the point
            del answer["result"]["_meta"]
        return answer

    def call(self, tool, arguments, **params) -> dict:
        return self.send("tools/call", {"name": tool, "arguments": arguments, **params}, name=tool)["result"]

    def task(self, method, task_id, **params) -> dict:
        return self.send(f"tasks/{method}", {"taskId": task_id, **params}, name=task_id)

    def until_done(self, task_id, seen=None) -> dict:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = self.task("get", task_id)["result"]
            if seen is not None:
                seen.append(got["statusMessage"])
            if got["status"] not in ("working", "input_required"):
                return got
            time.sleep(0.02)
        raise AssertionError(f"task {task_id} still working after 10 s")


@pytest.fixture
def modern(over_http_in_process):
    """Serve over HTTP with server_env(**extra) and speak to it as a 2026-07-28 client that declares tasks."""
    @contextlib.contextmanager
    def connect(key=None, **extra):
        with over_http_in_process(**extra) as url:
            yield Modern(url, key)
    return connect


def test_a_call_that_declares_tasks_gets_a_task_at_once_and_then_the_result_it_would_have_waited_for(modern, fake):
    fake.plan(polls=4, mime="video/mp4")
    with modern() as client:
        assert client.send("server/discover")["result"]["capabilities"]["extensions"] == {TASKS: {}}
        started = time.monotonic()
        handle = client.call("generate_video", {"prompt": "a lighthouse in a storm"})
        assert time.monotonic() - started < 1 and set(handle) - {"_meta"} == HANDLE_FIELDS
        assert handle["resultType"] == "task" and handle["status"] == "working" and len(handle["taskId"]) >= 32
        assert handle["ttlMs"] == 24 * 3600 * 1000 and handle["pollIntervalMs"] == 100     # the poll interval, >= 0.1 s
        assert datetime.fromisoformat(handle["createdAt"].replace("Z", "+00:00")).tzinfo is not None
        [runway_task] = fake.tasks
        told = handle["_meta"]["com.anthropic/agent-task"]["modelImmediateResponse"]
        assert told.startswith("generate_video is running in the background: Runway task ") and runway_task in told
        seen = []
        done = client.until_done(handle["taskId"], seen)
        assert done["resultType"] == "complete" and done["status"] == "completed" and set(done) - {"_meta", "result"} == \
            HANDLE_FIELDS
        assert any(re.fullmatch(r"RUNNING \d+% · \d+s", message) for message in seen), seen
        result = done["result"]
        assert result["isError"] is False and result["structuredContent"]["status"] == "SUCCEEDED"
        assert [block["type"] for block in result["content"]] == ["text", "resource_link"]
        assert Path(result["structuredContent"]["outputs"][0]["path"]).is_file()
        synchronous = client.send("tools/call", {"name": "generate_video", "arguments": {"prompt": "the same, again",
                                  "new": True}}, name="generate_video", capabilities={})["result"]   # not declared
        assert synchronous["resultType"] == "complete" and "taskId" not in synchronous
        assert set(synchronous) == set(result) | {"resultType"} and set(synchronous["structuredContent"]) == set(
            result["structuredContent"])
        assert client.task("get", handle["taskId"])["result"]["status"] == "completed"     # asked again: the same


def test_a_call_without_the_extension_is_answered_as_before(modern, fake):
    fake.plan(polls=2)
    with modern() as client:
        answer = client.send("tools/call", {"name": "generate_image", "arguments": {"prompt": "a fox"}},
                             name="generate_image", capabilities={"elicitation": {}})
        assert answer["result"]["structuredContent"]["status"] == "SUCCEEDED"
        task = client.call("generate_image", {"prompt": "a fox", "new": True})["taskId"]
        refused = client.send("tasks/get", {"taskId": task}, name=task, capabilities={})     # not declared
        assert refused["error"]["code"] == -32021 and refused["error"]["data"] == {
            "requiredCapabilities": {"extensions": {TASKS: {}}}}
        for method in ("tasks/result", "tasks/list"):
            assert client.send(method, {"taskId": task}, name=task)["error"]["code"] == -32601


def test_an_older_client_that_lists_the_extension_at_initialize_still_gets_a_result(modern, fake):
    """Before 2026-07-28 a task is not a result a client can read, whatever it listed at initialize."""
    fake.plan(polls=2)
    initialize = {**INITIALIZE, "params": {**INITIALIZE["params"], "protocolVersion": "2025-11-25",
                                           "capabilities": {"extensions": {TASKS: {}}}}}
    with modern() as client:
        opened = requests.post(f"{client.url}/mcp", json=initialize, headers=MCP_HEADERS, timeout=5)
        session = {**MCP_HEADERS, "Mcp-Session-Id": opened.headers["Mcp-Session-Id"],
                   "MCP-Protocol-Version": "2025-11-25"}
        requests.post(f"{client.url}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                      headers=session, timeout=5)
        answer = requests.post(f"{client.url}/mcp", headers=session, timeout=10, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "generate_image", "arguments": {"prompt": "a fox"}}})
    [event] = [line for line in answer.text.splitlines() if line.startswith("data: {")]
    assert json.loads(event[6:])["result"]["structuredContent"]["status"] == "SUCCEEDED"


def test_what_is_not_a_long_wait_is_answered_at_once(modern, fake):
    with modern(RUNWAY_MCP_CONFIRM_ABOVE="50") as client:
        dry = client.call("generate_video", {"prompt": "a storm", "dry_run": True})
        assert dry["resultType"] == "complete" and dry["structuredContent"]["status"] == "DRY_RUN"
        bad = client.call("generate_video", {"prompt": "a storm", "duration": 99})
        assert bad["isError"] and "duration=99" in bad["content"][0]["text"]
        free = client.call("list_models", {"kind": "audio"})
        assert free["resultType"] == "complete"
        assert fake.seen("POST") == []


def test_a_confirmation_is_asked_before_any_task_exists(modern, fake):
    fake.plan(polls=2, mime="video/mp4")
    with modern(RUNWAY_MCP_CONFIRM_ABOVE="5") as client:
        client.capabilities["elicitation"] = {}
        asked = client.call("generate_video", {"prompt": "a storm"})
        assert asked["resultType"] == "input_required" and fake.seen("POST") == []
        [question] = asked["inputRequests"]
        declined = client.call("generate_video", {"prompt": "a storm"}, requestState=asked["requestState"],
                               inputResponses={question: {"action": "decline"}})
        assert declined["structuredContent"]["status"] == "DECLINED" and fake.seen("POST") == []
        asked = client.call("generate_video", {"prompt": "a storm"})
        handle = client.call("generate_video", {"prompt": "a storm"}, requestState=asked["requestState"],
                             inputResponses={question: {"action": "accept", "content": {}}})
        assert handle["resultType"] == "task" and len(fake.seen("POST")) == 1
        assert client.until_done(handle["taskId"])["result"]["structuredContent"]["status"] == "SUCCEEDED"


def test_a_failed_runway_task_is_a_completed_task_with_an_error_result(modern, fake):
    fake.plan(outcome="FAILED", polls=2)
    with modern() as client:
        done = client.until_done(client.call("generate_image", {"prompt": "a fox"})["taskId"])
    assert done["status"] == "completed" and done["result"]["isError"] is True
    assert done["result"]["structuredContent"]["failure"] == "The output was flagged by moderation"


def test_a_fault_of_the_server_while_finishing_is_a_failed_task(modern, fake, monkeypatch, serve):
    def broken(*args):
        raise ValueError("a bug")
    monkeypatch.setattr(rm, "finished_result", broken)
    fake.plan(polls=1)
    with modern() as client:
        handle = client.call("generate_image", {"prompt": "a fox"})
        done = client.until_done(handle["taskId"])
        monkeypatch.undo()                                           # fixed, or another instance without the bug:
        with http_in_process(serve.config) as other:                 # the task stays as it ended
            assert Modern(other).task("get", handle["taskId"])["result"] == {**done, "lastUpdatedAt": ANY}
    [runway_task] = fake.tasks
    assert done["status"] == "failed" and done["error"]["code"] == -32603 and "result" not in done
    assert done["error"]["message"] == f"generate_image could not finish; get_task('{runway_task}') shows the Runway task"


def test_tasks_cancel_cancels_the_runway_task_and_leaves_a_finished_one_alone(modern, fake):
    fake.plan(polls=50, mime="video/mp4")
    fake.plan(polls=1)
    with modern() as client:
        running = client.call("generate_video", {"prompt": "a storm"})["taskId"]
        assert client.task("cancel", running)["result"] == {"resultType": "complete"}     # an empty acknowledgement
        [video_task, *_] = fake.tasks
        assert [r["path"] for r in fake.seen("DELETE")] == [f"/v1/tasks/{video_task}"]
        assert client.task("get", running)["result"]["status"] == "cancelled"
        finished = client.call("generate_image", {"prompt": "a fox"})["taskId"]
        assert client.until_done(finished)["status"] == "completed"
        assert client.task("cancel", finished)["result"]["resultType"] == "complete"
        assert len(fake.seen("DELETE")) == 1                                # Runway's DELETE would delete it
        assert client.task("get", finished)["result"]["status"] == "completed"
        assert client.task("update", finished, inputResponses={"nobody": {"action": "accept"}})["result"] == {
            "resultType": "complete"}


def test_a_cancel_never_deletes_a_task_that_has_ended_even_when_runway_cannot_be_asked(modern, fake, serve):
    """Runway's DELETE of a finished task deletes its outputs: a cancel sends one only on Runway's own word, just
    given, that the task runs; not on a check that failed, nor on another instance that has forgotten the end."""
    fake.plan(polls=1, mime="image/png")
    fake.plan(polls=1, mime="image/png")
    with modern() as client:
        ended = client.call("generate_image", {"prompt": "a hen"})["taskId"]
        fake.finish(next(iter(fake.tasks)))                          # it has ended; nobody has asked yet
        assert client.task("cancel", ended)["result"] == {"resultType": "complete"}
        assert client.until_done(ended)["status"] == "completed"     # its result, not "cancelled"
        task = client.call("generate_image", {"prompt": "a fox"})["taskId"]
        [_, runway_task] = fake.tasks
        fake.finish(runway_task)
        fake.fail("GET", "/v1/tasks/", 429)
        failed = client.task("cancel", task)["error"]
        assert failed["code"] == -32603 and "could not be cancelled" in failed["message"]
        assert client.until_done(task)["status"] == "completed"
        with http_in_process(serve.config) as other:                 # an instance that never saw it end
            fake.fail("GET", "/v1/tasks/", 500)
            assert Modern(other).task("cancel", task)["result"] == {"resultType": "complete"}
            assert Modern(other).task("get", task)["result"]["status"] == "completed"
    assert fake.seen("DELETE") == []


def test_a_cancel_whose_delete_fails_is_an_error_and_the_task_goes_on(modern, fake):
    fake.plan(polls=3, mime="video/mp4")
    with modern() as client:
        task = client.call("generate_video", {"prompt": "a storm"})["taskId"]
        fake.fail("DELETE", "/v1/tasks/", 400)
        failed = client.task("cancel", task)["error"]
        assert failed["code"] == -32603 and "the task goes on" in failed["message"]
        assert client.until_done(task)["status"] == "completed"      # not recorded as cancelled


def test_a_storm_of_cancels_costs_runway_one_check_and_one_delete(modern, fake, monkeypatch):
    fake.plan(polls=10**6, mime="video/mp4")
    fetched = rm.fetch_task
    monkeypatch.setattr(rm, "fetch_task", lambda *args, **kwargs: time.sleep(0.05) or fetched(*args, **kwargs))
    with modern() as client:                                         # (a slower Runway: the cancels overlap)
        task = client.call("generate_video", {"prompt": "a storm"})["taskId"]
        gets = len(fake.seen("GET", "/v1/tasks/"))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: client.task("cancel", task)["result"], range(24)))
        assert answers == [{"resultType": "complete"}] * 24
        assert len(fake.seen("DELETE")) == 1 and len(fake.seen("GET", "/v1/tasks/")) - gets == 1
        assert client.task("get", task)["result"]["status"] == "cancelled"


def test_a_completed_task_stays_completed_however_many_have_ended_since(modern, fake, monkeypatch):
    monkeypatch.setattr(rm, "FINISHED_KEPT", 2)
    for _ in range(4):
        fake.plan(polls=1, mime="image/png")
    with modern() as client:
        tasks = [client.call("generate_image", {"prompt": f"a fox {n}"})["taskId"] for n in range(4)]
        first = [client.until_done(task) for task in tasks]
        gets = len(fake.seen("GET"))
        again = [client.task("get", task)["result"] for task in tasks]       # two were forgotten here
    assert [got["status"] for got in again] == ["completed"] * 4
    assert all(same_result(one["result"], other["result"]) for one, other in zip(first, again))
    assert len(fake.seen("GET")) == gets                                     # from the ledger and the saved files


def test_a_batch_with_a_workflow_run_cancels_what_can_be_cancelled(modern, fake):
    fake.plan(polls=10**6, mime="video/mp4")
    fake.plan(polls=10**6)
    with modern() as client:
        batch = client.call("generate_batch", {"requests": [
            {"tool": "generate_video", "arguments": {"prompt": "a storm"}},
            {"tool": "run_workflow", "arguments": {"workflow_id": WORKFLOW_ID}}]})["taskId"]
        assert client.task("cancel", batch)["result"] == {"resultType": "complete"}
        assert client.task("get", batch)["result"]["status"] == "cancelled"   # the workflow run goes on regardless
    video = next(t for t, task in fake.tasks.items() if task["endpoint"] == "text_to_video")
    assert [r["path"] for r in fake.seen("DELETE")] == [f"/v1/tasks/{video}"]


def test_a_cancel_leaves_a_runway_task_that_another_call_follows(modern, fake):
    """The duplicate guard gives two identical calls one Runway task: cancelling one call leaves it to the other."""
    fake.plan(polls=4, mime="video/mp4")
    with modern() as client:
        first = client.call("generate_video", {"prompt": "a storm"})["taskId"]
        second = client.call("generate_video", {"prompt": "a storm"})["taskId"]
        assert client.task("cancel", first)["result"] == {"resultType": "complete"}
        assert client.task("get", first)["result"]["status"] == "cancelled"
        done = client.until_done(second)
    assert fake.seen("DELETE") == [] and done["result"]["structuredContent"]["status"] == "SUCCEEDED"


def test_a_task_made_by_an_instance_whose_clock_is_ahead_reads_sensibly(modern, fake, out_dir):
    fake.plan(polls=10**6, mime="video/mp4")
    with modern() as client:
        task = client.call("generate_video", {"prompt": "a storm"})["taskId"]
        ahead = rm._iso(time.time() + 120)
        rm.ledger(rm.own_account(rm.load_config({"RUNWAY_MCP_OUTPUT_DIR": str(out_dir)}))).append(
            rm.LedgerRecord(mcp_task=task, created_at=ahead))
        got = client.task("get", task)["result"]
    assert "-" not in got["statusMessage"] and got["lastUpdatedAt"] >= got["createdAt"]


def test_a_workflow_runs_cancel_is_acknowledged_and_its_status_says_it_runs_on(modern, fake, serve):
    """The extension: a server must acknowledge a cancel, not stop the work. Runway cannot stop a workflow's run, so
    the task says so where a host looks (its status message), on every instance."""
    fake.plan(polls=10**6)
    with modern() as client:
        run = client.call("run_workflow", {"workflow_id": WORKFLOW_ID})["taskId"]
        before = client.task("get", run)["result"]
        assert client.task("cancel", run)["result"] == {"resultType": "complete"}
        after = client.task("get", run)["result"]
        with http_in_process(serve.config) as other:
            elsewhere = Modern(other).task("get", run)["result"]
    assert after["status"] == elsewhere["status"] == "working" and fake.seen("DELETE") == []
    assert "cannot be stopped: it runs to the end" in after["statusMessage"]
    assert "stopped" not in before["statusMessage"]
    assert "cannot be stopped" in elsewhere["statusMessage"] and after["lastUpdatedAt"] >= before["lastUpdatedAt"]


def test_a_cancelled_tasks_last_update_is_its_cancel(modern, fake):
    fake.plan(polls=10**6, mime="video/mp4")
    with modern() as client:
        task = client.call("generate_video", {"prompt": "a storm"})["taskId"]
        working = client.task("get", task)["result"]
        client.task("cancel", task)
        cancelled = client.task("get", task)["result"]
    assert cancelled["status"] == "cancelled" and cancelled["lastUpdatedAt"] >= working["lastUpdatedAt"]
    assert cancelled["lastUpdatedAt"] > cancelled["createdAt"]


def test_a_tasks_last_update_is_when_it_changed_not_when_it_was_asked(modern, fake, serve):
    fake.plan(polls=1)
    with modern() as client:
        handle = client.call("generate_image", {"prompt": "a fox"})
        done = client.until_done(handle["taskId"])
        time.sleep(0.05)
        again = client.task("get", handle["taskId"])["result"]
        with http_in_process(serve.config) as other:                 # from the ledger: the same moment
            elsewhere = Modern(other).task("get", handle["taskId"])["result"]
    assert handle["lastUpdatedAt"] == handle["createdAt"] < done["lastUpdatedAt"]
    assert done["lastUpdatedAt"] == again["lastUpdatedAt"] == elsewhere["lastUpdatedAt"]


def listen(url, capabilities):
    """The first message of a 2026-07-28 subscriptions/listen for task notifications (its stream is then left)."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities}
    body = {"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen",
            "params": {"notifications": {"taskIds": ["any"], "toolsListChanged": True}, "_meta": meta}}
    with requests.post(f"{url}/mcp", json=body, timeout=5, stream=True, headers={
            **MCP_HEADERS, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "subscriptions/listen"}) as answer:
        for line in answer.iter_lines(decode_unicode=True):
            if line.startswith("data:") or line.startswith("{"):
                return json.loads(line.removeprefix("data:"))


def test_task_notifications_are_for_clients_that_declare_tasks_and_are_not_pushed(modern, fake):
    with modern() as client:
        refused = listen(client.url, {})
        declared = listen(client.url, {"extensions": {TASKS: {}}})
    assert refused["error"]["code"] == -32021
    assert refused["error"]["data"] == {"requiredCapabilities": {"extensions": {TASKS: {}}}}
    assert declared["method"] == "notifications/subscriptions/acknowledged"
    assert "taskIds" not in declared["params"]["notifications"]           # polled here, never pushed


def test_another_accounts_task_is_not_found_however_it_is_asked(modern, fake):
    fake.plan(polls=50, mime="video/mp4")
    with modern(KEY, RUNWAY_MCP_KEYS_FROM_CLIENTS="1", RUNWAYML_API_SECRET=SERVER_KEY) as alice:
        task = alice.call("generate_video", {"prompt": "a storm"})["taskId"]
        bob = Modern(alice.url, KEY2)
        for method in ("get", "cancel", "update"):
            error = bob.task(method, task)["error"]
            assert error["code"] == -32602 and error["message"] == f"Failed to retrieve task: no task {task!r} here"
        assert fake.seen("DELETE") == [] and alice.task("get", task)["result"]["status"] == "working"
        assert Modern(alice.url, KEY3).task("get", "x" * 5000)["error"]["code"] == -32602


def test_a_task_is_served_after_a_restart_and_by_any_instance_sharing_the_folder(modern, fake, serve):
    fake.plan(polls=3, mime="video/mp4")
    with modern() as first:
        task = first.call("generate_video", {"prompt": "a storm"})["taskId"]
        assert first.task("get", task)["result"]["status"] == "working"
        with http_in_process(serve.config) as other_url:                   # a second instance, the same folder
            done = Modern(other_url).until_done(task)
        assert done["status"] == "completed" and same_result(first.until_done(task)["result"], done["result"])
    with http_in_process(serve.config) as restarted_url:                     # and after a restart
        assert same_result(Modern(restarted_url).until_done(task)["result"], done["result"])
    assert len(fake.seen("GET", "/files/")) == 1                            # saved once


def same_result(one: dict, other: dict) -> bool:
    """The same tool result but for the seconds it took."""
    def timeless(result):
        return {**result, "structuredContent": {**result["structuredContent"], "elapsed_s": None}}
    return timeless(one) == timeless(other)


def test_an_unknown_or_expired_task_is_invalid_params(modern, fake, monkeypatch):
    fake.plan(polls=50)
    with modern() as client:
        assert client.task("get", "no-such-task")["error"] == {
            "code": -32602, "message": "Failed to retrieve task: no task 'no-such-task' here"}
        task = client.call("generate_image", {"prompt": "a fox"})["taskId"]
        monkeypatch.setattr(rm, "TASK_TTL_MS", 0)
        late = client.call("generate_image", {"prompt": "a cat"})["taskId"]
        time.sleep(0.01)
        assert client.task("get", late)["error"]["message"] == f"Failed to retrieve task: task {late!r} has expired"
        assert client.task("get", task)["result"]["status"] == "working"      # its own time to live


def test_many_pollers_of_one_task_cost_runway_one_request_per_poll_interval(modern, fake):
    fake.plan(polls=1000)
    with modern(RUNWAY_MCP_POLL_INTERVAL="5") as client:
        task = client.call("generate_image", {"prompt": "a fox"})["taskId"]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: client.task("get", task)["result"]["status"], range(40)))
    [runway_task] = fake.tasks
    assert answers == ["working"] * 40 and len(fake.seen("GET", f"/v1/tasks/{runway_task}")) == 1


def test_saving_the_outputs_keeps_tasks_get_quick(modern, fake, monkeypatch):
    saving, release = threading.Event(), threading.Event()
    save = rm.save_outputs

    def slow_save(account, task, notes):
        if task.get("status") == "SUCCEEDED":
            saving.set()
            assert release.wait(10)
        return save(account, task, notes)
    monkeypatch.setattr(rm, "save_outputs", slow_save)
    fake.plan(polls=1, mime="video/mp4")
    with modern() as client:
        task = client.call("generate_video", {"prompt": "a storm"})["taskId"]
        while not saving.is_set():
            assert client.task("get", task)["result"]["status"] == "working"
        started = time.monotonic()
        while time.monotonic() - started < 0.2:
            answer = client.task("get", task)["result"]
            assert answer["status"] == "working" and answer["statusMessage"].startswith("saving outputs")
        release.set()
        assert client.until_done(task)["result"]["structuredContent"]["status"] == "SUCCEEDED"


def test_a_batch_and_a_wait_run_as_tasks_too(modern, fake):
    for _ in BATCH:
        fake.plan(polls=3)
    fake.plan(polls=6, mime="video/mp4")
    with modern() as client:
        batch = client.call("generate_batch", {"requests": BATCH})
        assert batch["resultType"] == "task"
        done = client.until_done(batch["taskId"])["result"]["structuredContent"]
        assert [item["status"] for item in done["items"]] == ["SUCCEEDED"] * 3
        started = client.send("tools/call", {"name": "generate_video", "arguments": {"prompt": "x", "wait": False}},
                               name="generate_video", capabilities={})["result"]["structuredContent"]
        waiting = client.call("wait_for_task", {"task_id": started["task_id"]})
        assert waiting["resultType"] == "task"
        assert client.until_done(waiting["taskId"])["result"]["structuredContent"]["status"] == "SUCCEEDED"


def test_tasks_can_be_turned_off(modern, fake):
    fake.plan(polls=2)
    with modern(RUNWAY_MCP_TASKS="0") as client:
        assert "extensions" not in client.send("server/discover")["result"]["capabilities"]
        assert client.call("generate_image", {"prompt": "a fox"})["structuredContent"]["status"] == "SUCCEEDED"


# Two clients nobody here wrote, as people run them: the MCP Inspector's CLI over stdio, and fastmcp with
# fastmcp-tasks over HTTP. The ledger's MCP task line shows that a call ran as a task, not as a wait.

CLIENTS_PYTHON = HERE / ".clients" / "bin" / "python"
needs_fastmcp = pytest.mark.skipif(not (HERE / ".clients" / ".installed").exists(),
                                   reason="fastmcp is not in .clients (make test installs it)")


def mcp_tasks_in(out_dir) -> list[dict]:
    ledger = out_dir / "tasks.jsonl"
    lines = [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []
    return [line for line in lines if "mcp_task" in line and "task_id" not in line and "runway" in line]


def inspector_call(fake, out_dir, tool, **arguments) -> dict:
    command = [str(NODE_TOOLS / "mcp-inspector"), "--cli", "--protocol-era", "modern", "--format", "json", "-q",
               "--method", "tools/call", "--tool-name", tool]
    for name, value in arguments.items():
        command += ["--tool-arg", f"{name}={value}"]
    for name, value in server_env(fake, out_dir).items():
        command += ["-e", f"{name}={value}"]
    ran = subprocess.run([*command, "--", sys.executable, SERVER], capture_output=True, text=True, timeout=120,
                         env=plain_env())
    assert ran.stdout, ran.stderr[-2000:]
    return json.loads(ran.stdout)["result"]


@pytest.mark.slow
@needs_node_tool("mcp-inspector")
def test_the_mcp_inspector_runs_generations_as_tasks(fake, out_dir):
    fake.plan(polls=4, mime="video/mp4")
    result = inspector_call(fake, out_dir, "generate_video", prompt="a lighthouse in a storm")
    assert result["structuredContent"]["status"] == "SUCCEEDED" and not result["isError"]
    assert Path(result["structuredContent"]["outputs"][0]["path"]).is_file()
    fake.plan(polls=2, outcome="FAILED")
    failed = inspector_call(fake, out_dir, "generate_image", prompt="a fox")
    assert failed["isError"] and failed["structuredContent"]["failure"] == "The output was flagged by moderation"
    assert [line["tool"] for line in mcp_tasks_in(out_dir)] == ["generate_video", "generate_image"]


FASTMCP_SCRIPT = '''
import asyncio, json, sys
import fastmcp_tasks                                    # the client half of the tasks extension, on every Client
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp_tasks import call_tool_task

asked = []

async def confirm(message, response_type, params, context):
    asked.append(message)
    return ElicitResult(action="accept", content={})

async def main(url):
    seen = {}
    async with Client(url, elicitation_handler=confirm) as client:
        done = await client.call_tool("generate_video", {"prompt": "a lighthouse in a storm"})
        seen["done"] = done.structured_content
        failed = await client.call_tool("generate_image", {"prompt": "a fox"}, raise_on_error=False)
        seen["failed"] = [failed.is_error, failed.structured_content["status"]]
        task = await call_tool_task(client, "generate_video", {"prompt": "a storm that lasts", "duration": 4})
        seen["running"] = (await task.status()).status
        await task.cancel()
        seen["cancelled"] = (await task.status()).status
    seen["asked"] = asked
    print(json.dumps(seen))

asyncio.run(main(sys.argv[1]))
'''


@pytest.mark.slow
@needs_fastmcp
def test_fastmcp_with_fastmcp_tasks_runs_generations_as_tasks(over_http_in_process, fake, out_dir, tmp_path):
    fake.plan(polls=4, mime="video/mp4")
    fake.plan(polls=2, outcome="FAILED")
    fake.plan(polls=1000, mime="video/mp4")
    script = tmp_path / "client.py"
    script.write_text(FASTMCP_SCRIPT)
    with over_http_in_process(RUNWAY_MCP_CONFIRM_ABOVE="50") as url:     # call_tool_task cannot answer: 48 below
        ran = subprocess.run([str(CLIENTS_PYTHON), str(script), f"{url}/mcp"], capture_output=True, text=True,
                             timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    seen = json.loads(ran.stdout.splitlines()[-1])
    assert seen["done"]["status"] == "SUCCEEDED" and Path(seen["done"]["outputs"][0]["path"]).is_file()
    assert seen["failed"] == [True, "FAILED"]
    assert seen["running"] == "working" and seen["cancelled"] == "cancelled"
    [*_, long_video] = fake.tasks
    assert [r["path"] for r in fake.seen("DELETE")] == [f"/v1/tasks/{long_video}"]
    assert seen["asked"] == ["Generate 5 s of gen4.5 video for about 60 credits?"]     # the first: before its task
    assert [line["tool"] for line in mcp_tasks_in(out_dir)] == ["generate_video", "generate_image", "generate_video"]


##############################################################################
# End to end: OAuth
##############################################################################

CALLBACK = "http://127.0.0.1:9/callback"        # where a client would listen: never reached, the person stops there
SECRET = "state-secret-for-tests-" + "s" * 24


class Storage:
    """The SDK client's TokenStorage, in memory: a client that signed in once keeps its tokens here."""

    def __init__(self):
        self.tokens = self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


class Forms(HTMLParser):
    """The forms of a page: each an action, a method and its fields' values."""

    def __init__(self, page):
        super().__init__()
        self.forms = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "method": (attrs.get("method") or "get").lower(),
                               "fields": {}})
        elif tag in ("input", "button") and self.forms and attrs.get("name"):
            self.forms[-1]["fields"].setdefault(attrs["name"], attrs.get("value") or "")


class Person:
    """Someone signing in without a browser: follows the authorization URL, fills each form the way `fill` says,
    and stops at the client's callback. `pages` are what they saw; `result` the callback's code, state and iss."""

    def __init__(self, fill):
        self.fill, self.pages, self.result = fill, [], None

    async def open(self, url):
        from urllib.parse import urljoin
        async with httpx2.AsyncClient(timeout=10) as browser:
            response = await browser.get(url)
            for _ in range(20):
                if response.is_redirect:
                    url = urljoin(str(response.url), response.headers["location"])
                    if url.startswith(CALLBACK):
                        self.result = dict(parse_qsl(urlsplit(url).query))
                        return
                    response = await browser.get(url)
                    continue
                self.pages.append(response)
                forms = Forms(response.text).forms
                if not forms:
                    return
                form = forms[0]
                target = urljoin(str(response.url), form["action"])
                response = await browser.post(target, data=self.fill(dict(form["fields"])))
            raise AssertionError(f"no end to the sign-in at {url}")

    async def callback(self):
        from mcp.shared.auth import AuthorizationCodeResult
        assert self.result and "code" in self.result, [(p.status_code, p.text[:300]) for p in self.pages]
        return AuthorizationCodeResult(code=self.result["code"], state=self.result.get("state"),
                                       iss=self.result.get("iss"))


def typing_key(key):
    return lambda fields: {**fields, "key": key} if "key" in fields else fields


def oauth_client(url, person, storage=None):
    """An MCP client that signs in with OAuth as the SDK does it (discovery, registration, PKCE, code, refresh)."""
    from mcp.client.auth import OAuthClientProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import OAuthClientMetadata
    metadata = OAuthClientMetadata(redirect_uris=[CALLBACK], client_name="Tests", token_endpoint_auth_method="none",
                                   grant_types=["authorization_code", "refresh_token"], response_types=["code"])
    provider = OAuthClientProvider(f"{url}/mcp", metadata, storage or Storage(), person.open, person.callback)
    http = httpx2.AsyncClient(auth=provider, timeout=30)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy")


@pytest.fixture
def keys_mode(over_http_in_process):
    """A server of RUNWAY_MCP_OAUTH=keys in this process, without a key of its own: its URL."""
    def configure(**extra):
        return over_http_in_process(RUNWAYML_API_SECRET="", RUNWAY_MCP_OAUTH="keys",
                                    RUNWAY_MCP_PUBLIC_URL=shared_http().url, RUNWAY_MCP_STATE_SECRET=SECRET, **extra)
    return configure


def pkce():
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def register(url, *redirects, **extra):
    return requests.post(f"{url}/register", timeout=5, json={
        "redirect_uris": list(redirects or [CALLBACK]), "client_name": "Raw", "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], **extra})


def authorize(url, client_id, challenge, redirect=CALLBACK, **extra):
    return requests.get(f"{url}/authorize", allow_redirects=False, timeout=5, params={
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect, "code_challenge": challenge,
        "code_challenge_method": "S256", "state": "st", "resource": f"{url}/mcp", **extra})


def query_of(response):
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


def sign_in_page(url, client_id=None):
    """The page /authorize sends a person to (in a session that keeps its cookie), and the PKCE verifier."""
    verifier, challenge = pkce()
    browser = requests.Session()
    page = browser.get(authorize(url, client_id or register(url).json()["client_id"], challenge).headers["location"],
                       timeout=5)
    return browser, page, verifier


def submit(browser, page, key, **fields):
    from urllib.parse import urljoin
    form = Forms(page.text).forms[0]
    return browser.post(urljoin(page.url, form["action"]), data={**form["fields"], "key": key, **fields},
                        allow_redirects=False, timeout=15)


def sign_in(url, key, client_id=None):
    """Tokens for `key`, the way any OAuth client earns them (registration, PKCE, the page, the code)."""
    client_id = client_id or register(url).json()["client_id"]
    browser, page, verifier = sign_in_page(url, client_id)
    code = query_of(submit(browser, page, key))["code"]
    tokens = requests.post(f"{url}/token", timeout=5, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "client_id": client_id,
        "code_verifier": verifier, "resource": f"{url}/mcp"})
    assert tokens.status_code == 200, tokens.text
    return {**tokens.json(), "client_id": client_id}


def refresh(url, tokens):
    return requests.post(f"{url}/token", timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": tokens["client_id"]})


def challenge_of(response):
    return response.headers.get("www-authenticate", "")


@pytest.mark.anyio
async def test_keys_mode_signs_in_with_the_sdk_client_and_spends_that_key(fake, keys_mode, out_dir):
    fake.plan(polls=1, mime="image/png")
    person = Person(typing_key(KEY2))
    with keys_mode() as url:
        async with oauth_client(url, person) as client:
            result = await client.call_tool("generate_image", {"prompt": "a fox"})
    assert not result.is_error and result.structured_content["status"] == "SUCCEEDED"
    assert {r["key"] for r in fake.seen(prefix="/v1/") if "key" in r} == {KEY2}
    [page] = person.pages
    assert "Tests" in page.text and "127.0.0.1" in page.text and page.headers["x-frame-options"] == "DENY"
    assert person.result["iss"] == url and person.result["state"]
    [saved] = out_dir.rglob("*.png")
    assert saved.parent.parent.name == "accounts" and str(out_dir) not in result.content[0].text


def test_keys_mode_a_key_runway_refuses_gets_an_error_on_the_page_and_no_code(fake, keys_mode):
    with keys_mode() as url:
        browser, page, _ = sign_in_page(url)
        answer = submit(browser, page, "key_" + "9" * 128)
        assert answer.status_code == 401 and "Runway did not accept this key" in answer.text
        assert "location" not in answer.headers and "9" * 128 not in answer.text
        assert Forms(answer.text).forms                                   # the person may try again
        asked = len(fake.seen("GET", "/v1/organization"))
        answer = submit(browser, page, "my password")
        assert answer.status_code == 400 and "starts with key_" in answer.text
        assert len(fake.seen("GET", "/v1/organization")) == asked == 1    # not a key: Runway is not asked


def test_keys_mode_sign_in_page_is_never_framed_and_takes_only_its_own_forms(fake, keys_mode):
    with keys_mode() as url:
        browser, page, _ = sign_in_page(url)
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        stranger = requests.Session()                                    # a cross-site post: no cookie of ours
        assert submit(stranger, page, KEY2).status_code == 403
        _, other, _ = sign_in_page(url)                                  # our cookie, another page's token
        browser.cookies.set("runway_mcp_csrf", "forged")
        assert submit(browser, other, KEY2).status_code == 403
        gone = requests.get(f"{url}/sign-in", params={"request": "forged"}, timeout=5)
        assert gone.status_code == 400 and "start again" in gone.text and not Forms(gone.text).forms
    assert not fake.seen("GET", "/v1/organization")


def test_keys_mode_refuses_every_token_it_did_not_issue_with_a_challenge(fake, keys_mode):
    with keys_mode() as url:
        tokens = sign_in(url, KEY2)
        assert modern_call(url, tokens["access_token"], "list_tasks", {}).status_code == 200
        access = tokens["access_token"]
        tampered = access[:40] + ("A" if access[40] != "A" else "B") + access[41:]
        grant = {"client": "c", "key": KEY2, "scopes": ["runway"]}
        other_secret = rm.Sealed("another-secret-" + "x" * 30, url).seal("access", grant, 3600)
        other_deployment = rm.Sealed(SECRET, "https://another.example").seal("access", grant, 3600)
        for token in (None, tampered, tokens["refresh_token"], other_secret, other_deployment, KEY2, "x" * 9000):
            response = modern_call(url, token, "list_tasks", {})
            assert response.status_code == 401, token
            assert f'resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"' in challenge_of(response)
            assert 'scope="runway"' in challenge_of(response)
        assert requests.get(f"{url}/healthz", timeout=5).text == "ok"


@pytest.mark.anyio
async def test_keys_mode_tokens_work_on_every_instance_with_the_same_secret(fake, keys_mode, serve, tmp_path):
    """Two instances behind one balancer store nothing: a token issued by one is good on the other."""
    fake.plan(polls=1, mime="image/png")
    storage = Storage()
    with keys_mode() as url:
        async with oauth_client(url, Person(typing_key(KEY2)), storage) as client:
            assert not (await client.call_tool("list_tasks", {})).is_error
        other = rm.dataclasses.replace(serve.config, output_dir=tmp_path / "other")
        nobody = Person(lambda fields: pytest.fail("signed in again"))
        with http_in_process(other):
            async with oauth_client(url, nobody, storage) as client:
                result = await client.call_tool("generate_image", {"prompt": "a fox"})
            assert not result.is_error and not nobody.pages
        rotated = rm.dataclasses.replace(serve.config, state_secret="a-new-secret-" + "n" * 30)
        with http_in_process(rotated):
            assert modern_call(url, storage.tokens.access_token, "list_tasks", {}).status_code == 401
    assert list((tmp_path / "other").rglob("*.png"))


@pytest.mark.anyio
async def test_keys_mode_refreshes_until_runway_revokes_the_key(fake, keys_mode, monkeypatch):
    clock, verdicts = FakeClock(), rm.KeyVerdicts.__init__           # Runway's verdicts age by this clock alone
    monkeypatch.setattr(rm.KeyVerdicts, "__init__", lambda self, config: verdicts(self, config, clock))
    with keys_mode() as url:
        tokens = sign_in(url, KEY2)
        renewed = refresh(url, tokens)
        assert renewed.status_code == 200 and renewed.json()["access_token"] != tokens["access_token"]
        assert modern_call(url, renewed.json()["access_token"], "list_tasks", {}).status_code == 200
        fake.revoked.add(KEY2)
        clock.sleep(rm.KEY_TRUSTED_S)                                 # Runway is asked again within 5 minutes
        assert modern_call(url, tokens["access_token"], "list_tasks", {}).status_code == 401
        refused = refresh(url, tokens)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


@pytest.mark.slow                       # it waits out slow peers on purpose
def test_keys_mode_a_slow_client_document_is_given_up_and_stalls_no_one(fake, keys_mode, monkeypatch):
    """Documents that drip a byte at a time: each sign-in naming one is refused after the fetch's deadline, only a
    few are fetched at once, and a signed-in person's calls go on meanwhile."""
    monkeypatch.setattr(rm, "CLIENT_DOCUMENT_DEADLINE_S", 0.3)
    quick = f"{fake.url}/apps/quick.json"
    fake.documents["/apps/quick.json"] = (200, {}, json.dumps({"client_id": quick, "redirect_uris": [CALLBACK]}).encode())
    for n in range(8):
        client_id = f"{fake.url}/apps/slow{n}.json"
        fake.documents[f"/apps/slow{n}.json"] = ("drip", {"seconds": "0.05"}, json.dumps(
            {"client_id": client_id, "redirect_uris": [CALLBACK]}).encode())           # 10 s to come whole
    with keys_mode() as url:
        tokens = sign_in(url, KEY2)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            signing_in = [pool.submit(authorize, url, f"{fake.url}/apps/slow{n}.json", pkce()[1]) for n in range(8)]
            time.sleep(0.1)
            call_started = time.monotonic()
            assert modern_call(url, tokens["access_token"], "list_tasks", {}).status_code == 200
            assert time.monotonic() - call_started < 1
            assert [f.result().status_code for f in signing_in] == [400] * 8
        assert time.monotonic() - started < 4
        assert authorize(url, quick, pkce()[1]).status_code == 302         # no fetch is still stuck on a slow one
    for _ in range(100):
        if not fake.dripping:
            break
        time.sleep(0.02)
    assert fake.dripping == 0                                             # every slow connection was let go


def test_keys_mode_client_documents_are_not_followed_elsewhere_nor_send_people_anywhere(fake, keys_mode):
    client_id = f"{fake.url}/apps/client.json"
    fake.documents["/apps/client.json"] = (200, {}, json.dumps({"client_id": client_id,
                                                                "redirect_uris": [CALLBACK]}).encode())
    fake.documents["/apps/moved.json"] = (302, {"Location": client_id}, b"")
    insecure = f"{fake.url}/apps/insecure.json"
    fake.documents["/apps/insecure.json"] = (200, {}, json.dumps({"client_id": insecure, "redirect_uris": [
        "http://apps.example.com/callback"]}).encode())
    with keys_mode() as url:
        assert authorize(url, f"{fake.url}/apps/moved.json", pkce()[1]).status_code == 400
        assert authorize(url, insecure, pkce()[1], redirect="http://apps.example.com/callback").status_code == 400
        assert authorize(url, client_id, pkce()[1]).status_code == 302
    assert not fake.seen("GET", "/apps/client.json")[1:]                  # the redirect was not followed


def test_keys_mode_sign_in_reads_no_more_than_a_form(fake, keys_mode):
    with keys_mode() as url:
        browser, page, _ = sign_in_page(url)
        answer = submit(browser, page, KEY2, padding="x" * 100_000)
        assert answer.status_code == 413
        form = "&".join(f"{k}={v}" for k, v in Forms(page.text).forms[0]["fields"].items())
        chunked = browser.post(page.url.split("?")[0], data=iter([form.encode(), b"&padding=" + b"x" * 100_000]),
                               headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
        assert chunked.status_code == 413                                 # no Content-Length to go by
    assert not fake.seen("GET", "/v1/organization")


@pytest.mark.anyio
async def test_keys_mode_a_runway_outage_signs_nobody_out(fake, keys_mode, monkeypatch):
    clock, verdicts = FakeClock(), rm.KeyVerdicts.__init__
    monkeypatch.setattr(rm.KeyVerdicts, "__init__", lambda self, config: verdicts(self, config, clock))
    with keys_mode() as url:
        tokens = sign_in(url, KEY2)
        clock.sleep(rm.KEY_TRUSTED_S)                                  # the verdict must be asked again...
        fake.fail("GET", "/v1/organization", 503, times=100)           # ...and Runway is down
        busy = modern_call(url, tokens["access_token"], "list_tasks", {})
        assert busy.status_code == 503 and busy.headers["retry-after"] and "try again" in busy.text
        assert refresh(url, tokens).status_code == 200                 # not invalid_grant: the key was not refused


def test_keys_mode_limits_a_person_however_many_tokens_they_hold(fake, keys_mode):
    """The rate limit counts the account a token stands for: signing in again, or refreshing, gains nothing (each
    call from another address, so that only the account's count can refuse)."""
    for _ in range(3):
        fake.plan(polls=1, mime="image/png")
    with keys_mode(RUNWAY_MCP_RATE_LIMIT="2/min") as url:
        first, second = sign_in(url, KEY2), sign_in(url, KEY2)
        renewed = refresh(url, first).json()
        made = [modern_call(url, tokens["access_token"], "generate_image", {"prompt": f"a fox {n}"},
                            headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                for n, tokens in enumerate((first, second, renewed))]
    assert made == [200, 200, 429] and len(fake.seen("POST", "/v1/text_to_image")) == 2

def test_keys_mode_publishes_what_claude_and_chatgpt_look_for(fake, keys_mode):
    with keys_mode() as url:
        metadata = requests.get(f"{url}/.well-known/oauth-authorization-server", timeout=5).json()
        resource = requests.get(f"{url}/.well-known/oauth-protected-resource/mcp", timeout=5).json()
        hosts = register(url, "https://claude.ai/api/mcp/auth_callback", "https://claude.com/api/mcp/auth_callback",
                         "https://chatgpt.com/connector_platform_oauth_redirect")
        insecure = register(url, "http://apps.example.com/callback")
    assert metadata["issuer"] == url and metadata["code_challenge_methods_supported"] == ["S256"]
    assert "none" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["client_id_metadata_document_supported"] and metadata["authorization_response_iss_parameter_supported"]
    assert resource["resource"] == f"{url}/mcp" and resource["authorization_servers"] in ([url], [url + "/"])
    assert resource["scopes_supported"] == ["runway"]
    assert hosts.status_code == 201 and hosts.json()["client_id"]
    assert insecure.status_code == 400 and insecure.json()["error"] == "invalid_redirect_uri"


def test_keys_mode_a_client_registered_with_a_secret_must_show_it(fake, keys_mode):
    """Hosts that register as confidential clients get a secret, sealed into their id with the rest: /token
    takes their code only with it."""
    with keys_mode() as url:
        registered = register(url, token_endpoint_auth_method="client_secret_post").json()
        browser, page, verifier = sign_in_page(url, registered["client_id"])
        exchange = {"grant_type": "authorization_code", "code": query_of(submit(browser, page, KEY2))["code"],
                    "redirect_uri": CALLBACK, "client_id": registered["client_id"], "code_verifier": verifier}
        wrong = requests.post(f"{url}/token", data={**exchange, "client_secret": "guessed"}, timeout=5)
        right = requests.post(f"{url}/token", data={**exchange, "client_secret": registered["client_secret"]},
                              timeout=5)
    assert wrong.status_code == 401 and right.status_code == 200 and right.json()["access_token"]

def test_keys_mode_authorize_holds_to_the_registration_pkce_and_resource(fake, keys_mode):
    with keys_mode() as url:
        client_id = register(url).json()["client_id"]
        verifier, challenge = pkce()
        elsewhere = authorize(url, client_id, challenge, redirect="http://127.0.0.1:9/elsewhere")
        assert elsewhere.status_code == 400 and "location" not in elsewhere.headers
        assert authorize(url, "forged-client-id", challenge).status_code == 400
        for wrong in ({"resource": "https://other.example/mcp"}, {"code_challenge_method": "plain"},
                      {"scope": "admin"}):
            refused = authorize(url, client_id, challenge, **wrong)        # a page here, never a redirect
            assert refused.status_code == 400 and "location" not in refused.headers, wrong
            assert "cannot be served" in refused.text and "127.0.0.1" in refused.text
        anyone = register(url, "https://evil.example/landing").json()["client_id"]
        lured = authorize(url, anyone, challenge, redirect="https://evil.example/landing", resource="x")
        assert lured.status_code == 400 and "location" not in lured.headers
        browser, page, verifier = sign_in_page(url, client_id)
        code = query_of(submit(browser, page, KEY2))["code"]
        guessed = requests.post(f"{url}/token", timeout=5, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "client_id": client_id,
            "code_verifier": pkce()[0]})
        assert guessed.status_code == 400 and guessed.json()["error"] == "invalid_grant"
        stolen = requests.post(f"{url}/token", timeout=5, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
            "client_id": register(url).json()["client_id"], "code_verifier": verifier})
        assert stolen.status_code == 400                                 # a code is for the client it was issued to


def test_keys_mode_mounted_in_another_app_keeps_authorize_errors_on_its_page(fake, serve):
    """A host app that mounts the server under a prefix (Starlette keeps the prefix in the path) changes nothing:
    an error in a request of a client anyone registered is a page here, not a redirect to that client."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    serve(RUNWAYML_API_SECRET="", RUNWAY_MCP_OAUTH="keys", RUNWAY_MCP_PUBLIC_URL=shared_http().url + "/runway",
          RUNWAY_MCP_STATE_SECRET=SECRET)
    runway = rm.http_app(serve.config)
    mounted = Starlette(routes=[Mount("/runway", app=runway)])
    mounted.lifespan = runway.lifespan
    with shared_http().serving(mounted) as root:
        url = root + "/runway"
        anyone = register(url, "https://evil.example/landing").json()["client_id"]
        lured = authorize(url, anyone, pkce()[1], redirect="https://evil.example/landing", scope="admin")
        fine = authorize(url, anyone, pkce()[1], redirect="https://evil.example/landing")
    assert lured.status_code == 400 and "location" not in lured.headers and "cannot be served" in lured.text
    assert fine.status_code == 302 and "/runway/sign-in" in fine.headers["location"]


def test_keys_mode_accepts_client_id_metadata_documents(fake, keys_mode):
    client_id = f"{fake.url}/apps/client.json"
    document = {"client_id": client_id, "client_name": "Documented App", "redirect_uris": [CALLBACK],
                "token_endpoint_auth_method": "none"}
    fake.documents["/apps/client.json"] = (200, {"Cache-Control": "max-age=600"}, json.dumps(document).encode())
    fake.documents["/apps/liar.json"] = (200, {}, json.dumps({**document, "client_id": client_id}).encode())
    with keys_mode() as url:
        tokens = sign_in(url, KEY2, client_id)
        assert modern_call(url, tokens["access_token"], "list_tasks", {}).status_code == 200
        _, page, _ = sign_in_page(url, client_id)
        assert "Documented App" in page.text
        assert authorize(url, f"{fake.url}/apps/liar.json", pkce()[1]).status_code == 400
        assert authorize(url, f"{fake.url}/apps/missing.json", pkce()[1]).status_code == 400
    assert len(fake.seen("GET", "/apps/client.json")) == 1             # kept for its max-age


@functools.cache
def rsa_key(name):
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Issuer:
    """An identity provider as RUNWAY_MCP_OAUTH_ISSUER sees one: its metadata and keys, served by the fake at /idp,
    and access tokens it signs (RFC 9068) for whoever a test names."""

    def __init__(self, fake, path="/idp", kid="k1"):
        import jwt
        self.fake, self.url, self.kid = fake, fake.url + path, kid
        self.private = rsa_key(kid)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        fake.documents[f"{path}/.well-known/openid-configuration"] = (200, {}, json.dumps(
            {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}).encode())
        fake.documents[f"{path}/jwks"] = (200, {}, json.dumps(
            {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}).encode())

    def token(self, subject="alice", *, resource=None, key=None, kid=None, algorithm="RS256", typ="at+jwt", **claims):
        import jwt
        now = int(time.time())
        body = {"iss": self.url, "sub": subject, "aud": resource or f"{shared_http().url}/mcp", "iat": now,
                "exp": now + 300, "scope": "openid runway", "client_id": "app", **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, key or self.private, algorithm=algorithm,
                          headers={"kid": kid or self.kid, "typ": typ})


@pytest.fixture
def issuer(fake):
    return Issuer(fake)


@pytest.fixture
def issuer_mode(over_http_in_process, issuer):
    """A server behind the identity provider `issuer`, spending its own key (KEY) for everyone: its URL."""
    def configure(**extra):
        return over_http_in_process(RUNWAY_MCP_OAUTH_ISSUER=issuer.url, RUNWAY_MCP_PUBLIC_URL=shared_http().url,
                                    **extra)
    return configure


@pytest.mark.anyio
async def test_issuer_mode_gives_each_person_their_own_account_on_the_servers_key(fake, issuer, issuer_mode, out_dir):
    fake.plan(polls=1, mime="image/png")
    with issuer_mode() as url:
        async with http_client(url, issuer.token("alice")) as alice:
            _, made = await call(alice, "generate_image", {"prompt": "a fox"})
            path = made["outputs"][0]["path"]
        async with http_client(url, issuer.token("bob")) as bob:
            gets = len(fake.seen("GET", f"/v1/tasks/{made['task_id']}"))
            for tool, arguments in (("get_task", {"task_id": made["task_id"]}), ("wait_for_task", {"task_id": made["task_id"]}),
                                    ("cancel_task", {"task_id": made["task_id"]})):
                result, _ = await call(bob, tool, arguments)
                assert result.is_error and "Runway has no task" in result.content[0].text, tool
            assert len(fake.seen("GET", f"/v1/tasks/{made['task_id']}")) == gets           # Runway was never asked
            assert not fake.seen("DELETE")
            _, listed = await call(bob, "list_outputs")
            assert path not in json.dumps(listed)
            with pytest.raises(MCPError):
                await bob.read_resource(made["outputs"][0]["uri"])
        async with http_client(url, issuer.token("alice")) as alice:                     # a new token, the same person
            result, task = await call(alice, "get_task", {"task_id": made["task_id"]})
            assert task["status"] == "SUCCEEDED"
    assert {r["key"] for r in fake.seen(prefix="/v1/") if "key" in r} == {KEY}
    [saved] = out_dir.rglob("*.png")
    assert saved.parent.parent.name == "accounts" and "alice" not in str(saved)


def test_issuer_mode_refuses_tokens_that_are_not_for_this_server(fake, issuer, issuer_mode):
    import jwt
    stranger = rsa_key("stranger")
    other = Issuer(fake, "/other-idp", kid="other")
    with issuer_mode() as url:
        assert modern_call(url, issuer.token(), "list_tasks", {}).status_code == 200
        refused = {
            "expired": issuer.token(exp=int(time.time()) - 120),
            "for another resource": issuer.token(resource="https://other.example/mcp"),
            "from another issuer": other.token(),
            "another issuer's claim": issuer.token(iss=other.url),
            "signed by a stranger": issuer.token(key=stranger),
            "HMAC-signed": jwt.encode({"iss": issuer.url, "sub": "eve", "aud": f"{url}/mcp", "scope": "runway",
                                       "exp": int(time.time()) + 300}, "k" * 32, algorithm="HS256",
                                      headers={"kid": issuer.kid}),
            "unsigned": jwt.encode({"iss": issuer.url, "sub": "eve", "aud": f"{url}/mcp",
                                    "exp": int(time.time()) + 300}, None, algorithm="none"),
            "no subject": issuer.token(subject=None),
            "an empty subject": issuer.token(subject=""),
            "an ID token": issuer.token(typ="id+jwt"),
            "a Runway key": KEY,
        }
        for why, token in refused.items():
            response = modern_call(url, token, "list_tasks", {})
            assert response.status_code == 401, why
            assert f'resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"' in challenge_of(response)
        narrow = modern_call(url, issuer.token(scope="openid profile"), "list_tasks", {})
        assert narrow.status_code == 403 and 'error="insufficient_scope"' in challenge_of(narrow)
        assert 'scope="runway"' in challenge_of(narrow)
        described = requests.get(f"{url}/.well-known/oauth-protected-resource/mcp", timeout=5).json()
    assert described["authorization_servers"] == [issuer.url] and described["resource"] == f"{url}/mcp"
    assert not fake.seen(prefix="/v1/")                                  # nothing reached Runway


@pytest.mark.anyio
async def test_issuer_mode_keeps_one_budget_for_the_one_key_everyone_spends(fake, issuer, issuer_mode):
    fake.plan(polls=1, mime="image/png")
    fake.plan(polls=1, mime="image/png")
    with issuer_mode(RUNWAY_MCP_BUDGET_CREDITS="10") as url:
        async with http_client(url, issuer.token("alice")) as alice:
            assert not (await call(alice, "generate_image", {"prompt": "a fox"}))[0].is_error
        async with http_client(url, issuer.token("bob")) as bob:
            result, _ = await call(bob, "generate_image", {"prompt": "a hen"})
            assert result.is_error and "over budget" in result.content[0].text
            _, account = await call(bob, "get_account")
            assert account["budget"]["remaining"] <= 2
    assert len(fake.seen("POST", "/v1/text_to_image")) == 1


@pytest.mark.anyio
async def test_issuer_mode_the_one_budget_counts_what_runway_charges(fake, issuer, issuer_mode):
    """The catalog prices gen4_image at 8 credits, the fake charges 50: the server's one budget counts the 50."""
    fake.plan(polls=1, mime="image/png")
    with issuer_mode(RUNWAY_MCP_BUDGET_CREDITS="55") as url:
        async with http_client(url, issuer.token("alice")) as alice:
            assert (await call(alice, "generate_image", {"prompt": "a fox"}))[1]["cost_credits"] == 50
        async with http_client(url, issuer.token("bob")) as bob:
            result, _ = await call(bob, "generate_image", {"prompt": "a hen"})
    assert result.is_error and "50 committed" in result.content[0].text

@pytest.mark.anyio
async def test_issuer_mode_shows_each_person_only_the_voices_they_made(fake, issuer, issuer_mode):
    design = {"name": "Narrator", "description": "warm", "prompt": "a warm, low narrator's voice, unhurried"}
    with issuer_mode() as url:
        async with http_client(url, issuer.token("alice")) as alice:
            _, made = await call(alice, "create_voice", design)
            _, listed = await call(alice, "list_voices")
            assert [v["id"] for v in listed["voices"]] == [made["id"]]
        async with http_client(url, issuer.token("bob")) as bob:
            _, listed = await call(bob, "list_voices")
            assert listed["voices"] == []
            _, theirs = await call(bob, "create_voice", design)        # not alice's, returned as a duplicate
            assert theirs["id"] != made["id"] and not theirs["notes"]
    assert len(fake.bodies("voices")) == 2


@pytest.mark.anyio
async def test_issuer_mode_a_person_speaks_only_with_voices_they_made(fake, issuer, issuer_mode):
    """Everyone spends one key, so Runway would take any voice id of its organisation: a cloned voice is its
    maker's alone."""
    design = {"name": "Alice", "description": "my own voice", "prompt": "alice's voice, cloned from her recording"}
    fake.plan(polls=1, mime="video/mp4")
    speaking = {"avatar": "game-character", "text": "hello", "wait": False}
    with issuer_mode() as url:
        async with http_client(url, issuer.token("alice")) as alice:
            _, made = await call(alice, "create_voice", design)
            mine, _ = await call(alice, "generate_avatar_video", {**speaking, "voice": made["id"]})
        async with http_client(url, issuer.token("bob")) as bob:
            taken, _ = await call(bob, "generate_avatar_video", {**speaking, "voice": made["id"], "new": True})
    assert not mine.is_error and taken.is_error and "none of your custom voices" in taken.content[0].text
    assert [b["speech"]["voice"] for b in fake.bodies("avatar_videos")] == [{"type": "custom", "id": made["id"]}]


@pytest.mark.anyio
async def test_issuer_mode_a_runway_uri_is_its_uploaders_alone(fake, issuer, issuer_mode, tmp_path, out_dir):
    """Runway takes any upload of the one key's organisation: a person's runway:// URIs are theirs alone."""
    clip = tmp_path / "first.png"
    clip.write_bytes(PNG + os.urandom(6 * 1024 * 1024))                 # past a data: URI's limit: uploaded
    fake.plan(polls=1, mime="video/mp4")
    with issuer_mode(RUNWAY_MCP_INPUT_ROOT=str(tmp_path)) as url:
        async with http_client(url, issuer.token("alice")) as alice:
            _, uploaded = await call(alice, "upload_file", {"path": str(clip)})
            _, again = await call(alice, "upload_file", {"path": str(clip)})
            mine, _ = await call(alice, "generate_video", {"image": uploaded["uri"], "prompt": "x", "wait": False})
        async with http_client(url, issuer.token("bob")) as bob:
            taken, _ = await call(bob, "generate_video", {"image": uploaded["uri"], "prompt": "y", "wait": False})
            sneaked, _ = await call(bob, "edit_video", {"video": VIDEO, "prompt": "y", "model": "aleph2", "options": {
                "keyframes": [{"uri": uploaded["uri"], "seconds": 0}]}, "wait": False})
    assert not mine.is_error and taken.is_error and "is none of your uploads" in taken.content[0].text
    assert sneaked.is_error and "options: " in sneaked.content[0].text and not fake.bodies("video_to_video")
    assert [b["promptImage"] for b in fake.bodies("image_to_video")] == [uploaded["uri"]]
    noted = [line for path in out_dir.rglob("tasks.jsonl") for line in path.read_text().splitlines()
             if '"upload"' in line]
    assert again["reused"] and len(noted) == 1                         # noted once, not again when reused


@pytest.mark.slow                       # it waits out slow peers on purpose
def test_issuer_mode_a_slow_issuer_delays_no_token_whose_key_is_known(fake, issuer, issuer_mode, monkeypatch):
    fetched = rm.IssuerTokens._published_keys

    def slowly(self):
        if len(fake.seen("GET", "/idp/jwks")) == 1:
            time.sleep(0.8)                                             # the issuer hangs, at the second fetch
        return fetched(self)
    monkeypatch.setattr(rm.IssuerTokens, "_published_keys", slowly)
    with issuer_mode() as url:
        assert modern_call(url, issuer.token("alice"), "list_tasks", {}).status_code == 200
        monkeypatch.setattr(rm, "JWKS_REFETCH_S", 0.0)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            forged = pool.submit(modern_call, url, issuer.token("eve", kid="forged"), "list_tasks", {})
            time.sleep(0.1)
            started = time.monotonic()
            assert modern_call(url, issuer.token("bob"), "list_tasks", {}).status_code == 200
            assert time.monotonic() - started < 0.4
            assert forged.result().status_code == 401


def test_issuer_mode_an_issuer_outage_signs_nobody_out(fake, issuer, issuer_mode, monkeypatch):
    """When the identity provider cannot be asked for its keys, a token is not judged bad: 503, and the client
    keeps its tokens (a 401 would send the person through sign-in again)."""
    published = fake.documents.pop("/idp/jwks")
    with issuer_mode() as url:
        down = modern_call(url, issuer.token(), "list_tasks", {})
        assert down.status_code == 503 and down.headers["retry-after"] and "try again" in down.text
        fake.documents["/idp/jwks"] = published
        monkeypatch.setattr(rm, "JWKS_REFETCH_S", 0.0)
        assert modern_call(url, issuer.token(), "list_tasks", {}).status_code == 200

def test_issuer_mode_asks_for_the_issuers_keys_at_most_once_a_minute(fake, issuer, issuer_mode, monkeypatch):
    with issuer_mode() as url:
        assert modern_call(url, issuer.token(), "list_tasks", {}).status_code == 200
        for n in range(5):                                              # forged key ids: no fetch for any
            assert modern_call(url, issuer.token(f"eve{n}", kid=f"forged{n}"), "list_tasks", {}).status_code == 401
        assert len(fake.seen("GET", "/idp/jwks")) == 1
        rotated = Issuer(fake, kid="k2")                                # the issuer's new key, a minute later
        monkeypatch.setattr(rm, "JWKS_REFETCH_S", 0.0)
        assert modern_call(url, rotated.token(), "list_tasks", {}).status_code == 200
    assert len(fake.seen("GET", "/idp/jwks")) == 2


def test_issuer_mode_accepts_entra_style_scopes_and_plain_jwt_types(fake, issuer, issuer_mode):
    with issuer_mode() as url:
        assert modern_call(url, issuer.token(scope=None, scp=["runway"], typ="JWT"), "list_tasks", {}).status_code == 200
        listed = issuer.token(aud=[f"{url}/mcp", "https://other.example"])
        assert modern_call(url, listed, "list_tasks", {}).status_code == 200


@pytest.mark.parametrize("env, says", [
    ({"RUNWAY_MCP_OAUTH": "keys", "RUNWAY_MCP_PUBLIC_URL": "http://mcp.example.com"}, "must be the server's public https"),
    ({"RUNWAY_MCP_OAUTH": "keys", "RUNWAY_MCP_PUBLIC_URL": "https://mcp.example.com"}, "RUNWAY_MCP_STATE_SECRET"),
    ({"RUNWAY_MCP_OAUTH_ISSUER": "http://idp.example.com", "RUNWAY_MCP_PUBLIC_URL": "https://mcp.example.com"},
     "RUNWAY_MCP_OAUTH_ISSUER='http://idp.example.com' must be"),
    ({"RUNWAY_MCP_OAUTH_ISSUER": "https://idp.example.com", "RUNWAY_MCP_OAUTH": "keys",
      "RUNWAY_MCP_PUBLIC_URL": "https://mcp.example.com", "RUNWAY_MCP_STATE_SECRET": SECRET}, "choose one"),
    ({"RUNWAY_MCP_OAUTH_ISSUER": "https://idp.example.com", "RUNWAY_MCP_PUBLIC_URL": "https://mcp.example.com",
      "RUNWAY_MCP_KEYS_FROM_CLIENTS": "1"}, "unset RUNWAY_MCP_KEYS_FROM_CLIENTS"),
    ({"RUNWAY_MCP_OAUTH_ISSUER": "https://idp.example.com", "RUNWAY_MCP_PUBLIC_URL": "https://mcp.example.com",
      "RUNWAYML_API_SECRET": ""}, "set RUNWAYML_API_SECRET"),
    ({"RUNWAY_MCP_OAUTH": "yes"}, "RUNWAY_MCP_OAUTH='yes' is not a sign-in mode"),
])
def test_oauth_settings_that_cannot_work_stop_the_server_with_the_reason(main, serve, capsys, env, says):
    serve(**env)
    assert main("--transport", "http", "--port", "1") == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["keys", "issuer"])
@pytest.mark.anyio
async def test_oauth_writes_no_key_token_or_secret_anywhere(fake, serve, issuer, caplog, out_dir, mode):
    """Runway echoes the key in an error and an output URL, while every request is logged (as `-v` logs, through the
    server's formatter): neither the key, nor an access or refresh token, nor the state secret may appear in a log
    line, a file or a result."""
    caplog.set_level(logging.DEBUG)
    caplog.handler.setFormatter(rm.RedactingFormatter("%(name)s %(message)s"))
    fake.fail("POST", "/v1/text_to_image", 400, body={"error": f"Invalid header Authorization: Bearer {KEY}"})
    fake.plan(polls=1, mime="image/png")
    fake.echo_key = True
    public = {"RUNWAY_MCP_PUBLIC_URL": shared_http().url}
    if mode == "keys":
        serve(RUNWAYML_API_SECRET="", RUNWAY_MCP_OAUTH="keys", RUNWAY_MCP_STATE_SECRET=SECRET, **public)
    else:
        serve(RUNWAY_MCP_OAUTH_ISSUER=issuer.url, RUNWAY_MCP_STATE_SECRET=SECRET, **public)
    storage, results = Storage(), []
    with http_in_process(serve.config) as url:
        if mode == "issuer":
            storage.tokens = rm.OAuthToken(access_token=issuer.token("alice"))
        async with oauth_client(url, Person(typing_key(KEY)), storage) as client:
            for arguments in ({"prompt": "a"}, {"prompt": "b"}):
                results.append((await client.call_tool("generate_image", arguments)).model_dump_json())
            results.append((await client.call_tool("get_account", {})).model_dump_json())
        if mode == "keys":
            results.append(refresh(url, {**storage.tokens.model_dump(), "client_id": storage.client.client_id}).text)
    assert "SUCCEEDED" in results[1] and "[redacted]" in "".join(results)        # the echoed key was there to leak
    written = "".join(p.read_text(errors="replace") for p in out_dir.rglob("*") if p.is_file())
    everything = caplog.text + written + "".join(results)
    secrets_ = [KEY, KEY[4:], SECRET, storage.tokens.access_token, storage.tokens.refresh_token]
    assert not [s for s in secrets_ if s and s in everything]


# An OpenID provider for the tests (npm oidc-provider, OpenID-certified), configured as an organisation's would be for
# this server: open dynamic registration, PKCE, login and consent pages, and access tokens that are RFC 9068 JWTs for
# the resources it knows. Prints {"issuer": ...} once it listens; stops on SIGTERM.
IDENTITY_PROVIDER = r"""
import * as http from "node:http";
import * as crypto from "node:crypto";
import Provider, {errors} from "oidc-provider";

const resources = new Set(process.env.RESOURCES.split(","));
const accessTtl = Number(process.env.ACCESS_TTL);
const key = {...crypto.generateKeyPairSync("rsa", {modulusLength: 2048}).privateKey.export({format: "jwk"}),
             kid: "test", use: "sig", alg: "RS256"};
const server = http.createServer();
server.listen(0, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks: {keys: [key]},
    scopes: ["openid", "offline_access", "runway"],       // what clients may ask for: unlisted ones fail registration
    cookies: {keys: [crypto.randomBytes(32).toString("hex")]},
    findAccount: async (ctx, id) => ({accountId: id, claims: async () => ({sub: id})}),
    pkce: {required: () => true},
    ttl: {AccessToken: accessTtl, AuthorizationCode: 60, RefreshToken: 3600, Grant: 3600, Interaction: 600,
          Session: 3600},
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed("refresh_token"),
    features: {
      devInteractions: {enabled: true}, registration: {enabled: true},
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resource) => {
          if (!resources.has(resource)) throw new errors.InvalidTarget();
          return {scope: "runway", audience: resource, accessTokenTTL: accessTtl, accessTokenFormat: "jwt",
                  jwt: {sign: {alg: "RS256"}}};
        },
      },
    },
  });
  server.on("request", provider.callback());
  console.log(JSON.stringify({issuer}));
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
"""


@contextlib.contextmanager
def identity_provider(tmp_path, resources, access_ttl=3600):
    """oidc-provider, started for a test: its issuer URL."""
    (tmp_path / "idp.mjs").write_text(IDENTITY_PROVIDER)
    (tmp_path / "node_modules").symlink_to(HERE / ".tools" / "node_modules")     # where its imports resolve
    process = subprocess.Popen(["node", str(tmp_path / "idp.mjs")], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={
                                   **os.environ, "RESOURCES": ",".join(resources), "ACCESS_TTL": str(access_ttl)})
    try:
        line = process.stdout.readline()
        assert line, process.communicate(timeout=10)[1]
        yield json.loads(line)["issuer"]
    finally:
        process.terminate()
        process.wait(10)


def logging_in_as(name):
    """oidc-provider's own pages: a login form (any password), then a consent form."""
    return lambda fields: {**fields, "login": name, "password": "anything"} if fields.get("prompt") == "login" else fields


@pytest.mark.slow
@pytest.mark.skipif(not (NODE_TOOLS.parent / "oidc-provider").is_dir(), reason="oidc-provider is not in .tools (make "
                    "test installs it with npm; is npm installed?)")
@pytest.mark.anyio
async def test_a_real_identity_provider_signs_people_in_and_refreshes(fake, serve, tmp_path, out_dir):
    fake.plan(polls=1, mime="image/png")
    fake.plan(polls=1, mime="image/png")
    resource = f"{shared_http().url}/mcp"
    with identity_provider(tmp_path, [resource, "https://other.example/mcp"], access_ttl=3) as issuer:
        serve(RUNWAY_MCP_OAUTH_ISSUER=issuer, RUNWAY_MCP_PUBLIC_URL=shared_http().url)
        with http_in_process(serve.config) as url:
            alice, storage = Person(logging_in_as("alice")), Storage()
            async with oauth_client(url, alice, storage) as client:
                first, made = await call(client, "generate_image", {"prompt": "a fox"})
                token = storage.tokens.access_token
                await anyio.sleep(3.5)                                  # the access token expires: refreshed
                second, _ = await call(client, "get_task", {"task_id": made["task_id"]})
            assert not first.is_error and not second.is_error and storage.tokens.access_token != token
            assert [page.status_code for page in alice.pages] == [200, 200]     # logged in and consented, once
            async with oauth_client(url, Person(logging_in_as("bob"))) as bob:
                theirs, _ = await call(bob, "get_task", {"task_id": made["task_id"]})
                assert theirs.is_error and "Runway has no task" in theirs.content[0].text
            await anyio.sleep(3.5)
            assert modern_call(url, token, "list_tasks", {}).status_code == 401          # expired
    assert {r["key"] for r in fake.seen(prefix="/v1/") if "key" in r} == {KEY}
    assert len(list((out_dir / "accounts").iterdir())) == 1                           # alice's folder; bob made none


# A person at the sign-in page, in headless Chromium: types their key, submits, and is sent to the client's callback
# (answered here, as the client's own listener would). Prints {"callback": url, "title": ...}.
SIGN_IN_BY_HAND = r"""
import puppeteer from "puppeteer-core";
const [chromium, start, key, callback] = process.argv.slice(2);
const browser = await puppeteer.launch({executablePath: chromium, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]});
try {
  const page = await browser.newPage();
  await page.setRequestInterception(true);
  let reached = null;
  page.on("request", (request) => {
    if (request.url().startsWith(callback)) {
      reached = request.url();
      request.respond({status: 200, contentType: "text/plain", body: "signed in"});
    } else request.continue();
  });
  await page.goto(start);
  const title = await page.title();
  await page.type("#key", key);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  console.log(JSON.stringify({callback: reached, title}));
} finally {
  await browser.close();
}
"""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
@needs_node_tool("esbuild")
def test_a_person_signs_in_with_their_key_in_a_real_browser(fake, keys_mode, tmp_path):
    fake.plan(polls=1, mime="image/png")
    (tmp_path / "sign_in.mjs").write_text(SIGN_IN_BY_HAND)
    (tmp_path / "node_modules").symlink_to(HERE / ".tools" / "node_modules")
    with keys_mode() as url:
        client_id = register(url).json()["client_id"]
        verifier, challenge = pkce()
        start = authorize(url, client_id, challenge).headers["location"]
        done = subprocess.run(["node", str(tmp_path / "sign_in.mjs"), CHROMIUM, start, KEY3, CALLBACK],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout)
        assert seen["title"] == "Sign in to Runway" and seen["callback"].startswith(CALLBACK)
        answer = dict(parse_qsl(urlsplit(seen["callback"]).query))
        assert answer["state"] == "st" and answer["iss"] == url
        tokens = requests.post(f"{url}/token", timeout=5, data={
            "grant_type": "authorization_code", "code": answer["code"], "redirect_uri": CALLBACK,
            "client_id": client_id, "code_verifier": verifier}).json()
        made = modern_call(url, tokens["access_token"], "generate_image", {"prompt": "a fox"})
        assert made.status_code == 200 and "SUCCEEDED" in made.text
    assert [r["key"] for r in fake.seen("POST", "/v1/text_to_image")] == [KEY3]      # the key that was typed


##############################################################################
# Installing: the script block, the package, the bundle, the registry entry, host configs
##############################################################################

def script_block() -> dict:
    """runway_mcp.py's PEP 723 block, parsed as uv reads it."""
    match = re.search(r"(?m)^# /// script$\s(?P<content>(^#(| .*)$\s)+)^# ///$", Path(SERVER).read_text())
    return tomllib.loads("".join(line[2:] + "\n" for line in match["content"].splitlines()))


def tools_of_process(command, env, cwd=None, timeout=180):
    """Start an MCP server as a host would, list its tools over raw stdio; (tool names, stderr).

    Everything it writes to stdout must be JSON-RPC: uv's and pip's messages belong on stderr.
    """
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, cwd=cwd, text=True)
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True).start()
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        messages = [INITIALIZE, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]
        process.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
        process.stdin.flush()
        answers = []
        while not answers or answers[-1].get("id") != 2:
            line = process.stdout.readline()
            assert line, f"the server ended without listing its tools: {''.join(errors)[-2000:]}"
            answers.append(json.loads(line))            # a line that is not JSON-RPC fails here
        listed = answers[-1]["result"]["tools"]
        process.stdin.close()
        answers += [json.loads(line) for line in process.stdout]
        process.wait()
    finally:
        timer.cancel()
    assert all(a.get("jsonrpc") == "2.0" for a in answers)
    return {t["name"] for t in listed}, "".join(errors)


def manifest_tools(tools) -> list[dict]:
    """What manifest.json should list for these tools: each one's name and its description's first paragraph."""
    return [{"name": t.name, "description": " ".join(t.description.split("\n\n")[0].split())} for t in tools]


MANIFEST = json.loads((HERE / "manifest.json").read_text())
SERVER_JSON = json.loads((HERE / "server.json").read_text())
PYPROJECT = tomllib.loads((HERE / "pyproject.toml").read_text())


def test_the_script_block_and_the_package_ask_for_exactly_the_runtime_requirements():
    requirements = [line.strip() for line in (HERE / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    block = script_block()
    assert block["dependencies"] == requirements == PYPROJECT["project"]["dependencies"]
    assert block["requires-python"] == PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_one_version_everywhere():
    assert "version" in PYPROJECT["project"]["dynamic"]           # flit reads __version__ from the module
    assert MANIFEST["version"] == SERVER_JSON["version"] == rm.__version__
    assert [p["version"] for p in SERVER_JSON["packages"]] == [rm.__version__]


def test_server_json_is_a_registry_entry_for_the_package():
    assert SERVER_JSON["$schema"].startswith("https://static.modelcontextprotocol.io/schemas/")
    assert re.fullmatch(r"io\.github\.[\w-]+/runway-mcp", SERVER_JSON["name"])
    assert 0 < len(SERVER_JSON["description"]) <= 100
    [package] = SERVER_JSON["packages"]
    assert package["registryType"] == "pypi" and package["identifier"] == PYPROJECT["project"]["name"]
    assert package["transport"] == {"type": "stdio"} and package["runtimeHint"] == "uvx"
    variables = {v["name"]: v for v in package["environmentVariables"]}
    assert variables["RUNWAYML_API_SECRET"]["isRequired"] and variables["RUNWAYML_API_SECRET"]["isSecret"]
    assert all(name in (HERE / "README.md").read_text() for name in variables)      # each one documented
    assert f"<!-- mcp-name: {SERVER_JSON['name']} -->" in (HERE / "README.md").read_text()   # PyPI ownership


@pytest.mark.anyio
async def test_the_manifest_lists_the_tools_as_tools_list_does(client):
    assert MANIFEST["tools"] == manifest_tools((await client.list_tools()).tools), "run `make manifest`"


def test_the_manifest_asks_for_the_key_once_and_keeps_it_secret():
    settings, env = MANIFEST["user_config"], MANIFEST["server"]["mcp_config"]["env"]
    assert settings["api_key"]["sensitive"] and settings["api_key"]["required"]
    assert settings["output_dir"]["type"] == "directory" and not settings["output_dir"]["required"]
    assert "default" not in settings["output_dir"]         # a host would pass "${HOME}/Runway" unexpanded
    assert settings["max_wait"]["max"] < 60 and settings["max_wait"]["default"] == rm.Config.max_wait
    assert env == {"RUNWAYML_API_SECRET": "${user_config.api_key}", "RUNWAY_MCP_OUTPUT_DIR": "${user_config.output_dir}",
                   "RUNWAY_MCP_MAX_WAIT": "${user_config.max_wait}"}
    assert MANIFEST["server"]["type"] == "uv" and MANIFEST["server"]["entry_point"] == "runway_mcp.py"


def test_an_unfilled_host_placeholder_is_treated_as_unset_and_said():
    config = rm.load_config({"RUNWAYML_API_SECRET": KEY, "RUNWAY_MCP_OUTPUT_DIR": "${user_config.output_dir}",
                             "RUNWAY_MCP_DOWNLOAD": "${user_config.download}", "RUNWAY_MCP_MAX_WAIT": "${x}"})
    assert config.output_dir == (Path.home() / "Runway").resolve() and config.download and config.max_wait == 45
    assert len(config.warnings) == 3 and all("placeholder the host did not fill" in w for w in config.warnings)
    assert "${user_config.output_dir}" in config.warnings[0] and "RUNWAY_MCP_OUTPUT_DIR" in config.warnings[0]


@pytest.mark.parametrize("host", rm.HOSTS)
def test_print_config_gives_a_block_for_each_host(main, capsys, host):
    assert main("--print-config", host) == 0
    out, err = capsys.readouterr()
    assert KEY not in out and KEY not in err
    assert rm.KEY_PLACEHOLDER in out if host != "vscode" else "${input:runway-api-key}" in out   # vscode asks for it
    if host == "claude-code":
        words = shlex.split(out)
        assert words[:4] == ["claude", "mcp", "add", "runway"] and f"RUNWAYML_API_SECRET={rm.KEY_PLACEHOLDER}" in words
        command = words[words.index("--") + 1:]
    else:
        config = json.loads(out)
        servers = config["servers"] if host == "vscode" else config["mcpServers"]
        if host == "vscode":
            assert servers["runway"]["type"] == "stdio" and config["inputs"][0]["password"]
            assert servers["runway"]["env"]["RUNWAYML_API_SECRET"] == "${input:runway-api-key}"
        command = [servers["runway"]["command"], *servers["runway"]["args"]]
    assert Path(command[0]).is_absolute() and Path(command[0]).exists()         # GUI hosts have no shell PATH
    assert any(Path(a).name == "runway_mcp.py" and Path(a).is_absolute() for a in command[1:])


@pytest.mark.slow
@needs_uv
def test_the_file_alone_installs_what_it_needs_with_uv(tmp_path):
    alone = tmp_path / "runway_mcp.py"
    shutil.copy(SERVER, alone)                                  # no venv, no clone: the file itself
    tools, stderr = tools_of_process([UV, "run", "--script", str(alone)], plain_env())
    assert tools == set(rm.TOOLS)
    alone.chmod(0o755)                                          # its #! line runs it with uv too
    tools, _ = tools_of_process([str(alone)], plain_env(PATH=f"{Path(UV).parent}{os.pathsep}/usr/bin:/bin"))
    assert "generate_image" in tools
    tried = subprocess.run([UV, "run", "--script", str(alone), "call", "generate_image", "prompt=a fox", "dry_run=true"],
                           capture_output=True, text=True, timeout=120,
                           env=plain_env(RUNWAY_MCP_OUTPUT_DIR=str(tmp_path / "out")))
    assert tried.returncode == 0 and tried.stdout.startswith("DRY_RUN: POST /v1/text_to_image"), tried.stderr


@pytest.mark.slow
@needs_uv
@pytest.mark.parametrize("host", ["claude-desktop", "vscode"])
def test_a_printed_config_starts_the_server(tmp_path, host):
    """The block --print-config prints, run as the host would run it (here uv is on the PATH, as it is in CI)."""
    done = subprocess.run([sys.executable, SERVER, "--print-config", host], capture_output=True, text=True,
                          env=plain_env(), check=True)
    config = json.loads(done.stdout)
    server = (config.get("servers") or config["mcpServers"])["runway"]
    env = {k: v for k, v in server["env"].items() if "${" not in v}
    tools, _ = tools_of_process([server["command"], *server["args"]], plain_env(**env))
    assert "generate_video" in tools


@pytest.mark.slow
@needs_node_tool("claude")
def test_the_claude_code_line_adds_a_server_that_claude_code_connects_to(tmp_path):
    """Claude Code itself runs the printed line and then health-checks the server (no login needed for that)."""
    env = plain_env(HOME=str(tmp_path), DISABLE_AUTOUPDATER="1", DISABLE_TELEMETRY="1")
    env["PATH"] = f"{NODE_TOOLS}{os.pathsep}{env['PATH']}"
    line = subprocess.run([sys.executable, SERVER, "--print-config", "claude-code"], capture_output=True, text=True,
                          env=plain_env(), check=True).stdout
    subprocess.run(shlex.split(line), env=env, check=True, capture_output=True, timeout=120)
    listed = subprocess.run(["claude", "mcp", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert re.search(r"runway: .*runway_mcp\.py - ✔ Connected", listed.stdout), listed.stdout + listed.stderr


@pytest.mark.slow
@needs_uv
def test_the_wheel_holds_one_module_and_installs_the_runway_mcp_command(tmp_path):
    subprocess.run([UV, "build", "--wheel", "--out-dir", str(tmp_path), str(HERE)], check=True, capture_output=True,
                   timeout=300)
    [wheel] = tmp_path.glob("runway_mcp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if ".dist-info/" not in n] == ["runway_mcp.py"]
    assert "runway-mcp=runway_mcp:main" in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    subprocess.run([UV, "venv", "--quiet", str(tmp_path / "venv")], check=True, capture_output=True)
    subprocess.run([UV, "pip", "install", "--quiet", "--python", str(tmp_path / "venv" / "bin" / "python"), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    command = tmp_path / "venv" / "bin" / "runway-mcp"
    tools, _ = tools_of_process([str(command)], plain_env())
    assert "generate_image" in tools
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"runway-mcp {rm.__version__}"
    listed = subprocess.run([str(command), "tools"], capture_output=True, text=True, check=True, env=plain_env())
    assert listed.stdout.startswith("generate_image")                  # the terminal command, as installed


HOST_SUBSTITUTION = """
import {getMcpConfigForManifest} from "@anthropic-ai/mcpb";
import {readFileSync} from "node:fs";
const [dir, userConfig] = [process.argv[1], JSON.parse(process.argv[2])];
const manifest = JSON.parse(readFileSync(`${dir}/manifest.json`, "utf8"));
const config = await getMcpConfigForManifest({manifest, extensionPath: dir, userConfig, pathSeparator: "/",
                                              systemDirs: {HOME: process.env.HOME}});
console.log(JSON.stringify(config));
"""


@pytest.mark.slow
@needs_uv
@needs_node_tool("mcpb")
def test_the_bundle_starts_as_claude_desktop_starts_it(tmp_path):
    """make bundle, then what a host does: unpack, substitute the settings with the mcpb library, start, list."""
    subprocess.run(["make", "-s", "bundle"], cwd=HERE, check=True, capture_output=True, timeout=600)
    extension = tmp_path / "extension"
    zipfile.ZipFile(HERE / "dist" / "runway-mcp.mcpb").extractall(extension)
    assert sorted(p.name for p in extension.iterdir()) == sorted(["manifest.json", "pyproject.toml", "runway_mcp.py",
                                                                  "README.md", "uv.lock"])
    # The person gave the key and left the optional output folder empty.
    substituted = subprocess.run(
        ["node", "--input-type=module", "-e", HOST_SUBSTITUTION, str(extension), json.dumps({"api_key": KEY})],
        cwd=HERE / ".tools", capture_output=True, text=True, check=True, env=plain_env(HOME=str(tmp_path)))
    config = json.loads(substituted.stdout)
    assert config["env"]["RUNWAY_MCP_OUTPUT_DIR"] == "${user_config.output_dir}"   # what hosts pass for "empty"
    tools, stderr = tools_of_process([config["command"], *config["args"]],
                                     plain_env(HOME=str(tmp_path), **config["env"]))
    assert tools == set(rm.TOOLS)
    assert "RUNWAY_MCP_OUTPUT_DIR holds a placeholder the host did not fill" in stderr and KEY not in stderr


##############################################################################
# Documentation: every table that restates the code is checked against it
##############################################################################

DOCS = {path.relative_to(HERE).as_posix(): path.read_text() for path in [HERE / "README.md", *HERE.glob("docs/*.md")]}


def markdown_table(text: str, header: str) -> list[list[str]]:
    """The rows of the table that starts with this header line, each a list of its cells."""
    lines = text[re.search(rf"(?m)^{re.escape(header)}$", text).start():].splitlines()[2:]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in itertools.takewhile(
        lambda line: line.startswith("|"), lines)]


def code_names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_configuration_table_is_what_load_config_reads():
    read = set(re.findall(r'"(RUNWAY\w+)"', inspect.getsource(rm.load_config)))
    rows = markdown_table(DOCS["README.md"], "| Variable | Meaning | Default |")
    aliases = {name for row in rows for name in code_names(row[1]) if "alias" in row[1] and name.startswith("RUNWAY")}
    assert {code_names(row[0])[0] for row in rows} | aliases == read
    for row in rows:                        # a default written as a value is the default load_config uses
        name, default = code_names(row[0])[0], code_names(row[2])
        if row[2].startswith("`") and default:
            assert rm.load_config({name: default[0]}) == rm.load_config({}), (name, default)


def test_the_tool_tables_are_the_tools_and_their_endpoints():
    rows = [row for header in ("| Tool | What it does | Runway endpoint | Default model |",
                               "| Tool | What it does | Runway endpoint |")
            for row in markdown_table(DOCS["README.md"], header)]
    tables = {code_names(row[0])[0]: row for row in rows}
    endpoints = {entry.tool: (endpoint, entry.default) for endpoint, entry in rm.ENDPOINTS.items()}
    missing = [f"| `{tool}` | (what it does) | `{endpoints[tool][0]}` | `{endpoints[tool][1]}` |" if tool in endpoints
               else f"| `{tool}` | (what it does) | (Runway's endpoint) |"
               for tool in sorted(set(rm.TOOLS) - set(tables))]
    assert not missing, "add to the README's tool tables:\n" + "\n".join(missing)
    gone = sorted(set(tables) - set(rm.TOOLS))
    assert not gone, f"the README's tool tables name tools there are not: {gone}"
    for endpoint, entry in rm.ENDPOINTS.items():
        row = tables[entry.tool]
        assert endpoint in code_names(row[2]) and entry.default in code_names(row[3]), row


@pytest.mark.anyio
async def test_the_toolsets_table_is_the_toolsets_and_what_they_cost(fake, tmp_path):
    """Each row as the tools are now: what it lists, how many tools it exposes, their size. When a tool comes or
    goes, the failure shows the whole table as it should read."""
    table = markdown_table(DOCS["README.md"], "| `RUNWAY_MCP_TOOLS` | Tools | Size |")
    groups, official = rm.toolsets(), re.search(r"; (the official Runway MCP server: \d+ B per tool)", table[0][2])[1]
    shown = [code_names(row[0])[0] for row in table[1:]]
    should = [f"| (unset: all) | {len(rm.TOOLS)} | {{size}} ({{per}} B per tool; {official}) |"]
    for group in shown + sorted(set(groups) - set(shown)):
        if group not in groups:
            continue
        exposed = rm.exposed_tools((group,))[0]
        listed = ", ".join(f"`{tool}`" for tool in groups[group])
        tasks = f" + `tasks` ({len(exposed)})" if len(exposed) > len(groups[group]) else ""
        should.append(f"| `{group}` | {listed}{tasks}" " | {size} |")
    for n, group in enumerate([None, *(row.split("`")[1] for row in should[1:])]):
        env = server_env(fake, tmp_path, **({"RUNWAY_MCP_TOOLS": group} if group else {}))
        async with Client(rm.create_server(rm.load_config(env)), mode="legacy") as client:
            tools = (await client.list_tools()).tools
        assert {t.name for t in tools} == (rm.exposed_tools((group,))[0] if group else set(rm.TOOLS))
        size = sum(wire_size(model_facing(t)) for t in tools)
        should[n] = should[n].format(size=f"{size / 1000:.1f} KB", per=round(size / len(tools)))
    actual = ["| " + " | ".join(row) + " |" for row in table]
    assert actual == should, "the README's toolsets table should read:\n" + "\n".join(should)


def test_defaults_written_outside_the_code_are_configs_defaults():
    max_wait = MANIFEST["user_config"]["max_wait"]["default"]
    assert rm.load_config({"RUNWAY_MCP_MAX_WAIT": str(max_wait)}) == rm.load_config({})
    [package] = SERVER_JSON["packages"]
    for variable in package["environmentVariables"]:
        if found := re.search(r"\(default ([^ )]+)\)", variable["description"]):
            assert rm.load_config({variable["name"]: found[1]}) == rm.load_config({}), variable
    assert f"`RUNWAY_MCP_MAX_WAIT` seconds ({rm.DEFAULTS.max_wait:g})" in DOCS["README.md"].split("## Long videos")[1]


def test_the_readme_starts_where_people_start_and_leaves_reference_to_docs():
    readme = DOCS["README.md"]
    assert len(readme.encode()) < 25_000
    sections = re.findall(r"(?m)^## .+$", readme)
    assert sections[:4] == ["## Connect a host", "## A first generation", "## Configuration", "## Tools"]
    assert "--print-config" in readme.split("## A first")[0]


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_docs_reaches_a_file_and_a_heading():
    anchors = {name: {heading_anchor(h) for h in re.findall(r"(?m)^#+ (.+)$", text)} for name, text in DOCS.items()}
    for name, text in DOCS.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (HERE / name).parent.joinpath(path).resolve().relative_to(HERE).as_posix() if path else name
            assert (HERE / resolved).exists(), (name, target)
            assert not anchor or anchor in anchors[resolved], (name, target)


def test_every_test_the_docs_name_exists():
    defined = set(re.findall(r"(?m)^(?:async )?def (test_\w+)", (HERE / "test_runway_mcp.py").read_text()))
    for name, text in DOCS.items():
        for test in set(re.findall(r"\btest_\w+", text)) - {"test_runway_mcp"}:     # a name ending in _: a family
            assert test in defined or test.endswith("_") and any(d.startswith(test) for d in defined), (name, test)


##############################################################################
# Command line
##############################################################################

def test_cli_version_and_help(capsys):
    for flag in ("--version", "--help"):
        with pytest.raises(SystemExit) as exited:
            rm._main([flag])
        assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"runway-mcp {rm.__version__}\n") and "RUNWAYML_API_SECRET" in out and "--transport" in out


@pytest.fixture
def main(serve, monkeypatch):
    """rm._main(*argv) in this process, as the installed runway-mcp command, in the environment serve(...) set last;
    the logging it sets up is put back after. It runs in a thread of its own, as in a process of its own: no event
    loop of the tests' is running there."""
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/runway-mcp"])
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)

    def run(*argv):
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            return thread.submit(rm._main, list(argv), serve.env).result()
    return run


def test_the_benchmark_uses_only_what_the_module_and_the_tests_have():
    """make bench is not part of make test: a name it takes from runway_mcp (t.rm.X) or from the tests (t.X) that
    no longer exists would break it unseen."""
    tree = ast.parse((HERE / "bench_runway_mcp.py").read_text())
    used = {(node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id, node.attr)
            for node in ast.walk(tree) if isinstance(node, ast.Attribute) and (
                isinstance(node.value, ast.Name) and node.value.id == "t" or
                isinstance(node.value, ast.Attribute) and node.value.attr == "rm")}
    module = {"t": sys.modules[__name__], "rm": rm}
    assert [f"{owner}.{name}" for owner, name in sorted(used) if not hasattr(module[owner], name)] == []

def test_cli_check_prints_the_balance(main, fake, capsys):
    assert main("--check") == 0
    assert "1000" in capsys.readouterr().out and fake.seen("GET", "/v1/organization")


def test_cli_check_fails_on_a_wrong_key(main, serve, capsys):
    serve(RUNWAYML_API_SECRET="key_" + "f" * 128)
    assert main("--check") == 1
    stderr = capsys.readouterr().err
    assert "RUNWAYML_API_SECRET" in stderr and "f" * 128 not in stderr


class Keyboard:
    """stdin as a terminal where the person types `answer`."""

    def __init__(self, answer):
        self.answer, self.asked = answer, 0

    def isatty(self):
        return True

    def readline(self):
        self.asked += 1
        return self.answer + "\n"


def test_call_generates_an_image_saves_it_and_prints_where(main, fake, capsys, out_dir):
    fake.plan(polls=3, mime="image/png")
    assert main("call", "generate_image", "prompt=a red fox", "ratio=1920:1080") == 0
    out, err = capsys.readouterr()
    [saved] = out_dir.rglob("*.png")
    assert out.startswith("SUCCEEDED") and saved.name in out and "RUNNING" in err     # progress on stderr
    assert fake.bodies("text_to_image")[0]["promptText"] == "a red fox"
    assert [t["tool"] for t in rm.ledger(rm.own_account(rm.load_config({"RUNWAY_MCP_OUTPUT_DIR": str(out_dir)})))
            .tasks()] == ["generate_image"]


def test_call_json_prints_the_structured_result(main, fake, capsys, out_dir):
    fake.plan(polls=1, mime="image/png")
    assert main("call", "generate_image", "prompt=a", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "SUCCEEDED" and (out_dir / result["outputs"][0]["path"]).is_file()


def test_call_parses_values_as_json_except_for_text(main, fake, capsys):
    assert main("call", "generate_video", "prompt=42", "duration=10", "seed=7", "dry_run=true",
                'options={"outputFormat": "prores"}', "--json") == 0
    body = json.loads(capsys.readouterr().out)["request"]["body"]
    assert body["promptText"] == "42" and body["duration"] == 10 and body["seed"] == 7
    assert body["outputFormat"] == "prores"
    assert not fake.requests                                         # a dry run sends nothing


def test_call_a_failed_task_exits_1_with_runways_reason(main, fake, capsys):
    fake.plan(polls=1, outcome="FAILED", failure="The prompt was flagged")
    assert main("call", "generate_image", "prompt=x") == 1
    assert "The prompt was flagged" in capsys.readouterr().out


@pytest.mark.parametrize("argv, says", [
    (["generate_image", "promt=x"], "generate_image takes no argument 'promt'; did you mean prompt?"),
    (["generate_imag", "prompt=x"], "no tool named 'generate_imag'; did you mean generate_image"),
    (["image", "prompt=x"], "did you mean generate_image"),
    (["generate_image", "prompt"], "'prompt' is not key=value"),
    (["generate_image", "prompt=x", "--jsn"], "did you mean --json?"),
    (["generate_image", "prompt=x", "--dry-run"], "for dry_run write dry_run=true"),
    (["generate_image", "prompt=x", "seed=1", "seed=2"], "seed is given twice"),
    (["generate_image", "prompt=x", "options={bad"], "options must be JSON here"),
    (["generate_image", "prompt=x", "reference_images=fox.png"], "e.g. reference_images='[\"...\"]'"),
    (["generate_image", "ratio=16:9"], "generate_image needs prompt=..."),
    ([], "name a tool"),
])
def test_call_usage_errors_exit_2_naming_the_close_match(main, fake, capsys, argv, says):
    assert main("call", *argv) == 2
    assert says in capsys.readouterr().err and not fake.requests


def test_call_refuses_values_json_cannot_mean(main, fake, capsys):
    assert main("call", "generate_image", "prompt=x", "seed=NaN", "dry_run=true") == 1    # not a seed, not dropped
    assert "seed" in capsys.readouterr().err and not fake.requests


def test_call_a_batch_with_a_failed_item_exits_1(main, fake, capsys):
    fake.plan(polls=1, outcome="FAILED", failure="flagged")
    fake.plan(polls=1, mime="image/png")
    assert main("call", "generate_batch", 'requests=[{"tool": "generate_image", "arguments": {"prompt": "a"}}, '
                '{"tool": "generate_image", "arguments": {"prompt": "b"}}]') == 1
    assert "FAILED" in capsys.readouterr().out


def test_call_help_and_a_closed_pipe(main, capsys, monkeypatch):
    assert main("call", "--help") == 0 and "Exit status" in capsys.readouterr().out
    read, write = os.pipe()
    os.close(read)                                                    # the reader has gone, as `| head` does
    with os.fdopen(write, "w") as gone:
        monkeypatch.setattr(sys, "stdout", gone)
        assert main("tools") == 0


def test_progress_in_a_log_is_a_line_per_change_not_per_second():
    import io
    log = io.StringIO()
    progress = rm.TerminalProgress(log, live=False)
    for message in ("PENDING · 0s", "RUNNING 5% · 1s", "RUNNING 5% · 2s", "RUNNING 5% · 3s", "RUNNING 10% · 4s"):
        progress(0, 1, message)
    assert log.getvalue().splitlines() == ["PENDING · 0s", "RUNNING 5% · 1s", "RUNNING 10% · 4s"]


def test_a_live_progress_line_counts_the_seconds_between_runways_answers():
    import io
    line = io.StringIO()
    progress = rm.TerminalProgress(line, live=True)
    progress(0, 1, "RUNNING 5% · 3s · last poll failed, retrying")
    progress.received -= 2.5                                         # Runway's answer came 2.5 s ago
    progress.tick()
    assert line.getvalue().endswith("\r\033[KRUNNING 5% · 5s · last poll failed, retrying")
    progress.clear()                                                 # a question, or the result: the line stays off
    progress.tick()
    assert line.getvalue().endswith("\r\033[K")


def test_call_a_refusal_exits_1_with_the_reason_on_stderr(main, fake, capsys):
    assert main("call", "generate_video", "prompt=x", "ratio=7:3") == 1
    out, err = capsys.readouterr()
    assert "ratio='7:3'" in err and not out and not fake.requests and "Error executing tool" not in err
    assert main("call", "generate_image", "prompt=x", "seed=abc") == 1          # the SDK's check of the arguments
    err = capsys.readouterr().err
    assert err.startswith("seed:") and "call generate_image --help)" in err and "input schema" not in err


def test_tools_takes_nothing_more(main, capsys):
    assert main("tools", "image") == 2 and "tools takes nothing more ('image')" in capsys.readouterr().err
    assert main("tools", "--help") == 0 and "generate_image" in capsys.readouterr().out


@pytest.mark.parametrize("run, environ, said", [
    ("/usr/local/bin/runway-mcp", {}, "runway-mcp"),
    ("runway_mcp.py", {"UV": "/usr/bin/uv"}, "uv run --script runway_mcp.py"),     # uv sets UV for what it runs
    ("runway_mcp.py", {}, "python runway_mcp.py"),
])
def test_the_commands_the_terminal_suggests_are_written_as_it_was_run(run, environ, said):
    assert rm._program_of(run, environ) == said


def test_call_a_video_past_max_wait_prints_a_handle_that_wait_for_task_resumes(main, fake, capsys):
    fake.plan(polls=10**6, mime="video/mp4")
    assert main("call", "generate_video", "prompt=a long take", "max_wait_s=0.05", "--json") == 3
    handle = json.loads(capsys.readouterr().out)
    assert handle["status"] == "RUNNING" and "wait_for_task" in handle["next"]
    assert main("call", "wait_for_task", f"task_id={handle['task_id']}", "max_wait_s=0.05") == 3
    assert f"Resume with: runway-mcp call wait_for_task task_id={handle['task_id']}" in capsys.readouterr().err
    fake.finish(handle["task_id"])
    assert main("call", "wait_for_task", f"task_id={handle['task_id']}") == 0
    assert capsys.readouterr().out.startswith("SUCCEEDED")


def test_call_waits_past_the_servers_bound(main, serve, fake, capsys):
    serve(RUNWAY_MCP_MAX_WAIT="0.02")
    fake.plan(polls=8, mime="video/mp4")                             # 8 polls of 10 ms: past the 20 ms bound
    assert main("call", "generate_video", "prompt=x") == 0
    assert capsys.readouterr().out.startswith("SUCCEEDED")


@pytest.mark.parametrize("answer, created", [("y", 1), ("n", 0)])
def test_call_asks_yes_or_no_before_a_spend_above_the_threshold(main, serve, fake, capsys, monkeypatch, answer,
                                                                 created):
    serve(RUNWAY_MCP_CONFIRM_ABOVE="1")
    fake.plan(polls=1, mime="image/png")
    keyboard = Keyboard(answer)
    monkeypatch.setattr(sys, "stdin", keyboard)
    monkeypatch.setattr(rm, "_prompt_stream", lambda: contextlib.nullcontext(sys.stderr))   # not the real terminal
    assert main("call", "generate_image", "prompt=x") == (0 if created else 1)
    assert keyboard.asked == 1 and "[y/N]" in capsys.readouterr().err
    assert len(fake.seen("POST", "/v1/text_to_image")) == created


def test_call_without_a_terminal_to_ask_refuses_unless_yes(main, serve, fake, capsys, monkeypatch):
    serve(RUNWAY_MCP_CONFIRM_ABOVE="1")
    fake.plan(polls=1, mime="image/png")
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    assert main("call", "generate_image", "prompt=x") == 1
    out, err = capsys.readouterr()
    assert "pass --yes" in err and "Nothing was sent to Runway." in err and not out and not fake.requests
    assert main("call", "generate_image", "prompt=x", "--yes") == 0


def test_tools_lists_every_tool_on_one_screen_and_help_shows_one(main, capsys):
    assert main("tools") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= 40 and "…" not in "".join(lines)             # a pipe gets whole lines, for grep
    assert "[expression_intensity]" in next(line for line in lines if line.startswith("animate_character"))
    assert [line.split()[0] for line in lines[:lines.index("")]] == list(rm.TOOLS)
    assert main("call", "upscale_video", "--help") == 0
    shown = capsys.readouterr().out
    assert "video: string; required" in shown and "magnific_video_upscaler_creative (default)" in shown
    assert main("call", "generate_speech", "--help") == 0
    assert "language:" in capsys.readouterr().out


def run_in_terminal_env(fake, out_dir, **extra):
    return plain_env(**server_env(fake, out_dir, RUNWAY_MCP_POLL_INTERVAL="0.05", **extra))


@pytest.mark.slow
def test_ctrl_c_stops_waiting_and_says_how_to_resume_or_cancels(fake, out_dir):
    """Two calls at once, sharing one output folder, one with RUNWAY_MCP_CANCEL_ON_ABORT=1: Ctrl-C leaves the
    first's task running with the command to resume it (exit 3), and cancels the second's (exit 1), and only its."""
    import signal
    fake.plan(polls=10**6, mime="video/mp4")
    fake.plan(polls=10**6, mime="video/mp4")
    processes = {cancel: subprocess.Popen([sys.executable, SERVER, "call", "generate_video", f"prompt={cancel}"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=run_in_terminal_env(fake, out_dir, RUNWAY_MCP_CANCEL_ON_ABORT=cancel))
                 for cancel in ("0", "1")}
    polled = lambda: collections.Counter(r["path"] for r in fake.seen("GET", "/v1/tasks/"))
    deadline = time.monotonic() + 30
    while len(polled()) < 2 or min(polled().values()) < 3:            # both are waiting
        assert all(p.poll() is None for p in processes.values()), [p.communicate() for p in processes.values()]
        assert time.monotonic() < deadline, "the calls never got to waiting"
        time.sleep(0.02)
    for process in processes.values():
        process.send_signal(signal.SIGINT)
    (out, err), (_, cancelled) = (processes[c].communicate(timeout=20) for c in ("0", "1"))
    left, gone = (next(t["id"] for t in fake.tasks.values() if t["body"]["promptText"] == c) for c in ("0", "1"))
    assert processes["0"].returncode == 3 and processes["1"].returncode == 1, err + cancelled
    assert f"{SERVER} call wait_for_task task_id={left}" in err and json.loads(out) == {"task_ids": [left]}
    assert f"cancelled task {gone}" in cancelled
    assert [r["path"] for r in fake.seen("DELETE")] == [f"/v1/tasks/{gone}"]
    assert "Traceback" not in err + cancelled


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_a_call_in_a_real_terminal_shows_one_progress_line_then_the_path(fake, out_dir, tmp_path):
    """As a person would run it: a terminal (tmux), the progress line rewritten in place, then the saved path."""
    fake.plan(polls=40, mime="video/mp4")
    env = run_in_terminal_env(fake, out_dir)
    script = tmp_path / "run.sh"
    script.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()) +
                      f"{shlex.quote(sys.executable)} {shlex.quote(SERVER)} call generate_video prompt=waves\n"
                      "echo EXIT=$?\nsleep 30\n")
    session = f"runway-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", session]
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "20", "bash", str(script)],
                   check=True, env={**os.environ, "TERM": "xterm"})
    try:
        panes = []
        for _ in range(300):
            pane = subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout
            if not panes or pane != panes[-1]:
                panes.append(pane)
            if "EXIT=" in pane:
                break
            time.sleep(0.02)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    progress = [p for p in panes if "RUNNING" in p]
    assert len({p for p in progress}) >= 2                           # the line changed as Runway went on...
    assert all(p.count("RUNNING") == 1 for p in progress)             # ...in place: never a second line of it
    final = panes[-1]
    [saved] = out_dir.rglob("*.mp4")
    assert "EXIT=0" in final and saved.name in final and "RUNNING" not in final


if __name__ == "__main__":
    if sys.argv[1:] == ["--update-manifest"]:             # make manifest
        async def every_tool():                           # all tools, whatever RUNWAY_MCP_TOOLS says here
            async with Client(rm.create_server(rm.load_config({}))) as client:
                return (await client.list_tools()).tools
        manifest = json.loads((HERE / "manifest.json").read_text())
        manifest["tools"] = manifest_tools(anyio.run(every_tool))
        (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
