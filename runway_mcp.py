#!/usr/bin/env -S uv run --script
# /// script
# requires-python = ">=3.11"
# dependencies = ["requests>=2.32,<3", "mcp>=2.3,<3"]
# ///
"""An MCP server for the Runway API: generate, edit, upscale and voice images, video and audio.

One file. An agent can generate and edit media, watch progress while Runway works, resume tasks
that outlive a host's tool-call limit (or, with a host that speaks MCP tasks, leave them running in the
background), and find every result saved on disk.

    uv run --script runway_mcp.py             # serve MCP over stdio; uv installs what the block above lists
    python runway_mcp.py                      # the same, with requests and mcp already installed
    python runway_mcp.py --check              # verify RUNWAYML_API_SECRET, print the credit balance
    python runway_mcp.py --print-config claude-desktop   # a config block to paste into a host
    python runway_mcp.py --help

Configuration is read from environment variables; README.md lists them (and `load_config` below).
"""

__version__ = "0.2.0"
__all__ = ["Config", "load_config", "create_server", "http_app", "call_tool", "RunwayError"]

import argparse
import base64
import collections
import contextlib
import contextvars
import dataclasses
import difflib
import errno
import functools
import hashlib
import hmac
import html
import inspect
import json
import logging
import math
import os
import random
import re
import secrets
import shutil
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, NotRequired, TextIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

import anyio
import anyio.to_thread
from mcp import Client, MCPError
from mcp.server.auth.middleware.auth_context import auth_context_var, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import (AccessToken, AuthorizationCode, AuthorizationParams, AuthorizeError, RefreshToken,
                                     RegistrationError, TokenError, construct_redirect_uri)
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, Extension, MCPServer, MethodBinding
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.server.mcpserver.tools import Tool
from mcp.server.request_state import RequestStateSecurity
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp.types import (INTERNAL_ERROR, INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY,
                       CallToolResult, ImageContent, RequestParams, Resource, ResourceLink, ResourceTemplate,
                       TextContent, ToolAnnotations)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError, validate_call
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

log = logging.getLogger("runway_mcp")


if TYPE_CHECKING:       # imported where used: serving stdio starts by answering tools/list, which needs no
    import requests     # HTTP client, so `requests` (about 40 ms of imports) waits for the first call that does


##############################################################################
# Configuration
##############################################################################

DEFAULT_BASE_URL = "https://api.dev.runwayml.com"
API_VERSION = "2024-11-06"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
KEY_PATTERN = re.compile(r"key_[0-9a-f]{128}")

# (connect, read) seconds. Downloads allow a slow CDN a minute between bytes. Status polls read
# for at most 10 s (see poll_timeout), so a stuck connection costs one poll, not the whole wait.
API_TIMEOUT = (5.0, 30.0)
DOWNLOAD_TIMEOUT = (10.0, 60.0)
HEARTBEAT_S = 5.0           # a progress notification at least this often while waiting
MAX_BACKOFF_S = 30.0        # ceiling for the pause after a failed poll or request
WORKER_THREADS = 256        # the SDK's default of 40 starves progress once 40 waits block

@dataclasses.dataclass(frozen=True)
class Config:
    """A server's settings: one value per field, its default here. load_config reads them from the environment;
    an embedder may also build one directly (Config(api_key=..., output_dir=...))."""

    api_key: str = ""
    base_url: str = DEFAULT_BASE_URL
    output_dir: Path = Path("~/Runway")  # made absolute when a server is created
    download: bool = True
    max_wait: float = 45.0              # hosts cut a call at 60 s: the handle must be back before that
    poll_interval: float = 5.0          # Runway asks for about 5 s between status checks of one task
    input_root: Path | None = None      # over HTTP, local files are read only below this directory
    http_token: str = ""                # bearer token the HTTP transport requires, if set
    allowed_hosts: tuple[str, ...] = () # extra Host names the HTTP transport accepts (behind a proxy)
    cancel_on_abort: bool = False       # a client cancel also cancels the Runway task
    tools: tuple[str, ...] = ()         # the toolsets and tools RUNWAY_MCP_TOOLS names; (): all
    budget_credits: float | None = None # credits all tasks created here may commit in any 24 h; None: no budget
    confirm_above: float | None = None  # a task estimated above this needs the person's confirmation; None: never
    dedupe_s: float = 300.0             # an identical request this recent returns the earlier task; 0: off
    keys_from_clients: bool = False     # HTTP: each request brings its own Runway key, used for it alone
    rate_limit: tuple[int, float] | None = None   # HTTP: (task-creating calls, per seconds) for each client
    allowed_origins: tuple[str, ...] = ()         # HTTP: browser origins allowed by CORS
    stateless: bool = False             # HTTP: no sessions, so that any instance can answer any request
    state_secret: str = ""              # HTTP: shared by instances, to seal the state of a confirmation in progress
    tasks: bool = True                  # the MCP tasks extension: a client that asks gets a task to poll, not a wait
    oauth_issuer: str = ""              # HTTP: people sign in with this OAuth issuer; the server's key is spent
    oauth_keys: bool = False            # HTTP: people sign in here with their own Runway key (RUNWAY_MCP_OAUTH=keys)
    oauth_scope: str = "runway"         # HTTP with OAuth: the scope an access token must carry
    public_url: str = ""                # HTTP with OAuth: the server's public base URL; its resource is this + /mcp
    transport: str = "stdio"            # set by the command line: stdio | http
    problems: tuple[str, ...] = ()      # one line each; calls to Runway refuse while any exists
    warnings: tuple[str, ...] = ()      # logged at start-up; a default was used instead


DEFAULTS = Config()


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host in LOOPBACK_HOSTS:
        return True
    if not re.fullmatch(r"[0-9.:a-fA-F]+", host):     # a name, not an address
        return False
    import ipaddress
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _number(env: Mapping[str, str], name: str, default: Any, low: float, high: float,
            warnings: list[str]) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:     # NaN fails this too
        fallback = "leaving it unset" if default is None else f"using {default:g}"
        warnings.append(f"{name}={raw!r} is not a number from {low:g} to {high:g}; {fallback}")
        return default
    return value


def _guard(env: Mapping[str, str], name: str, problems: list[str]) -> float | None:
    """A spending guard (the budget, the confirmation threshold): one that cannot be read is a problem, which stops
    every call that needs Runway, not a warning that would lift the guard by leaving it unset."""
    raw = env.get(name, "").strip()
    value = _number(env, name, None, 0, 1e9, [])
    if raw and value is None:
        problems.append(f"{name}={raw!r} is not a number of credits (0 to 1e9): nothing is sent to Runway until it is "
                        "fixed or unset")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    return default if not raw else raw not in {"0", "false", "no", "off"}


def _names(raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))


def _secret(raw: str, warnings: list[str]) -> str:
    if raw.strip() and len(raw.strip()) < 32:
        warnings.append("RUNWAY_MCP_STATE_SECRET must be at least 32 characters of randomness (python -c 'import "
                        "secrets; print(secrets.token_hex(32))'); ignored, so each instance seals its own state")
        return ""
    return raw.strip()


RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def _rate(raw: str, warnings: list[str]) -> tuple[int, float] | None:
    """RUNWAY_MCP_RATE_LIMIT as (calls, per seconds): "60/min", "5/s", "1000/hour"."""
    if not raw.strip():
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*([a-z]+)\s*", raw.lower())
    if not match or match[2] not in RATE_UNITS or int(match[1]) < 1:
        warnings.append(f"RUNWAY_MCP_RATE_LIMIT={raw!r} is not a rate such as 60/min or 5/s; no rate limit")
        return None
    return int(match[1]), float(RATE_UNITS[match[2]])


def _oauth_mode(raw: str, problems: list[str]) -> bool:
    if raw.strip().lower() not in ("", "keys"):         # a problem, not a warning: without it, nobody signs in
        problems.append(f"RUNWAY_MCP_OAUTH={raw.strip()!r} is not a sign-in mode: `keys` (people sign in with their "
                        "own Runway key) is the one there is; for an identity provider set RUNWAY_MCP_OAUTH_ISSUER")
    return raw.strip().lower() == "keys"


def hosted_mode(config: Config) -> bool:
    """Whether HTTP requests come from people, each of whom gets an account of their own."""
    return config.keys_from_clients or config.oauth_keys or bool(config.oauth_issuer)


def _filled(env: Mapping[str, str], warnings: list[str]) -> dict[str, str]:
    """The RUNWAY* variables, less those a host left as an unfilled placeholder: an MCP bundle passes an optional
    setting the person left empty as the literal `${user_config.name}`, which must not become a folder or a flag."""
    filled = {}
    for name, value in env.items():
        if not name.startswith("RUNWAY"):
            continue
        if "${" in value:
            warnings.append(f"{name} holds a placeholder the host did not fill ({value[:60]!r}); treated as unset")
        else:
            filled[name] = value
    return filled


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Read the RUNWAY* variables of `environ` (the process environment when None), never raising.

    A value with a safe fallback is a warning (logged at start-up); one without, an unusable base URL,
    is a problem, and every call that needs Runway refuses with it.
    """
    problems: list[str] = []
    warnings: list[str] = []
    env = _filled(os.environ if environ is None else environ, warnings)

    key = (env.get("RUNWAYML_API_SECRET") or env.get("RUNWAY_API_KEY") or "").strip()
    if key and not KEY_PATTERN.fullmatch(key):
        warnings.append("RUNWAYML_API_SECRET does not look like a Runway key (key_ followed by 128 hex "
                        "characters); if calls fail with 401, copy the key again from dev.runwayml.com")

    base_url = (env.get("RUNWAYML_BASE_URL") or DEFAULTS.base_url).strip().rstrip("/")
    parts = urlsplit(base_url)
    if not (parts.scheme == "https" and parts.hostname
            or parts.scheme == "http" and _is_loopback(parts.hostname)):
        problems.append(f"RUNWAYML_BASE_URL={base_url!r} must be an https:// URL (plain http:// only for "
                        "localhost); unset it to use the Runway API")

    output_dir = Path(env.get("RUNWAY_MCP_OUTPUT_DIR") or DEFAULTS.output_dir).expanduser()
    hosts = tuple(h.strip().lower() for h in env.get("RUNWAY_MCP_ALLOWED_HOSTS", "").split(",") if h.strip())
    input_root = Path(env["RUNWAY_MCP_INPUT_ROOT"]).expanduser().resolve() if env.get("RUNWAY_MCP_INPUT_ROOT") else None
    if input_root and not input_root.is_dir():
        warnings.append(f"RUNWAY_MCP_INPUT_ROOT={str(input_root)!r} is not a directory; no local file will be "
                        "read for HTTP clients")
        input_root = None
    return Config(
        api_key=key,
        base_url=base_url,
        output_dir=output_dir.resolve(),
        download=_flag(env, "RUNWAY_MCP_DOWNLOAD", DEFAULTS.download),
        max_wait=_number(env, "RUNWAY_MCP_MAX_WAIT", DEFAULTS.max_wait, 0, 3600, warnings),
        poll_interval=_number(env, "RUNWAY_MCP_POLL_INTERVAL", DEFAULTS.poll_interval, 0.001, 300, warnings),
        input_root=input_root,
        http_token=env.get("RUNWAY_MCP_HTTP_TOKEN", "").strip(),
        allowed_hosts=hosts,
        cancel_on_abort=_flag(env, "RUNWAY_MCP_CANCEL_ON_ABORT", DEFAULTS.cancel_on_abort),
        tools=_names(env.get("RUNWAY_MCP_TOOLS", "")),
        budget_credits=_guard(env, "RUNWAY_MCP_BUDGET_CREDITS", problems),
        confirm_above=_guard(env, "RUNWAY_MCP_CONFIRM_ABOVE", problems),
        dedupe_s=_number(env, "RUNWAY_MCP_DEDUPE_S", DEFAULTS.dedupe_s, 0, 7 * 24 * 3600, warnings),
        keys_from_clients=_flag(env, "RUNWAY_MCP_KEYS_FROM_CLIENTS", DEFAULTS.keys_from_clients),
        rate_limit=_rate(env.get("RUNWAY_MCP_RATE_LIMIT", ""), warnings),
        allowed_origins=tuple(o.strip().rstrip("/") for o in env.get("RUNWAY_MCP_ALLOWED_ORIGINS", "").split(",")
                              if o.strip()),
        stateless=_flag(env, "RUNWAY_MCP_STATELESS", DEFAULTS.stateless),
        state_secret=_secret(env.get("RUNWAY_MCP_STATE_SECRET", ""), warnings),
        tasks=_flag(env, "RUNWAY_MCP_TASKS", DEFAULTS.tasks),
        oauth_issuer=env.get("RUNWAY_MCP_OAUTH_ISSUER", "").strip(),       # exactly as the issuer names itself
        oauth_keys=_oauth_mode(env.get("RUNWAY_MCP_OAUTH", ""), problems),
        oauth_scope=env.get("RUNWAY_MCP_OAUTH_SCOPE", "").strip() or DEFAULTS.oauth_scope,
        public_url=env.get("RUNWAY_MCP_PUBLIC_URL", "").strip().rstrip("/"),
        problems=tuple(problems),
        warnings=tuple(warnings),
    )


def poll_timeout(config: Config) -> tuple[float, float]:
    """(connect, read) for status polls: twice the poll interval, from 1 to 10 s."""
    return (5.0, min(10.0, max(1.0, 2 * config.poll_interval)))


class Account(NamedTuple):
    """Whose key and files a piece of work uses, under which settings: the server's own (RUNWAYML_API_SECRET,
    RUNWAY_MCP_OUTPUT_DIR), or, in hosted mode, a person's (their key and a folder of their own). Everything that
    talks to Runway or touches the output folder is given one."""

    config: Config
    key: str
    output_dir: Path
    id: str                             # a one-way name for the account: never the key
    hosted: bool = False                # a person's account: it sees paths relative to its own folder, no others
    shared_key: bool = False            # its key is the server's, spent for every signed-in person: Runway would
                                        # answer for anyone's task, so only its own ledger's are its tasks


def own_account(config: Config) -> Account:
    """The server's own account: its key and its output folder."""
    name = hashlib.sha256(f"{config.base_url} {config.api_key}".encode()).hexdigest()[:16]
    return Account(config, config.api_key, config.output_dir, name)


##############################################################################
# Errors
##############################################################################

def redact(value: Any, account: Account | None = None, *, paths: bool = True) -> Any:
    """Remove API keys from text or from JSON-like data: the one place secrets are scrubbed. Anything shaped like a
    Runway key goes, and the account's own keys whatever their shape. What a person's account (hosted) is sent
    also holds no server path: its own files by their names, other folders by a placeholder (`paths`; the
    operator's logs and the files on disk keep them)."""
    if isinstance(value, str):
        if account is not None:
            for key in {account.config.api_key, account.key}:
                if len(key) >= 8 and key in value:                  # a one-letter "key" must not eat text
                    value = value.replace(key, "[redacted]")
            if paths and account.hosted:
                for path, shown in _hidden_paths(account):
                    value = value.replace(path, shown)
        return KEY_PATTERN.sub("[redacted]", value) if "key_" in value else value
    if isinstance(value, dict):
        return {k: redact(v, account, paths=paths) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, account, paths=paths) for v in value]
    return value


def _hidden_paths(caller: Account) -> list[tuple[str, str]]:
    """Server folders as a person's account sees them, most specific first: its own folder is where its names
    start, its input files are named from the input root, and any other folder is only a placeholder."""
    own, outputs, inputs = str(caller.output_dir), str(caller.config.output_dir), caller.config.input_root
    pairs = [(own + os.sep, ""), (own, "."), *([(f"{inputs}{os.sep}", ""), (str(inputs), "<input root>")]
                                              if inputs else []), (outputs, "<output folder>")]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


class RedactingFormatter(logging.Formatter):
    """Every log line passes redact() on its way out, tracebacks included: the server's own key whatever its shape
    (given as `account`), and anything shaped like a Runway key."""

    def __init__(self, fmt: str, account: Account | None = None):
        super().__init__(fmt)
        self.account = account

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.account, paths=False)


class Cancelled(BaseException):
    """The client cancelled the tool call: raised in its worker thread at the next checkpoint."""


class RunwayError(Exception):
    """A failure worded for the user: one line with the cause and the next step."""

    def __init__(self, message: str, *, task_id: str | None = None, status: int | None = None,
                 retry_after: float | None = None, unsure: bool = False):
        if task_id and task_id not in message:
            message = f"{message} (task {task_id})"
        super().__init__(redact(" ".join(message.split())))
        self.task_id = task_id
        self.status = status
        self.retry_after = retry_after      # seconds Runway asked us to wait, if it said
        self.unsure = unsure                # a create that failed this way may have made (and billed) a task


def no_task(task_id: str) -> str:
    """Runway's 404 for a task, worded once: whoever may not see a task (another account's) is told exactly this."""
    return f"Runway has no task {task_id} (404): it was deleted, cancelled or never existed"


CREATE_UNSURE = ("a task may have been created and billed anyway: check list_tasks and "
                 "get_account (today's usage) before trying again")


def _issues(body: dict) -> str:
    """Runway's 400 `issues` as 'path: message; ...'."""
    parts = []
    for issue in body.get("issues") or []:
        if isinstance(issue, dict):
            path = ".".join(str(p) for p in issue.get("path") or []) or "(body)"
            parts.append(f"{path}: {issue.get('message') or issue.get('code') or 'invalid'}")
    return "; ".join(parts)


def _shorten(text: str, most: int = 160) -> str:
    return text if len(text) <= most else f"{text[:most // 2]}...{text[-most // 2:]}"


def retry_after(response: "requests.Response", cap: float = 60.0) -> float | None:
    """Seconds the server asked us to wait (Retry-After as seconds or HTTP date), capped."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(cap, seconds))


def _raise_for(response: "requests.Response", *, hosted: bool = False, task_id: str | None = None,
               creating: bool = False):
    """Turn an HTTP error from Runway into a RunwayError; built from status and body, never headers."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    said = str(body.get("error") or "").strip().rstrip(".")
    detail = f": {said}" if said else ""
    if status == 400:
        issues = _issues(body)
        message = f"Runway rejected the request (400){detail}" + (f" [{issues}]" if issues else "")
        message += "; fix the argument named above and try again"
    elif status == 401 and hosted:
        message = ("Runway rejected your API key (401), the one this request sent as Authorization: Bearer: it is "
                   "wrong, revoked or for another environment; create a key at https://dev.runwayml.com and send it")
    elif status == 401:
        message = ("Runway rejected the API key (401): RUNWAYML_API_SECRET is wrong, revoked or for "
                   "another environment; create a key at https://dev.runwayml.com and set it")
    elif status == 403:
        message = f"Runway refused access (403){detail}; check the key's organization and credits"
    elif status == 404:
        message = no_task(task_id) if task_id else f"Runway answered 404 not found{detail}"
    elif status == 429:
        message = (f"Runway is rate limiting or the daily generation quota is used up (429){detail}; "
                   "wait a minute and try again, get_account shows today's usage")
    elif status >= 500:
        message = f"Runway had a server error ({status}){detail}"
        message += f"; {CREATE_UNSURE}" if creating and status not in (502, 503) else "; try again shortly"
    else:
        message = f"Runway answered {status}{detail}"
    raise RunwayError(message, task_id=task_id, status=status, retry_after=retry_after(response),
                      unsure=creating and status >= 500 and status not in (502, 503))


##############################################################################
# Catalog
##############################################################################

# Endpoints that create tasks (POST /v1/<endpoint>) with a model of the catalog below.
T2I, I2V, T2V, V2V = "text_to_image", "image_to_video", "text_to_video", "video_to_video"
ACT, SFX, STS, TTS = "character_performance", "sound_effect", "speech_to_speech", "text_to_speech"
DUB, ISOLATE, V2A, HDR = "voice_dubbing", "voice_isolation", "video_to_audio", "video_to_hdr"
VIDEO_UP, IMAGE_UP = "video_upscale", "image_upscale"


class Endpoint(NamedTuple):
    """One endpoint in the registry: what list_models calls it, the tool that calls it, the model that tool uses
    when none is given, and the toolset (RUNWAY_MCP_TOOLS) it belongs to. A new endpoint is an entry here, its
    models in MODELS and its tool; the toolsets, tool descriptions, manifest and tests follow from these."""

    code: str
    tool: str
    default: str
    toolset: str


ENDPOINTS = {
    T2I: Endpoint("t2i", "generate_image", "gen4_image", "image"),
    I2V: Endpoint("i2v", "generate_video", "gen4.5", "video"),
    T2V: Endpoint("t2v", "generate_video", "gen4.5", "video"),
    V2V: Endpoint("v2v", "edit_video", "aleph2", "video"),
    ACT: Endpoint("act", "animate_character", "act_two", "video"),
    VIDEO_UP: Endpoint("vup", "upscale_video", "magnific_video_upscaler_creative", "video"),
    IMAGE_UP: Endpoint("iup", "upscale_image", "magnific_precision_upscaler_v2", "image"),
    TTS: Endpoint("tts", "generate_speech", "eleven_multilingual_v2", "audio"),
    SFX: Endpoint("sfx", "generate_sound_effect", "eleven_text_to_sound_v2", "audio"),
    STS: Endpoint("sts", "change_voice", "eleven_multilingual_sts_v2", "audio"),
    DUB: Endpoint("dub", "dub_audio", "eleven_voice_dubbing", "audio"),
    ISOLATE: Endpoint("iso", "isolate_voice", "eleven_voice_isolation", "audio"),
    V2A: Endpoint("v2a", "generate_sound_for_video", "mirelo_sfx_2_0", "audio"),
    HDR: Endpoint("hdr", "convert_to_hdr", "ruby", "video"),
}
KINDS = ("image", "video", "audio")             # what models make: list_models and list_outputs filter on it

# Ratios, named once. Values are Runway's exact enums (runway-api.md section 3).
WIDE_TALL = ("1280:720", "720:1280")
GEN4_VIDEO = WIDE_TALL + ("1104:832", "960:960", "832:1104", "1584:672")
VEO = WIDE_TALL + ("1080:1920", "1920:1080")
KLING_4K = ("3840:2160", "2160:3840", "2880:2880")
KLING_PRO = ("1920:1080", "1080:1920", "1440:1440")
KLING_STANDARD = WIDE_TALL + ("960:960",)
ASPECTS = ("adaptive", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
SEEDANCE_720 = ("992:432", "864:496", "752:560", "640:640", "560:752", "496:864", "1470:630", "1280:720",
                "1112:834", "960:960", "834:1112", "720:1280")
SEEDANCE = SEEDANCE_720 + ("2206:946", "1920:1080", "1664:1248", "1440:1440", "1248:1664", "1080:1920",
                           "3840:1646", "3840:2160", "3840:2880", "3840:3840", "2880:3840", "2160:3840")
SEEDANCE_2_5 = ("992:432", "854:480", "752:560", "640:640", "560:752", "480:854", "1470:630", "1280:720",
                "1112:834", "960:960", "834:1112", "720:1280", "2206:946", "1920:1080", "1664:1248",
                "1440:1440", "1248:1664", "1080:1920")
AUTO_720_1080 = ("auto_720p", "auto_1080p")
AUTO_480_1080 = ("auto_480p",) + AUTO_720_1080
WAN = ("832:480", "720:544", "624:624", "544:720", "480:832", "1280:720", "1104:832", "960:960", "832:1104",
       "720:1280", "1920:1080", "1648:1248", "1440:1440", "1248:1648", "1080:1920") + AUTO_480_1080
GEMINI_VIDEO = ("640:360", "360:640", "1280:720", "720:1280", "1920:1080", "1080:1920", "3840:2160", "2160:3840")
HAPPYHORSE = ("1280:720", "720:1280", "960:960", "1108:832", "832:1108", "1920:1080", "1080:1920", "1440:1440",
              "1662:1248", "1248:1662")
KLING_2_5 = ("1920:1080", "1440:1440", "1080:1920", "1280:720", "720:720", "720:1280")
KLING_4 = ("1280:720", "720:1280", "940:940", "1460:624", "1920:1080", "1080:1920", "1440:1440", "2200:940",
           ) + AUTO_720_1080
GROK_VIDEO = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
GROK_LITE = ("848:480", "480:848", "480:480", "640:480", "480:640", "720:480", "480:720", "1280:720", "720:1280",
             "720:720", "960:720", "720:960", "1088:720", "720:1088", "1904:1072", "1072:1904", "1424:1424",
             "1648:1232", "1232:1648", "1744:1152", "1152:1744")
GEN4_IMAGE = ("1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440", "1808:768",
              "1920:1080", "1080:1920", "2112:912", "1280:720", "720:1280", "720:720", "960:720", "720:960",
              "1680:720")
GPT_IMAGE = ("2048:880", "1920:1088", "1920:1280", "1920:1440", "1920:1536", "1920:1920", "1536:1920",
             "1440:1920", "1280:1920", "1088:1920", "2912:1248", "2560:1440", "2560:1712", "2560:1920",
             "2560:2048", "2560:2560", "2048:2560", "1920:2560", "1712:2560", "1440:2560", "3840:1648",
             "3840:2160", "3504:2336", "3264:2448", "3200:2560", "2880:2880", "2560:3200", "2448:3264",
             "2336:3504", "2160:3840", "auto")
GEMINI_2_5_IMAGE = ("1344:768", "768:1344", "1024:1024", "1184:864", "864:1184", "1536:672", "832:1248",
                    "1248:832", "896:1152", "1152:896")
GEMINI_IMAGE_HI = ("2048:2048", "1696:2528", "2528:1696", "1792:2400", "2400:1792", "1856:2304", "2304:1856",
                   "1536:2752", "2752:1536", "3168:1344")
GEMINI_IMAGE_4K = ("4096:4096", "3392:5056", "5056:3392", "3584:4800", "4800:3584", "3712:4608", "4608:3712",
                   "3072:5504", "5504:3072", "6336:2688")
GEMINI_3_PRO_IMAGE = GEMINI_2_5_IMAGE + GEMINI_IMAGE_HI + GEMINI_IMAGE_4K
GEMINI_3_1_FLASH_IMAGE = (
    "512:512", "416:624", "624:416", "432:592", "592:432", "448:576", "576:448", "384:672", "672:384", "768:336",
    "256:1024", "1024:256", "176:1408", "1408:176", "1024:1024", "832:1248", "1248:832", "864:1184", "1184:864",
    "896:1152", "1152:896", "768:1344", "1344:768", "1536:672", "512:2048", "2048:512", "352:2816", "2816:352",
) + GEMINI_IMAGE_HI + ("1024:4096", "4096:1024", "704:5632", "5632:704") + GEMINI_IMAGE_4K + (
    "2048:8192", "8192:2048", "1408:11264", "11264:1408")
GEMINI_LITE_IMAGE = ("1024:1024", "848:1264", "1264:848", "896:1200", "1200:896", "928:1152", "1152:928",
                     "768:1376", "1376:768", "1584:672")
NANO_BANANA = GEMINI_LITE_IMAGE + ("512:2064", "2064:512", "352:2928", "2928:352") + GEMINI_IMAGE_HI + (
    "1024:4128", "4128:1024", "704:5856", "5856:704") + GEMINI_IMAGE_4K + (
    "2048:8256", "8256:2048", "1408:11712", "11712:1408")
MUSE = ("2352:1008", "2016:1152", "1920:1280", "1792:1344", "1600:1600", "1344:1792", "1280:1920", "1152:2016",
        "auto")
SEEDREAM_PRO = ("1024:1024", "1184:896", "896:1184", "1376:768", "768:1376", "1296:864", "864:1296", "2048:2048",
                "2304:1728", "1728:2304", "2720:1530", "1530:2720", "2496:1664", "1664:2496", "auto_1k", "auto_2k")
SEEDREAM_FLASH = ("1024:1024", "1184:896", "896:1184", "1376:768", "768:1376", "1248:832", "832:1248", "1568:672",
                  "2048:2048", "2304:1728", "1728:2304", "2848:1600", "1600:2848", "2496:1664", "1664:2496",
                  "3136:1344", "auto_1k", "auto_2k")
GROK_IMAGE = ("1024:1024", "1280:720", "720:1280", "1152:864", "864:1152", "1248:832", "832:1248", "1248:576",
              "576:1248", "1280:576", "576:1280", "1408:704", "704:1408", "2048:2048", "2816:1584", "1584:2816",
              "2368:1776", "1776:2368", "2496:1664", "1664:2496", "2912:1344", "1344:2912", "3200:1440",
              "1440:3200", "2912:1456", "1456:2912", "auto_1k", "auto_2k")
BRIA_1K = ("1024:1024", "768:1152", "1152:768", "768:1024", "1024:768", "768:960", "960:768", "576:1024",
           "1024:576")
BRIA = BRIA_1K + ("2048:2048", "1536:2304", "2304:1536", "1536:2048", "2048:1536", "1536:1920", "1920:1536",
                  "1152:2048", "2048:1152")
IDEOGRAM_4_0 = ("2048:2048", "2560:1440", "1440:2560", "2304:1728", "1728:2304", "2496:1664", "1664:2496",
                "3072:1280", "1280:3072")
IDEOGRAM_4_5 = ("1024:1024", "1280:720", "720:1280", "1152:864", "864:1152", "1248:832", "832:1248", "1120:896",
                "896:1120", "1440:720", "720:1440", "2048:2048", "2560:1440", "1440:2560", "2304:1728",
                "1728:2304", "2496:1664", "1664:2496", "2240:1792", "1792:2240", "2880:1440", "1440:2880",
                "1024:576", "576:1024", "1408:704", "704:1408", "auto")
RECRAFT = ("1024:1024", "1536:768", "768:1536", "1280:832", "832:1280", "1216:896", "896:1216", "1152:896",
           "896:1152", "832:1344", "1280:896", "896:1280", "1344:768", "768:1344")
RECRAFT_VECTOR = ("1024:1024", "1216:896", "896:1216", "1344:768", "768:1344")


class AnySize(tuple):
    """The sizes a model lists, plus any other W:H whose pixel count lies within bounds."""

    def __new__(cls, listed: tuple[str, ...], min_pixels: int, max_pixels: int):
        sizes = super().__new__(cls, listed)
        sizes.pixels = (min_pixels, max_pixels)
        return sizes

    def __contains__(self, value: object) -> bool:
        match = re.fullmatch(r"(\d{2,5}):(\d{2,5})", value) if isinstance(value, str) else None
        low, high = self.pixels
        return super().__contains__(value) or bool(match and low <= int(match[1]) * int(match[2]) <= high)

    def __str__(self) -> str:
        return f"any W:H of {self.pixels[0] / 1e6:.1f}-{self.pixels[1] / 1e6:.1f} MP, e.g. {', '.join(self[:4])}"


class Between(NamedTuple):
    """A closed interval of numbers, for options such as a speed of 0.7-1.2."""

    low: float
    high: float

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.low:g}-{self.high:g}"


class Text(NamedTuple):
    """A text field's length limit, counted as Runway counts it: in UTF-16 code units."""

    most: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and _utf16_length(value) <= self.most

    def __str__(self) -> str:
        return f"at most {self.most} characters"


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


SEEDREAM_LITE = AnySize(("2048:2048", "2304:1728", "1728:2304", "2848:1600", "1600:2848", "2496:1664", "1664:2496",
                         "3136:1344", "3072:3072", "3456:2592", "2592:3456", "4096:2304", "2304:4096", "3744:2496",
                         "2496:3744", "4704:2016"), 3_686_400, 16_777_216)

# Option values shared by several models.
PRORES = ("422", "4444", "422 Proxy", "422 LT", "422 HQ", "4444 XQ")
GEN4_5_FORMATS = ("mp4", "prores", "png_sequence", "hdr10", "hlg", "sdr_rec709_10bit", "hdr_pq_12bit_master",
                  "hdr_prores", "hdr_png_sequence", "hdr_exr_sequence", "hdr_exr_acescg_sequence_1_3",
                  "hdr_exr_acescg_sequence_2_0")
PNG_JPEG = ("png", "jpeg")
GPT_QUALITY = ("low", "medium", "high", "xhigh", "max")
PERCENT = range(101)
UNIT = Between(0, 1)
SEED_AUDIO_CHOICES = {"outputFormat": ("wav", "mp3", "ogg_opus"),
                      "sampleRate": (8000, 16000, 24000, 32000, 44100, 48000),
                      "speechRate": range(-50, 101), "loudnessRate": range(-50, 101), "pitchRate": range(-12, 13)}
ELEVEN_TUNING = {"speed": Between(0.7, 1.2), "similarityBoost": UNIT, "stability": UNIT, "style": UNIT}
# Runway's voice presets for text_to_speech and speech_to_speech (case-sensitive).
VOICES = ("Maya", "Arjun", "Serene", "Bernard", "Billy", "Mark", "Clint", "Mabel", "Chad", "Leslie", "Eleanor",
          "Elias", "Elliot", "Grungle", "Brodie", "Sandra", "Kirk", "Kylie", "Lara", "Lisa", "Malachi", "Marlene",
          "Martin", "Miriam", "Monster", "Paula", "Pip", "Rusty", "Ragnar", "Xylar", "Maggie", "Jack", "Katie",
          "Noah", "James", "Rina", "Ella", "Mariah", "Frank", "Claudia", "Niki", "Vincent", "Kendrick", "Myrna",
          "Tom", "Wanda", "Benjamin", "Kiana", "Rachel")
DUBBING_LANGUAGES = ("en", "hi", "pt", "zh", "es", "fr", "de", "ja", "ar", "ru", "ko", "id", "it", "nl", "tr", "pl",
                     "sv", "fil", "ms", "ro", "uk", "el", "cs", "da", "fi", "bg", "hr", "sk", "ta")
# gen4.5's outputFormat surcharge per second: 5 for prores and png sequences, 20 for 10-bit and deeper (40 above
# 4 MP, which no gen4.5 ratio reaches).
GEN4_5_SURCHARGE = {"prores": 5, "png_sequence": 5, **dict.fromkeys(GEN4_5_FORMATS[3:], 20)}
FRAME_RATES = ("24", "25", "30", "48", "50", "60", "120", "23_98", "29_97", "59_94")

# Optional body fields that several models share, as space-separated API names.
GEN4_5_TAKES = "contentModeration outputFormat proresProfile seed"
VEO_TAKES = "audio duration negativePrompt seed"
KLING_TAKES = "audio duration promptText providerSettings"
SEEDANCE_TAKES = "audio duration ratio referenceAudio seed"
SEEDANCE_REFS = "referenceAudio referenceVideos references"
WAN_TAKES = "audio duration ratio referenceAudio referenceVideos"
T2I_NEEDS = "promptText ratio"


class Use(NamedTuple):
    """How one model is called on one endpoint (or in one `mode` of it: key "endpoint:mode")."""

    ratios: tuple[str, ...] = ()   # allowed `ratio` values; () = not checked here (free-form or absent)
    needs: str = ""                # body fields it cannot do without (API names, space-separated)
    takes: str = ""                # optional body fields it accepts; anything else is refused before sending
    durations: Container | None = None  # replaces the model's durations in this use
    max_items: dict[str, int] | None = None  # replaces the model's max_items in this use


class Model(NamedTuple):
    """One Runway model: what list_models shows and what validation checks before credits are spent."""

    kind: str                           # image | video | audio: what list_models filters on
    about: str                          # what it is good for, one line
    uses: dict[str, Use]                # endpoint -> how it is called there
    durations: Container = ()           # allowed `duration` values; () = not checked here
    choices: dict[str, Container] = {}  # body field -> allowed values
    credits: str = ""                   # "N[-M] per <unit>"; a hint: the create response's estimate is the authority
    last_frame: bool = False            # image_to_video takes a last keyframe besides the first
    max_items: dict[str, int] = {}      # list field -> the most items it takes
    tags: bool = False                  # reference images may carry a tag, named in the prompt as @tag
    surcharge: dict[str, dict] = {}     # body field -> value -> credits added per unit of `credits`
    min_items: dict[str, int] = {}      # list field -> the fewest items it needs (absent counts as none)


def _i2v(ratios: tuple[str, ...] = (), needs: str = "", takes: str = "") -> Use:
    return Use(ratios, f"promptImage {needs}".strip(), takes)


def _seedance(ratios: tuple[str, ...], extra: str = "") -> dict[str, Use]:
    return {I2V: _i2v(ratios, "", f"{SEEDANCE_TAKES} promptText {extra}".strip()),
            T2V: Use(ratios, "promptText", f"{SEEDANCE_TAKES} {SEEDANCE_REFS} {extra}".strip()),
            V2V: Use(ratios, "promptVideo", f"{SEEDANCE_TAKES} promptText {SEEDANCE_REFS} {extra}".strip())}


def _kling(ratios: tuple[str, ...], i2v_extra: str, t2v_extra: str = "") -> dict[str, Use]:
    return {I2V: _i2v(ratios, "", f"{KLING_TAKES} ratio {i2v_extra}"),
            T2V: Use(ratios, "ratio", f"{KLING_TAKES} {t2v_extra}".strip())}


KLING_EDIT = Use((), "promptText promptVideo", "providerSettings references", max_items={"references": 4})


# Seedance 2.5's modes of video_to_video: extend and edit need a prompt and take no ratio; edit keeps the length.
SEEDANCE_2_5_EDIT = f"audio draft duration mode outputFormat referenceAudio seed {SEEDANCE_REFS}"

MODELS: dict[str, Model] = {
    # Video ------------------------------------------------------------------------------------------------
    "gen4.5": Model(
        "video", "Runway's flagship: cinematic motion, strong prompt following; text or first frame",
        {I2V: _i2v(GEN4_VIDEO, "promptText ratio duration", GEN4_5_TAKES),
         T2V: Use(WIDE_TALL, "promptText ratio duration", GEN4_5_TAKES)},
        range(2, 11), {"outputFormat": GEN4_5_FORMATS, "proresProfile": PRORES, "promptText": Text(1000)},
        "12 per second", surcharge={"outputFormat": GEN4_5_SURCHARGE}),
    "gen4_turbo": Model(
        "video", "Fast, cheap image-to-video for drafts and iteration",
        {I2V: _i2v(GEN4_VIDEO, "ratio", "contentModeration duration promptText seed")},
        range(2, 11), {"promptText": Text(1000)}, "5 per second"),
    "veo3.1": Model(
        "video", "Google Veo 3.1: realistic video with generated sound; first or first+last frame",
        {I2V: _i2v(VEO, "ratio", VEO_TAKES + " promptText"), T2V: Use(VEO, "promptText ratio", VEO_TAKES)},
        (4, 6, 8), {"promptText": Text(1000)}, "20-40 per second", last_frame=True),
    "veo3.1_fast": Model(
        "video", "Veo 3.1 Fast: cheaper, quicker Veo with sound",
        {I2V: _i2v(VEO, "ratio", VEO_TAKES + " promptText"), T2V: Use(VEO, "promptText ratio", VEO_TAKES)},
        (4, 6, 8), {"promptText": Text(1000)}, "10-15 per second", last_frame=True),
    "kling2.5_turbo_pro": Model(
        "video", "Kling 2.5 Turbo Pro: dynamic motion; keyframes; output follows the input image",
        {I2V: _i2v((), "promptText", "cfgScale duration"),
         T2V: Use(KLING_2_5, "promptText", "cfgScale duration ratio")},
        (5, 10), {"cfgScale": UNIT}, last_frame=True),
    "kling3.0_standard": Model(
        "video", "Kling 3.0 Standard (720p): multi-shot prompts, optional audio",
        _kling(KLING_STANDARD, "cfgScale", "cfgScale"), choices={"cfgScale": UNIT}, last_frame=True),
    "kling3.0_pro": Model(
        "video", "Kling 3.0 Pro (1080p): multi-shot prompts, optional audio",
        _kling(KLING_PRO, "cfgScale", "cfgScale"), choices={"cfgScale": UNIT}, last_frame=True),
    "kling3.0_4k": Model(
        "video", "Kling 3.0 at 4K: multi-shot prompts, optional audio",
        _kling(KLING_4K, "cfgScale", "cfgScale"), choices={"cfgScale": UNIT}, last_frame=True),
    "klingO3_standard": Model(
        "video", "Kling O3 Standard (720p): reference images; edits videos",
        {**_kling(KLING_STANDARD, "references"), V2V: KLING_EDIT}, last_frame=True, max_items={"references": 7}),
    "klingO3_pro": Model(
        "video", "Kling O3 Pro (1080p): reference images; edits videos",
        {**_kling(KLING_PRO, "references"), V2V: KLING_EDIT}, last_frame=True, max_items={"references": 7}),
    "klingO3_4k": Model(
        "video", "Kling O3 at 4K: reference images; edits videos",
        {**_kling(KLING_4K, "references"), V2V: KLING_EDIT}, last_frame=True, max_items={"references": 7}),
    "kling_4": Model(
        "video", "Kling 4: keeps the input framing; reference images and videos; prompt-driven edits",
        {I2V: _i2v(AUTO_720_1080, "", "duration promptText ratio referenceVideos references"),
         T2V: Use(KLING_4, "promptText", "duration ratio referenceVideos references"),
         V2V: Use(AUTO_720_1080, "promptText videoUri", "ratio references")}, last_frame=True,
        max_items={"references": 10, "referenceVideos": 5}),
    "hailuo3": Model(
        "video", "MiniMax Hailuo 3: expressive motion, up to 2K, reference audio; edits videos",
        {I2V: _i2v(ASPECTS, "promptText", "duration ratio referenceAudio resolution"),
         T2V: Use(ASPECTS, "promptText", f"duration ratio resolution {SEEDANCE_REFS}"),
         V2V: Use(ASPECTS, "promptText promptVideo", f"duration ratio resolution {SEEDANCE_REFS}")},
        range(5, 16), {"resolution": ("768p", "2k", "768P", "2K")}, last_frame=True,
        max_items={"references": 9, "referenceAudio": 3}),
    "happyhorse_1_0": Model(
        "video", "HappyHorse 1.0: 720p/1080p, output aspect follows the image",
        {I2V: _i2v((), "", "duration promptText resolution"), T2V: Use(HAPPYHORSE, "promptText", "duration ratio")},
        range(3, 16), {"resolution": ("720p", "1080p", "720P", "1080P"), "promptText": Text(2500)}),
    "seedance2": Model(
        "video", "ByteDance Seedance 2: up to 4K, native audio, reference images/videos/audio; edits videos",
        _seedance(SEEDANCE), (*range(4, 16), "auto"), {"promptText": Text(3500)}, last_frame=True,
        max_items={"references": 9, "referenceAudio": 3}),
    "seedance2_fast": Model(
        "video", "Seedance 2 Fast: quicker and cheaper, up to 720p",
        _seedance(SEEDANCE_720), (*range(4, 16), "auto"), {"promptText": Text(3500)}, last_frame=True,
        max_items={"references": 9, "referenceAudio": 3}),
    "seedance2_mini": Model(
        "video", "Seedance 2 Mini: cheapest Seedance, up to 720p",
        _seedance(SEEDANCE_720), (*range(4, 16), "auto"), {"promptText": Text(3500)}, last_frame=True,
        max_items={"references": 9, "referenceAudio": 3}),
    "seedance2_5": Model(
        "video", "Seedance 2.5: up to 30 s, cheap 480p drafts, extends and edits videos (mode)",
        {**_seedance(SEEDANCE_2_5, "draft outputFormat"),
         T2V: Use(SEEDANCE_2_5, "", f"{SEEDANCE_TAKES} {SEEDANCE_REFS} draft draftTaskId outputFormat promptText"),
         V2V: Use(SEEDANCE_2_5, "promptVideo", f"{SEEDANCE_TAKES} {SEEDANCE_REFS} draft mode outputFormat promptText"),
         f"{V2V}:extend": Use((), "promptVideo promptText", SEEDANCE_2_5_EDIT),
         f"{V2V}:edit": Use((), "promptVideo promptText", SEEDANCE_2_5_EDIT, durations=("auto",))},
        (*range(4, 31), "auto"), {"outputFormat": ("mp4", "mov"), "mode": ("reference", "extend", "edit"),
                                  "promptText": Text(15000)},
        last_frame=True, max_items={"references": 30, "referenceAudio": 10}),
    "gemini_omni_flash": Model(
        "video", "Google Gemini Omni Flash video: quick 720p clips and instruction-based edits",
        {I2V: _i2v(WIDE_TALL, "", "duration promptText ratio"), T2V: Use(WIDE_TALL, "promptText", "duration ratio"),
         V2V: Use((), "promptText videoUri", "references")},
        range(3, 11)),
    "gemini_omni_flash_1.1": Model(
        "video", "Gemini Omni Flash 1.1: up to 4K, first+last frame; extends and edits videos (mode)",
        {I2V: _i2v(GEMINI_VIDEO, "promptText", "duration ratio"),
         T2V: Use(GEMINI_VIDEO, "promptText", "duration ratio referenceVideos references"),
         V2V: Use(GEMINI_VIDEO, "promptText videoUri", "duration mode ratio references")},
        (*range(3, 11), "auto"), {"mode": ("reference", "extend", "edit")}, last_frame=True),
    "grok_imagine_1_5": Model(
        "video", "xAI Grok Imagine 1.5: 1-15 s, image references, reference audio",
        {I2V: _i2v((), "", "duration promptText resolution"),
         T2V: Use(GROK_VIDEO, "promptText", "duration ratio referenceAudio references resolution")},
        range(1, 16), {"resolution": ("480p", "720p", "1080p")}),
    "grok_imagine_1_5_lite": Model(
        "video", "Grok Imagine 1.5 Lite: cheaper Grok video, 1080p upscaled from 720p",
        {I2V: _i2v(AUTO_480_1080, "", "duration promptText ratio"), T2V: Use(GROK_LITE, "promptText", "duration ratio")}),
    "wan3": Model(
        "video", "Alibaba Wan 3: up to 30 s, reference videos and audio",
        {I2V: _i2v(WAN, "promptText", WAN_TAKES), T2V: Use(WAN, "promptText", WAN_TAKES + " references")},
        range(2, 31), last_frame=True, max_items={"references": 10, "referenceAudio": 5, "referenceVideos": 5}),
    "wan3_prime": Model(
        "video", "Wan 3 Prime: higher-quality Wan 3",
        {I2V: _i2v(WAN, "promptText", WAN_TAKES), T2V: Use(WAN, "promptText", WAN_TAKES + " references")},
        last_frame=True, max_items={"references": 10, "referenceAudio": 5, "referenceVideos": 5}),
    "h3_max": Model(
        "video", "H3 Max: prompt expansion modes, repeatable seeds",
        {I2V: _i2v((), "promptText", "duration promptExpansionMode resolution seed"),
         T2V: Use((), "promptText", "duration promptExpansionMode resolution seed")},
        choices={"promptExpansionMode": ("disabled", "balanced", "quality"), "resolution": ("480p", "768p")},
        last_frame=True),
    "aleph2": Model(
        "video", "Runway Aleph 2: edit a video (up to 30 s) by prompt and keyframe images; restyle, relight, outpaint",
        {V2V: Use((), "videoUri", "contentModeration keyframes outputFormat promptText proresProfile ratio seed "
                                  "targetAspectRatio")},
        choices={"outputFormat": ("mp4", "prores", "png_sequence", "sdr_rec709_10bit"), "proresProfile": PRORES,
                 "targetAspectRatio": ("16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "21:9")},
        max_items={"keyframes": 5}),
    "act_two": Model(
        "video", "Runway Act-Two: a character image or video performs what an actor does in a reference video",
        {ACT: Use(GEN4_VIDEO, "character reference", "bodyControl contentModeration expressionIntensity ratio seed")},
        choices={"expressionIntensity": range(1, 6)}, credits="5 per second"),
    "magnific_video_upscaler_creative": Model(
        "video", "Magnific creative upscaler: video (up to 30 s) to 720p-4K, with added detail",
        {VIDEO_UP: Use((), "videoUri", "creativity flavor fpsBoost resolution sharpen smartGrain")},
        choices={"flavor": ("vivid", "natural"), "resolution": ("720p", "1k", "2k", "4k"), "creativity": PERCENT,
                 "sharpen": PERCENT, "smartGrain": PERCENT}),
    "enhance_frame_rate": Model(
        "video", "Frame interpolation to a target frame rate (24-120 fps)",
        {VIDEO_UP: Use((), "targetFramerate videoUri")}, choices={"targetFramerate": FRAME_RATES}),
    "ruby": Model(
        "video", "Runway Ruby: convert SDR video to HDR (HDR10, HLG, ProRes, EXR)",
        {HDR: Use((), "videoUri", "outputFormat proresProfile")},
        choices={"outputFormat": ("hdr10", "hlg", "hdr_prores", "hdr_exr_sequence", "hdr_exr_acescg_sequence_1_3",
                                  "hdr_exr_acescg_sequence_2_0"), "proresProfile": ("422", "4444", "422 HQ")},
        credits="20-40 per second of input"),
    # Images -----------------------------------------------------------------------------------------------
    "gen4_image": Model(
        "image", "Runway Gen-4 Image: consistent characters and places from up to 3 tagged references",
        {T2I: Use(GEN4_IMAGE, T2I_NEEDS, "contentModeration referenceImages seed")},
        choices={"promptText": Text(1000)}, credits="5-8 per image", max_items={"referenceImages": 3}, tags=True),
    "gen4_image_turbo": Model(
        "image", "Gen-4 Image Turbo: cheap, fast edits; needs 1-3 reference images",
        {T2I: Use(GEN4_IMAGE, T2I_NEEDS + " referenceImages", "contentModeration seed")},
        choices={"promptText": Text(1000)}, credits="2 per image", max_items={"referenceImages": 3}, tags=True,
        min_items={"referenceImages": 1}),
    "gpt_image_2": Model(
        "image", "OpenAI GPT Image 2: text rendering, transparent backgrounds, up to 16 references",
        {T2I: Use(GPT_IMAGE, T2I_NEEDS, "background outputCount quality referenceImages")},
        choices={"background": ("transparent", "opaque", "auto"), "quality": ("low", "medium", "high", "auto"),
                 "outputCount": range(1, 11), "promptText": Text(32000)}, max_items={"referenceImages": 16}, tags=True),
    "gpt_image_2_5_flare": Model(
        "image", "GPT Image 2.5 Flare: highest-quality GPT images (no transparency)",
        {T2I: Use(GPT_IMAGE, T2I_NEEDS, "background outputCount quality referenceImages")},
        choices={"background": ("opaque", "auto"), "quality": GPT_QUALITY, "outputCount": range(1, 11)},
        max_items={"referenceImages": 16}, tags=True),
    "gpt_image_2_5_sunburst": Model(
        "image", "GPT Image 2.5 Sunburst: GPT images with transparent backgrounds",
        {T2I: Use(GPT_IMAGE, T2I_NEEDS, "background outputCount quality referenceImages")},
        choices={"background": ("transparent", "opaque", "auto"), "quality": GPT_QUALITY,
                 "outputCount": range(1, 11)}, max_items={"referenceImages": 16}, tags=True),
    "gemini_2.5_flash": Model(
        "image", "Google Gemini 2.5 Flash Image: quick edits with up to 3 references",
        {T2I: Use(GEMINI_2_5_IMAGE, T2I_NEEDS, "referenceImages")}, credits="5 per image",
        max_items={"referenceImages": 3}, tags=True),
    "gemini_image3_pro": Model(
        "image", "Gemini 3 Pro Image: up to 4K, 14 references for character consistency",
        {T2I: Use(GEMINI_3_PRO_IMAGE, T2I_NEEDS, "outputCount referenceImages")}, choices={"outputCount": (1, 4)},
        max_items={"referenceImages": 14}, tags=True),
    "gemini_image3.1_flash": Model(
        "image", "Gemini 3.1 Flash Image: fast, extreme aspect ratios up to 8K",
        {T2I: Use(GEMINI_3_1_FLASH_IMAGE, T2I_NEEDS, "outputCount referenceImages")}, choices={"outputCount": (1, 4)},
        max_items={"referenceImages": 14}, tags=True),
    "gemini_image3.1_flash_lite": Model(
        "image", "Gemini 3.1 Flash Lite Image: cheapest Gemini images, 1K",
        {T2I: Use(GEMINI_LITE_IMAGE, T2I_NEEDS, "outputCount referenceImages")}, choices={"outputCount": (1, 4)},
        max_items={"referenceImages": 14}, tags=True),
    "nano_banana_2.1": Model(
        "image", "Nano Banana 2.1: Gemini-based editing with up to 14 tagged references, thinking levels",
        {T2I: Use(NANO_BANANA, T2I_NEEDS, "outputCount referenceImages thinkingLevel")},
        choices={"thinkingLevel": ("minimal", "medium", "high")}, max_items={"referenceImages": 14}, tags=True),
    "muse_image": Model(
        "image", "Muse Image: edit or combine up to 10 references; webp/png/jpeg",
        {T2I: Use(MUSE, T2I_NEEDS, "outputCount outputFormat referenceImages")},
        choices={"outputFormat": ("webp", "png", "jpeg")}, credits="1 per image", max_items={"referenceImages": 10}),
    "seedream5_pro": Model(
        "image", "ByteDance Seedream 5 Pro: optional live web grounding",
        {T2I: Use(SEEDREAM_PRO, T2I_NEEDS, "grounding outputCount outputFormat referenceImages")},
        choices={"outputFormat": PNG_JPEG, "outputCount": range(1, 5), "promptText": Text(4000)}),
    "seedream5_lite": Model(
        "image", "Seedream 5 Lite: 2K-4K sizes, also free-form W:H (3.7-16.8 MP)",
        {T2I: Use(SEEDREAM_LITE, T2I_NEEDS, "grounding outputCount outputFormat referenceImages")},
        choices={"outputFormat": PNG_JPEG, "outputCount": range(1, 5), "promptText": Text(4000)}),
    "seedream5_flash": Model(
        "image", "Seedream 5 Flash: fastest Seedream",
        {T2I: Use(SEEDREAM_FLASH, T2I_NEEDS, "outputCount outputFormat referenceImages")},
        choices={"outputFormat": PNG_JPEG}),
    "grok_imagine_image_2": Model(
        "image", "xAI Grok Imagine Image 2: edit one reference directly with edit=true",
        {T2I: Use(GROK_IMAGE, T2I_NEEDS, "edit outputCount quality referenceImages")},
        choices={"quality": ("low", "medium")}, max_items={"referenceImages": 3}),
    "bria_fibo_1_5": Model(
        "image", "Bria FIBO 1.5: licensed-data images, 1 MP or 4 MP",
        {T2I: Use(BRIA, T2I_NEEDS, "outputFormat referenceImages seed")},
        choices={"outputFormat": PNG_JPEG}, credits="5-10 per image", max_items={"referenceImages": 1}),
    "bria_fibo_edit_1_5": Model(
        "image", "Bria FIBO Edit 1.5: edit 1-4 reference images",
        {T2I: Use(BRIA_1K + ("auto",), "promptText", "outputFormat ratio referenceImages seed")},
        choices={"outputFormat": PNG_JPEG}, max_items={"referenceImages": 4}, min_items={"referenceImages": 1}),
    "ideogram_4_0": Model(
        "image", "Ideogram 4.0: typography and design, remix one image",
        {T2I: Use(IDEOGRAM_4_0, "promptText", "outputCount quality ratio referenceImages")},
        choices={"quality": ("low", "medium", "high")}, credits="4-11 per image", max_items={"referenceImages": 1}),
    "ideogram_4_5": Model(
        "image", "Ideogram 4.5: typography, masks and precise edits of a reference",
        {T2I: Use(IDEOGRAM_4_5, "promptText", "maskUri outputCount preciseEdit quality ratio referenceImages")},
        choices={"quality": ("very_low", "low", "medium", "high")}, credits="1-25 per image",
        max_items={"referenceImages": 5}),
    "recraft_v4_1_flash": Model(
        "image", "Recraft V4.1 Flash: brand colours and design styles; webp/png",
        {T2I: Use(RECRAFT, T2I_NEEDS, "backgroundColor colors outputCount outputFormat seed")},
        choices={"outputFormat": ("webp", "png")}),
    "recraft_v4_1_vector": Model(
        "image", "Recraft V4.1 Vector: SVG illustrations and icons",
        {T2I: Use(RECRAFT_VECTOR, "promptText", "backgroundColor colors ratio")}),
    "magnific_precision_upscaler_v2": Model(
        "image", "Magnific precision upscaler: 2-16x; inputs 300-8000 px a side, output at most 25.3 MP",
        {IMAGE_UP: Use((), "imageUri", "flavor scaleFactor sharpen smartGrain ultraDetail")},
        choices={"flavor": ("sublime", "photo", "photo_denoiser"), "scaleFactor": (2, 4, 8, 16),
                 "sharpen": PERCENT, "smartGrain": PERCENT, "ultraDetail": PERCENT}),
    # Audio ------------------------------------------------------------------------------------------------
    "eleven_multilingual_v2": Model(
        "audio", "ElevenLabs Multilingual v2: natural speech in 29 languages, up to 1000 characters",
        {TTS: Use((), "promptText voice")}, choices={"promptText": Text(1000)}, credits="1 per 50 characters"),
    "eleven_v3": Model(
        "audio", "ElevenLabs v3: expressive speech with inline tags such as [laughs] or [whispers]",
        {TTS: Use((), "promptText voice", "applyTextNormalization languageCode seed similarityBoost speed "
                                          "stability style useSpeakerBoost")},
        choices={"applyTextNormalization": ("auto", "on", "off"), "seed": range(4294967296), **ELEVEN_TUNING}),
    "eleven_v4": Model(
        "audio", "ElevenLabs v4: newest voices; previous/next text keeps long reads continuous",
        {TTS: Use((), "promptText voice", "languageCode nextText previousText seed similarityBoost speed stability "
                                          "style useSpeakerBoost")}),
    "seed_audio": Model(
        "audio", "ByteDance Seed Audio: speech, dialogue, music and effects from one description; voice cloning",
        {TTS: Use((), "promptText", "loudnessRate outputFormat pitchRate sampleRate speechRate voice"),
         SFX: Use((), "promptText", "loudnessRate outputFormat pitchRate referenceAudios sampleRate speechRate")},
        choices=SEED_AUDIO_CHOICES, max_items={"referenceAudios": 3}),
    "eleven_text_to_sound_v2": Model(
        "audio", "ElevenLabs sound effects: foley, ambience, UI sounds; 0.5-30 s, loopable",
        {SFX: Use((), "promptText", "duration loop")}, Between(0.5, 30), credits="1-2 per sound"),
    "mirelo_sfx_2_0": Model(
        "audio", "Mirelo SFX 2.0: sound effects from text, or synchronised to a video",
        {SFX: Use((), "duration promptText", "format negativePrompt numVariants seed"),
         V2A: Use((), "duration videoUri", "format negativePrompt numVariants preserveSpeech promptText seed")},
        choices={"format": ("mp3", "wav", "flac")}),
    "eleven_multilingual_sts_v2": Model(
        "audio", "ElevenLabs speech-to-speech: say the same words in another voice",
        {STS: Use((), "media voice", "removeBackgroundNoise")}, credits="1 per 3 s of input"),
    "eleven_voice_dubbing": Model(
        "audio", "ElevenLabs dubbing: translate speech into 29 languages, keeping the voices",
        {DUB: Use((), "audioUri targetLang", "disableVoiceCloning dropBackgroundAudio numSpeakers")},
        choices={"targetLang": DUBBING_LANGUAGES}, credits="1 per 2 s of input"),
    "eleven_voice_isolation": Model(
        "audio", "ElevenLabs voice isolation: remove background noise from speech (4.6 s to 1 h)",
        {ISOLATE: Use((), "audioUri")}, credits="1 per 6 s of input"),
}

# Ratio chosen when a model needs one and none is given: landscape, in this order of preference.
PREFERRED_RATIOS = {"image": ("1920:1080", "1920:1088", "2560:1440", "1344:768", "1376:768", "1360:768",
                              "1280:720", "16:9", "auto"),
                    "video": ("1280:720", "16:9", "1920:1080", "auto_720p", "auto_1080p")}

# Body fields named after the tool argument that usually fills them, for error messages.
ARGUMENT_NAMES = {"promptText": "prompt", "promptImage": "image", "referenceImages": "reference_images",
                  "ratio": "ratio", "duration": "duration", "seed": "seed", "videoUri": "video", "promptVideo": "video",
                  "references": "references", "mode": "mode", "imageUri": "image", "audioUri": "audio",
                  "voice": "voice"}
COST = re.compile(r"(?P<low>[\d.]+)(?:-(?P<high>[\d.]+))? per (?P<unit>.+)")


def defaults_of(model: str) -> list[str]:
    """The endpoints whose tools use this model when none is given."""
    return [endpoint for endpoint, entry in ENDPOINTS.items() if entry.default == model]


def choices_of(endpoint: str, api_field: str) -> tuple:
    """The values the endpoint's default model allows for a field: a tool argument's choices, from the catalog."""
    return tuple(MODELS[ENDPOINTS[endpoint].default].choices[api_field])


def _argument(api_field: str, names: Mapping[str, str]) -> str:
    """The tool argument that fills a body field; a field no argument fills comes from options."""
    return names.get(api_field) or f"options.{api_field}"


def _describe(allowed: Container) -> str:
    """Allowed values for an error message or list_models: runs of integers shortened to 'a-b'."""
    if isinstance(allowed, range):
        return f"{allowed.start}-{allowed.stop - 1}"
    if isinstance(allowed, AnySize | Between | Text):
        return str(allowed)
    items, out = list(allowed), []
    while items:
        start = end = items.pop(0)
        while isinstance(end, int) and items and items[0] == end + 1:
            end = items.pop(0)
        out.append(f"{start}-{end}" if isinstance(end, int) and end - start > 1 else
                   str(start) if start == end else f"{start}, {end}")
    return ", ".join(out)


def _fields(spec: str) -> set[str]:
    return set(spec.split())


def models_for(endpoint: str) -> list[str]:
    return [name for name, model in MODELS.items() if endpoint in model.uses]


def _use(model: Model, endpoint: str, body: dict) -> Use:
    return model.uses.get(f"{endpoint}:{body.get('mode')}") or model.uses[endpoint]


def apply_defaults(endpoint: str, body: dict) -> None:
    """Fill a ratio or duration the model requires but the caller left out."""
    model = MODELS.get(body.get("model"))
    if model is None or endpoint not in model.uses:
        return
    use = _use(model, endpoint, body)
    if "ratio" in _fields(use.needs) and "ratio" not in body and use.ratios:
        preferred = PREFERRED_RATIOS.get(model.kind, ())
        body["ratio"] = next((r for r in preferred if r in use.ratios), use.ratios[0])
    durations = model.durations if use.durations is None else use.durations
    if "duration" in _fields(use.needs) and "duration" not in body and durations:
        body["duration"] = 5 if 5 in durations else next(iter(durations))


def rules(model: Model, use: Use) -> dict[str, Container]:
    """Body field -> the values a model allows there, in one use."""
    durations = model.durations if use.durations is None else use.durations
    return {"ratio": use.ratios, "duration": durations, **model.choices}


def caps(model: Model, use: Use) -> dict[str, int]:
    """List field -> the most items a model takes there, in one use."""
    return model.max_items if use.max_items is None else use.max_items


def check_model(endpoint: str, body: dict, names: Mapping[str, str] = ARGUMENT_NAMES) -> list[str]:
    """Refuse what a known model can't take; return notes. Unknown (newer) models pass through."""
    name = body["model"]
    model = MODELS.get(name)
    if model is None:
        return [f"model {name!r} is not in this server's catalog, so nothing was checked locally; Runway checks it"]
    if endpoint not in model.uses:
        others = ", ".join(models_for(endpoint))
        raise RunwayError(f"model {name!r} does not work on {endpoint} (it works on "
                          f"{', '.join(e for e in model.uses if ':' not in e)}); models for {endpoint}: {others}")
    use = _use(model, endpoint, body)
    needs, takes = _fields(use.needs), _fields(use.takes)
    where = f"{endpoint}" + (f" in mode {body['mode']!r}" if f"{endpoint}:{body.get('mode')}" in model.uses else "")
    missing = sorted(needs - body.keys())
    if missing:
        raise RunwayError(f"{name} needs {', '.join(_argument(f, names) for f in missing)} on {where}")
    extra = sorted(body.keys() - needs - takes - {"model"})
    if extra:
        accepted = ", ".join(_argument(f, names) for f in sorted(needs | takes)) or "nothing else"
        raise RunwayError(f"{name} does not take {', '.join(_argument(f, names) for f in extra)} on "
                          f"{where}; it takes: {accepted}")
    for api_field, allowed in rules(model, use).items():
        value = body.get(api_field)
        if not allowed or value is None or value in allowed:
            continue
        if isinstance(allowed, Text) and isinstance(value, str):
            raise RunwayError(f"{_argument(api_field, names)} has {_utf16_length(value)} characters; {name} takes "
                              f"{allowed} on {where}")
        raise RunwayError(f"{_argument(api_field, names)}={value!r} is not valid for {name} on {where}; "
                          f"allowed: {_describe(allowed)}")
    for api_field, most in caps(model, use).items():
        value = body.get(api_field)
        if isinstance(value, list) and len(value) > most:
            raise RunwayError(f"{_argument(api_field, names)} has {len(value)} items; {name} takes at most {most} "
                              f"on {where}")
    for api_field, fewest in model.min_items.items():
        given = len(body.get(api_field) or ())
        if given < fewest:
            raise RunwayError(f"{_argument(api_field, names)} has {given} items; {name} needs at least {fewest} on "
                              f"{where}")
    tagged = [i for i, ref in enumerate(body.get("referenceImages") or []) if isinstance(ref, dict) and "tag" in ref]
    if tagged and not model.tags:
        raise RunwayError(f"{_argument('referenceImages', names)}[{tagged[0]}].tag: {name} takes reference images "
                          f"without tags; drop the tag (models with tags: {', '.join(n for n, m in MODELS.items() if m.tags)})")
    return []


# What list_models shows: a line per model by default, everything about one model when asked.
def cost_line(endpoint: str) -> str:
    """What a tool's description says it costs: its default model's price hint in the catalog."""
    model = ENDPOINTS[endpoint].default
    price = COST.fullmatch(MODELS[model].credits)
    if price is None:
        return f"Costs credits ({model}: Runway estimates each task at creation)."
    amount = price["low"] + (f"-{price['high']}" if price["high"] else "")
    return f"Costs {amount} credit{'' if amount == '1' else 's'} per {price['unit']} ({model})."


def _price(credits: str) -> str:
    return credits.replace(" per second", "/s").replace(" per ", "/")


def model_index(kind: str | None = None) -> str:
    """One line per model: name (* default of its tool), endpoint codes, price hint; a legend first."""
    legend = " ".join(f"{entry.code}={endpoint}" for endpoint, entry in ENDPOINTS.items())
    lines = [f"Runway models: name (* = a tool's default), endpoints, credits (where known; Runway estimates every "
             f"task at creation). Endpoints: {legend}. list_models(model=NAME) gives one model's ratios, durations, "
             "inputs and options."]
    for group in ("image", "video", "audio"):
        names = [n for n, m in MODELS.items() if m.kind == group and kind in (None, group)]
        if names:
            lines.append(f"{group}:")
        for name in names:
            model = MODELS[name]
            default = "*" if defaults_of(name) else ""
            codes = ",".join(ENDPOINTS[e].code for e in model.uses if ":" not in e)
            lines.append(f"{name}{default} {codes} {_price(model.credits)}".rstrip())
    return "\n".join(lines)


def model_detail(name: str) -> str:
    """Everything the catalog knows about one model, for the agent about to call it."""
    model = MODELS[name]
    names = {**ARGUMENT_NAMES, "promptText": "prompt"}
    price = model.credits or "no hint here; Runway estimates it at creation"
    lines = [f"{name} ({model.kind}): {model.about}", f"credits: {price}"]
    for field_name, extra in model.surcharge.items():
        by_amount: dict[float, list[str]] = {}
        for value, amount in extra.items():
            by_amount.setdefault(amount, []).append(value)
        lines += [f"  +{amount:g}/s with {field_name} {', '.join(values)}" for amount, values in by_amount.items()]
    if defaults := defaults_of(name):
        lines.append(f"default for: {', '.join(defaults)}")
    for key, use in model.uses.items():
        endpoint, _, mode = key.partition(":")
        where = f"{endpoint} mode {mode}" if mode else f"{endpoint} ({ENDPOINTS[endpoint].tool})"
        needs = ", ".join(_argument(f, names) for f in sorted(_fields(use.needs))) or "nothing else"
        line = f"{where}: needs {needs}"
        if options := sorted(_fields(use.takes)):
            line += f"; takes {', '.join(_argument(f, names).removeprefix('options.') for f in options)}"
        if use.ratios:
            line += f"; ratio {_describe(use.ratios)}"
        if use.durations is not None:
            line += f"; duration {_describe(use.durations)}"
        if use.max_items is not None:
            line += "; " + ", ".join(f"{f} at most {n}" for f, n in use.max_items.items())
        lines.append(line)
    if model.durations:
        lines.append(f"duration: {_describe(model.durations)}")
    lines += [f"{_argument(f, names).removeprefix('options.')}: {_describe(allowed)}"
              for f, allowed in model.choices.items()]
    lines += [f"{_argument(f, names).removeprefix('options.')}: at most {n} items" for f, n in model.max_items.items()]
    lines += [f"{_argument(f, names).removeprefix('options.')}: at least {n}" for f, n in model.min_items.items()]
    if model.last_frame:
        lines.append("last_image: yes (a last frame besides the first)")
    if model.tags:
        lines.append("reference_images: may carry a tag, named in the prompt as @tag")
    if TTS in model.uses and "voice" in _fields(model.uses[TTS].needs) or STS in model.uses:
        lines.append(f"voices: {', '.join(VOICES)}")
    return "\n".join(lines)


def estimate_credits(body: dict) -> float | None:
    """The most a request may cost by the catalog's price hint, or None where it depends on the input."""
    model = MODELS.get(body.get("model"))
    price = COST.fullmatch(model.credits) if model else None
    if price is None:
        return None
    most, unit = float(price["high"] or price["low"]), price["unit"]
    most += sum(extra.get(body.get(f), 0) for f, extra in model.surcharge.items())
    duration = body.get("duration")
    if unit == "second":
        return most * duration if isinstance(duration, int | float) else None
    if unit == "image":
        return most * int(body.get("outputCount") or 1)
    if unit == "50 characters":
        return most * -(-_utf16_length(str(body.get("promptText", ""))) // 50)
    if unit == "sound":
        return most
    return None                                     # priced by the length of an input, unknown here


##############################################################################
# Shapes
##############################################################################
#
# Beyond models: recipes, avatar videos, the model router, published workflows (runway-api.md 3.15, 2.6, 4.3).
# These endpoints take no `model` from the catalog above; their bodies are described by shape rules instead,
# which conform() checks (and list_models shows) as a model's fields are checked. A rule is one of:
#   bool, str, int, float          a value of that type (int for float too); (str, float, bool): any of those
#   ("a", "b"), range(4, 16)       one of these values; Text(n): a text of at most n characters
#   MediaRule(kinds)               a media argument: URL, data: URI, runway:// URI, saved output or local path
#   Obj({field: rule}, "needs")    an object with these fields, the ones in `needs` required
#   ListOf(rule, fewest, most)     a list; `once`: item field -> values that may appear in one item only
#   Choice(key, {value: Obj})      one of several objects, told apart by the value of `key` (or, with key None,
#                                  by which shape's required fields are present)

class Media(NamedTuple):
    """A media argument as the caller gave it; turned into a URI only after every check has passed."""

    value: str
    kinds: tuple[str, ...]   # what the argument takes: image, video, audio
    argument: str            # the tool argument it came from, for error messages

    @property
    def what(self) -> str:
        return " or ".join(self.kinds)


class MediaRule(NamedTuple):
    kinds: tuple[str, ...]


class Obj(NamedTuple):
    fields: dict[str, Any]
    needs: str = ""


class ListOf(NamedTuple):
    item: Any
    fewest: int = 0
    most: int | None = None                  # None: Runway states no limit
    once: dict[str, tuple] = {}


class Choice(NamedTuple):
    key: str | None
    shapes: dict[str, Obj]


IMAGE, VIDEO, AUDIO = MediaRule(("image",)), MediaRule(("video",)), MediaRule(("audio",))
IMAGE_REF, VIDEO_REF, AUDIO_REF = Obj({"uri": IMAGE}, "uri"), Obj({"uri": VIDEO}, "uri"), Obj({"uri": AUDIO}, "uri")
PRIMITIVE = (str, float, bool)
TYPE_NAMES = {bool: "true or false", str: "text", int: "a whole number", float: "a number"}
SECONDS_4_15 = range(4, 16)


class Recipe(NamedTuple):
    """A ready-made production: POST /v1/recipes/<name> with `inputs` by Runway's field names, and a version."""

    kind: str                               # what it makes: image | video
    about: str
    inputs: Obj | Choice
    versions: tuple[str, ...] = ("2026-06",)    # dated versions, oldest first: the newest is the default
    check: Callable[[dict], str | None] | None = None   # a rule across fields: why the inputs do not fit, or None


def _shots_fill_duration(inputs: dict) -> str | None:
    """multi_shot_video, custom mode: the shots' durations add up to the video's (10 s unless given)."""
    if inputs.get("mode") != "custom":
        return None
    shots, total = sum(shot["duration"] for shot in inputs["shots"]), inputs.get("duration", 10)
    return None if shots == total else (f"inputs.shots: the shots' durations add up to {shots} s, and must add up "
                                        f"to inputs.duration ({total} s)")


AD_LANGUAGES = ("ar", "zh", "zh-Hant", "nl", "en", "fr", "de", "hi", "id", "it", "ja", "ko", "pl", "pt", "ru", "es",
                "sv", "th", "tr", "uk", "vi", "el")
MULTI_SHOT = {"audio": bool, "duration": (5, 10, 15), "firstFrame": IMAGE_REF,
              "ratio": ("1280:720", "720:1280", "960:960", "1920:1080", "1080:1920", "1440:1440")}
RECIPES = {
    "ad_localization": Recipe("image", "an ad image localized into another language",
                              Obj({"referenceImage": IMAGE_REF, "targetLanguage": AD_LANGUAGES},
                                  "referenceImage targetLanguage")),
    "marketing_stock_image": Recipe("image", "marketing stock images from a brief (4 unless outputCount says)",
                                    Obj({"prompt": Text(3500), "outputCount": range(1, 5),
                                         "quality": ("low", "medium", "high"), "referenceImage": IMAGE_REF}, "prompt")),
    "multi_shot_video": Recipe("video", "a multi-shot video from a story (mode auto: 5 shots) or a shot list "
                                        "(mode custom: 3-5 shots)", Choice("mode", {
                                   "auto": Obj({"mode": ("auto",), "prompt": str, **MULTI_SHOT}, "mode prompt"),
                                   "custom": Obj({"mode": ("custom",), **MULTI_SHOT, "shots": ListOf(
                                       Obj({"duration": int, "prompt": str}, "duration prompt"), 3, 5)},
                                       "mode shots")}), check=_shots_fill_duration),
    "product_ad": Recipe("video", "a product video ad from product images (the first is the hero)",
                         Obj({"productImages": ListOf(IMAGE_REF, 1, 10), "styleImages": ListOf(IMAGE_REF, 0, 4),
                              "audio": bool, "duration": SECONDS_4_15, "productInfo": str, "userConcept": str,
                              "ratio": ("1280:720", "720:1280", "960:960", "834:1112", "1920:1080", "1080:1920",
                                        "1440:1440", "1248:1664")}, "productImages"),
                         versions=("2026-06", "2026-07")),
    "product_campaign_image": Recipe("image", "four campaign images that keep a product as it is",
                                     Obj({"image": IMAGE_REF, "prompt": str}, "image prompt")),
    "product_swap": Recipe("video", "a video (1.8-15 s) with its product swapped for another",
                           Obj({"newProductImages": ListOf(Obj({"uri": IMAGE, "view": ("front", "side", "back")},
                                                               "uri"), 1, 10),
                                "originalProductImage": IMAGE_REF, "referenceVideo": VIDEO_REF, "audio": bool,
                                "duration": SECONDS_4_15, "resolution": ("720p", "1080p")},
                               "newProductImages originalProductImage referenceVideo")),
    "product_ugc": Recipe("video", "a UGC-style ad: a person presenting a product to camera",
                          Obj({"characterImage": IMAGE_REF, "productImage": IMAGE_REF, "audio": bool,
                               "duration": SECONDS_4_15, "productInfo": str, "userConcept": str,
                               "ratio": ("720:1280", "1080:1920")}, "characterImage productImage")),
}
UNSAFE_LATEST = "unsafe-latest"             # tracks Runway's newest recipe version: may change without notice

# Avatar videos (gwm1_avatars): a preset avatar or a custom one, speaking a script (in a preset or custom voice)
# or an audio track.
AVATAR_MODEL = "gwm1_avatars"
AVATAR_PRESETS = ("game-character", "music-superstar", "game-character-man", "cat-character", "influencer",
                  "tennis-coach", "human-resource", "fashion-designer", "cooking-teacher")
LIVE_VOICES = ("victoria", "vincent", "clara", "drew", "skye", "max", "morgan", "felix", "mia", "marcus", "summer",
               "ruby", "aurora", "jasper", "leo", "adrian", "nina", "emma", "blake", "david", "maya", "nathan", "sam",
               "georgia", "petra", "adam", "zach", "violet", "roman", "luna")
VOICE_DESIGN_MODEL = "eleven_ttv_v3"        # the newer of Runway's two voice design models


class CustomVoice(NamedTuple):
    """A custom voice's id in a request: where accounts share a key, sent only if the account made it (see
    prepare)."""

    id: str


# The model router's inputs, by kind (POST /v1/generate/<kind> with a saved router config).
MODERATION = Obj({"publicFigureThreshold": ("auto", "low")})
KEYFRAME_RANGE = Obj({"end_seconds": int, "start_seconds": int}, "end_seconds start_seconds")
ROUTER_INPUTS = {
    "video": Obj({
        "aspectRatio": ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9"), "audio": bool, "contentModeration": MODERATION,
        "duration": int, "keyframes": ListOf(Choice(None, {
            "seconds": Obj({"seconds": float, "uri": IMAGE, "range": KEYFRAME_RANGE}, "seconds uri"),
            "at": Obj({"at": float, "uri": IMAGE, "range": KEYFRAME_RANGE}, "at uri")})),
        "negativePrompt": str, "promptText": str, "referenceAudio": ListOf(AUDIO_REF),
        "referenceImages": ListOf(Obj({"role": ("first", "last", "reference"), "uri": IMAGE}, "role uri"),
                                  once={"role": ("first", "last")}),
        "referenceVideos": ListOf(Obj({"role": ("source", "reference"), "uri": VIDEO}, "role uri"),
                                  once={"role": ("source",)}),
        "resolution": ("480p", "720p", "1080p", "4k"), "seed": int}),
    "image": Obj({
        "promptText": str, "aspectRatio": ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "2:3", "3:2", "4:5", "5:4"),
        "contentModeration": MODERATION, "outputCount": range(1, 11), "referenceImages": ListOf(IMAGE_REF),
        "resolution": ("1k", "2k", "4k"), "seed": int}, "promptText"),
    "audio": Obj({
        "promptText": str, "type": ("speech", "audio"), "duration": float, "loop": bool,
        "referenceAudios": ListOf(AUDIO_REF, 0, 3),
        "voice": Choice("type", {"preset": Obj({"type": ("preset",), "presetId": VOICES}, "type presetId"),
                                 "reference-audio": Obj({"type": ("reference-audio",), "audioUri": AUDIO},
                                                        "type audioUri")})}, "promptText type"),
}

# A published workflow's inputs: node id -> output key -> a typed value (a bare text, number or true/false is a
# primitive).
WORKFLOW_VALUE = Choice("type", {
    "primitive": Obj({"type": ("primitive",), "value": PRIMITIVE}, "type value"),
    **{kind: Obj({"type": (kind,), "uri": MediaRule((kind,))}, "type uri") for kind in ("image", "video", "audio")}})


def conform(value: Any, rule: Any, where: str) -> Any:
    """`value` checked against a shape rule, with Media in place of each media field. A value that does not fit is
    a RunwayError naming it by its path (e.g. inputs.productImages[2].uri) and saying what fits."""
    if isinstance(value, str) and not _encodable(value):
        raise RunwayError(f"{where} holds a character that is not text (a lone UTF-16 surrogate); send valid text")
    if isinstance(rule, MediaRule):
        if not isinstance(value, str) or not value.strip():
            raise RunwayError(f"{where} takes {' or '.join(rule.kinds)}: a URL, data: URI, runway:// URI, saved "
                              "output URI or local path")
        return Media(value, rule.kinds, where)
    if isinstance(rule, Obj | Choice):
        return _conform_object(value, rule, where)
    if isinstance(rule, ListOf):
        return _conform_list(value, rule, where)
    if _fits(value, rule):
        return value
    if isinstance(rule, Text) and isinstance(value, str):
        raise RunwayError(f"{where} has {_utf16_length(value)} characters; it takes {rule}")
    if _types(rule) or inspect.isclass(rule):
        wanted = " or ".join(_type_names(rule))
    else:
        wanted = f"text of {rule}" if isinstance(rule, Text) else f"one of: {_describe(rule)}"
    raise RunwayError(f"{where}={_shorten(repr(value), 80)} does not fit: it takes {wanted}")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _types(rule: Any) -> bool:
    """Whether a rule is a tuple of types (a value of any of them), as opposed to a tuple of allowed values."""
    return type(rule) is tuple and all(map(inspect.isclass, rule))


def _type_names(rule: type | tuple[type, ...]) -> list[str]:
    return [TYPE_NAMES[t] for t in (rule if _types(rule) else (rule,))]


def _fits(value: Any, rule: Any) -> bool:
    """Whether a value fits a rule that is a type, a tuple of types or of values, a range, Between or Text."""
    if inspect.isclass(rule):                           # True is an int to Python, not to Runway
        return isinstance(value, rule) and (rule is bool or not isinstance(value, bool)) or (
            rule is float and isinstance(value, int) and not isinstance(value, bool))
    if _types(rule):
        return any(_fits(value, t) for t in rule)
    if type(rule) is tuple:
        return any(type(value) is type(v) and value == v for v in rule)
    if isinstance(rule, range):
        return type(value) is int and value in rule
    return not isinstance(value, bool) and value in rule          # Between, Text


def _conform_object(value: Any, rule: Obj | Choice, where: str) -> dict:
    if isinstance(rule, Obj) and rule.needs == "uri" and isinstance(value, str):
        value = {"uri": value}                          # a bare URI for an {uri} object
    if not isinstance(value, dict):
        raise RunwayError(f"{where} takes an object with {_describe_fields(rule)}")
    value = {k: v for k, v in value.items() if v is not None}
    if isinstance(rule, Choice):
        rule = _chosen(value, rule, where)
    if missing := sorted(_fields(rule.needs) - value.keys()):
        raise RunwayError(f"{where}.{missing[0]} is required (it takes {_describe_fields(rule)})")
    if extra := sorted(value.keys() - rule.fields.keys()):
        raise RunwayError(f"{where}.{extra[0]} is not a field here; it takes {_describe_fields(rule)}")
    return {k: conform(v, rule.fields[k], f"{where}.{k}") for k, v in value.items()}


def _chosen(value: dict, rule: Choice, where: str) -> Obj:
    if rule.key is None:                                # told apart by which required fields are present
        for shape in rule.shapes.values():
            if _fields(shape.needs) <= value.keys():
                return shape
        shapes = " or ".join(" and ".join(shape.needs.split()) for shape in rule.shapes.values())
        raise RunwayError(f"{where} needs one of: {shapes}")
    if value.get(rule.key) not in rule.shapes:
        raise RunwayError(f"{where}.{rule.key}={value.get(rule.key)!r} is not one of: {', '.join(rule.shapes)}")
    return rule.shapes[value[rule.key]]


def _conform_list(value: Any, rule: ListOf, where: str) -> list:
    if not isinstance(value, list):
        raise RunwayError(f"{where} takes a list")
    if len(value) < rule.fewest or rule.most is not None and len(value) > rule.most:
        raise RunwayError(f"{where} has {len(value)} items; it takes {_count_range(rule)}")
    items = [conform(item, rule.item, f"{where}[{i}]") for i, item in enumerate(value)]
    for key, values in rule.once.items():
        for only in values:
            if sum(item.get(key) == only for item in items) > 1:
                raise RunwayError(f"{where}: at most one item may have {key} {only!r}")
    return items


def _count_range(rule: ListOf) -> str:
    return f"{rule.fewest}-{rule.most}" if rule.most is not None else f"at least {rule.fewest}"


def describe_rule(rule: Any) -> str:
    """A shape rule in a few words, for list_models and errors: "1-10 of image", "{uri: image, view?: front, ...}"."""
    if isinstance(rule, MediaRule):
        return " or ".join(rule.kinds)
    if isinstance(rule, Obj):
        return rule.fields["uri"].kinds[0] if rule.needs == "uri" and len(rule.fields) == 1 else (
            "{" + _describe_fields(rule) + "}")
    if isinstance(rule, Choice):
        return " | ".join(describe_rule(shape) for shape in rule.shapes.values())
    if isinstance(rule, ListOf):
        count = "" if (rule.fewest, rule.most) == (0, None) else f"{_count_range(rule)} "
        return f"list of {count}{describe_rule(rule.item)}"
    if inspect.isclass(rule) or _types(rule):
        return "/".join(name.removeprefix("a ") for name in _type_names(rule))
    return "|".join(map(str, rule)) if type(rule) is tuple else _describe(rule)


def _describe_fields(rule: Obj | Choice) -> str:
    if isinstance(rule, Choice):
        return " | ".join(_describe_fields(shape) for shape in rule.shapes.values())
    needs = _fields(rule.needs)
    return ", ".join(f"{name}{'' if name in needs else '?'}: {describe_rule(sub)}"
                     for name, sub in rule.fields.items())


def subject(endpoint: str, body: dict) -> str:
    """What a request runs, for the ledger and the person: its model, recipe, router config or workflow."""
    return str(body.get("model") or body.get("configId") or endpoint.partition("/")[2] or endpoint)


def made_kind(endpoint: str, body: dict) -> str:
    """What a request makes: image, video or audio, or "workflow" (a published workflow makes what it makes)."""
    family, _, name = endpoint.partition("/")
    if model := MODELS.get(body.get("model")):
        return model.kind
    return {"recipes": RECIPES[name].kind if name in RECIPES else "media", "generate": name,
            "avatar_videos": "video", "workflows": "workflow"}.get(family, "media")


# What list_models shows beside the models: name -> (kind, the tool that runs it, what it is).
OTHERS = {**{name: (recipe.kind, "run_recipe", recipe.about) for name, recipe in RECIPES.items()},
          AVATAR_MODEL: ("video", "generate_avatar_video", "an avatar speaking a script or an audio track"),
          **{f"router:{kind}": (kind, "generate_with_router", f"the model router's {kind} input")
             for kind in ROUTER_INPUTS}}


def others_index(kind: str | None = None) -> list[str]:
    """Index lines for recipes, avatar videos and router inputs, a line per tool."""
    by_tool: dict[str, list[str]] = {}
    for name, (made, tool_name, _) in OTHERS.items():
        if kind in (None, made):
            by_tool.setdefault(tool_name, []).append(f"{name} {made}" if tool_name == "run_recipe" else name)
    return [f"{tool_name}: {', '.join(names)}" for tool_name, names in by_tool.items()]


def other_detail(name: str) -> str:
    """What list_models(model=NAME) shows for a recipe, the avatar model or a router input."""
    kind, tool_name, about = OTHERS[name]
    if recipe := RECIPES.get(name):
        older = f"; older: {', '.join(recipe.versions[:-1])}" if len(recipe.versions) > 1 else ""
        return "\n".join([f"{name} (recipe, {kind}; {tool_name}): {about}",
                          f"version: {recipe.versions[-1]} (default){older}; {UNSAFE_LATEST} follows Runway's newest",
                          "inputs (? = optional; an {uri} field also takes a bare URI or path):",
                          *_field_lines(recipe.inputs)])
    if name == AVATAR_MODEL:
        return "\n".join([f"{name} ({kind}; {tool_name}): {about}", f"avatar presets: {', '.join(AVATAR_PRESETS)}",
                          f"voice presets (with text): {', '.join(LIVE_VOICES)}",
                          "or your own avatar's id, and a voice id from list_voices or create_voice"])
    return "\n".join([f"{name} ({tool_name} kind={kind}): {about}; input (? = optional):",
                      *_field_lines(ROUTER_INPUTS[kind])])


def _field_lines(rule: Obj | Choice) -> list[str]:
    if isinstance(rule, Choice):
        return [line for value, shape in rule.shapes.items() for line in (f"{rule.key} {value}:", *_field_lines(shape))]
    needs = _fields(rule.needs)
    return [f"  {name}{'' if name in needs else '?'}: {describe_rule(sub)}" for name, sub in rule.fields.items()]


def prompt_of(body: dict) -> str:
    """A request's words, for the ledger and list_tasks: its prompt or script, wherever its endpoint keeps them."""
    for where in (body, body.get("input"), body.get("speech")):
        for key in ("promptText", "prompt", "text", "userConcept"):
            if isinstance(where, dict) and isinstance(where.get(key), str):
                return where[key]
    return ""


##############################################################################
# Client
##############################################################################

_local = threading.local()


def session() -> "requests.Session":
    """This thread's Session (one per thread, as the requests maintainers advise). It holds no key."""
    s = getattr(_local, "session", None)
    if s is None:
        import requests
        s = _local.session = requests.Session()
        s.headers["User-Agent"] = f"runway-mcp/{__version__}"
    return s


def _checkpoint() -> None:
    """Stop here if the client cancelled the tool call running in this thread (see tool())."""
    stop = getattr(_local, "stop", None)
    if stop is not None and stop.is_set():
        raise Cancelled


def pause(seconds: float) -> None:
    """Sleep, waking at once if the client cancels the tool call."""
    stop = getattr(_local, "stop", None)
    if stop is None:
        time.sleep(max(0.0, seconds))
    elif stop.wait(max(0.0, seconds)):
        raise Cancelled


def backoff(attempt: int, base: float = 0.5) -> float:
    """Exponential backoff with up to 50 % jitter, as Runway's error docs advise."""
    return min(MAX_BACKOFF_S, base * 2 ** attempt) * (1 - 0.5 * random.random())


# Statuses worth another try. A create POST repeats only where Runway cannot have created the task.
RETRY_STATUSES = {"GET": {429, 500, 502, 503, 504}, "DELETE": {429, 500, 502, 503, 504}, "POST": {429, 502, 503}}


def _never_sent(error: "requests.RequestException") -> bool:
    """True when the connection was never made (refused, DNS, connect timeout): nothing reached Runway."""
    import requests
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return type(reason).__name__ in {"NewConnectionError", "NameResolutionError", "ConnectTimeoutError"}


def request(method: str, url: str, *, attempts: int = 4, max_delay: float = 10.0,
            via: "requests.Session | None" = None, **kwargs: Any) -> "requests.Response":
    """One HTTP exchange under the retry policy (through `via`, else this thread's session); the pause between
    tries honours Retry-After.

    A server that asks for a pause longer than max_delay gets its answer back at once: a tool
    call must return before the host gives up on it.
    """
    import requests
    for attempt in range(attempts):
        last = attempt == attempts - 1
        _checkpoint()                       # a cancelled call sends nothing more
        try:
            response = (via or session()).request(method, url, **kwargs)
        except requests.RequestException as error:
            if last or _refused_address(error) or not (_never_sent(error) or method != "POST"):
                raise
            delay, why = backoff(attempt), type(error).__name__
        else:
            if last or response.status_code not in RETRY_STATUSES.get(method, ()):
                return response
            asked = retry_after(response)          # Retry-After: 0 means now
            delay, why = asked if asked is not None else backoff(attempt), f"HTTP {response.status_code}"
            if delay > max_delay:
                return response
            response.close()
        log.info("%s %s failed (%s); retry %d in %.1fs", method, urlsplit(url).path, why, attempt + 1, delay)
        pause(delay)
    raise AssertionError("unreachable")


# Links Runway hands back (output files, upload slots) are fetched wherever they point, so they are held to a rule
# that a link, or a redirect from one, cannot bend: https to public addresses, checked at every hop of a redirect,
# by name before connecting and by the address actually reached on connecting (so a name that resolves one way,
# then another, gains nothing). Plain http and loopback only at the API's own origin when that is this machine
# (tests, a local proxy). Through a proxy (HTTPS_PROXY) only the check by name applies.
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)


def _api_loopback_port(config: Config) -> int | None:
    """The port of the API base URL when it is on this machine, else None."""
    parts = urlsplit(config.base_url)
    return (parts.port or {"https": 443, "http": 80}[parts.scheme]) if _is_loopback(parts.hostname) else None


def _reachable(address: str, port: int, loopback_port: int | None) -> bool:
    """Whether a link may be fetched from this address: a public one, or the API's own on this machine. An IPv6
    address that carries an IPv4 one (mapped, compatible, translated, NAT64, 6to4) is judged by the IPv4 one, which
    is where a translating network would take it."""
    import ipaddress
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6:
        ip = _embedded_ipv4(ip) or ip
    if ip.is_loopback:
        return port == loopback_port
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: Any) -> Any:
    """The IPv4 address inside an IPv6 one, where a prefix says there is one; else None."""
    import ipaddress
    if ip.is_loopback or ip.is_unspecified:         # ::1 and :: are themselves, not 0.0.0.1 and 0.0.0.0
        return None
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    for prefix in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48"):
        if ip in ipaddress.ip_network(prefix):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_link(config: Config, url: str, what: str) -> None:
    """Refuse a link (or redirect) that is not https to a public address: not this machine, its network, a cloud's
    metadata service or 0.0.0.0."""
    parts, loopback_port = urlsplit(url), _api_loopback_port(config)
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        port = None
    if not (parts.hostname and port) or not (parts.scheme == "https" or port == loopback_port):
        raise RunwayError(f"{what} is not an https URL; not fetched")
    import socket
    try:
        found = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        return                                  # unresolvable: the request itself fails and says so
    if refused := sorted(a for a in found if not _reachable(a, port, loopback_port)):
        raise RunwayError(f"{what} points to {parts.hostname} ({refused[0]}), a private, loopback, link-local or "
                          "unspecified address; not fetched")


def fetch_link(config: Config, method: str, url: str, what: str, *, follow: bool = True,
               **kwargs: Any) -> "requests.Response":
    """A link Runway handed back, fetched under check_link, following a GET's redirects hop by hop (never a
    POST's: an upload goes where Runway said or nowhere; nor with follow=False)."""
    import requests
    for _ in range(MAX_REDIRECTS + 1):
        check_link(config, url, what)
        try:
            response = request(method, url, via=link_session(_api_loopback_port(config)), allow_redirects=False,
                               **kwargs)
        except requests.RequestException as error:
            if _refused_address(error):
                raise RunwayError(f"{what} reached {_refused_address(error)}, a private, loopback or link-local "
                                  "address; not fetched") from None
            raise
        if not follow or method != "GET" or response.status_code not in REDIRECTS or not response.headers.get(
                "Location"):
            return response
        response.close()
        from urllib.parse import urljoin
        url, what = urljoin(url, response.headers["Location"]), f"a redirect from {what}"
    raise RunwayError(f"{what} redirected more than {MAX_REDIRECTS} times; not fetched")


def _refused_address(error: Exception) -> str | None:
    """The address a link's connection reached and was refused at (see link_session), or None."""
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return getattr(reason, "refused", None)


def link_session(loopback_port: int | None) -> "requests.Session":
    """This thread's Session for links: no key, and connections checked on connecting (see check_link)."""
    sessions = _local.__dict__.setdefault("links", {})
    if (s := sessions.get(loopback_port)) is None:
        import requests
        s = sessions[loopback_port] = requests.Session()
        s.headers["User-Agent"] = f"runway-mcp/{__version__}"
        adapter = _guarded_adapter(loopback_port)()
        s.mount("https://", adapter)
        s.mount("http://", adapter)
    return s


@functools.cache
def _guarded_adapter(loopback_port: int | None) -> type:
    """An HTTPAdapter whose connections refuse, once connected, an address _reachable does not allow."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import NewConnectionError

    class RefusedAddress(NewConnectionError):
        def __init__(self, connection: Any, address: str):
            super().__init__(connection, f"{connection.host} is at {address}, which links may not reach")
            self.refused = address

    def guarded(base: type) -> type:
        class Guarded(base):
            def _new_conn(self):
                sock = super()._new_conn()
                address, port = sock.getpeername()[:2]
                if not _reachable(address, port, loopback_port):
                    sock.close()
                    raise RefusedAddress(self, address)
                return sock
        return Guarded

    pools = {"http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": guarded(HTTPConnection)}),
             "https": type("Pool", (HTTPSConnectionPool,), {"ConnectionCls": guarded(HTTPSConnection)})}

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools
    return GuardedAdapter


def _require_api(account: Account) -> str:
    """The key to send for an account; a RunwayError when there is none or no usable API."""
    config = account.config
    if config.problems:
        raise RunwayError(config.problems[0])
    if hosted_mode(config) and config.transport == "http" and not account.hosted:
        raise RunwayError("this server spends only the key each request brings (RUNWAY_MCP_KEYS_FROM_CLIENTS): send "
                          "yours as Authorization: Bearer <key>" if config.keys_from_clients else
                          "this server works only for a person signed in with OAuth: connect with an OAuth client")
    if not account.key:
        raise RunwayError("No Runway API key: set RUNWAYML_API_SECRET in the MCP server's environment "
                          "(create a key at https://dev.runwayml.com), then restart the server")
    return account.key


def api(account: Account, method: str, path: str, *, body: dict | None = None, task_id: str | None = None,
        timeout: tuple[float, float] | None = None, attempts: int = 4, creating: bool = False) -> dict:
    """Call the Runway API as `account` and return its JSON. The only code that sends a key.

    `creating` marks a task-creating POST, whose failures may have billed a task. `timeout` defaults to
    API_TIMEOUT as it is when called.
    """
    import requests
    base_url = account.config.base_url
    headers = {"Authorization": f"Bearer {_require_api(account)}", "X-Runway-Version": API_VERSION,
               "Accept": "application/json"}
    try:
        response = request(method, base_url + path, headers=headers, json=body, timeout=timeout or API_TIMEOUT,
                           attempts=attempts, allow_redirects=False)
    except requests.RequestException as error:
        if creating and not _never_sent(error):
            raise RunwayError(f"The connection to Runway failed while creating the task ({type(error).__name__}); "
                              + CREATE_UNSURE, unsure=True) from None
        raise RunwayError(f"Could not reach Runway at {base_url} ({type(error).__name__}); check the "
                          "network and try again", task_id=task_id) from None
    if response.status_code >= 400:
        _raise_for(response, hosted=account.hosted, task_id=task_id, creating=creating)
    if response.status_code == 204 or not response.content:
        return {}
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) and creating:         # it said yes, or something in between did: unknown
        raise RunwayError(f"Runway answered the create with HTTP {response.status_code} and no JSON object; "
                          + CREATE_UNSURE, unsure=True)
    if not isinstance(data, dict):
        raise RunwayError(f"Runway sent a response that is not a JSON object (HTTP {response.status_code}); "
                          "try again", task_id=task_id)
    return data


def task_id_arg(value: str) -> str:
    """A Runway task id (a UUID), checked before it goes into a URL."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        raise RunwayError(f"task_id={value!r} is not a Runway task id (a UUID such as "
                          "17f20503-6c24-4c16-946b-35dbbce2af2f); list_tasks shows the ids of your tasks") from None


def create_task(account: Account, endpoint: str, body: dict) -> dict:
    """POST /v1/<endpoint>; returns {id, estimatedCost} (the router: {id, routing}; avatar videos and workflow
    runs: {id})."""
    task = api(account, "POST", f"/v1/{endpoint}", body=body, creating=True)
    if not isinstance(task.get("id"), str):
        raise RunwayError(f"Runway accepted the request but returned no task id; {CREATE_UNSURE}", unsure=True)
    return task


# A published workflow's run is a workflow invocation, not a task: it has its own status URL, outputs node by
# node, and no cancel. The ledger records it under the endpoint "workflows/<workflow id>".
WORKFLOW_RUN = "workflows/"


def fetch_task(account: Account, task_id: str, *, workflow: bool = False, attempts: int = 4) -> dict:
    """GET a task, or a workflow run (`workflow`: the ledger says which) in a task's shape."""
    timeout = poll_timeout(account.config)
    if workflow:
        return _as_task(api(account, "GET", f"/v1/workflow_invocations/{task_id}", task_id=task_id, timeout=timeout,
                            attempts=attempts))
    return api(account, "GET", f"/v1/tasks/{task_id}", task_id=task_id, timeout=timeout, attempts=attempts)


def _as_task(invocation: dict) -> dict:
    """A workflow invocation as a task: its output links, node by node, in one list."""
    output = invocation.get("output")
    links = [url for urls in output.values() if isinstance(urls, list) for url in urls] if isinstance(
        output, dict) else []
    return {**invocation, "output": links}


def cancel(account: Account, task_id: str) -> bool:
    """DELETE /v1/tasks/{id}; False when Runway had already cancelled or deleted it (404)."""
    try:
        api(account, "DELETE", f"/v1/tasks/{task_id}", task_id=task_id)
    except RunwayError as error:
        if error.status == 404:
            return False
        raise
    return True


##############################################################################
# Ledger
##############################################################################

def _lock_fd(fd: int) -> None:
    """An exclusive lock on an open file, across processes (fcntl on POSIX, msvcrt on Windows); closing the
    descriptor releases it."""
    if os.name == "nt":
        import msvcrt
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
    else:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_EX)


class LedgerRecord(TypedDict, total=False):
    """One line of the ledger. A task's state is its lines folded together, later keys winning; so is a
    reservation's (a line with `reservation` and no `task_id`)."""

    at: str                             # when the line was written
    task_id: str
    created_at: str                     # the task's first line only, as are tool ... arguments
    tool: str
    endpoint: str
    model: str
    prompt: str
    arguments: dict                     # the request as a dry run shows it: files and data: URIs as short notes
    status: str
    progress: float | None
    estimated_credits: float | None
    cost_credits: float | None
    outputs: list[str]                  # saved paths, or links when not saved
    failure: str
    note: str
    fingerprint: str                    # what makes two requests the same (Spending): the duplicate guard's key
    estimate_from: str                  # "here" when estimated_credits is this server's estimate, not Runway's
    reservation: str                    # credits set aside before a create is sent; a task line names the one it used
    released: bool                      # a reservation whose create was refused: it counts no more
    mcp_task: str                       # an MCP task (a line without task_id): the Runway tasks it follows, and how
    runway: list[str]                   #   the tool's result is rebuilt when they end
    pending: dict                       #   the tool's answer when the Runway tasks were created (notes, estimates)
    ttl_ms: int
    final: list[dict]                   #   Runway's last word on them, once the MCP task is completed or failed
    voice: str                          # a custom voice this account made (a line of its own, as is upload: only
    upload: str                         #   where accounts share a key); a runway:// URI of a file it uploaded


MCP_TASK_ENDED = ("completed", "failed", "cancelled")     # an MCP task's statuses from which it never moves
MADE = ("voice", "upload")              # what an account makes at Runway that its ledger notes as its own


class Ledger:
    """tasks.jsonl in the output directory: one JSON line per task event, newest last.

    A task is recorded the moment Runway returns its id, before any waiting, so a crash or a host
    timeout never loses a paid task; under a budget its credits are reserved before the create is sent.
    Each line is one os.write on an O_APPEND descriptor under a lock, so concurrent waits never interleave;
    a line cut off by a crash is skipped when read, and the next line starts on a line of its own. Reading
    is incremental (the file only grows), so looking a task up stays cheap however long the ledger gets.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._source: tuple = ()                # (path, device, inode) of what _tasks was read from
        self._read_to = 0                       # bytes of it already folded into _tasks
        self._tasks: dict[str, LedgerRecord] = {}   # task id -> its latest state, in order of creation
        self._reserved: dict[str, LedgerRecord] = {}    # reservation -> its state; settled once a task names it
        self._mcp_tasks: dict[str, LedgerRecord] = {}   # MCP task id -> its state
        self._made: dict[str, set[str]] = {kind: set() for kind in MADE}     # what this account made, by kind

    def append(self, record: LedgerRecord) -> None:
        """Write one line; OSError if it cannot be written."""
        text = json.dumps(redact({"at": _now(), **record}), ensure_ascii=False, default=str) + "\n"
        line = text.encode("utf-8", "backslashreplace")       # a lone surrogate in a prompt must not lose a task
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                _lock_fd(fd)        # other processes too: on NFS, O_APPEND alone does not keep lines whole
                if os.fstat(fd).st_size and os.lseek(fd, -1, os.SEEK_END) >= 0 and os.read(fd, 1) != b"\n":
                    line = b"\n" + line            # after a line a crash cut short (O_APPEND writes at the end)
                os.write(fd, line)
            finally:
                os.close(fd)                    # closing releases the lock

    def tasks(self) -> list[LedgerRecord]:
        """Every task in the ledger, folded to its latest state, newest first; OSError if it cannot be read."""
        with self._lock:
            self._catch_up()
            return [dict(t) for t in reversed(self._tasks.values())]

    def reservations(self) -> list[LedgerRecord]:
        """Credits reserved for creates that have not (yet) become a task; OSError if the ledger cannot be read."""
        with self._lock:
            self._catch_up()
            return [dict(r) for r in self._reserved.values() if not r.get("released") and not r.get("task_id")]

    def find_mcp_task(self, mcp_task: str) -> LedgerRecord:
        """An MCP task this ledger's account created, or {}; OSError if the ledger cannot be read."""
        with self._lock:
            self._catch_up()
            return LedgerRecord(**self._mcp_tasks.get(mcp_task, {}))

    def made(self, kind: str) -> set[str]:
        """The ids of what this ledger's account made, of one kind of MADE (noted where accounts share a key);
        OSError if the ledger cannot be read."""
        with self._lock:
            self._catch_up()
            return set(self._made[kind])

    def followers(self, task_id: str) -> list[str]:
        """The MCP tasks not yet ended that follow a Runway task (the duplicate guard can give one to two calls);
        OSError if the ledger cannot be read."""
        with self._lock:
            self._catch_up()
            return [m for m, r in self._mcp_tasks.items() if task_id in (r.get("runway") or []) and r.get("status")
                    not in MCP_TASK_ENDED]

    def find(self, task_id: str) -> LedgerRecord:
        """What the ledger knows of one task, or {}: a hint for display and waiting, so a ledger that cannot be
        read counts as knowing nothing (list_tasks and the budget say why)."""
        with self._lock:
            try:
                self._catch_up()
            except OSError as error:
                log.warning("cannot read the task ledger %s: %s", self.path, error.strerror or error)
                return LedgerRecord()
            return LedgerRecord(**self._tasks.get(task_id, {}))

    def _catch_up(self) -> None:
        """Fold in the lines appended since the last read, by this process or any other."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._source, self._read_to, self._tasks, self._reserved, self._mcp_tasks = (), 0, {}, {}, {}
            self._made = {kind: set() for kind in MADE}
            return
        source = (self.path, info.st_dev, info.st_ino)
        if source != self._source or info.st_size < self._read_to:
            self._source, self._read_to, self._tasks, self._reserved, self._mcp_tasks = source, 0, {}, {}, {}
            self._made = {kind: set() for kind in MADE}
        if info.st_size == self._read_to:
            return
        with open(self.path, "rb") as f:            # OSError: a directory, no permission, a failing disk
            f.seek(self._read_to)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]     # a line still being written waits for the next read
        self._read_to += len(complete)
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue                            # a line cut short by a crash
            if not isinstance(record, dict):
                continue
            if isinstance(record.get("task_id"), str):
                self._tasks.setdefault(record["task_id"], {}).update(record)
            if isinstance(record.get("reservation"), str):
                self._reserved.setdefault(record["reservation"], {}).update(record)
            if isinstance(record.get("mcp_task"), str) and "task_id" not in record:
                self._mcp_tasks.setdefault(record["mcp_task"], {}).update(record)
            for kind in MADE:
                if isinstance(record.get(kind), str):
                    self._made[kind].add(record[kind])


# One Ledger per file in this process, however many servers and calls use it (each reads incrementally); the
# least recently used are forgotten past LEDGERS_MAX, as accounts come and go.
LEDGERS_MAX = 1000
_LEDGERS: collections.OrderedDict[Path, Ledger] = collections.OrderedDict()
_LEDGERS_LOCK = threading.Lock()


def ledger(account: Account) -> Ledger:
    """The ledger of an account: tasks.jsonl in its folder."""
    path = account.output_dir / "tasks.jsonl"
    with _LEDGERS_LOCK:
        found = _LEDGERS.pop(path, None) or Ledger(path)
        _LEDGERS[path] = found
        if len(_LEDGERS) > LEDGERS_MAX:
            _LEDGERS.popitem(last=False)
        return found


# With RUNWAY_MCP_OAUTH_ISSUER everyone spends the server's key, and Runway would let anyone use what anyone made
# with it: each person's voices and uploads are noted in their ledger, and only theirs are shown to them or sent.
def own(account: Account, kind: str) -> set[str] | None:
    """The ids of what this account made, of one kind of MADE, or None when all its key's are its own; RunwayError
    when its ledger cannot be read (then nothing is taken for its own)."""
    if not account.shared_key:
        return None
    try:
        return ledger(account).made(kind)
    except OSError as error:
        raise RunwayError(f"your {kind}s cannot be told apart from others' now: the task ledger cannot be read "
                          f"({error.strerror}); try again later") from None


def owns(account: Account, kind: str, made: str) -> bool:
    """Whether the account may use something of one kind of MADE: anything where its key is its own, else only what
    its ledger notes as its (RunwayError when that cannot be read)."""
    owned = own(account, kind)
    return owned is None or made in owned


def note_made(account: Account, kind: str, made: str) -> None:
    """Note something as this account's (only where accounts share a key); OSError if that cannot be written."""
    if account.shared_key:
        ledger(account).append(LedgerRecord(**{kind: made}))


def is_workflow_run(account: Account, task_id: str) -> bool:
    """Whether a task id is a published workflow's run (which has its own status URL and no cancel)."""
    return (ledger(account).find(task_id).get("endpoint") or "").startswith(WORKFLOW_RUN)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


##############################################################################
# Waiting
##############################################################################

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "UNKNOWN"}    # UNKNOWN: a task no longer found
ACTIVE = ("PENDING", "THROTTLED", "RUNNING")


def _progress_of(task: dict) -> float | None:
    value = task.get("progress")
    if task.get("status") == "SUCCEEDED":
        return 1.0
    return float(value) if isinstance(value, int | float) and 0 <= value <= 1 else None


class Poll(NamedTuple):
    """What waiting found: the task as Runway last reported it, and why the latest status check failed, if it did."""

    task: dict
    error: RunwayError | None = None


def wait_for(account: Account, task_id: str, max_wait_s: float, *, task: dict | None = None, known: str = "PENDING",
             on_poll: Callable[[Poll, float], None] = lambda poll, elapsed: None,
             sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic) -> Poll:
    """Poll the task every poll interval until it is terminal or the next poll would pass the wait bound.

    A poll that fails for a passing reason (429, 5xx, timeout, reset, bad JSON) is tried again and the
    task id is never lost; the Poll returned says when the latest one failed (`known` is the status shown
    if none succeeds). `task`, when given, is what create returned: the first poll then waits one
    interval, since Runway updates a task at most every few seconds.
    """
    interval, sleep = account.config.poll_interval, sleep or pause     # pause as it is now, not at import
    start = clock()
    failures = 0
    if task is None:
        poll, delay = _poll(account, task_id, {"id": task_id, "status": known}, failures, interval)
    else:
        poll, delay = Poll(task), interval
    on_poll(poll, clock() - start)
    while poll.task.get("status") not in TERMINAL and clock() - start + delay <= max_wait_s:
        _sleep_with_heartbeat(delay, lambda: on_poll(poll, clock() - start), sleep)
        failures = failures + 1 if poll.error else 0
        poll, delay = _poll(account, task_id, poll.task, failures, interval)
        on_poll(poll, clock() - start)
    return poll


def _poll(account: Account, task_id: str, last: dict, failures: int, interval: float) -> tuple[Poll, float]:
    """One status request: what it found and the pause before the next. `failures`: failed polls just before it."""
    try:
        task = fetch_task(account, task_id, workflow=is_workflow_run(account, task_id), attempts=1)   # the loop retries
    except RunwayError as error:
        # A 404 may be a replica that has not seen a new task yet; three in a row mean it is gone.
        if error.status in (400, 401, 403) or error.status == 404 and failures >= 2:
            raise
        log.warning("poll of task %s failed: %s", task_id, error)
        # A status check is free: after a passing failure look again within about one interval, and back
        # off further only while failures persist. Retry-After, when Runway sends it, wins.
        delay = error.retry_after if error.retry_after is not None else backoff(failures, interval)
        return Poll(last, error), delay
    return Poll(task), interval


def wait_many(account: Account, tasks: list[dict], max_wait_s: float, *,
              on_poll: Callable[[list[Poll], float], None],
              sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic) -> list[Poll]:
    """Poll several tasks together, each once per interval, until all are terminal or the next round would pass the
    wait bound. A task whose checks keep failing keeps its last known state and the error."""
    interval, sleep = account.config.poll_interval, sleep or pause
    start = clock()
    polls, failures = [Poll(task) for task in tasks], [0] * len(tasks)
    active = lambda: [i for i, poll in enumerate(polls) if poll.task.get("status") not in TERMINAL]
    on_poll(polls, clock() - start)
    while active() and clock() - start + interval <= max_wait_s:
        _sleep_with_heartbeat(interval, lambda: on_poll(polls, clock() - start), sleep)
        for i in active():
            failures[i] = failures[i] + 1 if polls[i].error else 0
            try:
                polls[i], _ = _poll(account, polls[i].task["id"], polls[i].task, failures[i], interval)
            except RunwayError as error:          # gone for good: stop asking, say why
                polls[i] = Poll({**polls[i].task, "status": "UNKNOWN"}, error)
        on_poll(polls, clock() - start)
    return polls


def _sleep_with_heartbeat(seconds: float, beat: Callable[[], None], sleep: Callable[[float], None]) -> None:
    while seconds > HEARTBEAT_S:
        sleep(HEARTBEAT_S)
        seconds -= HEARTBEAT_S
        beat()
    sleep(seconds)


##############################################################################
# Media
##############################################################################

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/svg+xml": "svg",
              "image/gif": "gif", "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm",
              "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/wav": "wav", "audio/x-wav": "wav",
              "audio/wave": "wav", "audio/ogg": "ogg", "audio/flac": "flac", "audio/aac": "aac",
              "audio/mp4": "m4a", "application/zip": "zip"}
MIME_TYPES = {ext: mime for mime, ext in reversed(EXTENSIONS.items())} | {"jpeg": "image/jpeg", "m4v": "video/mp4"}


def mime_of(name: str) -> str | None:
    """The media type a file name's extension says (the content may say otherwise: see sniff)."""
    return MIME_TYPES.get(Path(name).suffix[1:].lower())


# File signatures, checked in order: (offset, bytes, media type). The content decides, not the name.
SIGNATURES = ((0, b"\x89PNG\r\n\x1a\n", "image/png"), (0, b"\xff\xd8\xff", "image/jpeg"), (0, b"GIF8", "image/gif"),
              (8, b"WEBP", "image/webp"), (8, b"WAVE", "audio/wav"), (8, b"AVI ", "video/x-msvideo"),
              (0, b"fLaC", "audio/flac"), (0, b"OggS", "audio/ogg"), (0, b"ID3", "audio/mpeg"),
              (0, b"\x1aE\xdf\xa3", "video/webm"), (4, b"ftypqt", "video/quicktime"), (4, b"ftypM4A", "audio/mp4"),
              (4, b"ftyp", "video/mp4"), (0, b"\xff\xfb", "audio/mpeg"), (0, b"\xff\xf3", "audio/mpeg"),
              (0, b"\xff\xf2", "audio/mpeg"), (0, b"\xff\xf1", "audio/aac"), (0, b"\xff\xf9", "audio/aac"))
# Other names for a media type, as data: URIs and servers write them.
CANONICAL = {"image/jpg": "image/jpeg", "audio/mp3": "audio/mpeg", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav",
             "audio/x-flac": "audio/flac", "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4"}


def canonical(mime: str) -> str:
    """A media type by its usual name: image/jpg is image/jpeg, audio/mp3 is audio/mpeg."""
    return CANONICAL.get(mime.lower(), mime.lower())


# One container (ISO base media: ftyp) holds video, audio or both, whatever its brand suggests.
ISO_MEDIA = {"video/mp4", "audio/mp4", "video/quicktime"}
# What Runway takes from a local file (runway-api.md section 6); GIF, for one, it refuses.
ACCEPTED = {"image/png", "image/jpeg", "image/webp", "video/mp4", "video/quicktime", "video/webm", "audio/mpeg",
            "audio/wav", "audio/flac", "audio/ogg", "audio/aac", "audio/mp4"}
CHUNK = 1 << 20
DATA_URI_LIMIT = 5 * 1024 * 1024    # characters: the safe data: URI limit for every media kind (section 6)
UPLOAD_MIN, UPLOAD_MAX = 512, 200 * 1024 * 1024
UPLOAD_TIMEOUT = (10.0, 300.0)
UPLOAD_LIFETIME_S = 24 * 3600
PREVIEW_MAX_BYTES = 900 * 1024      # images up to this size are shown to the model in the result
PREVIEWABLE = {"image/png", "image/jpeg", "image/webp", "image/gif"}
DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)


def _kind(mime: str | None, fallback: str | None) -> str | None:
    top = (mime or "").split("/")[0]
    return top if top in ("image", "video", "audio") else fallback


def _size(size: int) -> str:
    return f"{size / 1048576:.1f}".removesuffix(".0") + " MB" if size >= 1048576 else f"{size / 1024:.0f} KB"


class LocalFile(NamedTuple):
    """A local file a media argument names, checked: a regular file of an accepted type, within the limits."""

    path: Path
    mime: str
    size: int
    argument: str = "path"
    shown: str = ""                 # the path as errors show it to the caller (see _shown)

    def open(self):
        return _open_checked(self.path, self.argument, self.shown or _shorten(str(self.path)))


def _local_path(value: str) -> Path | None:
    """The path a media argument names (a path, ~/path or file:// URI), or None for a URI to send as it is."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme == "file":
        path = unquote(parts.path)
        return Path(path[1:] if re.match(r"/[A-Za-z]:", path) else path)     # file:///C:/x on Windows
    if len(parts.scheme) > 1:                            # https:, data:, runway:, http:... ("C:" is a drive)
        return None
    return Path(value).expanduser()


def sniff(head: bytes, name: str = "") -> str | None:
    """A media type from a file's first bytes, else from its name's extension."""
    for offset, signature, mime in SIGNATURES:
        if head[offset:offset + len(signature)] == signature:
            return mime
    return mime_of(name)


def _not_a_file(mode: int) -> str | None:
    """What a path is when it is not a regular file: reading a FIFO or a device could block or never end."""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def _shown(account: Account, path: Path) -> str:
    """A path as an error shows it to the caller: hidden server folders first (redact), then shortened."""
    return _shorten(redact(str(path), account))


def _open_checked(path: Path, argument: str, shown: str):
    """Open a user's file for reading, the only way one is opened. O_NONBLOCK keeps a FIFO swapped in after the
    checks from blocking the open, and fstat then refuses anything but a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        raise RunwayError(f"{argument}: cannot read {shown} ({error.strerror})") from None
    if what := _not_a_file(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunwayError(f"{argument}: {shown} is {what}; pass a file")
    return os.fdopen(fd, "rb")


def local_file(account: Account, media: Media) -> LocalFile | None:
    """Check the local file a media argument names; None when the argument is a URI.

    Everything that can be decided from the path and its stat is decided before the file is opened: over
    HTTP the input root, then existence, the file type (a FIFO or a device is never opened), access, size.
    """
    name = media.argument
    if (saved := named_output(media.value)) is not None:
        path = output_path(account, saved, name)     # a file this server saved: usable over HTTP too
    elif (path := _local_path(media.value)) is None:
        return None
    elif "\x00" in str(path):
        raise RunwayError(f"{name}: {media.value[:80]!r} is not a usable path (it holds a NUL character)")
    elif account.config.transport == "http":
        path = _inside_input_root(account, path, name)
    path = path.absolute()
    shown = _shown(account, path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise RunwayError(f"{name}: no file at {shown}; pass an absolute path, an https:// URL or a data: URI") from None
    except OSError as error:
        raise RunwayError(f"{name}: cannot read {shown} ({error.strerror})") from None
    if what := _not_a_file(info.st_mode):
        raise RunwayError(f"{name}: {shown} is {what}; pass a file")
    if not os.access(path, os.R_OK):
        raise RunwayError(f"{name}: {shown} is not readable by the server (permission denied)")
    if info.st_size > UPLOAD_MAX:
        raise RunwayError(f"{name}: {shown} is {_size(info.st_size)}; Runway takes files up to {_size(UPLOAD_MAX)}")
    with _open_checked(path, name, shown) as f:
        mime = sniff(f.read(16), path.name)
    if mime is None or _kind(mime, None) not in media.kinds:
        found = f"holds {mime}" if mime else "is not a recognised image, video or audio file"
        raise RunwayError(f"{name} takes {media.what}; {shown} {found}")
    if mime not in ACCEPTED:
        raise RunwayError(f"{name}: Runway does not take {mime} files; convert {path.name} to PNG, JPEG or WebP "
                          "(images), MP4 or MOV (video), or MP3, WAV or FLAC (audio)")
    return LocalFile(path, mime, info.st_size, name, shown)


def _inside_input_root(account: Account, path: Path, argument: str) -> Path:
    """Over HTTP a local path is read only below RUNWAY_MCP_INPUT_ROOT, after resolving symlinks and '..'."""
    root = account.config.input_root
    if root is None:
        raise RunwayError(f"{argument}: this server does not read local files for HTTP clients; pass an https:// "
                          "URL, a data: URI or a runway:// URI (or set RUNWAY_MCP_INPUT_ROOT on the server)")
    resolved = (root / path).resolve()               # an absolute path replaces root here
    if not resolved.is_relative_to(root):
        raise RunwayError(f"{argument}: {_shown(account, path)} is outside the input root {_shown(account, root)}; "
                          "only files below it can be read")
    if (account.hosted and resolved.is_relative_to(account.config.output_dir.resolve())
            and not resolved.is_relative_to(account.output_dir.resolve())):      # an input root over the outputs
        raise RunwayError(f"{argument}: {_shown(account, path)} is not one of your outputs; pass your own output's "
                          "runway-mcp:// URI")
    return resolved


def own_upload(account: Account, value: str, where: str) -> str:
    """A value as given, unless it is a runway:// URI the account may not use (see own): an error naming `where`."""
    uri = value.strip()
    if uri.lower().startswith("runway://") and not owns(account, "upload", uri):
        raise RunwayError(f"{where}: {uri[:80]!r} is none of your uploads: pass the file's path, or upload it with "
                          "upload_file")
    return value


def check_media(account: Account, media: Media) -> LocalFile | None:
    """Refuse, before anything is sent, a media argument Runway could not use; the local file it names, if any."""
    if local := local_file(account, media):
        return local
    value = media.value.strip()
    scheme = urlsplit(value).scheme.lower()
    if scheme == "https":
        if len(value) > 2048:
            raise RunwayError(f"{media.argument}: the URL is {len(value)} characters; Runway accepts at most 2048")
    elif scheme == "data":
        _check_data_uri(media, value)
    elif scheme == "runway":
        own_upload(account, value, media.argument)
    else:
        raise RunwayError(f"{media.argument}: {value[:80]!r} is not an https:// URL, a data: URI, a runway:// URI "
                          "or a local file (Runway fetches only https)")
    return None


def _check_data_uri(media: Media, value: str) -> None:
    """A data: URI must be base64 of the type it declares, of a kind the argument takes, within Runway's limit."""
    argument, match = media.argument, DATA_URI.match(value)
    if len(value) > DATA_URI_LIMIT:
        raise RunwayError(f"{argument}: the data: URI is {_size(len(value))}; Runway takes at most "
                          f"{_size(DATA_URI_LIMIT)} that way; pass the file's path to have it uploaded")
    if not match:
        raise RunwayError(f"{argument}: not a base64 data: URI (expected data:<type>/<subtype>;base64,...)")
    declared = canonical(match["mime"])
    if _kind(declared, None) not in media.kinds:
        raise RunwayError(f"{argument} takes {media.what}; this data: URI holds {match['mime']}")
    try:
        head = base64.b64decode(value[match.end():], validate=True)[:16]
    except ValueError:
        raise RunwayError(f"{argument}: the data: URI's base64 is broken (a character outside the alphabet, or "
                          "missing padding); encode the file again") from None
    found = sniff(head)
    if found is None:
        raise RunwayError(f"{argument}: the data: URI says {declared}, but its bytes are not a recognised image, "
                          "video or audio file")
    if found != declared and not {found, declared} <= ISO_MEDIA:
        raise RunwayError(f"{argument}: the data: URI says {declared}, but its bytes are {found}; write "
                          f"data:{found};base64,...")
    if found not in ACCEPTED:
        raise RunwayError(f"{argument}: Runway does not take {found}; send PNG, JPEG or WebP (images), MP4 or MOV "
                          "(video), or MP3, WAV or FLAC (audio)")


class KindOf(NamedTuple):
    """The `type` beside a media argument that takes several kinds: known only once the argument is checked."""

    media: Media


def kind_of(media: Media, local: LocalFile | None) -> str:
    """image, video or audio, for a checked media argument: from its file's content, a data: URI's type or a URL's
    extension; an error asking for the <argument>_kind when none of them tells."""
    value = media.value.strip()
    if local is not None:
        mime: str | None = local.mime
    elif match := DATA_URI.match(value):
        mime = canonical(match["mime"])
    else:
        mime = link_mime(value)
    kind = _kind(mime, None)
    if kind not in media.kinds:
        raise RunwayError(f"{media.argument}: cannot tell whether {value[:80]!r} is {media.what}; "
                          f"pass {media.argument}_kind")
    return kind


def _fits_data_uri(size: int, mime: str) -> bool:
    return len(f"data:{mime};base64,") + 4 * -(-size // 3) <= DATA_URI_LIMIT


def describe_media(media: Media, local: LocalFile | None) -> str:
    """What a dry run shows for a checked media argument: the URL itself, or a short note instead of bytes."""
    if local:
        how = "sent as a data: URI" if _fits_data_uri(local.size, local.mime) else "uploaded to a runway:// URI first"
        return f"<{local.path}: {local.mime}, {_size(local.size)}, {how}>"
    return elide_blobs(media.value.strip())          # a URL as it is; a data: URI as a short note


def media_uri(account: Account, media: Media, local: LocalFile | None, notes: list[str]) -> str:
    """The URI to send for a checked media argument: a URI as given, or its local file as a data: URI
    (small) or an upload (large)."""
    if local is None:
        return media.value.strip()
    if _fits_data_uri(local.size, local.mime):
        with local.open() as f:
            return f"data:{local.mime};base64," + base64.b64encode(f.read()).decode()
    uploaded = upload(account, local)
    notes += uploaded.get("notes", [])
    return uploaded["uri"]


def _media_in(value: Any) -> list[Media]:
    if isinstance(value, Media):
        return [value]
    if isinstance(value, dict | list):
        return [m for v in (value.values() if isinstance(value, dict) else value) for m in _media_in(v)]
    return []


def _replace(value: Any, kind: type, convert: Callable[[Any], Any]) -> Any:
    """The request body with every instance of `kind` (Media, KindOf) converted: to a URI to send, a dry run's
    description, a media type."""
    if isinstance(value, kind):
        return convert(value)
    if isinstance(value, dict):
        return {k: _replace(v, kind, convert) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, kind, convert) for v in value]
    return value


def elide_blobs(value: Any) -> Any:
    """JSON for records and logs: data: URIs shortened to their type and size."""
    if isinstance(value, str) and value[:5].lower() == "data:":
        return f"<{value.split(';')[0]} URI, {_size(len(value))}>"
    if isinstance(value, dict):
        return {k: elide_blobs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [elide_blobs(v) for v in value]
    return value


class Multipart:
    """A multipart/form-data body streamed from disk, its length known up front (presigned POSTs need it)."""

    def __init__(self, fields: Mapping[str, str], local: LocalFile):
        boundary = uuid.uuid4().hex
        name = re.sub(r'[^\w.-]+', "_", local.path.name)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self.head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                            for k, v in fields.items()).encode()
        self.head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                      f"Content-Type: {local.mime}\r\n\r\n").encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.local, self.length = local, len(self.head) + local.size + len(self.tail)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        yield self.head
        with self.local.open() as f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield self.tail


# Uploads are remembered in .uploads.json in the account's folder: runway:// URIs by file content (and account),
# reused while they have an hour to live, so that a task created with one can still fetch it.
_UPLOADS_LOCK = threading.Lock()


def _uploads_file(account: Account) -> Path:
    return account.output_dir / ".uploads.json"


def _read_uploads(account: Account) -> dict:
    try:
        entries = json.loads(_uploads_file(account).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def cached_upload(account: Account, key: str) -> dict | None:
    entry = _read_uploads(account).get(key)
    return entry if entry and entry.get("expires_at", 0) > time.time() + 3600 else None


def remember_upload(account: Account, key: str, entry: dict) -> None:
    """Remember an upload; OSError if the cache cannot be written."""
    with _UPLOADS_LOCK:
        entries = {k: v for k, v in _read_uploads(account).items() if v.get("expires_at", 0) > time.time()}
        entries[key] = entry
        _write_atomically(_uploads_file(account), json.dumps(entries, indent=1).encode())


# sha256 of local files by (device, inode, size, modification time): a file is read once to be hashed, however
# many times a call needs its digest (the duplicate guard, the confirmation, the upload cache).
_DIGESTS: collections.OrderedDict[tuple, str] = collections.OrderedDict()
DIGESTS_MAX = 256


def content_digest(local: LocalFile) -> str:
    """sha256 of a local file's content, read once while the file is unchanged."""
    with local.open() as f:
        info = os.fstat(f.fileno())
        version = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        if (found := _DIGESTS.get(version)) is not None:
            return found
        digest = hashlib.sha256()
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    _DIGESTS[version] = digest.hexdigest()
    if len(_DIGESTS) > DIGESTS_MAX:
        _DIGESTS.popitem(last=False)
    return _DIGESTS[version]


def _noted_upload(account: Account, uri: str) -> list[str]:
    """Note an upload as the account's where accounts share a key (see own), unless it is already; the note for
    the result when it cannot be."""
    try:
        if not owns(account, "upload", uri):
            note_made(account, "upload", uri)
    except (OSError, RunwayError):
        return ["the upload could not be noted as yours (the task ledger cannot be written): pass the file's path, "
                "not its runway:// URI"]
    return []


def upload(account: Account, local: LocalFile) -> dict:
    """Put a local file on Runway (POST /v1/uploads, then the presigned POST); cached by content for 24 h."""
    if local.size < UPLOAD_MIN:
        raise RunwayError(f"{local.path} is {local.size} bytes; Runway uploads need at least {UPLOAD_MIN}")
    key = f"{account.id}:{content_digest(local)}"
    if cached := cached_upload(account, key):
        notes = _noted_upload(account, cached["uri"])
        return {**cached, "reused": True, **({"notes": notes} if notes else {})}
    slot = api(account, "POST", "/v1/uploads", body={"filename": re.sub(r"[^\w.-]+", "_", local.path.name),
                                           "type": "ephemeral"})
    url, fields, uri = slot.get("uploadUrl"), slot.get("fields") or {}, slot.get("runwayUri")
    if not (isinstance(uri, str) and isinstance(url, str)):
        raise RunwayError("Runway's upload reply had no usable upload URL; try again")
    body = Multipart(fields, local)
    import requests
    # The presigned URL gets the file and its form fields only: no Runway key.
    try:
        response = fetch_link(account.config, "POST", url, "the upload URL", data=body,
                              headers={"Content-Type": body.content_type}, timeout=UPLOAD_TIMEOUT)
    except requests.RequestException as error:
        raise RunwayError(f"uploading {local.path.name} failed ({type(error).__name__}); try again") from None
    if response.status_code >= 300:
        raise RunwayError(f"uploading {local.path.name} failed with HTTP {response.status_code}; try again")
    entry = {"uri": uri, "expires_at": time.time() + UPLOAD_LIFETIME_S, "bytes": local.size, "mime_type": local.mime}
    log.info("uploaded %s (%s) as %s", local.path.name, _size(local.size), uri)
    notes = _noted_upload(account, uri)
    try:
        remember_upload(account, key, entry)
    except OSError as error:
        where = _uploads_file(account)
        log.warning("could not remember the upload of %s in %s: %s", local.path.name, where, error.strerror)
        notes.append(f"the upload could not be cached in {where} ({error.strerror}); the next call uploads the "
                     "file again")
    return {**entry, "reused": False, **({"notes": notes} if notes else {})}


# Outputs ----------------------------------------------------------------------------------------------


def _extension(mime: str | None, url: str) -> str:
    if mime in EXTENSIONS:
        return EXTENSIONS[mime]
    suffix = Path(urlsplit(url).path).suffix.lstrip(".").lower()
    return suffix if re.fullmatch(r"[a-z0-9]{1,5}", suffix) else "bin"


def link_mime(url: str) -> str | None:
    """The media type a link's file name says, until a download tells: Runway's links end in .mp4, .png..."""
    return mime_of(urlsplit(url).path)


def _short(task_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", task_id)[:8] or "x"


def output_name(kind: str, task_id: str, n: int, ext: str) -> str:
    """`{kind}_{short task id}_{n}.{ext}`: unique per task, safe on every filesystem."""
    return f"{re.sub(r'[^a-z]+', '', kind)[:8] or 'output'}_{_short(task_id)}_{n}.{re.sub(r'[^a-z0-9]+', '', ext)}"


def is_output(path: Path) -> bool:
    """A saved output, as opposed to a sidecar, the ledger, a partial download or anything hidden."""
    return (path.is_file() and not path.is_symlink() and not path.name.startswith(".")
            and path.suffix not in (".json", ".jsonl", ".part"))


def find_saved_output(account: Account, task_id: str, n: int) -> Path | None:
    """The file already saved for output n of a task, if any."""
    return next((p for p in account.output_dir.glob(f"*_{_short(task_id)}_{n}.*") if is_output(p)), None)


class Truncated(Exception):
    """A download that ended before Content-Length said it would."""


def download(account: Account, url: str, task_id: str, n: int, kind: str) -> tuple[Path, str | None, int]:
    """Stream one output into the account's folder, trying a broken transfer again from the start."""
    import requests
    check_link(account.config, url, f"output {n}'s link")
    account.output_dir.mkdir(parents=True, exist_ok=True)
    _sweep_partial_downloads(account.output_dir)
    for attempt in range(3):
        try:
            return _download_once(account, url, task_id, n, kind)
        except (requests.RequestException, Truncated) as error:
            if attempt == 2:
                raise RunwayError(f"downloading output {n} failed ({type(error).__name__}: {error}); call get_task "
                                  "to try again", task_id=task_id) from None
            log.info("download of output %d of task %s broke off (%s); starting again", n, task_id, error)
            pause(backoff(attempt))
    raise AssertionError("unreachable")


def _download_once(account: Account, url: str, task_id: str, n: int, kind: str) -> tuple[Path, str | None, int]:
    """GET one output into a temporary file, renamed into place only when every byte has arrived."""
    with fetch_link(account.config, "GET", url, f"output {n}'s link", timeout=DOWNLOAD_TIMEOUT,
                    stream=True) as response:
        if response.status_code >= 400:
            raise RunwayError(f"downloading output {n} failed with HTTP {response.status_code}", task_id=task_id,
                              status=response.status_code)
        mime = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower() or None
        expected = int(response.headers.get("Content-Length") or -1)
        final = account.output_dir / output_name(_kind(mime, kind) or "output", task_id, n, _extension(mime, url))
        free = shutil.disk_usage(account.output_dir).free
        if expected > free:
            raise OSError(errno.ENOSPC, f"output {n} needs {_size(expected)} and only {_size(free)} is free")
        size = 0
        with _atomic_file(final) as f:
            for chunk in response.iter_content(CHUNK):
                f.write(chunk)
                size += len(chunk)
            if expected >= 0 and size != expected:
                raise Truncated(f"got {size} of {expected} bytes")
    return final, mime, size


@contextlib.contextmanager
def _atomic_file(path: Path):
    """A file written under a hidden temporary name beside `path`, renamed to it only if the block completes."""
    path.parent.mkdir(parents=True, exist_ok=True)      # the output folder is made when something first needs it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_atomically(path: Path, data: bytes) -> None:
    with _atomic_file(path) as f:
        f.write(data)


@functools.cache
def _sweep_partial_downloads(folder: Path, age_s: float = 24 * 3600) -> None:
    """Once per folder and process: remove temporary download files a process killed mid-download left."""
    with contextlib.suppress(OSError):
        for path in folder.glob(".*.part"):
            if time.time() - path.stat().st_mtime > age_s:
                path.unlink()


def write_sidecar(account: Account, path: Path, record: dict) -> None:
    """`<file>.json` beside a saved output: where it came from and what it cost."""
    _write_atomically(path.with_name(path.name + ".json"), json.dumps(
        redact(record, account, paths=False), indent=2, ensure_ascii=False, default=str).encode())


def read_sidecar(path: Path) -> dict:
    try:
        record = json.loads(path.with_name(path.name + ".json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def output_path(account: Account, name: str, argument: str = "name") -> Path:
    """A saved output named by the caller: a plain file name inside the account's folder, nothing else."""
    if not name or name != Path(name).name or name in (".", ".."):
        raise RunwayError(f"{argument}={name!r} must be a file name from list_outputs, without a directory")
    path = account.output_dir / name
    if not is_output(path):
        raise RunwayError(f"{argument}={name!r} is not a saved output in {account.output_dir}; list_outputs shows "
                          "them", status=404)
    return path


# Saved outputs are MCP resources: runway-mcp://outputs/<name>, readable by any client, local or remote.
OUTPUT_URI = "runway-mcp://outputs/"
RESOURCE_MAX_BYTES = 20 * 1024 * 1024       # README, "Saved outputs as resources", says why
RESOURCE_LIST_MAX = 200                     # resources/list shows the newest; the template reaches every one


def output_uri(name: str) -> str:
    return OUTPUT_URI + quote(name)


def named_output(uri: str) -> str | None:
    """The file name a runway-mcp://outputs/ URI names, or None for any other value."""
    return unquote(uri.strip()[len(OUTPUT_URI):]) if uri.strip().startswith(OUTPUT_URI) else None


def list_saved_outputs(account: Account, kind: str | None = None) -> list[tuple[Path, os.stat_result]]:
    """The account's saved outputs (of one kind, if given), newest first."""
    try:
        files = [(p, p.stat()) for p in account.output_dir.iterdir() if is_output(p)]
    except OSError:                         # no folder yet, or a file removed meanwhile
        return []
    return [(p, info) for p, info in sorted(files, key=lambda item: item[1].st_mtime, reverse=True)
            if kind in (None, _kind(mime_of(p.name), None))]


def read_output(account: Account, name: str) -> tuple[bytes, str]:
    """A saved output's bytes and media type, for resources/read; one too large to send whole is an error that
    says where it is."""
    path = output_path(account, name, "uri")
    size = path.stat().st_size
    if size > RESOURCE_MAX_BYTES:
        link = read_sidecar(path).get("source_url")
        raise RunwayError(f"{name} is {_size(size)}, more than the {_size(RESOURCE_MAX_BYTES)} sent whole as a "
                          f"resource; it is at {path}" + (f"; Runway's link (24-48 h): {link}" if link else ""),
                          status=413)
    with _open_checked(path, "uri", path.name) as f:
        return f.read(), mime_of(path.name) or "application/octet-stream"


##############################################################################
# Spending
##############################################################################
#
# Three guards on credits, all kept in the ledger so that they hold across restarts and across processes
# sharing the output folder: a budget for any 24 hours (RUNWAY_MCP_BUDGET_CREDITS), no second payment for a
# request identical to a recent one (RUNWAY_MCP_DEDUPE_S), and the person's confirmation above a threshold
# (RUNWAY_MCP_CONFIRM_ABOVE, asked in the Tools section). Estimates come from the catalog's price hint, else from
# what Runway estimated for earlier tasks with the same model; Runway's own estimate replaces them once a task
# exists, and its final cost once it is known.

WINDOW_S = 24 * 3600


class Estimate(NamedTuple):
    """What a request is expected to cost at most, and where that figure comes from. Made by priced(), so that
    credits is a finite number of 0 or more, or None (not known here: refused under a budget, always asked about)."""

    credits: float | None
    source: str               # for notes and refusals: "the catalog's price hint", "learned from ...", or why not


def priced(credits: float | None, source: str) -> Estimate:
    """An estimate, or none when the figure is not a finite number of 0 or more (a negative or NaN total would
    slip past the budget and the threshold)."""
    if credits is None or not math.isfinite(credits) or credits < 0:
        return Estimate(None, f"{source}: no usable figure" if credits is not None else source)
    return Estimate(float(credits), source)


def _time_of(record: LedgerRecord, field: str) -> float | None:
    """A time the record holds (created_at; at, when its latest line was written), or None."""
    try:
        return datetime.fromisoformat(record[field]).timestamp()        # type: ignore[literal-required]
    except (KeyError, TypeError, ValueError):
        return None


def _created_at(record: LedgerRecord) -> float | None:
    return _time_of(record, "created_at")


def charged(record: LedgerRecord) -> float:
    """What a task counts against the budget: its final cost once known, else its estimate."""
    for key in ("cost_credits", "estimated_credits"):
        if isinstance(record.get(key), int | float):
            return float(record[key])
    return 0.0


def tally_spending(account: Account, now: float) -> list[tuple[float, float]]:
    """(created at, credits) of every task created, and every reservation made, in the 24 hours before `now`,
    oldest first; OSError if the ledger cannot be read."""
    records = [*ledger(account).tasks(), *ledger(account).reservations()]
    return sorted((at, charged(r)) for r in records if (at := _created_at(r)) is not None and now - at < WINDOW_S)


def _unreadable(account: Account, error: OSError) -> str:
    return (f"the task ledger {ledger(account).path} cannot be read or written ({error.strerror or error}); with "
            "RUNWAY_MCP_BUDGET_CREDITS set, nothing is spent until it can: fix the file or its folder (permissions, "
            "free space); nothing was sent")


def budget_holder(account: Account) -> Account:
    """Whose 24-hour window a spend counts in: the account's own, or, when accounts share the server's key (people
    signed in through an identity provider), the server's: everyone's spending is on that one key."""
    return own_account(account.config) if account.shared_key else account


def check_budget(account: Account, estimate: Estimate, count: int = 1) -> str | None:
    """Why tasks estimated at `estimate` may not be created now under RUNWAY_MCP_BUDGET_CREDITS, or None. A ledger
    that cannot be read refuses: what was spent cannot be known."""
    account = budget_holder(account)
    budget = account.config.budget_credits
    if budget is None:
        return None
    what = "this task" if count == 1 else f"these {count} tasks"
    if estimate.credits is None:
        return (f"RUNWAY_MCP_BUDGET_CREDITS={budget:g} is set and {what} cannot be priced here ({estimate.source}); "
                "nothing was sent: raise or unset the budget to create it")
    now = time.time()
    try:
        window = tally_spending(account, now)
    except OSError as error:
        return _unreadable(account, error)
    total = sum(credits for _, credits in window)
    if total + estimate.credits <= budget:
        return None
    message = (f"over budget: RUNWAY_MCP_BUDGET_CREDITS={budget:g} for any 24 h, {total:g} committed, {what} about "
               f"{estimate.credits:g}; nothing was sent")
    if estimate.credits > budget:
        return message + "; it alone is more than the budget: raise the budget or ask for less"
    freed = total
    for at, credits in window:                  # the oldest tasks leave the window first
        freed -= credits
        if freed + estimate.credits <= budget:
            when = datetime.fromtimestamp(at + WINDOW_S, UTC).isoformat(timespec="minutes")
            return message + f"; enough frees up at {when} (in {(at + WINDOW_S - now) / 3600:.1f} h)"
    return message


def read_budget(account: Account) -> dict | None:
    """The budget as get_account shows it, or None when there is none. A ledger that cannot be read leaves
    nothing to spend (committed unknown)."""
    limit, account = account.config.budget_credits, budget_holder(account)
    if limit is None:
        return None
    try:
        spent: float | None = sum(credits for _, credits in tally_spending(account, time.time()))
    except OSError:
        spent = None
    remaining = 0.0 if spent is None else max(0.0, limit - spent)
    return {"limit": limit, "committed": None if spent is None else round(spent, 2),
            "remaining": round(remaining, 2), "window_hours": WINDOW_S // 3600}


def _units(body: dict) -> tuple[str, float]:
    """What a learned price is per: seconds of output, images, or the request; and how many of them (a count that
    is not a finite number above 0 cannot be priced)."""
    body = body.get("input") if isinstance(body.get("input"), dict) else body     # the router's settings
    for key, unit in (("duration", "second"), ("outputCount", "image")):
        if isinstance(body.get(key), int | float) and not isinstance(body[key], bool):
            return unit, float(body[key])
    return "request", 1.0


def _learned_rate(record: LedgerRecord, unit: str) -> float | None:
    """What an earlier task says a unit costs: Runway's own estimate for it, else its final cost if it succeeded
    (a failed or cancelled task costs 0, which says nothing about the price)."""
    if record.get("estimate_from") != "here" and isinstance(record.get("estimated_credits"), int | float):
        figure = record["estimated_credits"]
    elif record.get("status") == "SUCCEEDED" and isinstance(record.get("cost_credits"), int | float):
        figure = record["cost_credits"]
    else:
        return None
    their_unit, amount = _units(record.get("arguments") or {})
    if their_unit != unit or not (math.isfinite(amount) and amount > 0 and math.isfinite(figure) and figure > 0):
        return None
    return figure / amount


def estimate(endpoint: str, body: dict, history: list[LedgerRecord]) -> Estimate:
    """The most a request may cost: the catalog's hint, else the highest rate Runway estimated for this model in the
    ledger's `history` of tasks."""
    if (credits := estimate_credits(body)) is not None:
        return priced(credits, "the catalog's price hint")
    model = MODELS.get(body.get("model"))
    if model and re.search(r" of input$", model.credits):
        return Estimate(None, f"{body.get('model')} is priced by the length of its input, unknown here")
    unit, amount = _units(body)
    if not (math.isfinite(amount) and amount > 0):
        return Estimate(None, f"a {unit} count of {amount:g} cannot be priced")
    name = subject(endpoint, body)
    rates = [rate for record in history if record.get("endpoint") == endpoint
             and subject(endpoint, record.get("arguments") or {}) == name
             and (rate := _learned_rate(record, unit)) is not None]
    if not rates:
        return Estimate(None, f"no price hint for {name} and no earlier task with it on {endpoint} to learn "
                              "Runway's estimate from")
    return priced(max(rates) * amount, f"learned from Runway's figures for {len(rates)} earlier {name} "
                                       f"task{'s' if len(rates) > 1 else ''}, per {unit}")


def fingerprint(account_id: str, tool_name: str, endpoint: str, body: dict, digests: Mapping[Media, str]) -> str:
    """What makes two requests the same: tool, endpoint, final body (files by their content's digest) and account."""
    def content(media: Media) -> str:
        return f"sha256:{digests[media]}" if media in digests else media.value.strip()
    canonical = json.dumps([account_id, tool_name, endpoint, _replace(body, Media, content)], sort_keys=True,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_earlier_twin(account: Account, print_: str) -> LedgerRecord | None:
    """The newest task with this fingerprint created within RUNWAY_MCP_DEDUPE_S that is not known to have failed.
    A ledger that cannot be read knows none (and under a budget, nothing is created anyway)."""
    if account.config.dedupe_s <= 0:
        return None
    now = time.time()
    try:
        records = ledger(account).tasks()
    except OSError as error:
        log.warning("the duplicate guard cannot read the task ledger %s: %s", ledger(account).path, error.strerror)
        return None
    for record in records:
        at = _created_at(record)
        if at is not None and now - at > account.config.dedupe_s:
            break                               # newest first: the rest are older still
        if record.get("fingerprint") == print_ and record.get("status") in (*ACTIVE, "SUCCEEDED"):
            return record
    return None


class KeyedLocks:
    """A lock per key, made when first wanted and dropped when nobody holds or waits for it: callers with different
    keys never wait for each other, and the table holds only the keys in use."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}       # key -> [lock, holders and waiters]

    @contextlib.contextmanager
    def hold(self, keys: Iterable[str]):
        """Hold the locks of all `keys` (taken in sorted order, so that two callers cannot deadlock); a cancelled
        call stops waiting (see pause)."""
        keys = sorted(set(keys))
        with self._guard:
            entries = [self._locks.setdefault(key, [threading.Lock(), 0]) for key in keys]
            for entry in entries:
                entry[1] += 1
        taken = []
        try:
            for lock, _ in entries:
                while not lock.acquire(timeout=0.2):
                    _checkpoint()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()
            with self._guard:
                for key, entry in zip(keys, entries):
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._locks[key]


# Two identical requests in this process cannot both pass the duplicate guard: each holds its fingerprint's lock
# from the check until its task is in the ledger. The budget's check and reservation hold the account's lock (and
# its lock file, for other processes sharing the folder) for as long as they take, not for the create itself.
_SAME_REQUEST, _SPENDING = KeyedLocks(), KeyedLocks()


@contextlib.contextmanager
def spending_lock(account: Account):
    """The account's lock on its budget, in this process and in every other that shares its folder; OSError when
    the lock file cannot be made."""
    with _SPENDING.hold([str(account.output_dir)]), _file_lock(account.output_dir / ".spending.lock"):
        yield


def reserve(account: Account, estimates: list[Estimate], tool_name: str) -> list[str]:
    """Under a budget, set credits aside for creates about to be sent, in the ledger and before anything is sent,
    so that a crash or a failed write after the create still counts; [] without a budget. RunwayError when the
    budget refuses or the ledger cannot be read or written."""
    if account.config.budget_credits is None:
        return []
    account = budget_holder(account)
    total = Estimate(None, estimates[0].source) if None in (e.credits for e in estimates) else priced(
        sum(e.credits for e in estimates), "the sum of the items' estimates")
    try:
        with spending_lock(account):
            if refusal := check_budget(account, total, len(estimates)):    # now that no other create can slip in
                raise RunwayError(refusal)
            reservations = [uuid.uuid4().hex for _ in estimates]
            for reservation, estimate in zip(reservations, estimates):
                ledger(account).append(LedgerRecord(reservation=reservation, created_at=_now(), tool=tool_name,
                                                    estimated_credits=estimate.credits))
    except OSError as error:
        raise RunwayError(_unreadable(account, error)) from None
    return reservations


def note_charge(account: Account, reservation: str | None, **charge: float | None) -> None:
    """Where accounts share the server's key, their reservations are in the server's ledger (budget_holder), where
    no task line settles them: carry Runway's estimate, then its final cost, to the reservation, so that the one
    budget counts what Runway charges, not only the estimate made before asking."""
    known = {name: value for name, value in charge.items() if value is not None}
    if not (account.shared_key and reservation and known):
        return
    try:
        ledger(budget_holder(account)).append(LedgerRecord(reservation=reservation, **known))
    except OSError as error:                     # it counts at its earlier figure
        log.warning("could not note the charge of reservation %s: %s", reservation, error.strerror)


def release(account: Account, reservation: str | None) -> None:
    """Give back credits reserved for a create that Runway certainly did not make."""
    if reservation is None:
        return
    account = budget_holder(account)
    try:
        ledger(account).append(LedgerRecord(reservation=reservation, released=True))
    except OSError as error:                     # it keeps counting for 24 h: too much, never too little
        log.warning("could not release a budget reservation in %s: %s", ledger(account).path, error.strerror)


# The person's word on a spend above RUNWAY_MCP_CONFIRM_ABOVE, as the pipeline sees it. The MCP glue asks before a
# tool runs (a resolver); when it does not ask, it says why, and the pipeline checks that the reason still holds.
NOT_NEEDED, REUSED, REFUSED = ("no confirmation was needed", "an identical recent task was to be reused",
                                "the call was to be refused")
CANNOT_ASK, NO_SESSION = "this client cannot ask (it has no elicitation)", (
    "a stateless server (RUNWAY_MCP_STATELESS) can ask only clients speaking MCP 2026-07-28")
UNASKABLE = (CANNOT_ASK, NO_SESSION)


def credits_text(amount: float) -> str:
    return f"{amount:g} credit{'' if amount == 1 else 's'}"


class Consent(NamedTuple):
    """What the person said to a spend: yes (True), no or cancelled (False), or not asked (None, and why)."""

    given: bool | None
    why: str = "no confirmation was given"


def needs_asking(config: Config, total: Estimate) -> bool:
    """Whether a spend needs the person's yes under RUNWAY_MCP_CONFIRM_ABOVE: above it, or of a cost not known."""
    return config.confirm_above is not None and not (total.credits is not None and total.credits <= config.confirm_above)


def authorised(config: Config, consent: Consent, total: Estimate) -> bool:
    """Whether to spend `total`: True to go on, False when the person said no. A spend that needs their yes and did
    not get one (the client could not ask, or asking was skipped for a reason that no longer holds, such as a twin
    that failed meanwhile) is refused with a RunwayError: nothing is sent."""
    if consent.given is not None:
        return consent.given
    if not needs_asking(config, total):
        return True
    cost, step = ((f"about {credits_text(total.credits)}", "raise or unset") if total.credits is not None else
                  ("a cost not known here, which is always asked about", "unset"))
    if consent.why in UNASKABLE:
        raise RunwayError(f"this needs the person's confirmation ({cost}, RUNWAY_MCP_CONFIRM_ABOVE="
                          f"{config.confirm_above:g}) and {consent.why}; nothing was sent: {step} "
                          "RUNWAY_MCP_CONFIRM_ABOVE in the server's environment")
    raise RunwayError(f"this needs the person's confirmation ({cost}, RUNWAY_MCP_CONFIRM_ABOVE="
                      f"{config.confirm_above:g}) and they were not asked: when the call began, {consent.why}, and "
                      "that no longer holds; nothing was sent: call again, and they will be asked")


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on a file, across processes (fcntl on POSIX, msvcrt on Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock_fd(fd)
        yield
    finally:
        os.close(fd)                            # closing releases the lock


##############################################################################
# Pipeline
##############################################################################
#
# What every generation does, whichever tool asks: prepare (check everything that can be checked here,
# estimate, fingerprint), create (the duplicate guard, the budget, the person's word, reservations, then the
# POSTs), wait, save, and the result. A tool's own function only maps its arguments to a TaskRequest.

class Output(TypedDict):
    url: str
    path: str | None
    uri: str | None                         # runway-mcp://outputs/<name>: the saved file as an MCP resource
    mime_type: str | None
    bytes: int | None


class Request(TypedDict):
    """A dry run's request: method, url and body (a plain object in the output schema, to keep it short)."""

    method: str
    url: str
    body: dict[str, Any]


class TaskResult(TypedDict):
    """What every task tool returns as structured content."""

    task_id: str | None
    status: str
    progress: float | None
    outputs: list[Output]
    estimated_credits: float | None
    cost_credits: float | None
    failure: str | None
    failure_code: str | None
    elapsed_s: float
    next: str | None
    notes: list[str]


class DryRunResult(TaskResult):
    """A dry run's result: a TaskResult and the request it would have sent (left out of the output schema, which
    every task tool repeats)."""

    request: Request


class TaskRequest(NamedTuple):
    """What a generation tool asks Runway for: POST /v1/<endpoint> with this body (Media for media arguments)."""

    endpoint: str
    body: dict


MaxWait = Annotated[float | None, Field(ge=0, le=3600)]


class Run(NamedTuple):
    """The arguments every generation tool takes besides its own (INSTRUCTIONS explains them once)."""

    options: dict[str, Any] | None = None
    dry_run: bool = False
    wait: bool = True
    max_wait_s: MaxWait = None
    new: bool = False                   # skip the duplicate guard: a deliberate second task


class Plan(NamedTuple):
    """A generation request checked and ready to send; nothing has been sent for it yet."""

    tool: str
    endpoint: str
    body: dict                          # with Media where files and URIs go
    local: dict                         # Media -> the LocalFile it names, or None for a URI
    described: dict                     # the body as a dry run shows it: files and data: URIs as short notes
    notes: list[str]
    estimate: Estimate
    fingerprint: str
    run: Run


def own_voice(account: Account, voice: CustomVoice) -> str:
    """A custom voice's id, if the account may speak with it (another person's cloned voice is theirs alone)."""
    if not owns(account, "voice", voice.id):
        raise RunwayError(f"voice: {voice.id[:100]!r} is none of your custom voices (list_voices shows them; "
                          "create_voice makes one)")
    return voice.id


# Families of endpoints that take no catalog model: their bodies are checked by conform() in the tool itself.
SHAPED = ("recipes/", "generate/", "avatar_videos", WORKFLOW_RUN)
OnPoll = Callable[[Poll, float], None]


def prepare(account: Account, request: TaskRequest, run: Run, tool_name: str, names: Mapping[str, str] = {}) -> Plan:
    """Check a request as far as it can be checked here (reading the files it names and the ledger's prices):
    nothing is sent, nothing is spent."""
    endpoint, body = request
    # Error messages name the tool's own arguments for the fields they fill, options.<field> otherwise.
    names = {field: names.get(field) or ARGUMENT_NAMES.get(field, field) for field in body}
    for key in run.options or {}:
        if key in names:
            raise RunwayError(f"options.{key} is the {names[key]} argument of this tool; set it there")
    if run.options and endpoint not in ENDPOINTS:
        raise RunwayError(f"options: {tool_name} takes no options; every field goes in its own arguments")
    body = {k: v for k, v in {**body, **(run.options or {})}.items() if v is not None}   # send only what was given
    body = _replace(body, CustomVoice, lambda voice: own_voice(account, voice))
    _replace(run.options or {}, str, lambda text: own_upload(account, text, "options"))    # media are checked below
    if endpoint in ENDPOINTS:
        apply_defaults(endpoint, body)
        notes = check_model(endpoint, body, names)
    elif endpoint.startswith(SHAPED):
        notes = []                                      # conform() checked it in the tool
    else:
        raise AssertionError(f"{endpoint} is in neither ENDPOINTS nor SHAPED: add it to the registry")
    local = {media: check_media(account, media) for media in _media_in(body)}     # each file is checked once
    body = _replace(body, KindOf, lambda k: kind_of(k.media, local[k.media]))
    described = _replace(body, Media, lambda m: describe_media(m, local[m]))
    digests = {media: content_digest(found) for media, found in local.items() if found}
    return Plan(tool_name, endpoint, body, local, described, notes,
                estimate(endpoint, body, _known_tasks(account)),
                fingerprint(account.id, tool_name, endpoint, body, digests), run)


def _known_tasks(account: Account) -> list[LedgerRecord]:
    """The ledger's tasks, to learn prices from; none when it cannot be read (a budget then refuses anyway)."""
    try:
        return ledger(account).tasks()
    except OSError:
        return []


def run_task(account: Account, request: TaskRequest, run: Run, *, tool_name: str, consent: Consent,
             on_poll: OnPoll, names: Mapping[str, str] = {}) -> TaskResult:
    """Check, guard the spend, create, record, wait, save: the one path of every generation tool."""
    plan = prepare(account, request, run, tool_name, names)              # nothing has been sent yet
    if run.dry_run:
        return dry_run_result(account, plan)
    started = time.monotonic()
    made = create_tasks(account, [plan], consent)
    if made.declined:
        return made.declined
    if made.error:
        raise made.error
    [task] = made.tasks
    if task.get("twin_of_age") is not None:
        return _reuse(account, task, run, on_poll, started)
    poll = Poll(task)
    if run.wait:
        poll = wait(account, task["id"], run.max_wait_s, on_poll, task=task)
    return settle(account, poll, started, plan.notes)


class Made(NamedTuple):
    """What create_tasks did: a task per plan until the first that failed (earlier identical tasks stand in for
    their twins, marked with `twin_of_age`), or the person's refusal; and the error that stopped it, if any."""

    tasks: list[dict]
    error: RunwayError | None = None
    declined: TaskResult | None = None


def create_tasks(account: Account, plans: list[Plan], consent: Consent) -> Made:
    """The one path that creates tasks, for a call and a batch alike. Under each request's lock: reuse an identical
    recent task, refuse what the budget or the person will not allow, reserve the credits, then upload, create and
    record item by item. Nothing is sent when a check refuses; a create that fails stops the rest, and the tasks
    made before it come back with the error."""
    with _SAME_REQUEST.hold(plan.fingerprint for plan in plans):
        twins = [None if plan.run.new else find_reusable_task(account, plan.fingerprint) for plan in plans]
        fresh = [plan for plan, twin in zip(plans, twins) if twin is None]
        if fresh:
            total = total_of(fresh)
            if refusal := check_budget(account, total, len(fresh)):
                raise RunwayError(refusal)
            if not authorised(account.config, consent, total):
                return Made([], declined=declined(total))
        unused = reserve(account, [plan.estimate for plan in fresh], plans[0].tool) if fresh else []
        tasks: list[dict] = []
        try:
            for plan, twin in zip(plans, twins):
                if twin is not None:
                    plan.notes.append(f"identical to task {twin['id']}, created {twin['twin_of_age']:.0f} s ago: "
                                      "returned that task instead of paying for a second one (pass new=true for a "
                                      "deliberate second)")
                    tasks.append(twin)
                    continue
                reservation = unused.pop(0) if unused else None
                try:
                    tasks.append(_create(account, plan, reservation))
                except (RunwayError, Cancelled) as failed:
                    if not getattr(failed, "unsure", False):
                        release(account, reservation)   # Runway made nothing (a cancel stops before a create is sent)
                    if isinstance(failed, Cancelled):
                        raise
                    return Made(tasks, failed)
        finally:
            for reservation in unused:                  # never sent
                release(account, reservation)
    return Made(tasks)


# The tasks a call creates, for whoever started it in this context and must know them if it stops waiting (the
# terminal's Ctrl-C); the ledger, shared with other processes, cannot say which were this call's.
CREATED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("runway_mcp_created", default=None)


def _create(account: Account, plan: Plan, reservation: str | None) -> dict:
    """Upload what needs uploading, then create the task and record it in the ledger (and in CREATED) before
    anything waits."""
    body = _replace(plan.body, Media, lambda m: media_uri(account, m, plan.local[m], plan.notes))   # data:, uploads
    created = create_task(account, plan.endpoint, body)
    task_id, routing = created["id"], created.get("routing") or {}
    estimated = (created.get("estimatedCost") or routing.get("estimatedCost") or {}).get("credits")
    ran = routing.get("model") or subject(plan.endpoint, body)
    if routing.get("model"):
        provider = f" ({routing['provider']})" if routing.get("provider") else ""
        plan.notes.append(f"the router chose {ran}{provider}")
    log.info("created %s task %s with %s (estimate %s credits)", plan.endpoint, task_id, ran, estimated)
    try:
        ledger(account).append(LedgerRecord(
            task_id=task_id, created_at=_now(), tool=plan.tool, endpoint=plan.endpoint, model=ran,
            prompt=prompt_of(body)[:2000], status="PENDING", arguments=elide_blobs(plan.described),
            estimated_credits=estimated if estimated is not None else plan.estimate.credits,
            **({} if estimated is not None else {"estimate_from": "here"}),
            fingerprint=plan.fingerprint, **({"reservation": reservation} if reservation else {})))
    except Exception as error:                  # the task exists and is paid for: its id must come back
        if not isinstance(error, OSError):
            log.exception("could not record task %s in the ledger", task_id)
        plan.notes.append(f"could not record the task in {ledger(account).path} "
                          f"({getattr(error, 'strerror', None) or type(error).__name__}); keep this task_id")
    note_charge(account, reservation, estimated_credits=estimated)
    if (noted := CREATED.get()) is not None:
        noted.append(task_id)
    return {"id": task_id, "status": "PENDING", "estimatedCost": created.get("estimatedCost")}


def find_reusable_task(account: Account, print_: str) -> dict | None:
    """The earlier identical task to return instead of paying again: one still running or succeeded, with its age
    in `twin_of_age`. A ledger that says running is checked with Runway first (a free GET), since a task that failed
    meanwhile blocks nothing; its failure is written to the ledger."""
    record = find_earlier_twin(account, print_)
    if record is None:
        return None
    age = time.time() - (_created_at(record) or time.time())
    if record.get("status") == "SUCCEEDED":
        return {"id": record["task_id"], "status": "SUCCEEDED", "twin_of_age": age}
    try:
        task = fetch_task(account, record["task_id"], workflow=is_workflow_run(account, record["task_id"]))
    except RunwayError as error:
        if error.status != 404:
            raise
        task = {"id": record["task_id"], "status": "CANCELLED"}          # gone: it blocks nothing
    if task.get("status") in ("FAILED", "CANCELLED"):
        record_status(account, task_result(account, Poll(task), 0.0, [], []))
        return None
    return {**task, "twin_of_age": age}


def _reuse(account: Account, twin: dict, run: Run, on_poll: OnPoll, started: float) -> TaskResult:
    """The earlier identical task, as wait_for_task or get_task would return it, with a note that says so."""
    notes = [f"identical to task {twin['id']}, created {twin['twin_of_age']:.0f} s ago: returned that task instead of "
             "paying for a second one (pass new=true for a deliberate second)"]
    if twin["status"] == "SUCCEEDED":
        poll = Poll(fetch_task(account, twin["id"], workflow=is_workflow_run(account, twin["id"])))   # fresh links
    elif run.wait:
        poll = wait(account, twin["id"], run.max_wait_s, on_poll)
    else:
        poll = Poll({k: v for k, v in twin.items() if k != "twin_of_age"})
    return settle(account, poll, started, notes)


DECLINED = "The person declined the cost: nothing was sent. Do not try again unless they ask."


def declined(total: Estimate) -> TaskResult:
    return TaskResult(task_id=None, status="DECLINED", progress=None, outputs=[], estimated_credits=total.credits,
                      cost_credits=None, failure=None, failure_code=None, elapsed_s=0.0, notes=[], next=DECLINED)


def total_of(plans: list[Plan]) -> Estimate:
    known = [p.estimate.credits for p in plans]
    if None in known:
        return Estimate(None, next(p.estimate.source for p in plans if p.estimate.credits is None))
    return priced(sum(known), "the sum of the items' estimates")


def describe_spend(plans: list[Plan]) -> str:
    """What the person is asked to pay for, in their words: "Generate 10 s of gen4.5 video"."""
    def one(plan: Plan) -> str:
        name, kind = subject(plan.endpoint, plan.body), made_kind(plan.endpoint, plan.body)
        body = plan.body.get("input") or plan.body            # the router's settings are in its input
        if kind == "workflow":
            return f"a run of workflow {name}"
        if isinstance(body.get("duration"), int | float) and kind == "video":
            return f"{body['duration']:g} s of {name} video"
        count = body.get("outputCount") or 1
        return f"{count} {name} {kind}{'s' if count > 1 and kind == 'image' else ''}"
    if len(plans) == 1:
        return f"Generate {one(plans[0])}"
    return f"Create {len(plans)} tasks ({', '.join(one(p) for p in plans)})"


def dry_run_result(account: Account, plan: Plan) -> DryRunResult:
    """What a real call would send and spend, with nothing sent."""
    notes = [*plan.notes, f"estimate: {plan.estimate.source}"]
    if (record := find_earlier_twin(account, plan.fingerprint)) is not None and not plan.run.new:
        notes.append(f"identical to task {record['task_id']}: a real call would return that task, not pay again")
    if refusal := check_budget(account, plan.estimate):
        notes.append(refusal.replace("nothing was sent", "a real call would be refused"))
    return DryRunResult(task_id=None, status="DRY_RUN", progress=None, outputs=[],
                        estimated_credits=plan.estimate.credits, cost_credits=None, failure=None, failure_code=None,
                        elapsed_s=0.0, next="Nothing was sent. Call again without dry_run to create the task "
                                            "(spends credits).", notes=notes,
                        request=Request(method="POST", url=f"{account.config.base_url}/v1/{plan.endpoint}",
                                        body=plan.described))


def wait(account: Account, task_id: str, max_wait_s: float | None, on_poll: OnPoll,
         task: dict | None = None) -> Poll:
    """Wait for a task up to `max_wait_s` (the server's bound when None); a cancelled call stops waiting, and with
    RUNWAY_MCP_CANCEL_ON_ABORT cancels the task too."""
    bound = account.config.max_wait if max_wait_s is None else max_wait_s
    known = ledger(account).find(task_id).get("status") if task is None else None
    try:
        return wait_for(account, task_id, bound, task=task, known=known or "PENDING", on_poll=on_poll)
    except Cancelled:
        log.info("the client stopped waiting for task %s; it keeps running on Runway", task_id)
        if account.config.cancel_on_abort:
            _cancel_after_abort(account, task_id)
        raise


def _cancel_after_abort(account: Account, task_id: str) -> bool:
    """RUNWAY_MCP_CANCEL_ON_ABORT: cancel the Runway task of a call the client gave up on; whether it was."""
    _local.stop = None                       # this one request still goes out
    if is_workflow_run(account, task_id):
        return False                         # a workflow run cannot be cancelled
    try:
        cancel(account, task_id)
    except RunwayError as error:
        log.warning("could not cancel task %s after the client's cancel: %s", task_id, error)
        return False
    log.info("cancelled task %s (RUNWAY_MCP_CANCEL_ON_ABORT)", task_id)
    try:
        ledger(account).append(LedgerRecord(task_id=task_id, status="CANCELLED",
                                            note="cancelled because the client cancelled the call"))
    except OSError as error:
        log.warning("could not record the cancel of task %s: %s", task_id, error.strerror)
    return True


def save_outputs(account: Account, task: dict, notes: list[str]) -> list[Output]:
    """The outputs of a SUCCEEDED task, each downloaded with a sidecar unless RUNWAY_MCP_DOWNLOAD=0 or already
    saved; a link that expired is refreshed from the task. What could not be saved is said in `notes`."""
    if task.get("status") != "SUCCEEDED":
        return []
    outputs = [Output(url=url, path=None, uri=None, mime_type=link_mime(url), bytes=None)
               for url in task.get("output") or [] if isinstance(url, str)]
    if not account.config.download:
        return outputs
    record = ledger(account).find(task["id"])
    for n, output in enumerate(outputs, 1):
        try:
            path = find_saved_output(account, task["id"], n) or _save(account, task, n, output, record, notes)
        except (RunwayError, OSError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            notes.append(f"output {n} was not saved ({reason}); its link works for 24-48 h, call get_task to "
                         "try again")
            continue
        output.update(path=str(path), uri=output_uri(path.name), bytes=path.stat().st_size,
                      mime_type=mime_of(path.name) or output["mime_type"])
    return outputs


def _save(account: Account, task: dict, n: int, output: Output, record: LedgerRecord, notes: list[str]) -> Path:
    """Download output n with a sidecar beside it; an expired link is refreshed from the task once."""
    model = MODELS.get(record.get("model", ""))
    kind = model.kind if model else "output"
    try:
        path, mime, _ = download(account, output["url"], task["id"], n, kind)
    except RunwayError as error:
        if error.status not in (403, 404):
            raise
        fresh = fetch_task(account, task["id"], workflow=is_workflow_run(account, task["id"])).get("output") or []
        if len(fresh) < n:                      # links expire after 24-48 h
            raise
        output["url"] = fresh[n - 1]
        path, mime, _ = download(account, output["url"], task["id"], n, kind)
    output["mime_type"] = mime or output["mime_type"]
    try:
        write_sidecar(account, path, {
            "file": path.name, "task_id": task["id"], "output": n, "tool": record.get("tool"),
            "model": record.get("model"), "endpoint": record.get("endpoint"), "prompt": record.get("prompt"),
            "arguments": record.get("arguments"), "created_at": record.get("created_at"), "saved_at": _now(),
            "estimated_credits": record.get("estimated_credits"), "cost_credits": (task.get("cost") or {}).get("credits"),
            "mime_type": output["mime_type"], "bytes": path.stat().st_size, "source_url": output["url"]})
    except OSError as error:
        log.warning("could not write the sidecar of %s: %s", path.name, error.strerror)
        notes.append(f"{path.name} was saved, but not its record {path.name}.json ({error.strerror})")
    return path


def _next_step(task: dict, outputs: list[Output]) -> str | None:
    status, task_id = task.get("status"), task["id"]
    if status in ACTIVE:
        return f"Still {status}: call wait_for_task(task_id={task_id!r}) to keep waiting."
    if status == "FAILED":
        code = task.get("failureCode") or ""
        if code.startswith(("SAFETY", "INPUT_PREPROCESSING.SAFETY")):
            return "Runway's moderation refused it: change the prompt or inputs; retrying as-is fails again."
        if code.startswith("ASSET"):
            return "An input could not be used: check the media arguments and try again."
        return "Try again, perhaps with a different prompt or model."
    if status == "SUCCEEDED" and outputs and any(o["path"] is None for o in outputs):
        return "Links expire in 24-48 h: call get_task to fetch fresh links and save them."
    return None


def task_result(account: Account, poll: Poll, elapsed: float, outputs: list[Output], notes: list[str]) -> TaskResult:
    """The structured result of every task tool, from what waiting found and what was saved."""
    task = poll.task
    notes = list(notes)
    if poll.error:
        notes.append(f"the latest status check failed ({poll.error}); the status shown is the last known")
    for node, error in list((task.get("nodeErrors") or {}).items())[:5]:      # a workflow run's failed steps
        if isinstance(error, dict):
            code = f" ({error['failureCode']})" if error.get("failureCode") else ""
            notes.append(f"workflow node {error.get('nodeName') or node} failed: {error.get('message')}{code}")
    estimated = (task.get("estimatedCost") or {}).get("credits")
    return TaskResult(
        task_id=task["id"], status=str(task.get("status") or "UNKNOWN"), progress=_progress_of(task), outputs=outputs,
        estimated_credits=estimated if estimated is not None else ledger(account).find(task["id"]).get(
            "estimated_credits"),
        cost_credits=(task.get("cost") or {}).get("credits"),
        failure=task.get("failure"), failure_code=task.get("failureCode"),
        elapsed_s=round(elapsed, 2), next=_next_step(task, outputs), notes=notes)


def settle(account: Account, poll: Poll, started: float, notes: list[str]) -> TaskResult:
    """The end of every task call: save the task's outputs (network and disk), build its result, and record its
    last known state in the ledger."""
    outputs = save_outputs(account, poll.task, notes)
    result = task_result(account, poll, time.monotonic() - started, outputs, notes)
    record_status(account, result)
    return result


def record_status(account: Account, result: TaskResult) -> None:
    """Append a status change to the ledger, so list_tasks shows the last known state."""
    known, outputs = ledger(account).find(result["task_id"]), [o["path"] or o["url"] for o in result["outputs"]]
    if known.get("status") == result["status"] and known.get("outputs", []) == outputs:
        return
    note_charge(account, known.get("reservation"), cost_credits=result["cost_credits"])
    try:
        ledger(account).append(LedgerRecord(
            task_id=result["task_id"], status=result["status"], progress=result["progress"],
            cost_credits=result["cost_credits"], outputs=outputs,
            **({"failure": result["failure"]} if result["failure"] else {})))
    except OSError as error:
        log.warning("could not record task %s's status in %s: %s", result["task_id"], ledger(account).path,
                    error.strerror)


def summary(result: TaskResult) -> str:
    """One line for people: status, what was saved, credits, the next step (a dry run: the request it would send)."""
    if request := result.get("request"):
        line = f"DRY_RUN: POST {urlsplit(request['url']).path} {json.dumps(request['body'], ensure_ascii=False)}"
        return line + (f" · at most about {credits_text(result['estimated_credits'])}"
                       if result["estimated_credits"] is not None else "")
    status, task_id = result["status"], result["task_id"]
    parts = [f"{status}: task {task_id}" if task_id else status]
    if result["progress"] is not None and status != "SUCCEEDED":
        parts.append(f"{round(result['progress'] * 100)}%")
    saved = [o["path"] for o in result["outputs"] if o["path"]]
    if saved:
        parts.append("saved " + ", ".join(saved))
    elif result["outputs"]:
        parts.append("links " + ", ".join(o["url"] for o in result["outputs"]))
    if result["failure"]:
        parts.append(f"failure: {result['failure']}" + (f" ({result['failure_code']})" if result["failure_code"]
                                                          else ""))
    credits = result["cost_credits"] if result["cost_credits"] is not None else result["estimated_credits"]
    if credits is not None:
        parts.append(credits_text(credits) + ("" if result["cost_credits"] is not None else " (estimate)"))
    parts += result["notes"]
    if result["next"]:
        parts.append(result["next"])
    return " · ".join(parts)


##############################################################################
# MCP glue
##############################################################################
#
# How a call flows. The SDK validates the arguments against the tool's signature (pydantic, so every bound
# and pattern below is enforced even where the advertised schema leaves it out), runs any resolver (the
# person's confirmation of a spend), and calls the async wrapper _function() built from the tool's own
# function. That wrapper finds the caller's account (the server's own, or the one the request's credential
# names), runs the function in a worker thread with a stop event a client cancel sets, and turns a RunwayError
# into an isError result. Tools are defined once, at import, as plain functions of an Account; create_server
# gives each server its own configuration and builds the SDK's tools from those definitions.

TaskReply = Annotated[CallToolResult, TaskResult]

# The viewer (an MCP Apps view, in its own section) and where it may load Runway's links from.
VIEWER_URI = "ui://runway-mcp/viewer"
VIEWER_MIME = "text/html;profile=mcp-app"
# Where Runway's output links point, for a view showing an output that was not saved.
OUTPUT_HOSTS = ["https://*.cloudfront.net", "https://*.runwayml.com", "https://*.amazonaws.com"]
VIEWER_META = {"ui": {"csp": {"resourceDomains": OUTPUT_HOSTS}, "prefersBorder": True}}
TASK_TOOL_META = {"ui": {"resourceUri": VIEWER_URI}, "ui/resourceUri": VIEWER_URI}   # the flat key: older hosts
RESOURCE_NOT_FOUND = -32002                     # MCP's code for a resource that does not exist
CALLS = logging.getLogger("runway_mcp.calls")          # one structured line per tool call


def instructions(config: Config) -> str:
    """Said once to the model rather than in every tool: hosts send these with the tool list."""
    return (
        "Runway image, video and audio generation. Generation tools spend credits; each says its price, list_models "
        "has the rest. Generation tools also take: model (a Runway model id; list_models(model=...) shows its "
        "ratios, durations, inputs and options) and options (other fields of that model by their Runway API name, "
        'e.g. {"audio": false}), where listed; dry_run (true: check the request and show it with a credit estimate, '
        f"sending nothing); wait and max_wait_s (a call waits {config.max_wait:g} s at most, then returns a handle: if "
        "status is not final, call wait_for_task(task_id); nothing is lost); new (true for a deliberate second task: "
        "an identical request within minutes otherwise returns the first). Media arguments take an https:// URL, a "
        "data: URI, a runway:// URI, an earlier result's runway-mcp://outputs/ URI or a local file path. Results are "
        "saved as files: outputs[].path. Errors name the argument to fix; list_tasks shows every task created here.")


def _invalid_arguments(error: ValidationError) -> str:
    """Pydantic's report on the arguments as one line: each bad argument once, by name, with the reason."""
    seen: dict[str, str] = {}
    for problem in error.errors():
        parts = [str(p) for p in problem["loc"] if isinstance(p, int) or str(p).isidentifier() and str(p).islower()]
        path = ".".join(parts) or "arguments"
        top = parts[0] if parts else path
        if top in seen:
            continue
        if problem["type"] in ("missing", "missing_argument"):
            seen[top] = f"{path} is required"
        elif problem["type"] == "unexpected_keyword_argument":
            seen[top] = f"{path} is not an argument of this tool"
        else:
            got = repr(problem.get("input"))
            seen[top] = f"{path}: {problem['msg']} (got {got if len(got) <= 60 else got[:57] + '...'})"
    return "; ".join(seen.values())


def compact_schema(schema: dict, *, output: bool = False) -> dict:
    """A tool's JSON schema as the model needs it, for every byte goes into its context: no titles, no
    `anyOf [X, null]` on optional arguments, $defs inlined, and no patterns or lengths the server checks
    anyway (pydantic still enforces them: this changes what is advertised, not what is accepted). An output
    schema keeps its nulls, as `type: [X, "null"]`, since clients validate results against it, but says no more
    than the types: descriptions and `required` are left to the README (every field is always present)."""
    definitions = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            node = {**definitions[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
        dropped = ("title", "$defs", "description", "required") if output else ("title", "$defs")
        node = {k: v for k, v in node.items() if k not in dropped and (v is not None or k != "default")}
        if node.get("additionalProperties") is True:
            del node["additionalProperties"]
        if not output:
            for key, useless in (("pattern", None), ("minLength", 1), ("maxLength", None)):
                if key in node and (useless is None or node[key] == useless):
                    del node[key]
        if "anyOf" in node:
            alternatives = [walk(a) for a in node.pop("anyOf")]
            real = [a for a in alternatives if a != {"type": "null"}]
            if len(real) == 1 and not output:
                node = {**real[0], **node}
            elif len(real) == 1 and output and len(real) < len(alternatives) and (
                    "properties" in real[0] or "items" in real[0]):
                node = {**real[0], **node}                      # nullable by leaving the type out (see implied)
            elif len(real) == 1 and output and set(real[0]) == {"type"} and len(real) < len(alternatives):
                node = {**node, "type": [real[0]["type"], "null"]}
            else:
                node["anyOf"] = alternatives if output else real
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                node[key] = walk(node[key])
        if "properties" in node:
            node["properties"] = {name: walk(value) for name, value in node["properties"].items()}
        return node

    def implied(node: Any) -> Any:
        """Below the root, `properties` say "object" and `items` say "array": the type is left out (null too
        passes, as an optional field's may)."""
        if isinstance(node, dict):
            if "properties" in node or "items" in node:
                node.pop("type", None)
            for child in [*node.get("properties", {}).values(), node.get("items")]:
                implied(child)
        return node

    compact = walk(schema)
    if output:
        for value in compact.get("properties", {}).values():
            implied(value)
    return compact


class Principal(AccessToken):
    """Who an HTTP request comes from, as the SDK carries it to the handler (and binds MCP sessions and sealed
    request state to): the account the request's credential names."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    account: Any = Field(default=None, exclude=True)


def caller_of(config: Config) -> Account:
    """The account the current request runs as: the one its credential names (hosted mode), else the server's."""
    token = get_access_token()
    return token.account if isinstance(token, Principal) and token.account else own_account(config)


# Tool definitions: made once, at import, by the decorators below; every server builds its tools from them.
class ToolDefinition(NamedTuple):
    fn: Callable                        # fn(account, **arguments) -> a result; runs in a worker thread
    annotations: ToolAnnotations
    title: str | None
    meta: dict | None
    toolset: str                        # the group RUNWAY_MCP_TOOLS names it by
    background: bool = False            # it creates or waits on Runway tasks: a client may have it run as an MCP task


TOOLS: dict[str, ToolDefinition] = {}

PAID = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
SAVES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
LOCAL = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                              open_world_hint=True)


def tool(annotations: ToolAnnotations, title: str | None = None, meta: dict | None = None, *, toolset: str,
         background: bool = False):
    """Define fn as a tool: its docstring (cleaned) is the description, its arguments after `account` the schema."""
    def register(fn):
        TOOLS[fn.__name__] = ToolDefinition(fn, annotations, title, meta, toolset, background)
        return fn
    return register


# Set while a call runs as an MCP task (see the MCP tasks section): the tool creates its Runway tasks and returns
# at once instead of waiting, and the client polls the MCP task.
_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("runway_mcp_background", default=False)


def in_background() -> bool:
    return _BACKGROUND.get()


def toolsets() -> dict[str, tuple[str, ...]]:
    """Every toolset RUNWAY_MCP_TOOLS may name, with its tools, in the order they are defined."""
    groups: dict[str, tuple[str, ...]] = {}
    for name, definition in TOOLS.items():
        groups[definition.toolset] = (*groups.get(definition.toolset, ()), name)
    return groups


def exposed_tools(names: tuple[str, ...]) -> tuple[frozenset[str] | None, list[str]]:
    """The tools RUNWAY_MCP_TOOLS exposes (None: all), and warnings for names that are neither a toolset nor a
    tool. Whatever exposes a tool that makes tasks brings the task tools along, so its handles stay resumable."""
    groups = toolsets()
    if unknown := [n for n in names if n not in groups and n not in TOOLS]:
        warning = (f"RUNWAY_MCP_TOOLS: {', '.join(map(repr, unknown))} is not a toolset or tool; valid: "
                   f"{', '.join(groups)}, or a tool name such as generate_image")
        warnings = [warning]
    else:
        warnings = []
    chosen = {tool_name for n in names for tool_name in groups.get(n, (n,) if n in TOOLS else ())}
    if any(TOOLS[n].meta is TASK_TOOL_META and TOOLS[n].annotations is PAID for n in chosen):
        chosen |= set(groups["tasks"])
    if names and not chosen:
        warnings.append("RUNWAY_MCP_TOOLS names no tool this server has; serving all of them")
    return (frozenset(chosen) if chosen else None), warnings


def _function(name: str, definition: ToolDefinition) -> Callable:
    """The async function the SDK calls for a tool: the caller's account, the tool's function in a worker thread
    (cancellable: see _run_in_thread), a RunwayError as an isError result, one log line per call."""
    fn = definition.fn
    own = inspect.signature(fn)
    takes_ctx = "ctx" in own.parameters
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Context)
    parameters = [p for p in own.parameters.values() if p.name not in ("account", "ctx")] + [context]

    async def call(ctx: Context, **arguments):
        account, stop, started = caller_of(ctx.mcp_server.config), threading.Event(), time.monotonic()
        outcome, task_id = "cancelled", None
        if takes_ctx:
            arguments["ctx"] = ctx
        try:
            result = await anyio.to_thread.run_sync(_run_in_thread, fn, account, arguments, stop,
                                                    abandon_on_cancel=True)
            outcome = "error" if getattr(result, "is_error", False) else "ok"
            task_id = (getattr(result, "structured_content", None) or {}).get("task_id")
            return redact(result, account) if isinstance(result, dict) else result
        except RunwayError as error:
            outcome, task_id = "error", error.task_id
            raise ToolError(redact(str(error), account)) from None
        except Exception:
            outcome = "crash"
            raise
        finally:
            stop.set()
            CALLS.info("%s", json.dumps({"tool": name, "outcome": outcome, "account": account.id,
                                         "duration_s": round(time.monotonic() - started, 3), "task_id": task_id}))
    call.__name__ = call.__qualname__ = name
    call.__doc__ = fn.__doc__
    call.__signature__ = own.replace(parameters=parameters)
    call.__annotations__ = {**{p.name: p.annotation for p in parameters}, "return": own.return_annotation}
    return call


def _run_in_thread(fn: Callable, account: Account, arguments: dict, stop: threading.Event) -> Any:
    """Run a tool's function; a client cancel sets `stop`, which pause() and every request check: it sends
    nothing more, and the process can exit while a request is still in flight (hosts expect that in a second)."""
    _local.stop = stop
    try:
        return fn(account, **arguments)
    finally:
        _local.stop = None


@functools.cache
def _built_tools() -> tuple[Tool, ...]:
    """The SDK's tools, built from the definitions once per process (pydantic takes about 4 ms a tool) and shared
    by every server, each of which gives them its own configuration when they are called."""
    return tuple(Tool.from_function(_function(name, d), name=name, title=d.title, annotations=d.annotations,
                                    description=inspect.cleandoc(d.fn.__doc__ or "").format(**_DESCRIBED.get(name, {})),
                                    meta=d.meta) for name, d in TOOLS.items())


# Facts a tool's description takes from the catalog ({cost}): tool name -> the values to fill in.
_DESCRIBED: dict[str, dict[str, str]] = {}


# Argument types. Descriptions only where the name and type do not say it; INSTRUCTIONS says what all share.
RATIO_PATTERN = r"^([1-9][0-9]{0,4}:[1-9][0-9]{0,4}|[a-z][a-z0-9_]{1,15})$"     # 1280:720, 16:9, auto, auto_720p, adaptive
ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
MediaArg = Annotated[str, Field(min_length=1, max_length=4 * DATA_URI_LIMIT)]
Prompt = Annotated[str, Field(min_length=1, max_length=32000)]
Ratio = Annotated[str | None, Field(description="W:H, e.g. 1280:720; default: landscape", pattern=RATIO_PATTERN)]
Seed = Annotated[int | None, Field(ge=0, le=4294967295)]
Duration = Annotated[int | Literal["auto"] | None, Field(description="seconds; default 5 where one is needed")]
TaskId = Annotated[str, Field(min_length=1, max_length=100)]
VoicePreset = Annotated[str, Field(description="a preset such as Maya, Noah or Eleanor (list_models(model="
                                               "'eleven_v3') lists them)", min_length=1, max_length=40)]


class ReferenceImage(TypedDict):
    uri: MediaArg
    tag: NotRequired[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{2,15}$")]]


def _reporter(ctx: Context | None) -> OnPoll:
    """Progress notifications for one call: status, Runway's progress, elapsed seconds; never decreasing."""
    highest = 0.0

    def report(poll: Poll, elapsed: float) -> None:
        nonlocal highest
        _checkpoint()                           # nothing more for a call the client cancelled
        highest = max(highest, _progress_of(poll.task) or 0.0)
        message = progress_message(poll, elapsed)
        if ctx is not None:
            import anyio.from_thread
            anyio.from_thread.run(ctx.report_progress, highest, 1.0, message)
    return report


def progress_message(poll: Poll, elapsed: float) -> str:
    """How far a task is, for people: status, Runway's progress, elapsed seconds."""
    progress = _progress_of(poll.task)
    message = poll.task.get("status", "PENDING") + (f" {round(progress * 100)}%" if progress is not None else "")
    return message + f" · {elapsed:.0f}s" + (" · last poll failed, retrying" if poll.error else "")


def batch_message(polls: list[Poll], elapsed: float) -> str:
    done = sum(poll.task.get("status") in TERMINAL for poll in polls)
    return f"{done} of {len(polls)} done · {elapsed:.0f}s"


def _batch_reporter(ctx: Context | None) -> Callable[[list[Poll], float], None]:
    """One progress stream for a batch: items finished of the total."""
    def report(polls: list[Poll], elapsed: float) -> None:
        _checkpoint()
        if ctx is not None:
            import anyio.from_thread
            done = sum(poll.task.get("status") in TERMINAL for poll in polls)
            anyio.from_thread.run(ctx.report_progress, done, len(polls), batch_message(polls, elapsed))
    return report


# The person's confirmation of a spend: a resolver asks before the tool runs, and the tool gets the answer.
class Confirm(BaseModel):
    """Nothing to fill in: accepting spends the credits, declining sends nothing."""


class Unasked(NamedTuple):
    """Why a confirmation resolver did not ask the person (the pipeline checks it still holds: see authorised)."""

    why: str


def consent_of(confirmation: Any) -> Consent:
    """The SDK's answer from a confirmation resolver, as the pipeline takes it."""
    data = getattr(confirmation, "data", None)
    if isinstance(confirmation, AcceptedElicitation) and isinstance(data, Confirm):
        return Consent(True)
    if isinstance(data, Unasked):
        return Consent(None, data.why)
    if confirmation is not None and not isinstance(confirmation, AcceptedElicitation):
        return Consent(False)                   # declined or cancelled
    return Consent(None)


def _ask(ctx: Context, question: str) -> Any:
    """A resolver's request for the person's yes, or why this client cannot be asked."""
    capabilities = ctx.client_capabilities
    if capabilities is None and ctx.mcp_server.config.stateless:   # no initialize, so no session to ask on
        return Unasked(NO_SESSION)
    if capabilities is None or capabilities.elicitation is None:
        return Unasked(CANNOT_ASK)
    return Elicit(question, Confirm)


def _confirmation_resolver(plans_of: Callable[[Account, dict], list[Plan]], names: list[str]) -> Callable:
    """A resolver (run by the SDK before the tool) that asks the person to confirm a spend above
    RUNWAY_MCP_CONFIRM_ABOVE: over a live request on initialize sessions, an input-required result on 2026-07-28
    ones. It asks nothing for a dry run, a request that reuses earlier tasks (an identical task the ledger says is
    running is asked about at Runway), one the checks or the budget will refuse anyway (the tool then says why), or
    one below the threshold. Otherwise it asks about every item that may be created, counting an identical task
    still running as one that may fail before the tool runs: the yes covers whatever the tool then creates."""
    def confirm_spend(ctx: Context, **arguments: Any) -> Any:
        account = caller_of(ctx.mcp_server.config)
        if account.config.confirm_above is None or arguments.get("dry_run"):
            return Unasked(NOT_NEEDED)
        try:
            plans = plans_of(account, dict(arguments))
            fresh = [p for p in plans if p.run.new or find_reusable_task(account, p.fingerprint) is None]
        except (RunwayError, ValidationError, TypeError):
            return Unasked(REFUSED)
        if not fresh:
            return Unasked(REUSED)
        if check_budget(account, total_of(fresh), len(fresh)):
            return Unasked(REFUSED)
        maybe = [p for p in plans if any(p is f for f in fresh) or (
            find_earlier_twin(account, p.fingerprint) or {}).get("status") != "SUCCEEDED"]
        total = total_of(maybe)
        if not needs_asking(account.config, total):
            return Unasked(NOT_NEEDED)
        cost = f"about {credits_text(total.credits)}" if total.credits is not None else "a cost Runway sets at creation"
        return _ask(ctx, f"{describe_spend(maybe)} for {cost}?")

    confirm_spend.__signature__ = inspect.Signature(
        [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
        + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in names])
    confirm_spend.__annotations__ = {"ctx": Context}
    return confirm_spend


class Generator:
    """A generation tool's own function and its argument names; `build` is the function validating its arguments."""

    def __init__(self, fn: Callable[..., TaskRequest], names: Mapping[str, str]):
        self.fn, self.names = fn, names

    @functools.cached_property
    def build(self) -> Callable[..., TaskRequest]:
        return validate_call(self.fn)           # on first use: pydantic takes about 1 ms a tool, at start-up

    def plan(self, account: Account, tool_name: str, arguments: dict) -> Plan:
        """The Plan of one call, from its arguments as the SDK passes them (the confirmation's view)."""
        run = run_of(arguments)
        return prepare(account, self.build(**arguments), run, tool_name, self.names)


GENERATORS: dict[str, Generator] = {}


def run_of(arguments: dict) -> Run:
    """The arguments every generation tool shares, taken out of a call's arguments (which keep the tool's own)."""
    return Run(**{name: arguments.pop(name) for name in Run._fields if name in arguments})


def generation(title: str, endpoint: str | None = None, names: Mapping[str, str] = {}, *, options: bool = True,
               toolset: str | None = None):
    """Define a generation tool: fn maps its own arguments to a TaskRequest; run_task does the rest.

    The tool takes fn's arguments and Run's (without `options` where fn's own arguments take every field). Its
    toolset and the {cost} in its description come from `endpoint` in the registry (ENDPOINTS); a tool of another
    family names its toolset. `names` maps body fields to fn's argument names where they differ from
    ARGUMENT_NAMES, for error messages. Before the call runs, a resolver may ask the person to confirm the spend
    (RUNWAY_MCP_CONFIRM_ABOVE); its answer arrives as `confirmation`.
    """
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=Run._field_defaults[name],
                                annotation=Run.__annotations__[name]) for name in Run._fields
              if options or name != "options"]
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Context)

    def register(fn):
        generator = GENERATORS[fn.__name__] = Generator(fn, names)
        own = inspect.signature(fn)
        resolver = _confirmation_resolver(lambda account, arguments: [generator.plan(account, fn.__name__, arguments)],
                                          [*own.parameters, *(p.name for p in shared)])
        confirmation = inspect.Parameter("confirmation", inspect.Parameter.KEYWORD_ONLY, default=None,
                                         annotation=Annotated[ElicitationResult[Confirm], Resolve(resolver)])

        def generate(account: Account, *, ctx: Context | None = None, confirmation: Any = None, **arguments):
            run = run_of(arguments)
            if in_background():
                run = run._replace(wait=False)
            result = run_task(account, fn(**arguments), run, tool_name=fn.__name__, names=names,
                              consent=consent_of(confirmation), on_poll=_reporter(ctx))
            return task_reply(account, result)
        generate.__name__, generate.__doc__ = fn.__name__, fn.__doc__
        account = inspect.Parameter("account", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Account)
        parameters = [account, *own.parameters.values(), *shared, confirmation, context]
        generate.__signature__ = own.replace(parameters=parameters, return_annotation=TaskReply)
        if endpoint is not None:
            _DESCRIBED[fn.__name__] = {"cost": cost_line(endpoint)}
        return tool(PAID, title, TASK_TOOL_META, toolset=toolset or ENDPOINTS[endpoint].toolset,
                    background=True)(generate)
    return register


def task_reply(account: Account, result: TaskResult) -> CallToolResult:
    """A task result as MCP content: one line for people, then a link (and small images inline) per output."""
    content = [TextContent(text=redact(summary(result), account)),
               *[c for o in result["outputs"] for c in _output_content(o)]]
    return CallToolResult(content=content, structured_content=redact(result, account),
                          is_error=result["status"] in ("FAILED", "CANCELLED", "DECLINED"))


def _output_content(output: Output) -> list:
    """A resource link per output; small images also inline, so the model can see what it made."""
    if output["path"] is None:
        return [ResourceLink(uri=output["url"], name=Path(urlsplit(output["url"]).path).name or "output",
                             description="Runway's link; expires in 24-48 h")]
    path = Path(output["path"])
    content: list = [ResourceLink(uri=output["uri"], name=path.name, mime_type=output["mime_type"],
                                  size=output["bytes"])]
    if output["mime_type"] in PREVIEWABLE and (output["bytes"] or 0) <= PREVIEW_MAX_BYTES:
        with contextlib.suppress(OSError):
            content.append(ImageContent(data=base64.b64encode(path.read_bytes()).decode(),
                                        mime_type=output["mime_type"]))
    return content


def listing(account: Account, lines: list[str], empty: str, structured: dict) -> CallToolResult:
    """A list tool's result: one text block, a line per item, and the same items as structured content."""
    return CallToolResult(content=[TextContent(text=redact("\n".join(lines) or empty, account))],
                          structured_content=redact(structured, account))


def _quoted(text: str | None, most: int = 60) -> str:
    return f'"{text[:most]}{"..." if len(text) > most else ""}"' if text else ""


class _ToolFailureNames(logging.Filter):
    """The SDK logs a failed tool call with the whole error text, which can hold a presigned link or a server path;
    the call's own line (runway_mcp.calls) says it failed. Keep the tool's name only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Tool %r failed: %r" and isinstance(record.args, tuple):
            record.msg, record.args = "Tool %r failed", record.args[:1]
        return True


@contextlib.asynccontextmanager
async def _lifespan(server: MCPServer):
    anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
    yield {}


def compact_tools(tools: list) -> list:
    """The tools as tools/list shows them: their schemas compacted."""
    return [tool.model_copy(update={
        "input_schema": compact_schema(tool.input_schema),
        "output_schema": tool.output_schema and compact_schema(tool.output_schema, output=True)}) for tool in tools]


_LISTED: dict[str, list] = {}           # the tools as listed, compacted once per process (they never change)


# What a server adds to itself as it is created (the viewer, in its own section), each given the new server; and
# the MCP extensions it serves (MCP tasks, in their own section), each made for its configuration or left out.
SERVER_PARTS: list[Callable[[MCPServer], None]] = []
PROTOCOL_EXTENSIONS: list[Callable[[Config], Extension | None]] = []


def _forget_prompts(server: MCPServer) -> None:
    """Capabilities are derived from the handlers registered, and MCPServer registers the prompt handlers whether
    or not there are prompts: an unknown prompt then answers JSON-RPC code 0 with a traceback. This server has
    none, so it does not claim them. The SDK has no public way to say so: this reaches into mcp 2.3's lowlevel
    server, and says clearly when a newer mcp has moved what it reaches for."""
    handlers = getattr(getattr(server, "_lowlevel_server", None), "_request_handlers", None)
    if not isinstance(handlers, dict) or "prompts/list" not in handlers:
        from importlib.metadata import version
        raise RuntimeError(f"mcp {version('mcp')} keeps its request handlers elsewhere than mcp 2.3 did, so this "
                           "server cannot leave prompts unadvertised: install mcp 2.3 (pip install 'mcp>=2.3,<2.4') "
                           "or a runway-mcp made for this mcp")
    for method in ("prompts/list", "prompts/get"):
        handlers.pop(method, None)


class _Server(MCPServer):
    """MCPServer with a configuration of its own, compact tool schemas, toolsets (RUNWAY_MCP_TOOLS), one-line
    argument errors, saved outputs as resources, and only the capabilities it serves."""

    def __init__(self, config: Config, **kwargs: Any):
        self.config = config
        self.exposed, self.warnings = exposed_tools(config.tools)
        # A confirmation in progress (2026-07-28) travels sealed in request_state: instances sharing the secret can
        # unseal each other's; without it each server seals with a key of its own.
        security = RequestStateSecurity(keys=[config.state_secret]) if config.state_secret else None
        extensions = [extension for make in PROTOCOL_EXTENSIONS if (extension := make(config)) is not None]
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        super().__init__("runway", version=__version__, instructions=instructions(config), lifespan=_lifespan,
                         tools=list(_built_tools()), request_state_security=security, extensions=extensions, **kwargs)
        root.handlers[:], root.level = handlers, level     # MCPServer configures logging; that is the program's to do
        _forget_prompts(self)

    def caller(self) -> Account:
        return caller_of(self.config)

    async def list_tools(self) -> list:
        listed = _LISTED.get("tools") or _LISTED.setdefault("tools", compact_tools(await super().list_tools()))
        return [tool for tool in listed if self.exposed is None or tool.name in self.exposed]

    async def list_resources(self) -> list:
        outputs = await anyio.to_thread.run_sync(list_saved_outputs, self.caller())
        return await super().list_resources() + [
            Resource(uri=output_uri(path.name), name=path.name, mime_type=mime_of(path.name),
                     size=info.st_size) for path, info in outputs[:RESOURCE_LIST_MAX]]

    async def list_resource_templates(self) -> list:
        return await super().list_resource_templates() + [ResourceTemplate(
            uri_template=OUTPUT_URI + "{name}", name="output",
            description="A saved output by the name list_outputs shows; its bytes, with its media type")]

    async def read_resource(self, uri: Any, context: Context | None = None):
        uri = str(uri)
        if (name := named_output(uri)) is not None:
            account = self.caller()
            try:
                content, mime = await anyio.to_thread.run_sync(read_output, account, name)
            except RunwayError as error:
                code = RESOURCE_NOT_FOUND if error.status == 404 else INVALID_PARAMS
                raise MCPError(code, redact(str(error), account), {"uri": uri}) from None
            return [ReadResourceContents(content=content, mime_type=mime)]
        if uri != VIEWER_URI:
            raise MCPError(RESOURCE_NOT_FOUND, f"No resource {uri}: resources/list shows what this server has",
                           {"uri": uri})
        return await super().read_resource(uri, context)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None):
        if self.exposed is not None and name not in self.exposed:
            raise ToolError(f"Unknown tool: {name} (RUNWAY_MCP_TOOLS does not expose it on this server)")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            if isinstance(error.__cause__, ValidationError):
                raise ToolError(f"Error executing tool {name}: {_invalid_arguments(error.__cause__)}; see the "
                                "tool's input schema") from error.__cause__
            raise

    def streamable_http_app(self, *args: Any, **kwargs: Any) -> Any:
        if self.config.transport != "http":             # local files would be read for remote clients
            raise RuntimeError("serve this server over HTTP with runway_mcp.http_app(config), which adds its "
                               "credentials, limits and rules for local files")
        return super().streamable_http_app(*args, **kwargs)


def create_server(config: Config) -> MCPServer:
    """A ready MCP server with this configuration, independent of any other: serve it over stdio with .run(),
    call it in this process with mcp.Client(server), or serve it over HTTP with http_app(config)."""
    return _new_server(config)


def _new_server(config: Config, **options: Any) -> MCPServer:
    """create_server, with options for MCPServer (the HTTP transport's sign-in: see http_app)."""
    config = dataclasses.replace(config, output_dir=Path(config.output_dir).expanduser().resolve())
    server = _Server(config, **options)
    for warning in server.warnings:
        log.warning("%s", warning)
    for add in SERVER_PARTS:
        add(server)
    failures = logging.getLogger("mcp.server.mcpserver.server")
    if not any(isinstance(f, _ToolFailureNames) for f in failures.filters):
        failures.addFilter(_ToolFailureNames())
    return server


def call_tool(config: Config, name: str, arguments: Mapping[str, Any] | None = None, *,
              on_progress: Callable[[float, float | None, str | None], None] | None = None,
              confirm: Callable[[str], bool] | None = None) -> CallToolResult:
    """Call one tool in this process, through exactly the path an MCP call takes: validation, dry run, budget,
    duplicate guard, the person's confirmation (`confirm(question)`; without it, a spend above
    RUNWAY_MCP_CONFIRM_ABOVE is refused), ledger, saving. Blocking (from async code, call it in a thread);
    progress goes to `on_progress`."""
    try:
        anyio.get_current_task()
    except RuntimeError:                        # no event loop runs in this thread: as it should be
        return anyio.run(_call_in_process, config, name, arguments, on_progress, confirm)
    raise RuntimeError("call_tool blocks until the tool is done: from async code, run it in a thread (await "
                       "asyncio.to_thread(runway_mcp.call_tool, config, ...))")


async def _call_in_process(config: Config, name: str, arguments: Mapping[str, Any] | None,
                           on_progress: Callable[[float, float | None, str | None], None] | None,
                           confirm: Callable[[str], bool] | None) -> CallToolResult:
    from mcp.types import ElicitResult

    async def progress(value: float, total: float | None, message: str | None) -> None:
        on_progress(value, total, message)

    async def elicit(context: Any, params: Any) -> ElicitResult:
        accepted = await anyio.to_thread.run_sync(confirm, params.message, abandon_on_cancel=True)
        return ElicitResult(action="accept", content={}) if accepted else ElicitResult(action="decline")

    async with Client(create_server(config), mode="legacy", elicitation_callback=elicit if confirm else None) as client:
        return await client.call_tool(name, dict(arguments or {}), progress_callback=progress if on_progress else None)


##############################################################################
# Tools: generation
##############################################################################
#
# In design.md's order: the generation tools (each maps its arguments to a TaskRequest), the other families
# (recipes, avatars, the router, workflows, voices), and batches. Each tool is a function of the caller's
# Account and its own arguments.

def _reference(ref: ReferenceImage | str, argument: str) -> dict:
    if isinstance(ref, str):
        return {"uri": Media(ref, ("image",), argument)}
    return {"uri": Media(ref["uri"], ("image",), f"{argument}.uri"), **({"tag": ref["tag"]} if "tag" in ref else {})}


def _images(uris: list[str] | None, argument: str) -> list[dict] | None:
    """[{uri}] items for a list of reference images, or None when there are none."""
    return [{"uri": Media(u, ("image",), f"{argument}[{i}]")} for i, u in enumerate(uris or [])] or None


def _typed(value: str, kinds: tuple[str, ...], argument: str, kind: str | None) -> dict:
    """{type, uri} for an argument that takes one of several media kinds, e.g. a character image or video; the
    type, unless given, is judged once the argument has been checked."""
    media = Media(value, (kind,) if kind else kinds, argument)
    return {"type": kind or KindOf(media), "uri": media}


def _named(value: str, presets: tuple[str, ...]) -> str | None:
    """The preset a value names, matched without regard to case or surrounding spaces."""
    return next((p for p in presets if p.lower() == value.strip().lower()), None)


def _preset(voice: str, argument: str = "voice") -> dict:
    """A Runway voice preset, matched without regard to case."""
    name = _named(voice, VOICES)
    if name is None:
        raise RunwayError(f"{argument}={voice!r} is not a Runway voice preset; choose one of: {', '.join(VOICES)}")
    return {"type": "runway-preset", "presetId": name}


def _video_field(model: str) -> str:
    """video_to_video names its input videoUri or promptVideo, depending on the model."""
    known = MODELS.get(model)
    return "promptVideo" if known and "promptVideo" in _fields(known.uses.get(V2V, Use()).needs) else "videoUri"


Kind = Literal["image", "video"]
MediaKind = Literal["audio", "video"]


@generation("Generate image", T2I)
def generate_image(
    prompt: Prompt,
    model: ModelName = ENDPOINTS[T2I].default,
    ratio: Annotated[str | None, Field(description="W:H, e.g. 1920:1080; default: landscape",
                                       pattern=RATIO_PATTERN)] = None,
    reference_images: Annotated[list[ReferenceImage | MediaArg] | None, Field(
        description="images as {uri, tag?} or URIs; name a tag in the prompt as @tag", max_length=16)] = None,
    seed: Seed = None,
) -> TaskRequest:
    """Generate an image from a prompt, optionally guided by reference images.

    {cost}
    """
    refs = [_reference(r, f"reference_images[{i}]") for i, r in enumerate(reference_images or [])]
    return TaskRequest(T2I, {"model": model, "promptText": prompt, "ratio": ratio, "referenceImages": refs or None,
                             "seed": seed})


@generation("Generate video", T2V)
def generate_video(
    prompt: Prompt | None = None,
    model: ModelName = ENDPOINTS[T2V].default,
    image: Annotated[MediaArg | None, Field(description="first frame")] = None,
    last_image: Annotated[MediaArg | None, Field(description="last frame (with image)")] = None,
    ratio: Ratio = None,
    duration: Duration = None,
    seed: Seed = None,
) -> TaskRequest:
    """Generate a video from a prompt, or from a first frame (image) and an optional last frame.

    {cost} Takes minutes: expect a RUNNING handle.
    """
    if last_image and not image:
        raise RunwayError(f"last_image needs image (the first frame) too: {model} has no last-frame-only mode")
    frames: Any = Media(image, ("image",), "image") if image else None
    if last_image:
        known = MODELS.get(model)
        if known and not known.last_frame:
            raise RunwayError(f"{model} takes only a first frame; drop last_image or use a model with keyframes: "
                              f"{', '.join(n for n in models_for(I2V) if MODELS[n].last_frame)}")
        frames = [{"uri": frames, "position": "first"},
                  {"uri": Media(last_image, ("image",), "last_image"), "position": "last"}]
    body = {"model": model, "promptText": prompt, "promptImage": frames, "ratio": ratio, "duration": duration,
            "seed": seed}
    return TaskRequest(I2V if image else T2V, body)


@generation("Edit video", V2V)
def edit_video(
    video: MediaArg,
    prompt: Prompt | None = None,
    model: ModelName = ENDPOINTS[V2V].default,
    references: Annotated[list[MediaArg] | None, Field(description="reference images", max_length=30)] = None,
    mode: Annotated[Literal["reference", "extend", "edit"] | None, Field(
        description="seedance2_5, gemini_omni_flash_1.1: extend continues the clip, edit changes it in place")] = None,
    ratio: Ratio = None,
    duration: Duration = None,
    seed: Seed = None,
) -> TaskRequest:
    """Edit, restyle, relight or extend a video with a prompt.

    {cost} aleph2 edits up to 30 s (keyframe images in options.keyframes); to extend a clip use
    seedance2_5 or gemini_omni_flash_1.1 with mode='extend'.
    """
    body = {"model": model, _video_field(model): Media(video, ("video",), "video"), "promptText": prompt,
            "references": _images(references, "references"), "mode": mode, "ratio": ratio, "duration": duration,
            "seed": seed}
    return TaskRequest(V2V, body)


@generation("Upscale video", VIDEO_UP, names={"targetFramerate": "frame_rate"})
def upscale_video(
    video: MediaArg,
    model: ModelName = ENDPOINTS[VIDEO_UP].default,
    resolution: Annotated[Literal[choices_of(VIDEO_UP, "resolution")] | None,  # type: ignore[valid-type]
                          Field(description="default 2k")] = None,
    frame_rate: Annotated[Literal[FRAME_RATES] | None, Field(  # type: ignore[valid-type]
        description="interpolate to this many fps instead (23_98 is 23.976)")] = None,
) -> TaskRequest:
    """Upscale a video (at most 30 s) to up to 4K with added detail, or raise its frame rate.

    {cost}
    """
    if frame_rate and model == ENDPOINTS[VIDEO_UP].default:
        model = "enhance_frame_rate"           # a frame rate only makes sense for the interpolation model
    body = {"model": model, "videoUri": Media(video, ("video",), "video"), "resolution": resolution,
            "targetFramerate": frame_rate}
    return TaskRequest(VIDEO_UP, body)


@generation("Upscale image", IMAGE_UP, names={"scaleFactor": "scale_factor"})
def upscale_image(
    image: MediaArg,
    scale_factor: Annotated[Literal[choices_of(IMAGE_UP, "scaleFactor")] | None,  # type: ignore[valid-type]
                            Field(description="default 2; at most 25.3 MP out")] = None,
    flavor: Annotated[Literal[choices_of(IMAGE_UP, "flavor")] | None, Field(  # type: ignore[valid-type]
        description="sublime for illustration")] = None,
    model: ModelName = ENDPOINTS[IMAGE_UP].default,
) -> TaskRequest:
    """Upscale an image (300-8000 px a side) 2-16x with added detail.

    {cost}
    """
    body = {"model": model, "imageUri": Media(image, ("image",), "image"), "scaleFactor": scale_factor,
            "flavor": flavor}
    return TaskRequest(IMAGE_UP, body)


@generation("Generate speech", TTS, names={"promptText": "text", "languageCode": "language"})
def generate_speech(
    text: Annotated[str, Field(min_length=1, max_length=5000)],
    voice: Annotated[VoicePreset | None, Field(description="default Maya; a preset such as Noah or Eleanor "
                                                     "(list_models(model='eleven_v3') lists them)")] = None,
    model: ModelName = ENDPOINTS[TTS].default,
    voice_sample: Annotated[MediaArg | None, Field(description="seed_audio: a clip of a voice to clone")] = None,
    language: Annotated[str | None, Field(description="ISO 639-1, e.g. de",
                                          pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")] = None,
) -> TaskRequest:
    """Speak text in a voice preset, or in a cloned voice (seed_audio with voice_sample).

    {cost} eleven_v3 takes tags such as [laughs].
    """
    if voice_sample and voice:
        raise RunwayError("pass voice (a preset) or voice_sample (a clip to clone), not both")
    if voice and model == "seed_audio":
        raise RunwayError("seed_audio does not take a preset voice; pass voice_sample (a clip to clone) or neither")
    if voice_sample:
        spoken = {"type": "reference-audio", "audioUri": Media(voice_sample, ("audio",), "voice_sample")}
    else:       # seed_audio speaks in its own default voice; the ElevenLabs models need a preset
        spoken = None if model == "seed_audio" else _preset(voice or "Maya")
    return TaskRequest(TTS, {"model": model, "promptText": text, "voice": spoken, "languageCode": language})


@generation("Generate sound effect", SFX)
def generate_sound_effect(
    prompt: Annotated[str, Field(min_length=1, max_length=3000)],
    duration: Annotated[float | None, Field(description="seconds; default: chosen by the model")] = None,
    loop: bool | None = None,
    model: ModelName = ENDPOINTS[SFX].default,
) -> TaskRequest:
    """Make a sound effect from a description: foley, ambience, UI sounds (for speech use generate_speech).

    {cost}
    """
    return TaskRequest(SFX, {"model": model, "promptText": prompt, "duration": duration, "loop": loop})


@generation("Animate character", ACT, names={"bodyControl": "body_control",
                                           "expressionIntensity": "expression_intensity"})
def animate_character(
    character: Annotated[MediaArg, Field(description="image or video with a visible face")],
    reference: Annotated[MediaArg, Field(description="3-30 s video of the performance to copy")],
    character_kind: Annotated[Kind | None, Field(description="default: judged from the file")] = None,
    ratio: Ratio = None,
    body_control: bool | None = None,
    expression_intensity: Annotated[int | None, Field(ge=1, le=5)] = None,
    seed: Seed = None,
    model: ModelName = ENDPOINTS[ACT].default,
) -> TaskRequest:
    """Make a character (image or video) perform what an actor does in a reference video (Act-Two).

    {cost}
    """
    body = {"model": model, "character": _typed(character, ("image", "video"), "character", character_kind),
            "reference": {"type": "video", "uri": Media(reference, ("video",), "reference")}, "ratio": ratio,
            "bodyControl": body_control, "expressionIntensity": expression_intensity, "seed": seed}
    return TaskRequest(ACT, body)


@generation("Change voice", STS, names={"removeBackgroundNoise": "remove_background_noise"})
def change_voice(
    media: Annotated[MediaArg, Field(description="audio or video with speech")],
    voice: VoicePreset,
    media_kind: Annotated[MediaKind | None, Field(description="default: judged from the file")] = None,
    remove_background_noise: bool | None = None,
    model: ModelName = ENDPOINTS[STS].default,
) -> TaskRequest:
    """Say the same words in another voice.

    {cost}
    """
    body = {"model": model, "media": _typed(media, ("audio", "video"), "media", media_kind),
            "voice": _preset(voice), "removeBackgroundNoise": remove_background_noise}
    return TaskRequest(STS, body)


@generation("Dub audio", DUB, names={"targetLang": "target_language", "numSpeakers": "num_speakers"})
def dub_audio(
    audio: Annotated[MediaArg, Field(description="audio or video with speech")],
    target_language: Literal[DUBBING_LANGUAGES],  # type: ignore[valid-type]
    num_speakers: Annotated[int | None, Field(description="default: detected", ge=1, le=32)] = None,
    model: ModelName = ENDPOINTS[DUB].default,
) -> TaskRequest:
    """Translate the speech in a recording into another language, keeping the speakers' voices.

    {cost}
    """
    body = {"model": model, "audioUri": Media(audio, ("audio", "video"), "audio"), "targetLang": target_language,
            "numSpeakers": num_speakers}
    return TaskRequest(DUB, body)


@generation("Isolate voice", ISOLATE)
def isolate_voice(
    audio: Annotated[MediaArg, Field(description="4.6 s to 1 h of speech with noise")],
    model: ModelName = ENDPOINTS[ISOLATE].default,
) -> TaskRequest:
    """Remove background noise and music from speech.

    {cost}
    """
    return TaskRequest(ISOLATE, {"model": model, "audioUri": Media(audio, ("audio",), "audio")})


@generation("Generate sound for video", V2A)
def generate_sound_for_video(
    video: MediaArg,
    duration: Annotated[float, Field(description="seconds, usually the video's length", gt=0, le=600)],
    prompt: Annotated[str | None, Field(min_length=1, max_length=3000)] = None,
    model: ModelName = ENDPOINTS[V2A].default,
) -> TaskRequest:
    """Make sound effects synchronised to a video; returns the audio only.

    {cost}
    """
    body = {"model": model, "videoUri": Media(video, ("video",), "video"), "duration": duration,
            "promptText": prompt}
    return TaskRequest(V2A, body)


@generation("Convert video to HDR", HDR, names={"outputFormat": "output_format"})
def convert_to_hdr(
    video: MediaArg,
    output_format: Annotated[Literal[choices_of(HDR, "outputFormat")] | None,  # type: ignore[valid-type]
                             Field(description="default hdr10")] = None,
    model: ModelName = ENDPOINTS[HDR].default,
) -> TaskRequest:
    """Convert an SDR video to HDR at the same resolution (Ruby).

    {cost}
    """
    body = {"model": model, "videoUri": Media(video, ("video",), "video"), "outputFormat": output_format}
    return TaskRequest(HDR, body)


# Beyond models: recipes, avatar videos, the model router, published workflows. Their arguments are checked by
# conform() against the shape rules in the catalog, so that errors name inputs.<field> as Runway names it.
RUNWAY_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"          # safe in a URL path: ids, slugs


@generation("Run recipe", options=False, toolset="recipes")
def run_recipe(
    recipe: Literal[tuple(RECIPES)],
    inputs: Annotated[dict[str, Any], Field(description="the recipe's fields by Runway's names (list_models(model="
                                                         "RECIPE)); media fields take any media argument")],
    version: Annotated[str | None, Field(description="default: the newest dated one", max_length=20)] = None,
) -> TaskRequest:
    """Run a Runway recipe: a ready-made production such as a product ad or a multi-shot video.

    Costs credits; Runway estimates each run at creation.
    """
    spec = RECIPES[recipe]
    if version is not None and version not in (*spec.versions, UNSAFE_LATEST):
        raise RunwayError(f"version={version!r} is not a version of {recipe}; versions: {', '.join(spec.versions)}, "
                          f"or {UNSAFE_LATEST} (Runway's newest, which may change without notice)")
    if "version" in inputs:
        raise RunwayError("inputs.version: pass it as the version argument")
    body = conform(inputs, spec.inputs, "inputs")
    if spec.check and (problem := spec.check(body)):
        raise RunwayError(problem)
    return TaskRequest(f"recipes/{recipe}", {**body, "version": version or spec.versions[-1]})


def _preset_or_id(value: str, presets: tuple[str, ...], argument: str) -> str | None:
    """The preset a value names (in any case), or None for an id of the person's own. A near miss of a preset is
    refused: sent as an id, it would only fail at Runway."""
    value = value.strip()
    if preset := _named(value, presets):
        return preset
    if close := difflib.get_close_matches(value.lower(), presets, n=1, cutoff=0.75):
        raise RunwayError(f"{argument}={value!r} is not a preset; did you mean {close[0]!r}? Presets: "
                          f"{', '.join(presets)}")
    return None


@generation("Generate avatar video", options=False, toolset="avatars")
def generate_avatar_video(
    avatar: Annotated[str, Field(description="a preset (list_models(model='gwm1_avatars')) or your avatar's id",
                                 min_length=1, max_length=100)],
    text: Annotated[str | None, Field(description="a script to speak", min_length=1, max_length=32000)] = None,
    audio: Annotated[MediaArg | None, Field(description="speech to lip-sync, instead of text")] = None,
    voice: Annotated[str | None, Field(description="with text: a preset or your voice's id (list_voices); "
                                                   "default: the avatar's", max_length=100)] = None,
) -> TaskRequest:
    """Make a video of an avatar speaking a script or an audio track.

    Costs credits; Runway prices it at creation.
    """
    if (text is None) == (audio is None):
        raise RunwayError("pass text (a script for the avatar to speak) or audio (speech to lip-sync): one of them")
    if voice is not None and text is None:
        raise RunwayError("voice goes with text; with audio, the recording's own voice speaks")
    preset = _preset_or_id(avatar, AVATAR_PRESETS, "avatar")
    body_avatar = {"type": "runway-preset", "presetId": preset} if preset else {"type": "custom",
                                                                                "avatarId": avatar.strip()}
    if text is not None:
        speech: dict = {"type": "text", "text": text}
        if voice is not None:
            named = _preset_or_id(voice, LIVE_VOICES, "voice")
            speech["voice"] = ({"type": "preset", "presetId": named} if named else
                               {"type": "custom", "id": CustomVoice(voice.strip())})
    else:
        speech = {"type": "audio", "audio": Media(audio, ("audio",), "audio")}
    return TaskRequest("avatar_videos", {"model": AVATAR_MODEL, "avatar": body_avatar, "speech": speech})


@generation("Generate with router", options=False, toolset="router")
def generate_with_router(
    config_id: Annotated[str, Field(description="the slug of a saved router config", pattern=RUNWAY_ID)],
    kind: Literal[tuple(ROUTER_INPUTS)],  # type: ignore[valid-type]
    input: Annotated[dict[str, Any], Field(description="Runway's fields for the kind (list_models(model="
                                                        "'router:KIND'))")],
) -> TaskRequest:
    """Generate through a saved model-router config: Runway picks the model by cost, latency or quality.

    Costs what the chosen model costs; Runway estimates it at creation.
    """
    return TaskRequest(f"generate/{kind}", {"configId": config_id, "input": conform(input, ROUTER_INPUTS[kind],
                                                                                    "input")})


@generation("Run workflow", options=False, toolset="workflows")
def run_workflow(
    workflow_id: Annotated[str, Field(description="a version id from list_workflows", pattern=RUNWAY_ID)],
    inputs: Annotated[dict[str, dict[str, Any]] | None, Field(
        description="node id -> output key -> a text, number or true/false, or {type: image|video|audio, uri}",
        max_length=100)] = None,
) -> TaskRequest:
    """Run a workflow published in the Runway web app, overriding node outputs with inputs.

    Costs what its steps cost, charged as they run. Its outputs come node by node.
    """
    overrides = {node: {key: conform(value if isinstance(value, dict) else {"type": "primitive", "value": value},
                                     WORKFLOW_VALUE, f"inputs.{node}.{key}") for key, value in outputs.items()}
                 for node, outputs in (inputs or {}).items()}
    return TaskRequest(f"{WORKFLOW_RUN}{workflow_id}", {"nodeOutputs": overrides} if overrides else {})


class WorkflowVersion(TypedDict):
    id: str
    version: int | None
    created_at: str | None


class Workflow(TypedDict):
    name: str
    versions: list[WorkflowVersion]


class WorkflowList(TypedDict):
    workflows: list[Workflow]
    nodes: NotRequired[list[dict[str, Any]]]       # with workflow_id: that version's graph nodes


WORKFLOW_NODES_SHOWN = 40


@tool(READ_ONLY, "List workflows", toolset="workflows")
def list_workflows(account: Account, workflow_id: Annotated[str | None, Field(pattern=RUNWAY_ID)] = None
                   ) -> Annotated[CallToolResult, WorkflowList]:
    """Workflows published in the Runway web app, with their version ids, newest first.

    workflow_id=ID shows that version's nodes, whose outputs run_workflow's inputs override. Free.
    """
    if workflow_id is None:
        workflows = [Workflow(name=str(w.get("name")), versions=[
            WorkflowVersion(id=v.get("id"), version=v.get("version"), created_at=v.get("createdAt"))
            for v in w.get("versions") or []]) for w in api(account, "GET", "/v1/workflows").get("data") or []]
        lines = [f"{w['name']}: " + ", ".join(f"v{v['version']} {v['id']}" for v in w["versions"]) for w in workflows]
        return listing(account, lines, "No published workflows: publish one in the Runway web app.",
                        WorkflowList(workflows=workflows))
    found = api(account, "GET", f"/v1/workflows/{workflow_id}")
    nodes = [n for n in (found.get("graph") or {}).get("nodes") or [] if isinstance(n, dict)]
    title = f"{found.get('name')} v{found.get('version')} ({workflow_id})"
    lines = [f"{title}: {found['description']}" if found.get("description") else title,
             f"{len(nodes)} nodes; run_workflow(inputs={{node id: {{output key: value}}}}) overrides their outputs:"]
    shown = lambda node: json.dumps({k: v for k, v in node.items() if k != "id"}, ensure_ascii=False)
    lines += [f"{node.get('id')}: {_shorten(shown(node), 240)}" for node in nodes[:WORKFLOW_NODES_SHOWN]]
    if len(nodes) > WORKFLOW_NODES_SHOWN:
        lines.append(f"... and {len(nodes) - WORKFLOW_NODES_SHOWN} more nodes")
    version = WorkflowVersion(id=workflow_id, version=found.get("version"), created_at=found.get("createdAt"))
    return listing(account, lines, "", WorkflowList(workflows=[Workflow(name=str(found.get("name")),
                                                                         versions=[version])],
                                                    nodes=nodes[:WORKFLOW_NODES_SHOWN]))


# Custom voices: not tasks, but voices of the person's own for avatar videos (runway-api.md 4.3).
VOICE_PAGES = 5                     # of 100: list_voices shows up to 500


class Voice(TypedDict):
    id: str
    name: str | None
    status: str | None
    description: str | None
    created_at: str | None
    preview_url: str | None
    failure: str | None


class VoiceList(TypedDict):
    voices: list[Voice]


class CreatedVoice(Voice):
    notes: list[str]


def _voice(raw: dict) -> Voice:
    return Voice(id=str(raw.get("id")), name=raw.get("name"), status=raw.get("status"),
                 description=raw.get("description"), created_at=raw.get("createdAt"),
                 preview_url=raw.get("previewUrl"), failure=raw.get("failureReason"))


def _voice_line(voice: Voice) -> str:
    parts = [voice["id"], voice["status"] or "?", _quoted(voice["name"]), _quoted(voice["description"]),
             voice["failure"] or "", voice["preview_url"] or ""]
    return " ".join(p for p in parts if p)


def all_voices(account: Account) -> list[Voice]:
    """The account's custom voices (see own), up to VOICE_PAGES pages of Runway's list."""
    voices, cursor = [], None
    for _ in range(VOICE_PAGES):
        page = api(account, "GET", "/v1/voices?limit=100" + (f"&cursor={quote(cursor)}" if cursor else ""))
        voices += [_voice(v) for v in page.get("data") or [] if isinstance(v, dict)]
        cursor = page.get("nextCursor")
        if not page.get("hasMore") or not isinstance(cursor, str):
            break
    owned = own(account, "voice")
    return voices if owned is None else [v for v in voices if v["id"] in owned]


@tool(READ_ONLY, "List voices", toolset="voices")
def list_voices(account: Account) -> Annotated[CallToolResult, VoiceList]:
    """Your custom voices, for generate_avatar_video's voice: id, status, name, preview link. Free."""
    voices = all_voices(account)
    return listing(account, [_voice_line(v) for v in voices], "No custom voices yet: create_voice makes one.",
                    VoiceList(voices=voices))


def _confirm_voice(ctx: Context, name: str, description: str | None = None, prompt: str | None = None,
                   audio: str | None = None) -> Any:
    """With RUNWAY_MCP_CONFIRM_ABOVE set, ask before creating a voice: Runway states no price for one, and a spend
    not known to fall below the threshold is asked about. Not asked when the tool refuses the call anyway (under a
    budget, or without one of prompt and audio) or returns an identical voice instead."""
    account = caller_of(ctx.mcp_server.config)
    if account.config.confirm_above is None:
        return Unasked(NOT_NEEDED)
    if account.config.budget_credits is not None or (prompt is None) == (audio is None):
        return Unasked(REFUSED)
    with contextlib.suppress(RunwayError):      # a failed lookup asks: only a voice known to exist goes unasked
        if _recent_voice(account, name, description):
            return Unasked(REUSED)
    return _ask(ctx, f"Create the voice {name!r}, at a cost Runway does not state?")


@tool(PAID, "Create voice", toolset="voices")
def create_voice(
    account: Account,
    name: Annotated[str, Field(min_length=1, max_length=100)],
    description: Annotated[str | None, Field(max_length=1024)] = None,
    prompt: Annotated[str | None, Field(description="what it sounds like, to design a voice", min_length=20,
                                        max_length=32000)] = None,
    audio: Annotated[MediaArg | None, Field(description="a clean sample to clone, instead of prompt")] = None,
    confirmation: Annotated[ElicitationResult[Confirm], Resolve(_confirm_voice)] = None,
) -> Annotated[CallToolResult, CreatedVoice]:
    """Create a voice for avatar videos, designed from a description or cloned from a sample.

    Waits until it is ready. Runway states no price for it.
    """
    if (prompt is None) == (audio is None):
        raise RunwayError("pass prompt (a description of the voice, to design one) or audio (a sample to clone): one "
                          "of them")
    if (budget := account.config.budget_credits) is not None:
        raise RunwayError(f"RUNWAY_MCP_BUDGET_CREDITS={budget:g} is set and Runway states no price for creating a "
                          "voice, so it cannot be counted; nothing was sent: unset the budget to create one")
    notes: list[str] = []
    media = Media(audio, ("audio",), "audio") if audio is not None else None
    local = check_media(account, media) if media else None             # a bad file is refused before anything else
    same = json.dumps(["voice", account.id, name, description])
    with _SAME_REQUEST.hold([same]):                                   # an identical call waits, then reuses this one
        if twin := _recent_voice(account, name, description):
            notes.append(f"a voice named {name!r} with this description was created {twin[1]:.0f} s ago: returned "
                         "it instead of making a second (give another name for a new one)")
            created = twin[0]
        else:
            if not authorised(account.config, consent_of(confirmation), Estimate(None, "no price for a voice")):
                raise RunwayError(DECLINED)
            source = ({"type": "audio", "audio": media_uri(account, media, local, notes)} if media else
                      {"type": "text", "model": VOICE_DESIGN_MODEL, "prompt": prompt})
            body = {"name": name, "from": source, **({"description": description} if description is not None else {})}
            created = {"status": "PROCESSING", **api(account, "POST", "/v1/voices", body=body, creating=True)}
            log.info("created voice %s", created.get("id"))
            try:
                note_made(account, "voice", str(created["id"]))
            except OSError as error:
                notes.append(f"could not note the voice as yours ({error.strerror}): list_voices may not show it")
    return _voice_reply(account, _await_voice(account, created), notes)


def _recent_voice(account: Account, name: str, description: str | None) -> tuple[dict, float] | None:
    """A voice with this name and description made within RUNWAY_MCP_DEDUPE_S (Runway's list is the record, so
    it holds across restarts and instances), and its age; one that failed blocks nothing."""
    if account.config.dedupe_s <= 0:
        return None
    for voice in all_voices(account):
        try:
            age = time.time() - datetime.fromisoformat(str(voice["created_at"]).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        if (voice["name"], voice["description"]) == (name, description) and voice["status"] != "FAILED" and (
                age <= account.config.dedupe_s):
            return {"id": voice["id"], "status": voice["status"]}, age
    return None


def _await_voice(account: Account, voice: dict) -> dict:
    """The voice once it is READY or FAILED, or as it is when the wait bound comes."""
    config = account.config
    deadline = time.monotonic() + config.max_wait
    while voice.get("status") == "PROCESSING" and time.monotonic() + config.poll_interval <= deadline:
        pause(config.poll_interval)
        voice = api(account, "GET", f"/v1/voices/{voice['id']}")
    return voice


def _voice_reply(account: Account, raw: dict, notes: list[str]) -> CallToolResult:
    voice = _voice(raw)
    text = f"{voice['status']}: voice {voice['id']} {_quoted(voice['name'])}".rstrip()
    if voice["status"] == "READY":
        text += f" · use it as generate_avatar_video(voice={voice['id']!r})"
    elif voice["status"] == "PROCESSING":
        text += " · still processing: list_voices shows when it is READY"
    text += "".join(f" · {part}" for part in (voice["failure"], voice["preview_url"], *notes) if part)
    return CallToolResult(content=[TextContent(text=redact(text, account))], structured_content=redact(
        CreatedVoice(**voice, notes=notes), account), is_error=voice["status"] == "FAILED")


BATCH_MAX = 20           # items per batch: enough for a storyboard, few enough to confirm, wait on and read at once


class BatchItem(TypedDict):
    tool: Annotated[str, Field(max_length=64)]
    arguments: dict[str, Any]


class BatchResult(TypedDict):
    items: list[TaskResult]
    estimated_credits: float | None
    notes: list[str]


def _batch_plans(account: Account, requests: list[BatchItem], exposed: frozenset[str] | None) -> list[Plan]:
    """Every item checked as its tool would check it, before anything is sent; the first bad one refuses all."""
    plans = []
    usable = [name for name in GENERATORS if exposed is None or name in exposed]
    for i, item in enumerate(requests):
        where, tool_name = f"requests[{i}]", item["tool"]
        if tool_name not in usable:
            raise RunwayError(f"{where}.tool={tool_name!r} is not a generation tool here; use one of: "
                              f"{', '.join(usable)}")
        arguments = dict(item["arguments"])
        if batch_only := sorted({"dry_run", "wait", "max_wait_s"} & arguments.keys()):
            raise RunwayError(f"{where}.arguments.{batch_only[0]}: set it on the batch, not on an item")
        try:
            plans.append(GENERATORS[tool_name].plan(account, tool_name, {**arguments, "dry_run": False}))
        except ValidationError as error:
            raise RunwayError(f"{where}.arguments.{_invalid_arguments(error)}") from None
        except RunwayError as error:
            raise RunwayError(f"{where} ({tool_name}): {error}") from None
    return plans


def _batch_resolver(ctx: Context, **arguments: Any) -> Any:
    exposed = ctx.mcp_server.exposed
    return _confirmation_resolver(lambda account, given: _batch_plans(account, given["requests"], exposed),
                                  ["requests", "dry_run"])(ctx, **arguments)


_batch_resolver.__signature__ = inspect.Signature(        # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context),
     *[inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in ("requests", "dry_run")]])


@tool(PAID, "Generate batch", TASK_TOOL_META, toolset="batch", background=True)
def generate_batch(
    account: Account,
    requests: Annotated[list[BatchItem], Field(description="each {tool, arguments}: a generation tool's call",
                                               min_length=1, max_length=BATCH_MAX)],
    dry_run: bool = False,
    wait: bool = True,
    max_wait_s: MaxWait = None,
    confirmation: Annotated[ElicitationResult[Confirm], Resolve(_batch_resolver)] = None,
    ctx: Context = None,
) -> Annotated[CallToolResult, BatchResult]:
    """Run up to 20 generation calls as one: all checked and estimated first, confirmed and budgeted as one.

    Costs the sum of the items. Waits for them together; still-running items come back as handles.
    """
    plans = _batch_plans(account, requests, ctx.mcp_server.exposed if ctx else None)   # one bad item: nothing sent
    total = total_of(plans)
    if dry_run:
        items = [dry_run_result(account, plan) for plan in plans]
        return _batch_reply(account, items, total,
                            ["Nothing was sent: a dry run. Call again without dry_run to create them."])
    started, wait = time.monotonic(), wait and not in_background()
    made = create_tasks(account, plans, consent_of(confirmation))
    if made.declined:
        return task_reply(account, made.declined)
    if made.error and not made.tasks:
        raise made.error
    tasks = [{k: v for k, v in task.items() if k != "twin_of_age"} for task in made.tasks]
    polls = wait_many(account, tasks, account.config.max_wait if max_wait_s is None else max_wait_s,
                      on_poll=_batch_reporter(ctx)) if wait else [Poll(task) for task in tasks]
    items = [settle(account, poll, started, plan.notes) for plan, poll in zip(plans, polls)]
    if made.error is None:
        return _batch_reply(account, items, total, [])
    failed, after = len(items), len(plans) - len(items) - 1
    stopped = (f"requests[{failed}] ({plans[failed].tool}) failed, and the batch stopped there: {made.error}; the "
               f"{failed} before it were created (above)" + (f"; the {after} after it were not sent" if after else ""))
    reply = _batch_reply(account, items, total, [stopped])
    reply.is_error = True
    return reply


def _batch_reply(account: Account, items: list, total: Estimate, notes: list[str]) -> CallToolResult:
    """A line per item, then each item's links (no inline previews: twenty images would flood the context)."""
    lines = [f"[{i}] {summary(item)}" for i, item in enumerate(items)]
    if total.credits is not None:
        lines.append(f"batch: at most about {credits_text(total.credits)} in all")
    lines += notes
    links = [link for item in items for output in item["outputs"] for link in _output_content(output)[:1]]
    result = BatchResult(items=items, estimated_credits=total.credits, notes=notes)
    failed = all(item["status"] in ("FAILED", "CANCELLED") for item in items)
    return CallToolResult(content=[TextContent(text=redact("\n".join(lines), account)), *links],
                          structured_content=redact(result, account), is_error=failed)


##############################################################################
# Tools: tasks, models, the account and files
##############################################################################

def owned_task(account: Account, value: str) -> str:
    """A task id the account may ask about. Runway answers for any task of the key it is asked with; when accounts
    share the server's key (people signed in through an identity provider), only a task in the account's own ledger
    is its, and anyone else's is no task, before Runway is asked anything."""
    task_id = task_id_arg(value)
    if account.shared_key and not ledger(account).find(task_id):
        raise RunwayError(no_task(task_id), task_id=task_id, status=404)
    return task_id


@tool(SAVES, "Get task", TASK_TOOL_META, toolset="tasks")
def get_task(account: Account, task_id: TaskId) -> TaskReply:
    """Check a task once; saves its outputs if finished, with fresh links. Free."""
    task_id = owned_task(account, task_id)
    started = time.monotonic()
    task = fetch_task(account, task_id, workflow=is_workflow_run(account, task_id))
    return task_reply(account, settle(account, Poll(task), started, []))


@tool(SAVES, "Wait for task", TASK_TOOL_META, toolset="tasks", background=True)
def wait_for_task(account: Account, task_id: TaskId, max_wait_s: MaxWait = None, ctx: Context = None) -> TaskReply:
    """Keep waiting for a task, with progress, and save its outputs; if it is still running, call again. Free."""
    task_id = owned_task(account, task_id)
    started = time.monotonic()
    poll = wait(account, task_id, 0 if in_background() else max_wait_s, _reporter(ctx))
    return task_reply(account, settle(account, poll, started, []))


@tool(DESTRUCTIVE, "Cancel task", TASK_TOOL_META, toolset="tasks")
def cancel_task(account: Account, task_id: TaskId) -> TaskReply:
    """Cancel a pending or running task, or delete a finished one. A task already RUNNING is not refunded."""
    task_id = owned_task(account, task_id)
    started = time.monotonic()
    if is_workflow_run(account, task_id):
        raise RunwayError(f"{task_id} is a workflow run, and Runway has no way to cancel one: it runs to the end "
                          "(get_task shows how far it is)", task_id=task_id)
    existed = cancel(account, task_id)
    if not existed and not ledger(account).find(task_id):   # not one of this account's tasks: simply not found
        raise RunwayError(no_task(task_id), task_id=task_id, status=404)
    note = "cancelled" if existed else "Runway had already cancelled or deleted this task"
    result = task_result(account, Poll({"id": task_id, "status": "CANCELLED"}), time.monotonic() - started, [],
                         [note])
    record_status(account, result)
    reply = task_reply(account, result)
    reply.is_error = False           # the cancel itself succeeded
    return reply


def _ledger_tasks(account: Account) -> list[LedgerRecord]:
    try:
        return ledger(account).tasks()
    except OSError as error:
        raise RunwayError(f"cannot read the task ledger {ledger(account).path} ({error.strerror or error}); fix the "
                          "file or its folder (permissions, free space)") from None


class TaskSummary(TypedDict):
    task_id: str
    created_at: str | None
    tool: str | None
    model: str | None
    prompt: str | None
    status: str | None
    estimated_credits: float | None
    cost_credits: float | None
    outputs: list[str]


class TaskList(TypedDict):
    tasks: list[TaskSummary]


@tool(LOCAL, "List tasks", toolset="tasks")
def list_tasks(account: Account, limit: Annotated[int, Field(ge=1, le=500)] = 20
               ) -> Annotated[CallToolResult, TaskList]:
    """Tasks this server created, newest first, with their last known status (get_task checks one). Free."""
    tasks = [TaskSummary(task_id=t["task_id"], created_at=t.get("created_at"), tool=t.get("tool"),
                         model=t.get("model"), prompt=t.get("prompt"), status=t.get("status"),
                         estimated_credits=t.get("estimated_credits"), cost_credits=t.get("cost_credits"),
                         outputs=list(t.get("outputs") or []))
             for t in _ledger_tasks(account)[:limit]]
    lines = []
    for t in tasks:
        credits = t["cost_credits"] if t["cost_credits"] is not None else t["estimated_credits"]
        parts = [t["task_id"], t["status"] or "?", t["created_at"] or "", t["tool"] or "", t["model"] or "",
                 credits_text(credits) if credits is not None else "", _quoted(t["prompt"]), " ".join(t["outputs"])]
        lines.append(" ".join(p for p in parts if p))
    return listing(account, lines, "No tasks yet.", TaskList(tasks=tasks))


class ModelList(TypedDict):
    """The index as data: [model, kind, endpoint codes, credits, default for]; with model=, its detail too."""

    models: list[list[str]]
    endpoints: dict[str, str]           # code -> Runway endpoint
    detail: NotRequired[str]


@tool(LOCAL, "List models", toolset="tasks")
def list_models(account: Account, kind: Literal[KINDS] | None = None,  # type: ignore[valid-type]
                model: Annotated[str | None, Field(max_length=64)] = None) -> Annotated[CallToolResult, ModelList]:
    """The models this server knows: a line each (endpoints, credits); model=NAME for its ratios, durations,
    inputs and options (by their Runway API names). Free."""
    if model is not None and model not in MODELS and model not in OTHERS:
        close = [n for n in (*MODELS, *OTHERS) if model.lower() in n.lower()] or [*MODELS, *OTHERS]
        raise RunwayError(f"model={model!r} is not in the catalog; known: {', '.join(close)}")
    names = [model] if model else [n for n, m in MODELS.items() if kind in (None, m.kind)]
    rows = [[n, MODELS[n].kind, " ".join(ENDPOINTS[e].code for e in MODELS[n].uses if ":" not in e),
             MODELS[n].credits, " ".join(defaults_of(n))] for n in names if n in MODELS]
    rows += [[n, made, tool_name, "", ""] for n, (made, tool_name, _) in OTHERS.items()
             if n == model or model is None and kind in (None, made)]
    found = ModelList(models=rows, endpoints={entry.code: endpoint for endpoint, entry in ENDPOINTS.items()})
    if model:
        found["detail"] = model_detail(model) if model in MODELS else other_detail(model)
    return listing(account, [found.get("detail") or "\n".join([model_index(kind), *others_index(kind)])], "", found)


class ModelUsage(TypedDict):
    model: str
    used_today: int | None
    daily_limit: int | None
    concurrency_limit: int | None


class Budget(TypedDict):
    limit: float
    committed: float | None             # None: the ledger cannot be read, so nothing remains to spend
    remaining: float
    window_hours: int


class AccountReport(TypedDict):
    credit_balance: float | None
    max_monthly_credit_spend: float | None
    models: list[ModelUsage]
    budget: Budget | None               # RUNWAY_MCP_BUDGET_CREDITS: what this server may still commit in 24 h


@tool(READ_ONLY, "Get account", toolset="account")
def get_account(account: Account) -> AccountReport:
    """The Runway credit balance, tier limits, today's generations, and this server's budget. Free."""
    org = api(account, "GET", "/v1/organization")
    tier, usage = org.get("tier") or {}, (org.get("usage") or {}).get("models") or {}
    limits = tier.get("models") or {}
    return AccountReport(
        credit_balance=org.get("creditBalance"), max_monthly_credit_spend=tier.get("maxMonthlyCreditSpend"),
        models=[ModelUsage(model=m, used_today=(usage.get(m) or {}).get("dailyGenerations"),
                           daily_limit=(limits.get(m) or {}).get("maxDailyGenerations"),
                           concurrency_limit=(limits.get(m) or {}).get("maxConcurrentGenerations"))
                for m in sorted(set(limits) | set(usage))],
        budget=read_budget(account))


class Upload(TypedDict):
    uri: str
    expires_at: str
    bytes: int
    mime_type: str
    reused: bool
    notes: list[str]


@tool(PAID, "Upload file", toolset="files")
def upload_file(account: Account, path: Annotated[str, Field(
        description=f"a local image, video or audio file, at most {_size(UPLOAD_MAX)}", min_length=1,
        max_length=4096)]) -> Upload:
    """Upload a file once to reuse it in several calls: a runway:// URI valid 24 h. Free.

    Media arguments also take paths directly. Runway allows uploads only to accounts that bought credits.
    """
    media = Media(path, ("image", "video", "audio"), "path")
    local = local_file(account, media)
    if local is None:
        raise RunwayError(f"path={path[:80]!r} is not a local file; URLs and data: URIs need no upload")
    done = upload(account, local)
    return Upload(uri=done["uri"], bytes=done["bytes"], mime_type=done["mime_type"], reused=done["reused"],
                  expires_at=datetime.fromtimestamp(done["expires_at"], UTC).isoformat(timespec="seconds"),
                  notes=done.get("notes", []))


class SavedOutput(TypedDict):
    name: str
    path: str
    uri: str
    kind: str
    mime_type: str | None
    bytes: int
    saved_at: str
    task_id: str | None
    tool: str | None
    model: str | None
    prompt: str | None
    record: NotRequired[dict[str, Any]]     # list_outputs(name=...): the whole sidecar


class OutputList(TypedDict):
    outputs: list[SavedOutput]


def _saved(path: Path, info: os.stat_result, sidecar: dict) -> SavedOutput:
    mime = mime_of(path.name)
    return SavedOutput(name=path.name, path=str(path), uri=output_uri(path.name), kind=_kind(mime, "other"),
                       mime_type=mime, bytes=info.st_size,
                       saved_at=datetime.fromtimestamp(info.st_mtime, UTC).isoformat(timespec="seconds"),
                       task_id=sidecar.get("task_id"), tool=sidecar.get("tool"), model=sidecar.get("model"),
                       prompt=sidecar.get("prompt"))


@tool(LOCAL, "List outputs", toolset="files")
def list_outputs(
    account: Account,
    kind: Literal[KINDS] | None = None,  # type: ignore[valid-type]
    limit: Annotated[int, Field(ge=1, le=1000)] = 20,
    name: Annotated[str | None, Field(description="one file's full record", max_length=255)] = None,
) -> Annotated[CallToolResult, OutputList]:
    """Files saved in the output folder, newest first, with the model and prompt each came from. Free."""
    if name is not None:
        path = output_path(account, name)
        found = _saved(path, path.stat(), sidecar := read_sidecar(path))
        found["record"] = sidecar
        lines = [f"{found['path']} ({found['uri']}, {_size(found['bytes'])})"]
        lines += [f"{key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value}"
                  for key, value in sidecar.items() if key not in ("file", "bytes")]
        return listing(account, lines, "", OutputList(outputs=[found]))
    found = [_saved(path, info, read_sidecar(path)) for path, info in list_saved_outputs(account, kind)[:limit]]
    lines = [" ".join(p for p in (o["path"], _size(o["bytes"]), o["saved_at"], o["model"] or "",
                                  _quoted(o["prompt"])) if p) for o in found]
    return listing(account, lines, f"Nothing saved in {account.output_dir} yet.", OutputList(outputs=found))


class Deleted(TypedDict):
    deleted: list[str]
    freed_bytes: int


@tool(DESTRUCTIVE, "Delete output", toolset="files")
def delete_output(
    account: Account,
    name: Annotated[str, Field(description="a file name from list_outputs", min_length=1, max_length=255)],
    confirm: Annotated[bool, Field(description="must be true")] = False,
) -> Deleted:
    """Delete a saved file and its sidecar; cannot be undone. Only with confirm=true."""
    path = output_path(account, name)
    size = path.stat().st_size
    if not confirm:
        raise RunwayError(f"nothing deleted: call delete_output(name={name!r}, confirm=true) to delete {path} "
                          f"({_size(size)})")
    sidecar = path.with_name(path.name + ".json")
    path.unlink()
    deleted = [name]
    if sidecar.is_file() and not sidecar.is_symlink():
        sidecar.unlink()
        deleted.append(sidecar.name)
    log.info("deleted %s", ", ".join(deleted))
    return Deleted(deleted=deleted, freed_bytes=size)


##############################################################################
# MCP tasks
##############################################################################
#
# The tasks extension of MCP 2026-07-28 (io.modelcontextprotocol/tasks). A client that declares it on a call of a
# tool that creates or waits on Runway tasks gets an MCP task to poll (tasks/get) as soon as the Runway tasks exist,
# instead of a call that waits. Everything before that happens as in any call: validation, dry runs, the budget,
# the duplicate guard, the person's confirmation (whose input-required answer passes through). An MCP task is a
# line in its account's ledger naming its Runway tasks: it survives a restart, any instance sharing the folder
# serves it, and no other account finds it. No thread waits while Runway renders: a tasks/get asks Runway at most
# once per poll interval however many clients poll, and only saving the outputs runs in a thread.

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
AGENT_TASK = "com.anthropic/agent-task"   # Claude Code tells the model this when it moves the task to the background
TASK_TTL_MS = 24 * 3600 * 1000          # the MCP task outlives Runway's output links (24-48 h) by no more
FINISHED_KEPT = 64                      # finished results kept in memory per server, for the polls that follow
WATCHERS = 16                           # threads asking Runway about MCP tasks at once, per server


class TaskIdParams(RequestParams):
    task_id: str                        # "taskId" on the wire


class UpdateTaskParams(TaskIdParams):
    input_responses: dict[str, Any] = Field(default_factory=dict)


def _declares_tasks(ctx: Any) -> bool:
    """Whether this request asked for tasks: only a 2026-07-28 request's own capabilities count (an older
    connection's initialize may list the extension, but a task is not a result it can read)."""
    capabilities = ctx.session.client_capabilities
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and bool(
        capabilities and capabilities.extensions and TASKS_EXTENSION in capabilities.extensions)


def _require_tasks(ctx: Any) -> None:
    """tasks/* answer only a request that declares the extension (-32021 otherwise, as the extension says)."""
    if not _declares_tasks(ctx):
        raise MCPError(MISSING_REQUIRED_CLIENT_CAPABILITY, f"declare {TASKS_EXTENSION} in this request's "
                       "clientCapabilities to use tasks", {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}})


def _waiting_on(result: Any) -> list[str] | None:
    """The Runway tasks a tool's answer is still waiting on (a batch: all of its items), or None when it is final."""
    content = getattr(result, "structured_content", None) or {}
    if getattr(result, "is_error", False) or not isinstance(content, dict):
        return None
    items = content.get("items") if isinstance(content.get("items"), list) else [content]
    if not any(item.get("status") in ACTIVE for item in items):
        return None
    return [item["task_id"] for item in items]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _written_at(record: LedgerRecord) -> float:
    """When a record's latest line was written (0 when it does not say)."""
    return _time_of(record, "at") or 0.0


class RunwayWatch:
    """Runway's latest word on the tasks MCP tasks follow. A poll is answered from it at once; when it is older
    than the poll interval, a worker asks Runway again in the background, however many clients poll. So no client
    waits for Runway, Runway hears about a task at most once per poll interval, and at most WATCHERS threads ask
    at a time (when all are busy, a poll answers with what is known and a later one asks)."""

    def __init__(self) -> None:
        # (account folder, task id) -> (Runway's word, when it was asked (monotonic), when its status or progress
        # last changed (wall clock: a task's lastUpdatedAt))
        self._seen: collections.OrderedDict[tuple, tuple[dict, float, float]] = collections.OrderedDict()
        self._asking: set[tuple] = set()
        self._lock = threading.Lock()
        self._workers = threading.BoundedSemaphore(WATCHERS)

    def state(self, account: Account, task_id: str) -> tuple[dict, float]:
        """The task as Runway last said (PENDING until it first answers) and when that last changed (0 until it
        answers); asks again in the background if stale."""
        key = (str(account.output_dir), task_id)
        with self._lock:
            seen = self._seen.get(key)
            stale = seen is None or (seen[0].get("status") not in TERMINAL and
                                     time.monotonic() - seen[1] >= account.config.poll_interval)
            if stale and key not in self._asking and self._workers.acquire(blocking=False):
                self._asking.add(key)
                threading.Thread(target=self._refresh, args=(key, account, task_id, seen and seen[0]),
                                 name=f"watching {task_id[:8]}", daemon=True).start()
        return (seen[0], seen[2]) if seen else ({"id": task_id, "status": "PENDING"}, 0.0)

    def _refresh(self, key: tuple, account: Account, task_id: str, known: dict | None) -> None:
        try:
            self._keep(key, self._ask(account, task_id, known))
        except Exception:                           # a bug: the next poll asks again
            log.exception("could not ask Runway about task %s", task_id)
        finally:
            with self._lock:
                self._asking.discard(key)
            self._workers.release()

    def _keep(self, key: tuple, task: dict) -> None:
        with self._lock:
            before, state = self._seen.get(key), (task.get("status"), task.get("progress"))
            same = before is not None and (before[0].get("status"), before[0].get("progress")) == state
            self._seen[key] = (task, time.monotonic(), before[2] if same else time.time())
            self._seen.move_to_end(key)
            if len(self._seen) > BUCKETS_MAX:
                self._seen.popitem(last=False)

    @staticmethod
    def _ask(account: Account, task_id: str, known: dict | None) -> dict:
        """One status request; a passing failure keeps what was known (the next poll asks again), and a task Runway
        no longer has, or a key it refuses, ends the wait as an error would."""
        try:
            return fetch_task(account, task_id, workflow=is_workflow_run(account, task_id), attempts=1)
        except RunwayError as error:
            if error.status in (401, 403, 404):
                return {"id": task_id, "status": "UNKNOWN", "error": str(error)}
            log.warning("poll of task %s failed: %s", task_id, error)
            return known or {"id": task_id, "status": "PENDING"}


STOPPED, ENDED = "stopped", "ended"         # what a cancel found a Runway task to be
WORKFLOW_RUNS_ON = "cancel asked, but a published workflow's run cannot be stopped: it runs to the end"


class Tasks(Extension):
    """The tasks extension for one server: the tools/call interceptor, and tasks/get, tasks/update, tasks/cancel."""

    identifier = TASKS_EXTENSION

    def __init__(self, config: Config):
        self.config, self.watch = config, RunwayWatch()
        # MCP task id -> its result (or error) and when it ended, for the latest FINISHED_KEPT tasks
        self._finished: collections.OrderedDict[str, tuple[dict, float]] = collections.OrderedDict()
        self._saving: dict[str, threading.Thread] = {}
        self._cancelling = KeyedLocks()

    def methods(self) -> list[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [MethodBinding("tasks/get", TaskIdParams, self.get, protocol_versions=modern),
                MethodBinding("tasks/update", UpdateTaskParams, self.update, protocol_versions=modern),
                MethodBinding("tasks/cancel", TaskIdParams, self.cancel, protocol_versions=modern)]

    async def intercept_tool_call(self, params: Any, ctx: Any, call_next: Any) -> Any:
        definition = TOOLS.get(params.name)
        if not (definition and definition.background and _declares_tasks(ctx)):
            return await call_next(ctx)
        running = _BACKGROUND.set(True)             # the tool creates its Runway tasks and returns without waiting
        try:
            result = await call_next(ctx)
        finally:
            _BACKGROUND.reset(running)
        if (runway := _waiting_on(result)) is None:
            return result                           # final already, or an error, or a question for the person
        account, now = caller_of(self.config), time.time()
        record = LedgerRecord(mcp_task=secrets.token_urlsafe(24), created_at=_iso(now), tool=params.name,
                              runway=runway, pending=result.structured_content, ttl_ms=TASK_TTL_MS)
        try:
            await anyio.to_thread.run_sync(ledger(account).append, record)
        except OSError as error:                    # no record, no task: the answer as it is stays resumable
            log.warning("could not record an MCP task in %s: %s", ledger(account).path, error.strerror)
            return result
        log.info("MCP task %s follows %s for %s", record["mcp_task"], ", ".join(runway), params.name)
        return {"resultType": "task", **self._handle(record, "working", "PENDING · 0s", now), "_meta": {AGENT_TASK: {
            "modelImmediateResponse": started_message(params.name, result.structured_content)}}}

    def _handle(self, record: LedgerRecord, status: str, message: str, updated: float) -> dict:
        """A task as tasks/get shows it; `updated` is when its status or message last changed (never before it was
        created, whatever another instance's clock said)."""
        return {"taskId": record["mcp_task"], "status": status, "statusMessage": message,
                "createdAt": record["created_at"], "lastUpdatedAt": _iso(max(updated, _created_at(record) or 0)),
                "ttlMs": record["ttl_ms"], "pollIntervalMs": max(100, round(self.config.poll_interval * 1000))}

    async def _record(self, task_id: str) -> tuple[Account, LedgerRecord]:
        """The caller's account and its MCP task; -32602 for a task it does not have (another account's too)."""
        account = caller_of(self.config)
        try:
            record = await anyio.to_thread.run_sync(ledger(account).find_mcp_task, task_id)
        except OSError as error:
            raise MCPError(INTERNAL_ERROR, f"cannot read the task ledger ({error.strerror})") from None
        created = _created_at(record) if record else None
        if created is None or not isinstance(record.get("runway"), list):
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: no task {task_id[:64]!r} here")
        if (time.time() - created) * 1000 > record.get("ttl_ms", TASK_TTL_MS):
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: task {task_id[:64]!r} has expired")
        return account, record

    async def get(self, ctx: Any, params: TaskIdParams) -> dict:
        _require_tasks(ctx)
        account, record = await self._record(params.task_id)
        if record.get("status") == "cancelled":
            return self._handle(record, "cancelled", "cancelled", _written_at(record))
        if (ended := self._ended(record)) is not None:
            return ended
        elapsed = max(0.0, time.time() - (_created_at(record) or 0))   # another instance's clock may be ahead
        if record.get("status") == "failed":        # on another instance, or before a restart: as it ended
            failure = {"error": {"code": INTERNAL_ERROR, "message": record.get("failure", "")}}
            self._remember(record["mcp_task"], failure, _written_at(record))
            return self._ended(record)
        if record.get("status") == "completed" and isinstance(record.get("final"), list):
            # Its result again, from Runway's last word and the files already saved; nothing is asked or fetched.
            self._remember(record["mcp_task"], await anyio.to_thread.run_sync(
                self._result, account, record, record["final"], elapsed), _written_at(record))
            return self._ended(record)
        seen = [self.watch.state(account, task_id) for task_id in record["runway"]]
        polls, updated = [Poll(task) for task, _ in seen], max([_written_at(record)] + [at for _, at in seen])
        if any(poll.task.get("status") not in TERMINAL for poll in polls):
            message = progress_message(polls[0], elapsed) if len(polls) == 1 else batch_message(polls, elapsed)
            return self._handle(record, "working", message + (f" ({record['note']})" if record.get("note") else ""),
                                updated)
        tasks = [poll.task for poll in polls]
        if not (self.config.download and any(task.get("status") == "SUCCEEDED" for task in tasks)):
            await anyio.to_thread.run_sync(self._finish, account, record, tasks, elapsed)      # nothing to save
        elif params.task_id not in self._saving:    # the outputs are saved in a thread: polls meanwhile say so
            saver = threading.Thread(target=self._finish, args=(account, record, tasks, elapsed),
                                     name=f"saving {params.task_id[:8]}", daemon=True)
            self._saving[params.task_id] = saver
            saver.start()
        if (ended := self._ended(record)) is not None:
            return ended
        return self._handle(record, "working", f"saving outputs · {elapsed:.0f}s", updated)

    def _ended(self, record: LedgerRecord) -> dict | None:
        """The task as it ended: completed with the tool's result, or failed when the server itself broke."""
        if (finished := self._finished.get(record["mcp_task"])) is None:
            return None
        ended, at = finished
        if "error" in ended:
            return {**self._handle(record, "failed", ended["error"]["message"], at), **ended}
        return {**self._handle(record, "completed", "done", at), "result": ended}

    def _finish(self, account: Account, record: LedgerRecord, tasks: list[dict], elapsed: float) -> None:
        """Save the outputs and build the result the tool would have returned had it waited (a worker thread), and
        record how the task ended, so that every instance, and this one after a restart or once it has forgotten
        the result, answers completed (or failed) from then on."""
        try:
            ended, at = self._result(account, record, tasks, elapsed), time.time()
            self._record_outcome(account, record, ended, tasks, at)
            self._remember(record["mcp_task"], ended, at)
        finally:
            self._saving.pop(record["mcp_task"], None)

    @staticmethod
    def _result(account: Account, record: LedgerRecord, tasks: list[dict], elapsed: float) -> dict:
        """The tool's result as JSON, or an error when the server itself broke while building it."""
        try:
            return finished_result(account, record, tasks, elapsed).model_dump(by_alias=True, mode="json",
                                                                             exclude_none=True)
        except Exception:                           # a fault here, not in Runway's work: the task failed
            log.exception("could not finish MCP task %s", record["mcp_task"])
            return {"error": {"code": INTERNAL_ERROR, "message": f"{record['tool']} could not finish; get_task("
                              f"{', '.join(map(repr, record['runway']))}) shows the Runway task"}}

    def _remember(self, mcp_task: str, ended: dict, at: float) -> None:
        self._finished[mcp_task] = (ended, at)
        while len(self._finished) > FINISHED_KEPT:
            self._finished.popitem(last=False)

    @staticmethod
    def _record_outcome(account: Account, record: LedgerRecord, ended: dict, tasks: list[dict], at: float) -> None:
        outcome = (LedgerRecord(status="failed", failure=ended["error"]["message"]) if "error" in ended else
                   LedgerRecord(status="completed", final=redact(tasks, account, paths=False)))
        try:                                        # `at` to the millisecond: every instance shows the same time
            ledger(account).append(LedgerRecord(mcp_task=record["mcp_task"], at=_iso(at), **outcome))
        except OSError as error:                    # this instance still answers from memory
            log.warning("could not record how MCP task %s ended: %s", record["mcp_task"], error.strerror)

    async def update(self, ctx: Any, params: UpdateTaskParams) -> dict:
        _require_tasks(ctx)
        await self._record(params.task_id)          # nothing here asks for input once a task runs: nothing to take
        return {}

    async def cancel(self, ctx: Any, params: TaskIdParams) -> dict:
        _require_tasks(ctx)
        account, record = await self._record(params.task_id)
        await anyio.to_thread.run_sync(self._cancel, account, record["mcp_task"])
        return {}

    def _cancel(self, account: Account, mcp_task: str) -> None:
        """Cancel the Runway tasks still running, one cancel of an MCP task at a time. Runway's DELETE of a task
        that has ended deletes its outputs, so a task is cancelled only when Runway itself has just said that it
        runs (never on a guess, the ledger's or a failed check's); a task that ended before the cancel keeps its
        result; one that another MCP task of the account also follows is left to it; a workflow run cannot be
        cancelled (the cancel is acknowledged, as the extension asks, and the task's status message says it runs on).
        A Runway that cannot be asked, or a DELETE that fails, is an error, and nothing is recorded."""
        with self._cancelling.hold([mcp_task]):
            try:
                self._cancel_held(account, mcp_task)
            except OSError as error:
                raise MCPError(INTERNAL_ERROR, f"cannot read or write the task ledger ({error.strerror}); nothing "
                                               "more was cancelled") from None

    def _cancel_held(self, account: Account, mcp_task: str) -> None:
        record = ledger(account).find_mcp_task(mcp_task)
        if record.get("status") in MCP_TASK_ENDED or mcp_task in self._finished:
            return
        runway = [task_id for task_id in record["runway"] if not is_workflow_run(account, task_id)]
        if not runway:
            if record.get("note") != WORKFLOW_RUNS_ON:           # said once, however often a host cancels
                ledger(account).append(LedgerRecord(mcp_task=mcp_task, note=WORKFLOW_RUNS_ON, at=_iso(time.time())))
            return
        outcomes = [self._cancel_one(account, mcp_task, task_id) for task_id in runway]
        if failures := [o for o in outcomes if o not in (STOPPED, ENDED)]:
            raise MCPError(INTERNAL_ERROR, "; ".join(failures) + ": the task goes on; cancel again to retry")
        if STOPPED in outcomes:                     # a task that had ended already keeps its result
            ledger(account).append(LedgerRecord(mcp_task=mcp_task, status="cancelled", at=_iso(time.time())))

    @staticmethod
    def _cancel_one(account: Account, mcp_task: str, task_id: str) -> str:
        """Cancel one Runway task if it still runs: STOPPED (or left to another MCP task of the account that follows
        it too), ENDED (it had ended, or is gone), or why it could not be."""
        if ledger(account).find(task_id).get("status") in TERMINAL:
            return ENDED
        if set(ledger(account).followers(task_id)) - {mcp_task}:
            return STOPPED                          # for this MCP task; the other goes on with it
        try:
            if fetch_task(account, task_id, attempts=1).get("status") not in ACTIVE:
                return ENDED
            cancel(account, task_id)
        except RunwayError as error:
            return ENDED if error.status == 404 else f"task {task_id} could not be cancelled ({error})"
        return STOPPED


def started_message(tool_name: str, pending: dict) -> str:
    """What the model is told when its call moves to the background."""
    items = pending.get("items") if isinstance(pending.get("items"), list) else [pending]
    estimate = pending.get("estimated_credits")
    return (f"{tool_name} is running in the background: Runway task {', '.join(i['task_id'] for i in items)}"
            + (f", about {estimate:g} credits" if isinstance(estimate, (int, float)) else "")
            + ". Its result, with the saved files, comes when it ends; no need to call wait_for_task.")


def finished_result(account: Account, record: LedgerRecord, tasks: list[dict], elapsed: float) -> CallToolResult:
    """The result a tool whose Runway tasks have ended would have returned had it waited: outputs saved, the notes
    it had when it created them, the elapsed time since."""
    started, pending = time.monotonic() - elapsed, record.get("pending") or {}
    for task in tasks:
        if task.get("error"):                       # gone, or the key refused: as the tool's error would say
            return CallToolResult(content=[TextContent(text=redact(f"Error executing tool {record['tool']}: "
                                                                   f"{task['error']}", account))], is_error=True)
    if record["tool"] == "generate_batch":
        items = [settle(account, Poll(task), started, item.get("notes") or [])
                 for task, item in zip(tasks, pending.get("items") or [{}] * len(tasks))]
        total = priced(pending.get("estimated_credits"), "the sum of the items' estimates")
        return _batch_reply(account, items, total, pending.get("notes") or [])
    return task_reply(account, settle(account, Poll(tasks[0]), started, pending.get("notes") or []))


def _listen_for_tasks_only_when_declared(server: MCPServer) -> None:
    """subscriptions/listen asking for task notifications (taskIds) from a request that does not declare the
    extension is refused with -32021, as the extension says; a declaring one is acknowledged without them, since
    task status is polled here, never pushed. (mcp 2.3 has no hook for this: the SDK's handler is wrapped.)"""
    if not server.config.tasks:
        return
    lowlevel = server._lowlevel_server          # mcp 2.3's: _forget_prompts has checked that it is there
    listen = lowlevel.get_request_handler("subscriptions/listen")
    if listen is None:
        return

    async def listening(ctx: Any, params: Any) -> Any:
        if (params.notifications.model_extra or {}).get("taskIds") is not None:
            _require_tasks(ctx)
        return await listen.handler(ctx, params)
    lowlevel.add_request_handler("subscriptions/listen", listen.params_type, listening)


PROTOCOL_EXTENSIONS.append(lambda config: Tasks(config) if config.tasks else None)
SERVER_PARTS.append(_listen_for_tasks_only_when_declared)


##############################################################################
# Viewer
##############################################################################
#
# An MCP Apps view (the io.modelcontextprotocol/ui extension): hosts that render views show a task tool's result
# in it; others never read it. It speaks JSON-RPC over postMessage with the host, needs no SDK, and loads nothing
# from elsewhere: a saved output comes through resources/read as a data: URI (hosts' CSP blocks blob: URLs, and
# the file outlives Runway's link), and Runway's link is used only when nothing was saved.

VIEWER_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Runway result</title>
<style>
:root { color-scheme: light dark;
  --bg: var(--color-background-primary, Canvas); --fg: var(--color-text-primary, CanvasText);
  --muted: var(--color-text-secondary, GrayText); --line: var(--color-border-primary, #8884);
  --accent: var(--color-ring-primary, #3b82f6); --danger: var(--color-text-danger, #dc2626);
  --radius: var(--border-radius-md, 8px); --font: var(--font-sans, system-ui, sans-serif); }
html, body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.4 var(--font); }
main, section { display: grid; gap: 10px; } main { padding: 12px; }
header { display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
.status { font-weight: 600; } .status.bad { color: var(--danger); }
.muted { color: var(--muted); font-size: 12px; }
.prompt { margin: 0; white-space: pre-wrap; }
figure { margin: 0; display: grid; gap: 4px; }
img, video { display: block; max-width: 100%; height: 320px; object-fit: contain; border-radius: var(--radius);
  background: #0001; }
audio { width: 100%; }
progress { width: 100%; height: 8px; accent-color: var(--accent); }
button { font: inherit; padding: 6px 12px; border-radius: var(--radius); border: 1px solid var(--line);
  background: transparent; color: inherit; cursor: pointer; justify-self: start; }
button:disabled { opacity: .6; cursor: default; }
</style>
</head>
<body>
<main id="view"><p class="muted">Waiting for the result...</p></main>
<script>
"use strict";
const ACTIVE = ["PENDING", "THROTTLED", "RUNNING"];
const pending = new Map();
let nextId = 1, args = {};

function request(method, params) {
  const id = nextId++;
  window.parent.postMessage({jsonrpc: "2.0", id, method, params}, "*");
  return new Promise((resolve, reject) => pending.set(id, {resolve, reject}));
}
function notify(method, params) { window.parent.postMessage({jsonrpc: "2.0", method, params}, "*"); }
function answer(id, result) { window.parent.postMessage({jsonrpc: "2.0", id, result}, "*"); }

window.addEventListener("message", (event) => {
  const message = event.data;
  if (event.source !== window.parent || !message || message.jsonrpc !== "2.0") return;
  if (message.id !== undefined && !message.method) {
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (waiting) message.error ? waiting.reject(new Error(message.error.message)) : waiting.resolve(message.result);
  } else if (message.method === "ui/notifications/tool-input") {
    args = (message.params && message.params.arguments) || {};
  } else if (message.method === "ui/notifications/tool-result") {
    show(message.params);
  } else if (message.method === "ui/notifications/tool-cancelled") {
    render([el("p", "status bad", "Cancelled before it finished.")]);
  } else if (message.method === "ui/notifications/host-context-changed") {
    applyContext(message.params || {});
  } else if (message.method === "ui/resource-teardown") {
    answer(message.id, {});
  } else if (message.id !== undefined) {
    window.parent.postMessage({jsonrpc: "2.0", id: message.id, error: {code: -32601, message: "Method not found"}}, "*");
  }
});

function applyContext(context) {
  if (context.theme) document.documentElement.style.colorScheme = context.theme;
  const variables = (context.styles && context.styles.variables) || {};
  for (const [name, value] of Object.entries(variables)) {
    if (value) document.documentElement.style.setProperty(name, value);
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render(nodes) {
  document.getElementById("view").replaceChildren(...nodes);
  resize();
}

// An explicit height: some hosts measure the document rather than listen for size-changed.
function resize() {
  document.documentElement.style.height = "auto";
  const height = Math.ceil(document.getElementById("view").getBoundingClientRect().height);
  document.documentElement.style.height = height + "px";
  notify("ui/notifications/size-changed", {width: document.documentElement.scrollWidth, height});
}

function credits(result) {
  const value = result.cost_credits ?? result.estimated_credits;
  if (value === null || value === undefined) return "";
  return `${value} credit${value === 1 ? "" : "s"}` + (result.cost_credits == null ? " (estimate)" : "");
}

async function source(output) {
  if (output.uri) {
    try {
      const read = await request("resources/read", {uri: output.uri});
      const content = read.contents[0];
      if (content.blob) return `data:${content.mimeType || output.mime_type};base64,${content.blob}`;
    } catch (error) { /* not readable here: Runway's link below */ }
  }
  return output.url;
}

async function figure(output) {
  const mime = output.mime_type || "";
  const kind = mime.split("/")[0];
  const media = kind === "image" ? el("img") : kind === "audio" ? el("audio") : el("video");
  if (kind !== "image") { media.controls = true; media.preload = "auto"; media.playsInline = true; }
  media.addEventListener(kind === "image" ? "load" : "loadeddata", () => {
    media.dataset.loaded = "true";
    resize();
  });
  const name = output.uri ? decodeURIComponent(output.uri.split("/").pop()) : "not saved: Runway's link (24-48 h)";
  const caption = el("figcaption", "muted", name + (output.bytes ? ` · ${Math.round(output.bytes / 1024)} KB` : ""));
  media.src = await source(output);
  const node = el("figure");
  node.append(media, caption);
  return node;
}

// The sidecar of a saved output says what made it, also for results of wait_for_task or get_task.
async function record(result) {
  const saved = (result.outputs || []).find((o) => o.uri);
  if (!saved) return {};
  try {
    const listed = await request("tools/call", {name: "list_outputs",
      arguments: {name: decodeURIComponent(saved.uri.split("/").pop())}});
    return ((listed.structuredContent || {}).outputs || [{}])[0].record || {};
  } catch (error) { return {}; }
}

// One task's result; a batch shows one section per item. The button waits for that task only.
async function section(result, input) {
  const made = await record(result);
  const nodes = [];
  const header = el("header");
  header.append(el("span", "status" + (["FAILED", "CANCELLED", "DECLINED"].includes(result.status) ? " bad" : ""),
                   result.status), el("span", "muted", [made.model || input.model, credits(result),
                   result.task_id ? "task " + result.task_id.slice(0, 8) : ""].filter(Boolean).join(" · ")));
  nodes.push(header);
  const prompt = made.prompt || input.prompt || input.text;
  if (prompt) nodes.push(el("p", "prompt", prompt));
  const box = el("section");
  if (ACTIVE.includes(result.status)) {
    const bar = el("progress");
    bar.max = 1;
    if (result.progress !== null && result.progress !== undefined) bar.value = result.progress;
    const button = el("button", "", "Keep waiting");
    button.addEventListener("click", async () => {
      button.disabled = true;
      button.textContent = "Waiting for Runway...";
      try {
        const next = await request("tools/call", {name: "wait_for_task", arguments: {task_id: result.task_id}});
        box.replaceChildren(...(await section(next.structuredContent, input)).childNodes);
        resize();
      } catch (error) {
        button.disabled = false;
        button.textContent = "Keep waiting";
        box.append(el("p", "status bad", String(error.message || error)));
        resize();
      }
    });
    nodes.push(bar, button);
  }
  if (result.failure) nodes.push(el("p", "status bad", result.failure + (result.failure_code ?
                                                         ` (${result.failure_code})` : "")));
  if (result.status === "DRY_RUN") nodes.push(el("p", "muted", "Dry run: nothing was sent."));
  nodes.push(...await Promise.all((result.outputs || []).map(figure)));
  if (result.next && !ACTIVE.includes(result.status)) nodes.push(el("p", "muted", result.next));
  box.append(...nodes);
  return box;
}

async function show(toolResult) {
  const result = toolResult.structuredContent;
  if (result && Array.isArray(result.items)) {
    const inputs = args.requests || [];
    return render(await Promise.all(result.items.map((item, i) =>
      section(item, (inputs[i] && inputs[i].arguments) || {}))));
  }
  if (!result || !result.status) {
    const text = ((toolResult.content || []).find((c) => c.type === "text") || {}).text || "No result.";
    return render([el("p", toolResult.isError ? "status bad" : "", text)]);
  }
  render([await section(result, args)]);
}

request("ui/initialize", {protocolVersion: "2026-01-26", appInfo: {name: "runway-mcp viewer", version: "VERSION"},
                          appCapabilities: {}})
  .then((initialized) => applyContext(initialized.hostContext || {}))
  .finally(() => notify("ui/notifications/initialized", {}));
</script>
</body>
</html>
""".replace("VERSION", __version__)


def viewer() -> str:
    return VIEWER_HTML


def _add_viewer(server: MCPServer) -> None:
    server.resource(VIEWER_URI, name="viewer", title="Runway result viewer", mime_type=VIEWER_MIME, meta=VIEWER_META,
                    description="Shows a task tool's result: images, video and audio players, progress, failures",
                    )(viewer)


SERVER_PARTS.append(_add_viewer)


##############################################################################
# HTTP
##############################################################################

MAX_BODY = 16 * 1024 * 1024                     # a 5 MB data: URI argument must fit


async def _refuse(send: Callable, status: int, text: str, headers: dict[str, str] | None = None) -> None:
    """Answer an HTTP request at once, with nothing run: a short JSON body naming why."""
    body = json.dumps({"error": text}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), *[(k.encode(), v.encode()) for k, v in (headers or {}).items()]]})
    await send({"type": "http.response.body", "body": body})


def _bearer(scope: dict) -> str | None:
    scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


CHALLENGE = {"www-authenticate": 'Bearer realm="runway-mcp"'}


def _route(scope: dict) -> str:
    """A request's path within this app, wherever a host app mounted it (Starlette keeps the prefix in the path)."""
    return scope["path"].removeprefix(scope.get("root_path", ""))


def _open(scope: dict) -> bool:
    """Whether a request passes every layer without credentials: anything but HTTP, and the health check."""
    return scope["type"] != "http" or _route(scope) == "/healthz"


class BearerToken:
    """Every request but /healthz needs `Authorization: Bearer <RUNWAY_MCP_HTTP_TOKEN>` (compared in constant time)."""

    def __init__(self, app: Callable, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if not _open(scope):
            given = _bearer(scope)
            if not (given and hmac.compare_digest(given.encode("latin-1"), self.token)):
                await _refuse(send, 401, "unauthorized: send Authorization: Bearer <RUNWAY_MCP_HTTP_TOKEN>", CHALLENGE)
                return
        await self.app(scope, receive, send)


# A client key is checked with Runway before anything is done for it (a folder, a ledger, a call) and Runway's
# verdict is kept for minutes, not forever: a key Runway revokes loses its files and tasks here within 5 minutes.
# Checking costs Runway a request, so keys never seen before are limited per address, and few are checked at once.
KEY_TRUSTED_S = 240.0
KEY_REFUSED_S = 60.0                # a refused key is refused again without asking Runway, for this long
VERDICTS_MAX = 10_000               # keys remembered at once, the least recently used forgotten first
NEW_KEYS = (10, 60.0)               # keys never seen before, per address: 10 a minute
CHECKING_MAX = 8                    # keys being checked with Runway at once; more wait for a moment, then 503
CHECK_TIMEOUT = (5.0, 10.0)
SESSIONS_PER_ACCOUNT = 20           # MCP sessions one account may hold open (stateful HTTP)
SESSION_IDLE_S = 600.0              # in hosted mode an idle session closes after this long (the SDK's: 30 min)


class KeyVerdicts:
    """Runway's answer, per client key, to GET /v1/organization: True (it works), False (401/403), or None (it
    could not be asked). Kept in a bounded table under a hash of the key; one question per key at a time, at most
    CHECKING_MAX at once; keys never seen before are limited per address (`new_keys`, NEW_KEYS)."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic):
        self.config, self.clock = config, clock
        self.new_keys, self.checking = Buckets(*NEW_KEYS), anyio.CapacityLimiter(CHECKING_MAX)
        self._lock = threading.Lock()
        self._verdicts: collections.OrderedDict[str, tuple[bool, float]] = collections.OrderedDict()
        self._asking = KeyedLocks()

    def known(self, key: str) -> bool | None:
        """The verdict kept for `key`, or None when Runway must be asked (never, or too long ago)."""
        with self._lock:
            verdict, until = self._verdicts.get(hashlib.sha256(key.encode()).hexdigest(), (None, 0.0))
        return verdict if until > self.clock() else None

    def verify(self, key: str) -> bool | None:
        """Runway's verdict on `key`, asked at most once per KEY_TRUSTED_S (blocking: run it in a worker thread)."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        with self._asking.hold([digest]):                # a burst of requests with a new key asks Runway once
            if (verdict := self.known(key)) is not None:
                return verdict
            verdict = self._ask(key)
            if verdict is not None:
                with self._lock:
                    self._verdicts[digest] = (verdict, self.clock() + (KEY_TRUSTED_S if verdict else KEY_REFUSED_S))
                    self._verdicts.move_to_end(digest)
                    while len(self._verdicts) > VERDICTS_MAX:
                        self._verdicts.popitem(last=False)
            return verdict

    async def judge(self, key: str, within: float) -> bool | None:
        """Runway's verdict on `key`: kept, or asked now in a worker thread, waiting `within` seconds at most (a
        turn included); None when it could not be asked in time."""
        verdict = self.known(key)
        if verdict is None:
            with anyio.move_on_after(within):
                verdict = await anyio.to_thread.run_sync(self.verify, key, limiter=self.checking)
        return verdict

    def _ask(self, key: str) -> bool | None:
        asking = Account(self.config, key, self.config.output_dir, "unverified", hosted=True)   # touches no disk
        try:
            api(asking, "GET", "/v1/organization", attempts=1, timeout=CHECK_TIMEOUT)
        except RunwayError as error:
            if error.status in (401, 403):
                return False
            log.warning("could not check a client's key with Runway: %s", error)
            return None
        return True


def _messages(body: bytes | None) -> list[dict]:
    """The JSON-RPC messages of a body (a message or a batch), as the SDK would read them (escapes and all); none
    when it is not JSON."""
    try:
        parsed = json.loads(body or b"null")
    except ValueError:
        return []
    return [m for m in (parsed if isinstance(parsed, list) else [parsed]) if isinstance(m, dict)]


def _initializes(body: bytes | None) -> bool:
    return any(m.get("method") == "initialize" for m in _messages(body))


class SessionCap:
    """At most SESSIONS_PER_ACCOUNT open MCP sessions per account (an idle one closes after SESSION_IDLE_S), so that
    no tenant can use up the server's; each request runs as its principal (see _as_principal)."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, float]] = {}         # account -> session id -> when last used
        self.opening: collections.Counter[str] = collections.Counter()   # account -> initializes not yet answered

    async def admit(self, app: Callable, principal: Principal, scope: dict, receive: Callable,
                    send: Callable) -> None:
        caller = principal.account
        opens = await self._opens(caller, scope, receive)
        if opens and (refusal := self._refusal(caller)):
            return await _refuse(send, 429, refusal)
        # The slot is taken before the request goes on, not when its session id goes out: otherwise initializes
        # whose bodies were held back until all had passed this check would each open a session.
        if opens:
            self.opening[caller.id] += 1

        def answered() -> None:               # once: when the session id goes out, or the request ends without one
            nonlocal opens
            if opens:
                opens = False
                self.opening[caller.id] -= 1
                if not self.opening[caller.id]:
                    del self.opening[caller.id]
        try:
            await _as_principal(app, principal, scope, receive, self._watching(caller, scope, send, answered))
        finally:
            answered()

    async def _opens(self, caller: Account, scope: dict, receive: Callable) -> bool:
        """Whether a request opens a session (an initialize without a session id); one with a session id of this
        account's keeps that session alive."""
        held, now = self.sessions.get(caller.id, {}), time.monotonic()
        if session := _header(scope, b"mcp-session-id"):
            if now - held.get(session, -math.inf) <= SESSION_IDLE_S:     # an idle one is closed: not revived
                held[session] = now
            return False
        return scope["method"] == "POST" and _initializes(await _read_body(scope, receive))

    def _refusal(self, caller: Account) -> str | None:
        """Why this account may not open another MCP session now, or None."""
        held, now = self.sessions.get(caller.id, {}), time.monotonic()
        for session, used in list(held.items()):
            if now - used > SESSION_IDLE_S:
                del held[session]
        if not held:
            self.sessions.pop(caller.id, None)
        if (count := len(held) + self.opening[caller.id]) >= SESSIONS_PER_ACCOUNT:
            return (f"this account holds {count} open MCP sessions, the most one may: end one (HTTP DELETE with "
                    f"its Mcp-Session-Id) or let one sit idle for {SESSION_IDLE_S / 60:g} minutes")
        return None

    def _watching(self, caller: Account, scope: dict, send: Callable, answered: Callable[[], None]) -> Callable:
        """A send that notes the sessions this account opens and ends."""
        async def watched(message: dict) -> None:
            if message["type"] == "http.response.start":
                opened = dict(message.get("headers") or []).get(b"mcp-session-id")
                if opened and not _header(scope, b"mcp-session-id"):
                    self.sessions.setdefault(caller.id, {})[opened.decode("latin-1")] = time.monotonic()
                elif scope["method"] == "DELETE":
                    self.sessions.get(caller.id, {}).pop(_header(scope, b"mcp-session-id") or "", None)
                answered()
            await send(message)
        return watched


class ClientKeys:
    """RUNWAY_MCP_KEYS_FROM_CLIENTS: every request but /healthz brings a Runway key (`Authorization: Bearer key_...`)
    that Runway accepts, and runs as that key's account: its calls spend that key alone, its files and ledger are
    its own, and its MCP sessions and confirmations answer it alone (the SDK binds them to the principal set here;
    an account holds at most SESSIONS_PER_ACCOUNT sessions). The key is never logged or stored; a keyed hash names
    the account."""

    def __init__(self, app: Callable, config: Config):
        self.app, self.config, self.verdicts = app, config, KeyVerdicts(config)
        self.sessions = SessionCap()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if _open(scope):
            return await self.app(scope, receive, send)
        key = _bearer(scope)
        if key is None or not KEY_PATTERN.fullmatch(key):
            return await _refuse(send, 401, "send your Runway API key as Authorization: Bearer key_... (create one at "
                                            "https://dev.runwayml.com)", CHALLENGE)
        verdict = self.verdicts.known(key)
        if verdict is None:
            if wait := self.verdicts.new_keys.take(_by_address(scope)):
                return await _refuse(send, 429, f"too many new keys from this address; retry in {math.ceil(wait)} s",
                                     {"retry-after": str(math.ceil(wait))})
            verdict = await self.verdicts.judge(key, 2)          # a request waits little for a turn
        if verdict is None:
            return await _refuse(send, 503, "Runway could not be asked whether your key works; try again shortly",
                                 {"retry-after": "10"})
        if not verdict:
            return await _refuse(send, 401, "Runway refused your key (wrong, revoked or for another environment): "
                                            "send a working one as Authorization: Bearer key_...", CHALLENGE)
        try:
            caller = client_account(self.config, key)
        except OSError as error:
            log.error("cannot name client accounts: %s", error)
            return await _refuse(send, 500, "the server cannot open its accounts; its operator has been told")
        principal = Principal(token=caller.id, client_id=caller.id, subject=caller.id, scopes=[], account=caller)
        await self.sessions.admit(self.app, principal, scope, receive, send)


def client_account(config: Config, key: str) -> Account:
    """The account of a key an HTTP client sent (and Runway accepted): its outputs, ledger and caches below
    accounts/<its name>. The name is a keyed hash, so that nobody without the server's secret can tell from a
    name whose key it is, or guess the folder of a key they know."""
    name = account_name(config, f"{config.base_url} {key}")
    return Account(config, key, config.output_dir / "accounts" / name, name, hosted=True)


def account_name(config: Config, who: str) -> str:
    """128 bits of HMAC-SHA-256 of who an account is, under the output folder's secret (see _accounts_secret)."""
    return hmac.new(_accounts_secret(config.output_dir), who.encode(), hashlib.sha256).hexdigest()[:32]


_SECRETS_LOCK = threading.Lock()


@functools.cache
def _accounts_secret(output_dir: Path) -> bytes:
    """The secret that names client accounts: 32 random bytes in the output folder, made once and then shared by
    every instance that serves this folder (not RUNWAY_MCP_STATE_SECRET, which may be rotated). It is written whole
    under another name and linked into place, so that no instance ever reads half of it."""
    path = output_dir / ".accounts-secret"
    with _SECRETS_LOCK:
        if not path.exists():
            output_dir.mkdir(parents=True, exist_ok=True)
            fd, draft = tempfile.mkstemp(dir=output_dir, prefix=".accounts-secret.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(os.urandom(32))
                    f.flush()
                    os.fsync(f.fileno())
                with contextlib.suppress(FileExistsError):      # another instance was first: use its secret
                    os.link(draft, path)
            finally:
                os.unlink(draft)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            log.warning("%s could be read by other users; making it readable by this one alone", path)
            path.chmod(0o600)
        secret = path.read_bytes()
    if len(secret) < 32:
        raise OSError(errno.EINVAL, f"{path} is damaged (under 32 bytes): restore it from a backup; deleting it gives "
                                    "every client account a new, empty folder")
    return secret


async def _as_principal(app: Callable, principal: Principal, scope: dict, receive: Callable, send: Callable) -> None:
    """Run a request as `principal`: the account its tools use, and who the SDK binds MCP sessions and sealed request
    state to, so that another account holding a session id (or a confirmation in progress) gets nowhere."""
    user = AuthenticatedUser(principal)
    token = auth_context_var.set(user)          # the SDK carries it to the handler; worker threads inherit it
    try:
        await app({**scope, "user": user}, receive, send)
    finally:
        auth_context_var.reset(token)


BUCKETS_MAX = 100_000               # clients remembered at once by a rate limit; the least recently seen go first


class Buckets:
    """Token buckets per client: `calls` per `per` seconds each, in a bounded table (the least recently seen are
    forgotten first): O(1) a request however many clients there are."""

    def __init__(self, calls: float, per: float):
        self.calls, self.per = calls, per
        self.table: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def take(self, client: str) -> float:
        """Take one token from the client's bucket: 0 if there was one, else the seconds until there is."""
        rate, now = self.calls / self.per, time.monotonic()
        tokens, at = self.table.pop(client, (self.calls, now))
        tokens = min(self.calls, tokens + (now - at) * rate)
        taken = tokens >= 1
        self.table[client] = (tokens - 1 if taken else tokens, now)       # now the most recently seen
        if len(self.table) > BUCKETS_MAX:
            self.table.popitem(last=False)
        return 0.0 if taken else (1 - tokens) / rate


class AddressLimit:
    """RUNWAY_MCP_RATE_LIMIT before any credential is checked: ten times the rate of requests of any kind per client
    address, decided from the headers alone (nothing is read of a request that will be refused)."""

    def __init__(self, app: Callable, calls: int, per: float):
        self.app, self.calls, self.per, self.buckets = app, calls, per, Buckets(10 * calls, per)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if not _open(scope) and (wait := self.buckets.take(_by_address(scope))):
            return await _refuse(send, 429, f"rate limited: {10 * self.calls} requests per {self.per:g} s from this "
                                            f"address; retry in {math.ceil(wait)} s",
                                 {"retry-after": str(math.ceil(wait))})
        await self.app(scope, receive, send)


class RateLimit:
    """RUNWAY_MCP_RATE_LIMIT once the credential is checked: calls that create tasks or upload count against the
    rate as they come, per client (its account with client keys, else its token) and per address (so that rotating
    keys gains nothing); other requests (status, lists, resources) count per client against ten times the rate, since
    they cost nothing at Runway and are limited only to stop a client gone wild. Over the limit: HTTP 429 with
    Retry-After, and nothing runs. Each instance keeps its own counts."""

    def __init__(self, app: Callable, calls: int, per: float, paid: Container[str] = frozenset()):
        self.app, self.calls, self.per, self.paid = app, calls, per, paid
        self.creates, self.address_creates, self.others = Buckets(calls, per), Buckets(calls, per), Buckets(
            10 * calls, per)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if _open(scope):
            return await self.app(scope, receive, send)
        body = await _read_body(scope, receive)
        if body is None:                        # BodyReplay refuses it
            return await self.app(scope, receive, send)
        if _creates(body, self.paid):
            wait = self.creates.take(_by_client(scope)) or self.address_creates.take(_by_address(scope))
            limit, what = self.calls, "calls that create tasks"
        else:
            wait, limit, what = self.others.take(_by_client(scope)), 10 * self.calls, "requests"
        if wait:
            return await _refuse(send, 429, f"rate limited: {limit} {what} per {self.per:g} s; retry in "
                                            f"{math.ceil(wait)} s", {"retry-after": str(math.ceil(wait))})
        await self.app(scope, receive, send)


def _header(scope: dict, name: bytes) -> str | None:
    value = dict(scope.get("headers") or []).get(name)
    return value.decode("latin-1") if value else None


def _by_address(scope: dict) -> str:
    return (scope.get("client") or ("?",))[0]


def _by_client(scope: dict) -> str:
    if isinstance(token := get_access_token(), Principal) and token.account:
        return token.account.id
    if token := _bearer(scope):
        return hashlib.sha256(token.encode()).hexdigest()[:32]
    return _by_address(scope)


async def _read_body(scope: dict, receive: Callable) -> bytes | None:
    """The request body, read whole once per request (None past MAX_BODY) and kept in the scope for the layers
    inside; the app then gets it again from `scope["runway_mcp.receive"]`."""
    if "runway_mcp.body" not in scope:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BODY:
                scope["runway_mcp.body"] = None
                return None
            more = message.get("more_body", False)
        scope["runway_mcp.body"] = b"".join(chunks)
    return scope["runway_mcp.body"]


def _replaying(scope: dict, receive: Callable) -> Callable:
    """A receive that hands the app a body an outer layer already read (see _read_body), then goes on as before."""
    if scope.get("runway_mcp.body") is None:
        return receive
    replayed = False

    async def again() -> dict:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": scope["runway_mcp.body"], "more_body": False}
        return await receive()
    return again


def _creates(body: bytes, paid: Container[str]) -> bool:
    """Whether a JSON-RPC body calls a tool that creates tasks or uploads (one of `paid`)."""
    return any(m.get("method") == "tools/call" and isinstance(m.get("params"), dict) and m["params"].get("name") in paid
               for m in _messages(body))


class BodyReplay:
    """The innermost layer: the MCP app reads the body again that the layers outside it read (a body they stopped
    reading past MAX_BODY is refused: what is left of it is no request)."""

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if "runway_mcp.body" in scope and scope["runway_mcp.body"] is None:
            return await _refuse(send, 413, f"request body over {MAX_BODY // 1048576} MB")
        await self.app(scope, _replaying(scope, receive), send)


##############################################################################
# OAuth
##############################################################################
#
# Two ways for people to sign in over HTTP, both on the SDK's own auth classes (web hosts such as claude.ai and
# ChatGPT connect to OAuth servers only). With RUNWAY_MCP_OAUTH_ISSUER the server is a resource server of the
# organisation's identity provider: it checks the JWT access tokens that provider issues for it, spends
# RUNWAYML_API_SECRET, and gives each person (issuer and subject) an account of their own. With RUNWAY_MCP_OAUTH=keys
# it is its own authorization server: a person types their Runway key into its sign-in page once, and the tokens it
# issues stand for that key. They are sealed (AES-GCM) under RUNWAY_MCP_STATE_SECRET, so nothing is stored and any
# instance with the secret answers any request; the key goes to Runway and nowhere else.

ACCESS_TTL_S = 3600                     # an access token; then the client refreshes (and the key is checked again)
REFRESH_TTL_S = 30 * 24 * 3600          # a refresh token: a month without signing in again
CODE_TTL_S = 120                        # an authorization code, between the sign-in page and the client's /token
SIGN_IN_TTL_S = 600                     # the sign-in page, from /authorize to the person's answer
CLIENT_TTL_S = 10 * 365 * 24 * 3600     # a registered client (its sealed id): until the secret is rotated
VERIFIED_MAX = 10_000                   # token verdicts kept (each until its token expires), per server
JWKS_REFETCH_S = 60.0                   # an unknown signing key makes the issuer's keys be fetched again, this seldom
SIGNING_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt", "jwt"}     # RFC 9068's, and the plain JWT most issuers use
CLIENT_DOCUMENT_MAX = 5 * 1024          # a client ID metadata document, at most
CLIENT_DOCUMENTS_KEPT = 1000
CLIENT_DOCUMENT_S = (300.0, 86400.0)    # kept for its max-age, within these bounds
CLIENT_DOCUMENT_DEADLINE_S = 5.0        # a document not whole by then is no document (however slowly it drips)
CLIENT_DOCUMENTS_FETCHED = 4            # fetched at once, at most
CLIENT_DOCUMENT_TURN_S = 2.0            # a sign-in waits this long for a turn to fetch, then is refused
SIGN_IN_BODY_MAX = 16 * 1024


def resource_of(config: Config) -> str:
    """The server's resource identifier (RFC 8707): what its access tokens must be for."""
    return config.public_url + "/mcp"


def _public(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.hostname) and not parts.query and not parts.fragment and (
        parts.scheme == "https" or parts.scheme == "http" and _is_loopback(parts.hostname))


def http_problems(config: Config) -> list[str]:
    """Why the HTTP credentials configured cannot work, one line each (an HTTP server with any of these does not
    start): two that want the Authorization header, or OAuth settings that cannot work."""
    problems = [problem for problem in config.problems if problem.startswith("RUNWAY_MCP_OAUTH=")]   # _oauth_mode's
    if config.keys_from_clients and config.http_token:
        problems.append("RUNWAY_MCP_KEYS_FROM_CLIENTS and RUNWAY_MCP_HTTP_TOKEN both want the Authorization header: "
                        "with client keys, each client's Runway key is its credential; unset RUNWAY_MCP_HTTP_TOKEN")
    if not (config.oauth_issuer or config.oauth_keys):
        return problems
    if config.oauth_issuer and config.oauth_keys:
        problems.append("RUNWAY_MCP_OAUTH_ISSUER and RUNWAY_MCP_OAUTH=keys are two ways to sign in: choose one")
    if config.keys_from_clients or config.http_token:
        problems.append("with OAuth, the access token is the credential: unset RUNWAY_MCP_KEYS_FROM_CLIENTS and "
                        "RUNWAY_MCP_HTTP_TOKEN")
    if not _public(config.public_url):
        problems.append(f"RUNWAY_MCP_PUBLIC_URL={config.public_url!r} must be the server's public https:// base URL "
                        "(http:// only on this machine), e.g. https://mcp.example.com")
    if config.oauth_issuer and not _public(config.oauth_issuer):
        problems.append(f"RUNWAY_MCP_OAUTH_ISSUER={config.oauth_issuer!r} must be the issuer's https:// URL, exactly as "
                        "its metadata names it (http:// only on this machine)")
    if config.oauth_issuer and not config.api_key:
        problems.append("RUNWAY_MCP_OAUTH_ISSUER spends the server's key for everyone who signs in: set "
                        "RUNWAYML_API_SECRET")
    if config.oauth_keys and not config.state_secret:
        problems.append("RUNWAY_MCP_OAUTH=keys seals its tokens with RUNWAY_MCP_STATE_SECRET: set it, at least 32 "
                        "random characters, the same on every instance")
    return problems


class Sealed:
    """Small JSON payloads sealed with AES-256-GCM under a key derived from RUNWAY_MCP_STATE_SECRET and the
    deployment (its public URL): a version byte, a nonce, the ciphertext, in base64url. The purpose is the associated
    data, so that one kind (a code) never opens as another (an access token); each carries its expiry. A new secret
    opens nothing sealed under the old one, nor does another deployment that was given the same secret."""

    VERSION = 1

    def __init__(self, secret: str, deployment: str):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self._aead = AESGCM(hmac.new(secret.encode(), b"runway-mcp oauth seal v1 " + deployment.encode(),
                                     hashlib.sha256).digest())
        self.csrf_key = hmac.new(secret.encode(), b"runway-mcp oauth csrf v1", hashlib.sha256).digest()

    def seal(self, purpose: str, payload: dict, ttl: float) -> str:
        body = json.dumps({**payload, "exp": int(time.time() + ttl)}, separators=(",", ":")).encode()
        nonce = os.urandom(12)
        sealed = bytes([self.VERSION]) + nonce + self._aead.encrypt(nonce, body, purpose.encode())
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, purpose: str, sealed: str) -> dict | None:
        """The payload, or None when it is not one of ours, not for this purpose, tampered with or expired."""
        from cryptography.exceptions import InvalidTag
        if not sealed or len(sealed) > 8192:
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
            payload = json.loads(self._aead.decrypt(raw[1:13], raw[13:], purpose.encode())) if raw[:1] == bytes(
                [self.VERSION]) else None
        except (ValueError, InvalidTag):
            return None
        return payload if isinstance(payload, dict) and payload.get("exp", 0) > time.time() else None


def _read_within(response: Any, most: int, deadline: float) -> bytes:
    """Up to `most` bytes of a streamed response, whatever has come by `deadline` (monotonic): a body that drips a
    byte at a time cannot hold a thread for longer (each read returns what has arrived, or waits one read timeout)."""
    body = b""
    while len(body) < most and time.monotonic() < deadline:
        chunk = response.raw.read1(most - len(body))
        if not chunk:
            return body
        body += chunk
    raise ValueError("not whole in time")


def _digest(value: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest()[:16]).rstrip(b"=").decode()


class TokenVerdicts:
    """Tokens found good, each kept until it expires, in a bounded table (a refusal is not kept: it may have been
    the issuer's passing failure, and a forged token costs little to refuse again)."""

    def __init__(self) -> None:
        self._kept: collections.OrderedDict[str, tuple[Principal, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> Principal | None:
        with self._lock:
            found = self._kept.get(_digest(token))
        return found[0] if found and found[1] > time.time() else None

    def keep(self, token: str, principal: Principal) -> None:
        """Keep a good token's principal until it expires, an hour at most (so that a key the issuer withdraws is
        noticed on its next check)."""
        until = min(float(principal.expires_at or 0), time.time() + ACCESS_TTL_S)
        with self._lock:
            self._kept[_digest(token)] = (principal, until)
            self._kept.move_to_end(_digest(token))
            while len(self._kept) > VERIFIED_MAX:
                self._kept.popitem(last=False)


class CannotJudge(Exception):
    """A credential that cannot be judged now (Runway cannot be asked about its key, the identity provider about
    its signing keys): 503, not 401, so that a passing outage signs nobody out."""


def issuer_account(config: Config, issuer: str, subject: str) -> Account:
    """A person signed in through the identity provider: the server's key, a folder of their own, named by a keyed
    hash of who they are (issuer and subject) so that the name tells nobody without the secret who it is."""
    name = account_name(config, f"oauth {issuer} {subject}")
    return Account(config, config.api_key, config.output_dir / "accounts" / name, name, hosted=True, shared_key=True)


class IssuerTokens:
    """RUNWAY_MCP_OAUTH_ISSUER's access tokens (JWTs, RFC 9068): signed with a key the issuer publishes (asymmetric
    algorithms only), issued by it, for this server's resource, unexpired, naming a subject. The SDK's TokenVerifier;
    blocking work (the issuer's keys, a signature) runs in a worker thread."""

    def __init__(self, config: Config):
        self.config, self.resource, self.verdicts = config, resource_of(config), TokenVerdicts()
        self._keys: dict[str, Any] = {}
        self._fetched = -JWKS_REFETCH_S         # when the issuer's keys were last fetched (monotonic)
        self._unreadable = ""                   # why the last fetch failed, until one succeeds
        self._lock = threading.Lock()

    async def verify_token(self, token: str) -> Principal | None:
        if (principal := self.verdicts.get(token)) is None:
            if (principal := await anyio.to_thread.run_sync(self._verify, token)) is not None:
                self.verdicts.keep(token, principal)
        return principal

    def _verify(self, token: str) -> Principal | None:
        import jwt
        try:
            header = jwt.get_unverified_header(token)
            if str(header.get("typ", "jwt")).lower() not in ACCESS_TOKEN_TYPES:
                return None                     # an ID token or another kind: not an access token for this server
            key = self._signing_key(str(header.get("kid", "")))
            if key is None:
                return None
            claims = jwt.decode(token, key, algorithms=SIGNING_ALGORITHMS, audience=self.resource,
                                issuer=self.config.oauth_issuer, leeway=30,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        if not str(claims["sub"]).strip():
            return None                         # no one in particular: not an account
        account = issuer_account(self.config, claims["iss"], str(claims["sub"]))
        granted = claims.get("scope", claims.get("scp", ""))          # a string (RFC 9068); Entra: `scp`, maybe a list
        scopes = granted.split() if isinstance(granted, str) else [str(s) for s in granted or []]
        return Principal(token=token, client_id=str(claims.get("client_id") or claims.get("azp") or ""),
                         scopes=scopes, expires_at=int(claims["exp"]),
                         resource=self.resource, subject=str(claims["sub"]), claims={"iss": claims["iss"]},
                         account=account)

    def _signing_key(self, kid: str) -> Any:
        """The issuer's key named `kid`: its published keys are fetched again for an unknown one, but at most once
        per JWKS_REFETCH_S and by one thread at a time, so that forged tokens cannot make this server hammer the
        issuer, and a slow issuer delays no token whose key is known (nor waits on another's fetch)."""
        if kid not in self._keys and time.monotonic() - self._fetched >= JWKS_REFETCH_S and self._lock.acquire(
                blocking=False):
            try:
                self._fetched = time.monotonic()
                self._keys, self._unreadable = self._published_keys(), ""
            except RunwayError as error:
                log.warning("cannot check access tokens: %s", error)
                self._unreadable = str(error)
            finally:
                self._lock.release()
        keys = self._keys
        key = next(iter(keys.values())) if not kid and len(keys) == 1 else keys.get(kid)
        if key is None and self._unreadable:        # not a forged key id: one the issuer could not be asked about
            raise CannotJudge("the identity provider's signing keys cannot be read now; try again shortly")
        return key

    def _published_keys(self) -> dict[str, Any]:
        """kid -> key, from the issuer's metadata (whose `issuer` must be the one configured) and its jwks_uri."""
        import jwt
        import requests
        issuer = self.config.oauth_issuer
        metadata = None
        for suffix in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            try:
                response = requests.get(issuer.rstrip("/") + suffix, timeout=API_TIMEOUT, allow_redirects=False)
                if response.ok:
                    metadata = response.json()
                    break
            except (requests.RequestException, ValueError):
                continue
        if not isinstance(metadata, dict) or metadata.get("issuer") != issuer or not metadata.get("jwks_uri"):
            raise RunwayError(f"the issuer {issuer} publishes no metadata naming itself and its keys (jwks_uri)")
        try:
            keys = jwt.PyJWKSet.from_dict(requests.get(metadata["jwks_uri"], timeout=API_TIMEOUT,
                                                       allow_redirects=False).json()).keys
        except (requests.RequestException, ValueError, jwt.PyJWTError) as error:
            raise RunwayError(f"the issuer's keys at {metadata['jwks_uri']} could not be read ({error})") from None
        return {key.key_id or "": key for key in keys if key.public_key_use in (None, "sig")}


class KeyCode(AuthorizationCode):
    key: str = Field(exclude=True)


class KeyRefresh(RefreshToken):
    key: str = Field(exclude=True)


class KeyAuthority:
    """RUNWAY_MCP_OAUTH=keys: the SDK's authorization-server provider, storing nothing. A registered client's id is
    its registration, sealed; /authorize sends the person to the sign-in page with the request sealed; the page
    checks their key with Runway and returns a code sealing the key; codes, access and refresh tokens seal the key
    and the client they were issued to. Every access token is checked against Runway's latest verdict on its key (see
    KeyVerdicts), so a key revoked at Runway stops working here within minutes."""

    def __init__(self, config: Config, verdicts: KeyVerdicts):
        self.config, self.verdicts, self.sealed = config, verdicts, Sealed(config.state_secret, config.public_url)
        self.issuer, self.resource = config.public_url, resource_of(config)
        self.fetching = anyio.CapacityLimiter(CLIENT_DOCUMENTS_FETCHED)
        self._documents: collections.OrderedDict[str, tuple[OAuthClientInformationFull | None, float]] = \
            collections.OrderedDict()
        self._documents_lock = threading.Lock()     # CLIENT_DOCUMENTS_FETCHED threads keep documents at once

    # Clients ----------------------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if client_id.startswith(("https://", "http://")):
            client = None
            with anyio.move_on_after(CLIENT_DOCUMENT_TURN_S):      # a fetch, once begun, ends by its own deadline
                client = await anyio.to_thread.run_sync(self._client_document, client_id, limiter=self.fetching)
            return client
        registered = self.sealed.open("client", client_id)
        if registered is None:
            return None
        return OAuthClientInformationFull(**{k: v for k, v in registered.items() if k != "exp"}, client_id=client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        """Dynamic registration (RFC 7591) with nothing stored: the client id the SDK returns is the registration."""
        for uri in client_info.redirect_uris or []:
            if not _public(str(uri)):
                raise RegistrationError("invalid_redirect_uri", f"{uri} is not https (http only on this machine)")
        registered = client_info.model_dump(mode="json", exclude_none=True, exclude={"client_id", "exp"})
        client_info.client_id = self.sealed.seal("client", registered, CLIENT_TTL_S)

    def _client_document(self, url: str) -> OAuthClientInformationFull | None:
        """A client ID metadata document: fetched (https, a public address, no redirects, at most 5 KB, whole within
        CLIENT_DOCUMENT_DEADLINE_S) and kept for its max-age. Its client_id must be its own URL; it may use no client
        secret, and its redirect URIs are held to what registration allows."""
        now = time.monotonic()
        with self._documents_lock:
            kept = self._documents.get(url)
        if kept and kept[1] > now:
            return kept[0]
        client, max_age = None, CLIENT_DOCUMENT_S[0]
        try:
            response = fetch_link(self.config, "GET", url, "the client's metadata document", timeout=(3.0, 2.0),
                                  stream=True, attempts=1, follow=False)
            with response:
                body = _read_within(response, CLIENT_DOCUMENT_MAX + 1, now + CLIENT_DOCUMENT_DEADLINE_S)
            if response.status_code == 200 and len(body) <= CLIENT_DOCUMENT_MAX:
                client = self._client_of(url, json.loads(body))
            if found := re.search(r"max-age=(\d+)", response.headers.get("Cache-Control", "")):
                max_age = min(max(float(found[1]), CLIENT_DOCUMENT_S[0]), CLIENT_DOCUMENT_S[1])
        except (RunwayError, OSError, ValueError, ValidationError) as error:
            log.info("client metadata document %s refused: %s", url[:200], error)
        with self._documents_lock:
            self._documents[url] = (client, now + max_age)
            while len(self._documents) > CLIENT_DOCUMENTS_KEPT:
                self._documents.popitem(last=False)
        return client

    def _client_of(self, url: str, document: Any) -> OAuthClientInformationFull | None:
        if not (isinstance(document, dict) and document.get("client_id") == url and document.get("redirect_uris")):
            return None
        if not all(isinstance(uri, str) and _public(uri) for uri in document["redirect_uris"]):
            return None
        if document.get("token_endpoint_auth_method", "none") != "none":
            return None
        fields = {k: document[k] for k in ("redirect_uris", "client_name", "client_uri", "logo_uri", "grant_types",
                                           "response_types") if k in document}
        return OAuthClientInformationFull(**fields, client_id=url, token_endpoint_auth_method="none",
                                          scope=self.config.oauth_scope)

    # Authorization ------------------------------------------------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource not in (None, self.resource):
            raise AuthorizeError("invalid_target", f"this server is {self.resource}")
        request = {"client": client.client_id, "name": client.client_name or "", "redirect_uri": str(
            params.redirect_uri), "explicit": params.redirect_uri_provided_explicitly, "state": params.state,
            "challenge": params.code_challenge, "scopes": params.scopes or [self.config.oauth_scope]}
        return f"{self.issuer}/sign-in?request={self.sealed.seal('sign-in', request, SIGN_IN_TTL_S)}"

    def code_for(self, request: dict, key: str) -> str:
        """The authorization code a person's sign-in earns: the key and the request it answers, sealed."""
        code = {"client": _digest(request["client"]), "redirect_uri": request["redirect_uri"], "key": key,
                "explicit": request["explicit"], "challenge": request["challenge"], "scopes": request["scopes"]}
        return self.sealed.seal("code", code, CODE_TTL_S)

    async def load_authorization_code(self, client: OAuthClientInformationFull, authorization_code: str
                                      ) -> KeyCode | None:
        code = self.sealed.open("code", authorization_code)
        if not code or code["client"] != _digest(client.client_id):
            return None
        return KeyCode(code=authorization_code, scopes=code["scopes"], expires_at=code["exp"],
                       client_id=client.client_id, code_challenge=code["challenge"], redirect_uri=code["redirect_uri"],
                       redirect_uri_provided_explicitly=code["explicit"], resource=self.resource, key=code["key"])

    async def exchange_authorization_code(self, client: OAuthClientInformationFull, authorization_code: KeyCode
                                          ) -> OAuthToken:
        return self._tokens(client, authorization_code.key, authorization_code.scopes)

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> KeyRefresh | None:
        token = self.sealed.open("refresh", refresh_token)
        if not token or token["client"] != _digest(client.client_id):
            return None
        return KeyRefresh(token=refresh_token, client_id=client.client_id, scopes=token["scopes"],
                          expires_at=token["exp"], resource=self.resource, key=token["key"])

    async def exchange_refresh_token(self, client: OAuthClientInformationFull, refresh_token: KeyRefresh,
                                     scopes: list[str]) -> OAuthToken:
        if await self._works(refresh_token.key) is False:          # Runway refused it (not: could not be asked)
            raise TokenError("invalid_grant", "Runway no longer accepts the key this sign-in stands for: sign in again")
        return self._tokens(client, refresh_token.key, scopes or refresh_token.scopes)

    def _tokens(self, client: OAuthClientInformationFull, key: str, scopes: list[str]) -> OAuthToken:
        grant = {"client": _digest(client.client_id), "key": key, "scopes": scopes}
        return OAuthToken(access_token=self.sealed.seal("access", grant, ACCESS_TTL_S), expires_in=ACCESS_TTL_S,
                          refresh_token=self.sealed.seal("refresh", grant, REFRESH_TTL_S), scope=" ".join(scopes))

    async def load_access_token(self, token: str) -> Principal | None:
        """The principal of an access token this server issued for a key Runway still accepts; None otherwise, and
        CannotJudge when Runway cannot be asked (a passing outage must not sign everyone out)."""
        grant = self.sealed.open("access", token)
        if not grant:
            return None
        if (works := await self._works(grant["key"])) is None:
            raise CannotJudge("Runway could not be asked whether your key works; try again shortly")
        if not works:
            return None
        account = client_account(self.config, grant["key"])
        return Principal(token=token, client_id=grant["client"], scopes=grant["scopes"], expires_at=grant["exp"],
                         resource=self.resource, subject=account.id, claims={"iss": self.issuer}, account=account)

    async def revoke_token(self, token: Any) -> None:
        """Sealed tokens cannot be revoked one by one (nothing is stored); no revocation endpoint is offered."""

    async def _works(self, key: str) -> bool | None:
        """Runway's verdict on the key: kept, or asked now; None when it could not be asked."""
        return await self.verdicts.judge(key, 5)


# The sign-in page of RUNWAY_MCP_OAUTH=keys: the client's name and where the person will be sent, one field for
# their key. It is never framed, cached or referred, and a form is accepted only with the token it was served with
# (a cookie and a hidden field bound to it, against cross-site posts).
SIGN_IN_HEADERS = {"x-frame-options": "DENY", "cache-control": "no-store", "referrer-policy": "no-referrer",
                   "x-content-type-options": "nosniff", "content-security-policy": "default-src 'none'; style-src "
                   "'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"}
SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to Runway</title>
<style>body{{font:16px system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;color:#222}}
input{{width:100%;box-sizing:border-box;padding:.6rem;font:inherit;margin:.5rem 0}}
button{{padding:.6rem 1.2rem;font:inherit}}.error{{color:#b00020}}.small{{color:#666;font-size:.9rem}}</style>
</head><body>
<h1>Sign in to Runway</h1>
<p><strong>{client}</strong> asks to generate images, video and audio with your Runway account. You will be sent
back to <strong>{host}</strong>.</p>
{error}<form method="post" action="sign-in">
<input type="hidden" name="request" value="{request}"><input type="hidden" name="csrf" value="{csrf}">
<label for="key">Your Runway API key</label>
<input id="key" name="key" type="password" autocomplete="off" required placeholder="key_..." autofocus>
<button type="submit">Sign in</button>
</form>
<p class="small">Create a key at <a href="https://dev.runwayml.com">dev.runwayml.com</a>. It is checked with Runway
and never stored or shown here; revoking it there signs you out within minutes.</p>
</body></html>
"""


async def _small_form(request: Any) -> dict[str, str] | None:
    """A form's fields, or None when its body passes SIGN_IN_BODY_MAX (it is not read further)."""
    if int(request.headers.get("content-length") or 0) > SIGN_IN_BODY_MAX:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > SIGN_IN_BODY_MAX:
            return None
    return {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}


class SignIn:
    """GET and POST /sign-in (RUNWAY_MCP_OAUTH=keys)."""

    def __init__(self, authority: KeyAuthority):
        self.authority = authority

    async def page(self, request: Any) -> Any:
        sealed = request.query_params.get("request", "")
        if not (asked := self.authority.sealed.open("sign-in", sealed)):
            return self._gone(400, "This sign-in link has expired or is not one of this server's: start again from "
                                   "your app.")
        return self._page(sealed, asked, request.cookies.get("runway_mcp_csrf", ""), 200, "")

    async def submit(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse, RedirectResponse
        form = await _small_form(request)
        if form is None:
            return PlainTextResponse("too large for a sign-in form", status_code=413, headers=SIGN_IN_HEADERS)
        sealed, key, cookie = form.get("request", ""), form.get("key", "").strip(), request.cookies.get(
            "runway_mcp_csrf", "")
        asked = self.authority.sealed.open("sign-in", sealed)
        if not asked or not cookie or not hmac.compare_digest(form.get("csrf", ""), self._csrf(cookie, sealed)):
            return self._gone(403, "This form has expired or did not come from this page: start again from your app.")
        if not KEY_PATTERN.fullmatch(key):
            return self._page(sealed, asked, cookie, 400, "That is not a Runway API key: it starts with key_ and is "
                                                          "followed by 128 hexadecimal characters.")
        verdicts = self.authority.verdicts
        if verdicts.known(key) is None and verdicts.new_keys.take(_by_address(request.scope)):
            return self._page(sealed, asked, cookie, 429, "Too many keys tried from here: wait a minute and try again.")
        verdict = await verdicts.judge(key, 10)                 # a person waits longer
        if verdict is None:
            return self._page(sealed, asked, cookie, 503, "Runway could not be asked whether this key works: try "
                                                          "again in a moment.")
        if not verdict:
            return self._page(sealed, asked, cookie, 401, "Runway did not accept this key (wrong, revoked or for "
                                                          "another environment). Copy it again from dev.runwayml.com.")
        to = construct_redirect_uri(asked["redirect_uri"], code=self.authority.code_for(asked, key),
                                    state=asked["state"], iss=self.authority.issuer)
        return RedirectResponse(to, status_code=303, headers={"cache-control": "no-store"})

    def _csrf(self, cookie: str, sealed: str) -> str:
        return hmac.new(self.authority.sealed.csrf_key, f"{cookie}|{sealed}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _gone(status: int, error: str) -> Any:
        """A page without the form: the sign-in request is not one to answer."""
        from starlette.responses import HTMLResponse
        return HTMLResponse(f"<!doctype html><title>Sign in</title><p>{html.escape(error)}</p>", status_code=status,
                            headers=SIGN_IN_HEADERS)

    def _page(self, sealed: str, asked: dict, cookie: str, status: int, error: str) -> Any:
        """The form for the sign-in request `sealed` (`asked`, opened), with `error` above it if any."""
        from starlette.responses import HTMLResponse
        cookie = cookie or secrets.token_urlsafe(24)
        page = SIGN_IN_PAGE.format(
            client=html.escape(asked["name"] or "An MCP client"), host=html.escape(urlsplit(asked["redirect_uri"])
                                                                                 .hostname or "?"),
            error=f'<p class="error">{html.escape(error)}</p>' if error else "", request=html.escape(sealed),
            csrf=self._csrf(cookie, sealed))
        response = HTMLResponse(page, status_code=status, headers=SIGN_IN_HEADERS)
        response.set_cookie("runway_mcp_csrf", cookie, max_age=SIGN_IN_TTL_S, path="/", httponly=True,
                            samesite="strict", secure=self.authority.issuer.startswith("https://"))
        return response


def authorization_metadata(config: Config) -> dict:
    """RFC 8414 metadata for RUNWAY_MCP_OAUTH=keys, with what the SDK's own leaves out and hosts look for: public
    clients ("none"), client ID metadata documents, and `iss` in the authorization response (RFC 9207)."""
    base = config.public_url
    return {"issuer": base, "authorization_endpoint": f"{base}/authorize", "token_endpoint": f"{base}/token",
            "registration_endpoint": f"{base}/register", "scopes_supported": [config.oauth_scope],
            "response_types_supported": ["code"], "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"], "client_id_metadata_document_supported": True,
            "authorization_response_iss_parameter_supported": True}


class ChallengeScope:
    """Name the scope in every Bearer challenge (401 and 403), as MCP asks; the SDK's names the metadata only."""

    def __init__(self, app: Callable, scope_name: str):
        self.app, self.challenge_scope = app, f', scope="{scope_name}"'.encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        async def named(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                message = {**message, "headers": [
                    (k, v + self.challenge_scope if k.lower() == b"www-authenticate" and v.startswith(b"Bearer ")
                     and b"scope=" not in v else v) for k, v in message.get("headers") or []]}
            await send(message)
        await self.app(scope, receive, named)


AUTHORIZE_ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in request refused</title></head><body>
<h1>This sign-in request cannot be served</h1>
<p>{reason}</p>
<p>Go back to <strong>{host}</strong> and connect again; if this persists, the app asks for something this server
does not offer.</p>
</body></html>
"""


class ErrorsStayHere:
    """/authorize answers an error in a registered client's request with a page of its own, not a redirect to the
    client: registration is open, so a redirect would let anyone make this server send people to any site."""

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or _route(scope) != "/authorize":
            return await self.app(scope, receive, send)
        replaced = False

        async def kept(message: dict) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                location = dict(message.get("headers") or []).get(b"location", b"").decode("latin-1")
                found = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
                if "error" in found:
                    from starlette.responses import HTMLResponse
                    replaced = True
                    page = AUTHORIZE_ERROR_PAGE.format(
                        reason=html.escape(found.get("error_description") or found["error"]),
                        host=html.escape(urlsplit(location).hostname or "the app"))
                    return await HTMLResponse(page, 400, headers=SIGN_IN_HEADERS)(scope, receive, send)
            if not (replaced and message["type"] == "http.response.body"):
                await send(message)
        await self.app(scope, receive, kept)


class SignedIn:
    """OAuth: the account a request's access token names, for the layers inside (a rate limit per person, the cap on
    sessions). A request without a valid token passes on unchanged, for the SDK to answer with its challenge."""

    def __init__(self, app: Callable, verify: Callable[[str], Any]):
        self.app, self.verify, self.sessions = app, verify, SessionCap()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        token = None if _open(scope) else _bearer(scope)
        try:
            principal = await self.verify(token) if token else None
        except CannotJudge as error:
            return await _refuse(send, 503, str(error), {"retry-after": "10"})
        if not isinstance(principal, Principal) or principal.account is None:
            return await self.app(scope, receive, send)
        await self.sessions.admit(self.app, principal, scope, receive, send)


class SignInSetup(NamedTuple):
    """How people sign in over HTTP, as the parts of the app need it (see oauth_setup)."""

    server: dict[str, Any]                  # for MCPServer: token_verifier or auth_server_provider, and auth
    verify: Callable[[str], Any] | None     # checks an access token for the layers outside the SDK (SignedIn)
    authority: KeyAuthority | None          # RUNWAY_MCP_OAUTH=keys: the authorization server, for its sign-in page


def oauth_setup(config: Config) -> SignInSetup:
    """The SDK's resource server (RUNWAY_MCP_OAUTH_ISSUER), or its authorization server too (RUNWAY_MCP_OAUTH=keys);
    nothing without OAuth."""
    from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
    resource, scopes = resource_of(config), [config.oauth_scope]
    if config.oauth_issuer:
        tokens = IssuerTokens(config)
        return SignInSetup({"token_verifier": tokens, "auth": AuthSettings(
            issuer_url=config.oauth_issuer, resource_server_url=resource, required_scopes=scopes,
            validate_token_resource=True)}, tokens.verify_token, None)
    if config.oauth_keys:
        authority = KeyAuthority(config, KeyVerdicts(config))
        registration = ClientRegistrationOptions(enabled=True, valid_scopes=scopes, default_scopes=scopes)
        return SignInSetup({"auth_server_provider": authority, "auth": AuthSettings(
            issuer_url=config.public_url, resource_server_url=resource, required_scopes=scopes,
            client_registration_options=registration, validate_token_resource=True)}, authority.load_access_token,
            authority)
    return SignInSetup({}, None, None)


def add_sign_in(app: Any, config: Config, authority: KeyAuthority) -> None:
    """RUNWAY_MCP_OAUTH=keys: the sign-in page, and this server's authorization metadata ahead of the SDK's (the
    first route that matches a path serves it)."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    sign_in, metadata = SignIn(authority), authorization_metadata(config)

    async def served_metadata(request: Any) -> Any:
        return JSONResponse(metadata, headers={"cache-control": "public, max-age=3600",
                                               "access-control-allow-origin": "*"})
    app.router.routes[:0] = [Route("/.well-known/oauth-authorization-server", served_metadata, methods=["GET"]),
                             Route("/sign-in", sign_in.page, methods=["GET"]),
                             Route("/sign-in", sign_in.submit, methods=["POST"])]


##############################################################################
# HTTP app
##############################################################################

class HttpApp:
    """The HTTP transport of one server, as an ASGI app: serve it with any ASGI server, or mount it in an app of your
    own (whose lifespan must then run `lifespan()`: a mounted app's own lifespan never runs)."""

    def __init__(self, server: MCPServer, app: Callable):
        self.server, self.app = server, app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        await self.app(scope, receive, send)

    def lifespan(self) -> contextlib.AbstractAsyncContextManager:
        return self.server.session_manager.run()


async def _healthz(request: Any) -> Any:
    """For load balancers: answers without authentication and says nothing about the server."""
    from starlette.responses import PlainTextResponse
    return PlainTextResponse("ok")


def http_app(config: Config, host: str = "127.0.0.1") -> HttpApp:
    """A server for `config` over streamable HTTP at /mcp (DNS-rebinding protection on), inside these layers,
    outermost first: CORS (answers a browser's preflight, which carries no credentials), with OAuth the scope named
    in every challenge, a rate limit per address, the credential (RUNWAY_MCP_HTTP_TOKEN, each client's own Runway
    key, or an OAuth access token), a rate limit per client, the body kept for the layers that read it, with
    RUNWAY_MCP_OAUTH=keys sign-in errors kept on this server, then MCP (and the sign-in routes). /healthz passes
    every layer. `host` is the address it will be bound to. RunwayError when the credentials configured cannot work
    (see http_problems)."""
    from mcp.server.transport_security import TransportSecuritySettings
    if problems := http_problems(config):
        raise RunwayError("; ".join(problems))
    config = dataclasses.replace(config, transport="http", output_dir=Path(config.output_dir).expanduser().resolve())
    oauth = oauth_setup(config)
    server = _new_server(config, **oauth.server)
    config = server.config                      # as the server keeps it
    server.custom_route("/healthz", methods=["GET"])(_healthz)
    names = ["127.0.0.1", "localhost", "[::1]", *config.allowed_hosts]
    if not _is_loopback(host) and host not in ("0.0.0.0", "::", ""):
        names.append(f"[{host}]" if ":" in host else host)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[h for name in names for h in (name, f"{name}:*")],
        allowed_origins=[f"{scheme}://{h}" for name in names for scheme in ("http", "https")
                         for h in (name, f"{name}:*")] + list(config.allowed_origins))
    idle = {"session_idle_timeout": SESSION_IDLE_S} if hosted_mode(config) else {}
    served = server.streamable_http_app(streamable_http_path="/mcp", host=host, transport_security=security,
                                        max_request_body_size=MAX_BODY, stateless_http=config.stateless, **idle)
    if oauth.authority:
        add_sign_in(served, config, oauth.authority)
    app: Callable = BodyReplay(ErrorsStayHere(served) if oauth.authority else served)
    paid = frozenset(name for name, definition in TOOLS.items() if definition.annotations is PAID)
    if config.rate_limit:
        app = RateLimit(app, *config.rate_limit, paid=paid)
    if config.keys_from_clients:
        app = ClientKeys(app, config)
    elif config.http_token:
        app = BearerToken(app, config.http_token)
    elif oauth.verify:
        app = SignedIn(app, oauth.verify)
    if config.rate_limit:                       # before any credential, from the headers alone
        app = AddressLimit(app, *config.rate_limit)
    if oauth.verify:
        app = ChallengeScope(app, config.oauth_scope)
    if config.allowed_origins:                  # web MCP clients connect from pages on other origins
        from starlette.middleware.cors import CORSMiddleware
        app = CORSMiddleware(app, allow_origins=list(config.allowed_origins), allow_headers=["*"],
                             allow_methods=["GET", "POST", "DELETE", "OPTIONS"], expose_headers=["Mcp-Session-Id"],
                             max_age=600)
    return HttpApp(server, app)


##############################################################################
# Command line
##############################################################################

def _check(config: Config) -> int:
    """--check: verify the key against GET /v1/organization; print the balance. Exit status 0 or 1."""
    account = own_account(config)
    try:
        org = api(account, "GET", "/v1/organization", attempts=2)
    except RunwayError as error:
        print(f"runway-mcp: {redact(str(error), account)}", file=sys.stderr)
        return 1
    print(f"OK: the key works; credit balance {org.get('creditBalance')} credits; outputs go to {config.output_dir}")
    return 0


HOSTS = ("claude-desktop", "claude-code", "cursor", "vscode")
KEY_PLACEHOLDER = "key_REPLACE_WITH_YOUR_RUNWAY_KEY"       # never the real key: configs get pasted and shared


def launch_command() -> list[str]:
    """How a host starts this server on this machine, by absolute paths (GUI hosts do not see the shell's PATH):
    the installed runway-mcp command, or uv running this file (it installs what the script block lists), or
    this interpreter running this file."""
    if Path(sys.argv[0]).name == "runway-mcp" and Path(sys.argv[0]).exists():
        return [str(Path(sys.argv[0]).absolute())]
    here = str(Path(__file__).resolve())
    uv = shutil.which("uv")
    return [uv, "run", "--script", here] if uv else [sys.executable, here]


def host_config(host: str) -> str:
    """A block to paste into a host's MCP settings, with a placeholder for the key."""
    command, *args = launch_command()
    server = {"command": command, "args": args, "env": {"RUNWAYML_API_SECRET": KEY_PLACEHOLDER}}
    if host == "claude-code":
        import shlex
        return shlex.join(["claude", "mcp", "add", "runway", "--scope", "user", "-e",
                           f"RUNWAYML_API_SECRET={KEY_PLACEHOLDER}", "--", command, *args])
    if host == "vscode":          # .vscode/mcp.json: "servers", and an input that asks for the key once
        key = {"type": "promptString", "id": "runway-api-key", "description": "Runway API key (dev.runwayml.com)",
               "password": True}
        server = {"type": "stdio", **server, "env": {"RUNWAYML_API_SECRET": "${input:runway-api-key}"}}
        return json.dumps({"inputs": [key], "servers": {"runway": server}}, indent=2)
    return json.dumps({"mcpServers": {"runway": server}}, indent=2)


HOST_HINTS = {
    "claude-desktop": f"Paste it into claude_desktop_config.json (Settings > Developer > Edit Config) with your key "
                      f"in place of {KEY_PLACEHOLDER}, then restart Claude Desktop.",
    "claude-code": f"Run it once in a terminal, with your key in place of {KEY_PLACEHOLDER}.",
    "cursor": f"Paste it into ~/.cursor/mcp.json (or .cursor/mcp.json in a project) with your key in place of "
              f"{KEY_PLACEHOLDER}.",
    "vscode": "Paste it into .vscode/mcp.json; VS Code asks for the key once and keeps it.",
}


def _serve_http(config: Config, host: str, port: int) -> int:
    import uvicorn  # only the HTTP transport needs it
    if problems := http_problems(config):
        for problem in problems:
            log.error("%s", problem)
        return 2
    if not _is_loopback(host) and not (config.http_token or hosted_mode(config)):
        log.error("refusing to serve HTTP on %s without RUNWAY_MCP_HTTP_TOKEN: anyone who can reach it could spend "
                  "your credits; set the variable (or sign people in: RUNWAY_MCP_KEYS_FROM_CLIENTS, "
                  "RUNWAY_MCP_OAUTH_ISSUER or RUNWAY_MCP_OAUTH=keys) or bind 127.0.0.1", host)
        return 2
    if hosted_mode(config) and not config.rate_limit:
        log.warning("people sign in to this server, but RUNWAY_MCP_RATE_LIMIT is not set: anyone who can reach it may "
                    "send requests without limit (only new Runway keys are limited, %d a minute per address); set a "
                    "rate such as RUNWAY_MCP_RATE_LIMIT=30/min", NEW_KEYS[0])
    log.info("serving MCP over streamable HTTP at http://%s:%d/mcp%s", host, port,
             " (each client's own Runway key)" if config.keys_from_clients else
             f" (people sign in with {config.oauth_issuer})" if config.oauth_issuer else
             f" (people sign in at {config.public_url}/sign-in with their Runway key)" if config.oauth_keys else
             " (bearer token required)" if config.http_token else "")
    uvicorn.run(http_app(config, host), host=host, port=port, log_config=None, access_log=False, log_level="warning")
    return 0


def _exit_promptly(grace: float = 0.5, status: int = 0) -> None:
    """After stdin closes (or Ctrl-C stops a call from a terminal): give worker threads `grace` seconds to finish,
    then exit with `status` regardless.

    The SDK has already abandoned their calls; one may still be inside a slow request (a poll read
    times out after up to 10 s, a download after 60 s), and hosts expect the process gone in a second.
    """
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)     # a worker blocked in a slow request would keep the process alive for its timeout


def _configure_logging(config: Config, level: int, line: str) -> None:
    """Log to stderr, every line through the redacting formatter; the configuration's problems and warnings
    first."""
    logging.basicConfig(stream=sys.stderr, level=level, force=True)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(line, own_account(config)))
    for message in config.problems + config.warnings:
        log.warning("%s", message)


# The terminal: `call TOOL key=value ...` and `tools`, to try a prompt without an MCP host. A call takes exactly
# the path an MCP call takes (call_tool); what is the terminal's own is how it waits (until the task ends, unless
# max_wait_s says otherwise), shows progress (stderr), asks for a confirmation (y/N) and exits.

TERMINAL_WAIT_S = 7 * 24 * 3600          # "until the task ends", for a call from a terminal without max_wait_s
EXIT_FAILED, EXIT_USAGE, EXIT_RUNNING, EXIT_INTERRUPTED = 1, 2, 3, 130
SHARED_ARGUMENTS = ("model", "options", "dry_run", "wait", "max_wait_s", "new")     # what INSTRUCTIONS explains
CALL_FLAGS = ("--json", "--yes", "--help", "-h")


class UsageError(Exception):
    """A command line that names no tool, an unknown one, or arguments it does not take: exit status 2."""


class Interrupted(Exception):
    """Ctrl-C stopped a call (what goes on at Runway has been said); args[0] is the exit status."""


# The command as this person runs it, for the commands the terminal suggests (set by _terminal).
PROGRAM: contextvars.ContextVar[str] = contextvars.ContextVar("runway_mcp_program", default="runway-mcp")


def _program_of(run: str, environ: Mapping[str, str]) -> str:
    """runway-mcp, or the file as it was run: through uv (which sets UV for what it runs), through its #! line, or
    by a python."""
    if not run.endswith(".py"):
        return "runway-mcp"
    if environ.get("UV"):
        return f"uv run --script {run}"
    return run if os.access(run, os.X_OK) and "/" in run else f"python {run}"


def _program() -> str:
    return PROGRAM.get()


def _resume(task_id: str) -> str:
    return f"Task {task_id} goes on at Runway. Resume with: {_program()} call wait_for_task task_id={task_id}"


def _terminal_tools(config: Config) -> dict[str, Tool]:
    exposed = exposed_tools(config.tools)[0]
    return {t.name: t for t in _built_tools() if exposed is None or t.name in exposed}


def _named_tool(tools: Mapping[str, Tool], name: str) -> Tool:
    if name not in tools:
        close = difflib.get_close_matches(name, tools, n=3) or [t for t in tools if name and name in t][:3]
        raise UsageError(f"no tool named {name!r}" + (f"; did you mean {' or '.join(close)}?" if close else "") +
                         f" ({_program()} tools lists them)")
    return tools[name]


def _takes_text_only(schema: dict) -> bool:
    kinds = [s.get("type") for s in schema.get("anyOf", [schema])]
    return "string" in kinds and set(kinds) <= {"string", "null"}


def _takes_structure_only(schema: dict) -> bool:
    return {s.get("type") for s in schema.get("anyOf", [schema])} - {"null"} <= {"object", "array"}


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number here")


def parse_arguments(tool: Tool, pairs: list[str]) -> dict[str, Any]:
    """key=value pairs as the tool's arguments: a value is JSON where it parses (10, true, '["a.png"]') and a string
    otherwise, and always a string for an argument that takes only text (prompt=42 is the prompt "42"). UsageError
    for what cannot be meant: an unknown or repeated name, a required one missing, an object that is not JSON."""
    properties, arguments = tool.parameters.get("properties", {}), {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals:
            flag = pair.lstrip("-").replace("-", "_")
            close = difflib.get_close_matches(pair, CALL_FLAGS, n=1)
            hint = (f"; for {flag} write {flag}=true" if flag in properties else
                    f"; did you mean {close[0]}?" if close else "")
            raise UsageError(f"{pair!r} is not key=value{hint} ({_program()} call {tool.name} --help)")
        if name not in properties:
            close = difflib.get_close_matches(name, properties, n=1)
            raise UsageError(f"{tool.name} takes no argument {name!r}" + (f"; did you mean {close[0]}?" if close else
                             f"; it takes: {', '.join(properties)}"))
        if name in arguments:
            raise UsageError(f"{name} is given twice: give it once")
        if _takes_text_only(properties[name]):
            arguments[name] = value
            continue
        try:
            arguments[name] = json.loads(value, parse_constant=_no_constant)        # NaN and Infinity are not values
        except ValueError as error:
            if _takes_structure_only(properties[name]):
                example = '["..."]' if "array" in json.dumps(properties[name]) else '{"key": "value"}'
                raise UsageError(f"{name} must be JSON here ({error}), e.g. {name}='{example}'") from None
            arguments[name] = value
    if missing := [n for n in tool.parameters.get("required", []) if n not in arguments]:
        raise UsageError(f"{tool.name} needs {', '.join(f'{n}=...' for n in missing)} ({_program()} call "
                         f"{tool.name} --help)")
    return arguments


def _signature(tool: Tool, shown: Callable[[str], bool]) -> str:
    schema = tool.parameters
    required = [n for n in schema.get("properties", {}) if n in schema.get("required", []) and shown(n)]
    optional = [n for n in schema.get("properties", {}) if n not in required and shown(n)]
    return " ".join([*(f"{n}=..." for n in required), *(f"[{n}]" for n in optional)])


def tools_text(config: Config) -> str:
    """`runway-mcp tools`: each tool with its arguments, one line each (required first, [optional] after)."""
    import textwrap
    tools = _terminal_tools(config)
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 10_000   # a pipe: whole lines
    pad = max(map(len, tools)) + 2
    lines = []
    for name, tool in tools.items():
        generates = "dry_run" in tool.parameters.get("properties", {})
        line = f"{name:<{pad}}{_signature(tool, lambda n: not generates or n not in SHARED_ARGUMENTS)}".rstrip()
        lines += textwrap.wrap(line, width - 1, subsequent_indent=" " * pad) or [line]
    footer = textwrap.wrap(f"Generation tools also take {', '.join(SHARED_ARGUMENTS)}. {_program()} call TOOL --help "
                           "shows one tool's arguments, defaults and allowed values.", min(width, 120) - 1)
    return "\n".join([*lines, "", *footer])


def _allowed(schema: dict) -> str:
    """What an argument's schema allows, in a few words: its values, range or kind."""
    parts = []
    for option in schema.get("anyOf", [schema]):
        if "enum" in option:
            parts.append(" | ".join(map(str, option["enum"])))
        elif "const" in option:
            parts.append(str(option["const"]))
        elif option.get("type") not in (None, "null"):
            bounds = [f"{k} {option[v]}" for k, v in ((">=", "minimum"), ("<=", "maximum")) if v in option]
            parts.append(option["type"] + (f" ({', '.join(bounds)})" if bounds else ""))
        elif "$ref" in option:
            parts.append(option["$ref"].rsplit("/", 1)[-1])
    return " or ".join(dict.fromkeys(parts))


def _durations(durations: Any) -> str:
    """2-10 s, 4, 6, 8 s, 4-15 s or auto."""
    seconds = [d for d in durations if isinstance(d, int)]
    runs = seconds and len(seconds) > 2 and seconds == list(range(seconds[0], seconds[-1] + 1))
    shown = [f"{seconds[0]}-{seconds[-1]}"] if runs else list(map(str, seconds))
    return ", ".join(shown) + " s" + "".join(f" or {d}" for d in durations if not isinstance(d, int))


def _models_of(tool_name: str) -> list[str]:
    """The catalog's models for a tool, one line each: price, ratios, durations (the default model first)."""
    endpoints = {e: entry for e, entry in ENDPOINTS.items() if entry.tool == tool_name}
    defaults = {entry.default for entry in endpoints.values()}
    lines = []
    for name, model in sorted(MODELS.items(), key=lambda item: item[0] not in defaults):
        uses = [use for key, use in model.uses.items() if key.partition(":")[0] in endpoints]
        if not uses:
            continue
        ratios = list(dict.fromkeys(r for use in uses for r in use.ratios or ()))
        ratios = ratios if len(ratios) <= 6 else [*ratios[:5], f"… ({len(ratios)} in all)"]
        durations = next((use.durations for use in uses if use.durations), None) or model.durations
        parts = [f"{name}{' (default)' if name in defaults else ''}", f"credits {model.credits}" if model.credits
                 else "", f"ratios {', '.join(ratios)}" if ratios else "", _durations(durations) if durations else ""]
        lines.append("  " + " · ".join(p for p in parts if p))
    return lines


def tool_help(tool: Tool) -> str:
    """`runway-mcp call TOOL --help`: what the tool does, each argument with its default and allowed values, and the
    catalog's models for it."""
    schema = tool.parameters
    lines = [f"{_program()} call {tool.name} {_signature(tool, lambda n: True)}", "", tool.description.strip(), "",
             "Arguments:"]
    for name, argument in schema.get("properties", {}).items():
        default = argument.get("default")
        given = "required" if name in schema.get("required", []) else "optional" if default is None else (
            f"default {json.dumps(default)}")
        note = f" · {argument['description']}" if argument.get("description") else ""
        lines.append(f"  {name}: {_allowed(argument)}; {given}{note}")
    if models := _models_of(tool.name):
        lines += ["", "Models (model=...; list_models shows more):", *models]
    return "\n".join(lines)


PROGRESS_LINE_S = 30.0                  # in a log, a line when the status or percentage changes, or this often


ELAPSED = re.compile(r"· (\d+)s(?= ·|$)")    # the seconds in a progress message


class TerminalProgress:
    """Progress on stderr: one line rewritten in place in a terminal, its seconds counting on between Runway's
    answers (while ticking); in a file or pipe (or with -v, whose log lines would break into it), a plain line when
    the status or percentage changes, or every PROGRESS_LINE_S."""

    def __init__(self, stream: TextIO, live: bool):
        self.stream, self.live, self.last, self.logged = stream, live, "", (None, 0.0)
        self.received, self.lock = 0.0, threading.Lock()

    def __call__(self, value: float, total: float | None, message: str | None) -> None:
        with self.lock:
            if not message or message == self.last:
                return
            self.last, self.received, (stage, at) = message, time.monotonic(), self.logged
            if self.live:
                self.stream.write(f"\r\033[K{message}")
            elif message.split(" · ")[0] != stage or time.monotonic() - at >= PROGRESS_LINE_S:
                self.logged = (message.split(" · ")[0], time.monotonic())
                self.stream.write(f"{message}\n")
            self.stream.flush()

    def tick(self) -> None:
        """The live line again, its seconds brought up to now."""
        with self.lock:
            if self.live and (found := ELAPSED.search(self.last)):
                seconds = int(found[1]) + int(time.monotonic() - self.received)
                self.stream.write(f"\r\033[K{self.last[:found.start(1)]}{seconds}{self.last[found.end(1):]}")
                self.stream.flush()

    @contextlib.contextmanager
    def ticking(self) -> Iterator[None]:
        """In a terminal, tick once a second while the body runs (a thread of its own)."""
        stop = threading.Event()

        def each_second() -> None:
            while not stop.wait(1):
                self.tick()
        ticker = threading.Thread(target=each_second, name="progress ticker", daemon=True)
        if self.live:
            ticker.start()
        try:
            yield
        finally:
            stop.set()
            if ticker.is_alive():
                ticker.join()

    def clear(self) -> None:
        """Off the live line, for a question or the result (it stays off until the next message)."""
        with self.lock:
            if self.live and self.last:
                self.stream.write("\r\033[K")
                self.stream.flush()
            self.last = ""


def _asker(assume_yes: bool, progress: TerminalProgress) -> Callable[[str], bool]:
    """The person's y/N on the terminal; with no terminal to ask, a refusal (unless --yes)."""
    def confirm(question: str) -> bool:
        if assume_yes:
            return True
        progress.clear()
        if not sys.stdin.isatty():
            print(f"{question} Not asked: stdin is not a terminal; pass --yes to accept.", file=sys.stderr)
            return False
        with _prompt_stream() as prompt:
            print(f"{question} [y/N] ", end="", file=prompt, flush=True)
            return sys.stdin.readline().strip().lower() in ("y", "yes")
    return confirm


@contextlib.contextmanager
def _prompt_stream() -> Iterator[TextIO]:
    """Where a question is seen: stderr, or the terminal itself when stderr goes to a file."""
    if sys.stderr.isatty():
        yield sys.stderr
        return
    try:
        with open("/dev/tty", "w") as terminal:
            yield terminal
    except OSError:
        yield sys.stderr


def _run_interruptibly(config: Config, name: str, arguments: dict, progress: TerminalProgress,
                       confirm: Callable[[str], bool], created: list[str]) -> CallToolResult | None:
    """call_tool's path, stopped by Ctrl-C (as a host's cancel stops a call); None when it was, with the tasks it
    created in `created`. Signals reach the main thread only: elsewhere (an embedder's thread) the call runs to its
    end."""
    import signal

    async def run() -> CallToolResult | None:
        result = None
        CREATED.set(created)
        async with anyio.create_task_group() as group:
            async def on_ctrl_c() -> None:
                with anyio.open_signal_receiver(signal.SIGINT) as signals:
                    async for _ in signals:
                        group.cancel_scope.cancel()
            if threading.current_thread() is threading.main_thread():
                group.start_soon(on_ctrl_c)
            result = await _call_in_process(config, name, arguments, progress, confirm)
            group.cancel_scope.cancel()
        return result
    return anyio.run(run)


def _interrupted(config: Config, arguments: dict, created: list[str]) -> int:
    """Ctrl-C: say what goes on at Runway and how to resume it, or (RUNWAY_MCP_CANCEL_ON_ABORT) cancel what this
    call created."""
    waited = [arguments["task_id"]] if isinstance(arguments.get("task_id"), str) else []
    task_ids = list(dict.fromkeys(waited + created))
    if sys.stderr.isatty():
        print(file=sys.stderr)                  # off the line ^C was echoed on
    if not task_ids:
        print("Stopped; no task was created.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if config.cancel_on_abort and created:
        cancelled = [task_id for task_id in created if _cancel_after_abort(own_account(config), task_id)]
        for task_id in cancelled:
            print(f"Stopped, and cancelled task {task_id} (RUNWAY_MCP_CANCEL_ON_ABORT).", file=sys.stderr)
        task_ids = [task_id for task_id in task_ids if task_id not in cancelled]     # it could not be: it goes on
        if not task_ids:
            return EXIT_FAILED
    for task_id in task_ids:
        print(f"Stopped waiting. {_resume(task_id)}", file=sys.stderr)
    print(json.dumps({"task_ids": task_ids}))
    return EXIT_RUNNING


def _exit_status(result: CallToolResult) -> int:
    if result.is_error:
        return EXIT_FAILED
    found = result.structured_content or {}
    statuses = [found.get("status")] + [item.get("status") for item in found.get("items") or []]
    if any(s in ("FAILED", "CANCELLED") for s in statuses):
        return EXIT_FAILED
    return EXIT_RUNNING if any(s in ACTIVE for s in statuses) else 0


def _emit(text: str, stream: TextIO) -> None:
    """Print, unless the reader has gone (`| head`): then nothing more is printed, and the exit status stays."""
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())      # Python's own flush at exit fails no more


def _print_result(tool: str, result: CallToolResult, as_json: bool) -> None:
    """The result's text on stdout (a refusal on stderr, worded for a terminal), or its structure with --json; and
    on stderr, for tasks still running, the command that resumes each."""
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    found = result.structured_content or {}
    if as_json:
        _emit(json.dumps(found or {"text": text, "is_error": result.is_error}, indent=2, ensure_ascii=False),
              sys.stdout)
    elif found.get("status") == "DECLINED":
        _emit("Nothing was sent to Runway.", sys.stderr)
    elif result.is_error and not found:
        _emit(text.removeprefix(f"Error executing tool {tool}: ").replace(
            "; see the tool's input schema", f" ({_program()} call {tool} --help)"), sys.stderr)
    else:
        _emit(text, sys.stdout)
    for item in [found, *(found.get("items") or [])]:
        if item.get("status") in ACTIVE and item.get("task_id"):
            _emit(_resume(item["task_id"]), sys.stderr)


CALL_USAGE = """usage: runway-mcp call TOOL [key=value ...] [--json] [--yes] [-v]
       runway-mcp call TOOL --help     (one tool: its arguments, defaults, allowed values and models)
       runway-mcp tools                (every tool, with its arguments)
Values are JSON where they parse, else text. --json prints the structured result; --yes accepts a confirmation.
Exit status: 0 done, 1 failed or refused, 2 usage error, 3 still running (resume with call wait_for_task)."""


def _call_command(config: Config, argv: list[str], verbose: bool = False) -> int:
    """runway-mcp call TOOL [key=value ...] [--json] [--yes] [--help]."""
    flags = {a for a in argv if a in CALL_FLAGS}
    words = [a for a in argv if a not in flags]
    if not words and flags & {"--help", "-h"}:
        _emit(CALL_USAGE, sys.stdout)
        return 0
    if not words:
        raise UsageError(f"name a tool: {_program()} call TOOL key=value ... ({_program()} tools lists them)")
    tool = _named_tool(_terminal_tools(config), words[0])
    if flags & {"--help", "-h"}:
        _emit(tool_help(tool), sys.stdout)
        return 0
    arguments = parse_arguments(tool, words[1:])
    waiting = dataclasses.replace(config, max_wait=TERMINAL_WAIT_S, cancel_on_abort=False)    # see _interrupted
    progress, created = TerminalProgress(sys.stderr, live=sys.stderr.isatty() and not verbose), []
    with progress.ticking():
        result = _run_interruptibly(waiting, tool.name, arguments, progress, _asker("--yes" in flags, progress),
                                    created)
    progress.clear()
    if result is None:
        raise Interrupted(_interrupted(config, arguments, created))
    _print_result(tool.name, result, "--json" in flags)
    return _exit_status(result)


def _terminal(argv: list[str], environ: Mapping[str, str] | None) -> int:
    """`call` and `tools`: warnings and problems of the configuration on stderr (-v: the server's log too)."""
    verbose = "-v" in argv or "--verbose" in argv
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    PROGRAM.set(_program_of(sys.argv[0] if sys.argv else "", os.environ if environ is None else environ))
    config = load_config(environ)
    _configure_logging(config, logging.DEBUG if verbose else logging.WARNING, "%(levelname)s %(name)s: %(message)s")
    try:
        if argv[0] == "tools":
            if argv[1:] and set(argv[1:]) - {"--help", "-h"}:
                raise UsageError(f"tools takes nothing more ({' '.join(argv[1:])!r}); {_program()} call TOOL --help "
                                 "describes one tool")
            _emit(tools_text(config), sys.stdout)
            return 0
        return _call_command(config, argv[1:], verbose)
    except UsageError as error:
        print(f"runway-mcp: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as stopped:
        _exit_promptly(status=stopped.args[0])  # a question still waiting for its answer must not hold the exit
        return stopped.args[0]


def _main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The command line: serve stdio (or HTTP), or --check, --print-config, or call a tool from a terminal (`call`,
    `tools`); the environment is read here alone."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["call"], ["tools"]):
        return _terminal(argv, environ)
    parser = argparse.ArgumentParser(
        prog="runway_mcp.py", description="MCP server for the Runway API. Serves stdio unless told otherwise; "
        "set RUNWAYML_API_SECRET (see README.md for every variable).", epilog="From a terminal: runway_mcp.py call "
        "TOOL key=value ... [--json] [--yes] runs one tool (call TOOL --help describes it); runway_mcp.py tools "
        "lists them.")
    parser.add_argument("--version", action="version", version=f"runway-mcp {__version__}")
    parser.add_argument("--check", action="store_true", help="verify the API key, print the credit balance, exit")
    parser.add_argument("--print-config", choices=HOSTS, metavar="HOST",
                        help=f"print a config block for an MCP host ({', '.join(HOSTS)}) and exit")
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                        help="stdio (default) or streamable HTTP at /mcp")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP: address to bind (default 127.0.0.1; any "
                        "other needs RUNWAY_MCP_HTTP_TOKEN)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP: port (default 8000)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    args = parser.parse_args(argv)

    config = dataclasses.replace(load_config(environ), transport=args.transport)
    _configure_logging(config, logging.DEBUG if args.verbose else logging.INFO,
                       "%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.check:
        return _check(config)
    if args.print_config:
        print(host_config(args.print_config))
        print(HOST_HINTS[args.print_config], file=sys.stderr)
        return 0
    if args.transport == "http":
        return _serve_http(config, args.host, args.port)
    if hosted_mode(config) or config.rate_limit or config.allowed_origins or config.stateless:
        log.warning("RUNWAY_MCP_KEYS_FROM_CLIENTS, _OAUTH, _OAUTH_ISSUER, _RATE_LIMIT, _ALLOWED_ORIGINS and _STATELESS "
                    "apply to --transport http only; over stdio the server's own key and folder are used")
    create_server(config).run()
    _exit_promptly()
    return 0


def main() -> None:
    """The runway-mcp command (pyproject.toml's console script)."""
    sys.exit(_main())


if __name__ == "__main__":
    main()
