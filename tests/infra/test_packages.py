"""Every function runs from its own package (Makefile ``lambda-package``, the recipe ``sam build`` runs), as in Lambda.

Each package is built for this machine (``LAMBDA_PLATFORM``/``LAMBDA_PY_VERSION``: the arm64 / 3.12 wheels would not
load here) with its ``.pyc``, then imported in a fresh ``python -S`` whose path is the package, a stand-in for AWS's
Powertools layer, and boto3's directory (as Lambda's ``/var/task``, ``/opt/python``, ``/var/runtime``), with no
writable bytecode cache. The stand-ins link this environment's installed distributions: for the layer, what the
packages leave to it (``LAMBDA_LAYER_PROVIDES`` and ``LAMBDA_LAYER_ALSO_HAS``) with their requirements; for the
runtime, boto3 with its requirements. So nothing outside those three directories and the standard library can stand
in for a module a package lacks (the test checks where every loaded module came from).

The step function runs its first invocation and one agent step on the memory store; the functions that post over
HTTP run every HTTP path of theirs (the model providers, the MCP client with its schema checker, replies, webhook and
Slack notifications) against a local server, with the package's httpx and without anyio (``LAMBDA_NOT_IMPORTED``).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import textwrap
from importlib.metadata import distribution
from pathlib import Path

import pytest

from tests.infra._dists import closure

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def _makefile(variable: str) -> list[str]:
    (value,) = re.findall(rf"^{variable} :=[ \t]*(.*)$", MAKEFILE, re.MULTILINE)
    return str(value).split()


FUNCTIONS = sorted(re.findall(r"^LAMBDA_HANDLER_(\w+) :=", MAKEFILE, re.MULTILINE))
HTTP_FUNCTIONS = [f for f in FUNCTIONS if "httpx" in _makefile(f"LAMBDA_NEEDS_{f}")]
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def _link_distributions(names: list[str], directory: Path) -> Path:
    """``directory`` holding a link to each top-level module of the distributions ``names`` install."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in sorted(closure(names)):
        dist = distribution(name)
        for file in dist.files or []:
            top = file.parts[0]
            if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__", "bin"):
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (directory / top).exists():
                (directory / top).symlink_to(source)
    return directory


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every function's package for this machine, and the layer and runtime stand-ins (``_layer``, ``_runtime``)."""
    base = tmp_path_factory.mktemp("packages")
    version = "{}.{}".format(*sys.version_info[:2])
    machine = "aarch64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    packages: dict[str, Path] = {}
    for function in FUNCTIONS:
        packages[function] = base / function
        done = subprocess.run(
            [
                *("make", "--no-print-directory", "-s", "lambda-package", f"LAMBDA_FUNCTION={function}"),
                *(f"ARTIFACTS_DIR={packages[function]}", f"LAMBDA_PLATFORM=manylinux2014_{machine}"),
                *(f"LAMBDA_PY_VERSION={version}", f"LAMBDA_PYTHON={sys.executable}", "LAMBDA_PYC=1"),
                f"LAMBDA_PIP={sys.executable} -m pip",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert done.returncode == 0, f"{function}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    layer = _makefile("LAMBDA_LAYER_PROVIDES") + _makefile("LAMBDA_LAYER_ALSO_HAS")
    packages["_layer"] = _link_distributions(layer, base / "_layer")
    packages["_runtime"] = _link_distributions(["boto3"], base / "_runtime")
    return packages


_PRELUDE = """
import json, os, sys
PATHS = {paths!r}
sys.path[:] = [p for p in sys.path if p not in ("", ".")] + PATHS
os.chdir(PATHS[0])
"""

_WHERE_FROM = """
import sysconfig
stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
outside = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None) and not str(module.__file__).startswith((*PATHS, *stdlib))
)
assert not outside, outside
assert "anyio" not in sys.modules
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}} - set(sys.stdlib_module_names))))
"""


def _run(packages: dict[str, Path], function: str, code: str, **env: str) -> list[str]:
    """Run ``code`` in a fresh ``python -S`` on the function's package, the layer and the runtime; returns the
    top-level modules it loaded beyond the standard library."""
    paths = [str(packages[function]), str(packages["_layer"]), str(packages["_runtime"])]
    program = _PRELUDE.format(paths=paths) + textwrap.dedent(code) + _WHERE_FROM.format()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "STEPFOLD_"))}
    environment |= FAKE_AWS | {"PYTHONDONTWRITEBYTECODE": "1", "POWERTOOLS_LOG_LEVEL": "WARNING"} | env
    done = subprocess.run(
        [sys.executable, "-S", "-c", program], capture_output=True, text=True, env=environment, timeout=300, check=False
    )
    assert done.returncode == 0, f"{function}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_handler_imports_from_its_package_alone(built: dict[str, Path], function: str) -> None:
    module = _makefile(f"LAMBDA_HANDLER_{function}")[0]
    loaded = _run(built, function, f"import {module}\nassert {module}.__file__.startswith(PATHS[0])\n{module}.handler")
    assert {"core", "functions"} <= set(loaded)
    package = built[function]
    assert not (package / "anyio").exists()
    assert not any(package.rglob("*.py")) or any(package.rglob("*.pyc")), "the package ships bytecode"


def test_the_step_runs_its_first_invocation_from_its_package(built: dict[str, Path]) -> None:
    """The step's setup (settings, clients, agents, prompts) and one agent step, on the memory store."""
    code = """
    import functions.step
    from functions._wiring import runtime
    rt = runtime()
    from core.adapters.store.memory import MemoryThreadStore
    from core.kernel.events import utcnow
    from core.kernel.thread import start_thread
    rt.threads = MemoryThreadStore()
    rt.spend = None
    thread = rt.threads.create(start_thread("t", "calculator", "add 2 and 3", now=utcnow()))
    class Context:
        function_name = "step"; memory_limit_in_mb = 1024; aws_request_id = "r1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:step"
    out = functions.step.handler({"thread_id": "t", "seq": thread.version}, Context())
    assert out["route"] == "continue", out
    """
    _run(built, "StepFunction", code, STEPFOLD_MODEL="scripted:calculator", STEPFOLD_TABLE="t", STEPFOLD_BUCKET="b")


_HTTP_PATHS = r"""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN = []

class Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, kind="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        SEEN.append(self.path)
        if self.path == "/v1/chat/completions":
            message = {"role": "assistant", "content": "hi"}
            return self.answer(200, {"id": "c1", "model": request["model"], "usage": {"prompt_tokens": 3,
                "completion_tokens": 1}, "choices": [{"index": 0, "finish_reason": "stop", "message": message}]})
        if self.path == "/v1/messages":
            return self.answer(200, {"id": "m1", "type": "message", "model": request["model"], "role": "assistant",
                "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 1}})
        if self.path == "/mcp":
            if "id" not in request:
                return self.answer(202, b"", "text/plain")
            method = request["method"]
            if method == "initialize":
                info = {"name": "s", "version": "1"}
                result = {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": info}
                return self.answer(200, {"jsonrpc": "2.0", "id": request["id"], "result": result},
                                   headers=[("mcp-session-id", "s1")])
            if method == "tools/list":
                schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
                result = {"tools": [{"name": "echo", "inputSchema": schema}]}
                event = "event: message\ndata: " + json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result})
                return self.answer(200, (event + "\n\n").encode(), "text/event-stream")
            result = {"content": [{"type": "text", "text": "ok"}], "isError": False}
            return self.answer(200, {"jsonrpc": "2.0", "id": request["id"], "result": result})
        return self.answer(200, {"ok": True})

server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = "http://127.0.0.1:%d" % server.server_address[1]

import functions._wiring
import httpx
from core.adapters.llm import ProviderConfig, make_llm
from core.adapters.mcp import HttpMcpConnector, schema_checker
from core.adapters.notify import SlackNotifier, WebhookNotifier
from core.adapters.replies import HttpReplier
from core.kernel.mcp import McpServer
from core.kernel.model import LLMRequest
from core.services.approvals import Approval
from core.services.replies import Reply

config = ProviderConfig(openai_base_url=url + "/v1", openai_api_key="k", anthropic_base_url=url, anthropic_api_key="k")
for model in ("openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"):
    answer = make_llm(model, config).complete(LLMRequest(model=model.split(":")[1], system="s", context="c", tools=()))
    assert answer is not None

mcp = HttpMcpConnector(lambda server: (url + "/mcp", {}))
ops = McpServer(name="ops", url_setting="OPS_URL")
(tool,) = mcp.list_tools(ops)
mcp.call_tool(ops, "echo", {"x": 1}, "key-1")
schema_checker({"type": "object", "properties": {"x": {"type": "integer"}}})({"x": 1})

HttpReplier("reply-key", allow_loopback=True).send(
    Reply(url=url + "/reply", format="stepfold", delivery_id="d1", document={"answer": 42})
)
approval = Approval(approval_id="a1", thread_id="t1", agent="calculator", kind="question", question="ok?",
                    expires_at=2_000_000_000, created_at=1_000_000_000)
client = httpx.Client(timeout=10.0, follow_redirects=False)
WebhookNotifier(url + "/hook", "hook-secret", client).notify(approval, "https://example.com/a/1")
SlackNotifier(url + "/slack", client).notify(approval, "https://example.com/a/1")
try:
    client.get("http://127.0.0.1:1/")
except httpx.ConnectError:
    pass
with httpx.Client() as tls:  # the default TLS context: certifi's bundle
    assert tls is not None
assert SEEN.count("/mcp") >= 4 and "/reply" in SEEN and "/hook" in SEEN and "/slack" in SEEN, SEEN
"""


@pytest.mark.parametrize("function", HTTP_FUNCTIONS)
def test_the_http_paths_run_from_the_package_without_anyio(built: dict[str, Path], function: str) -> None:
    """httpx's sync client with what the package ships: certifi, httpcore, h11, idna; anyio is left out."""
    loaded = _run(built, function, _HTTP_PATHS)
    assert {"httpx", "httpcore", "h11", "certifi", "idna"} <= set(loaded)


def test_the_api_never_imports_what_its_package_leaves_out() -> None:
    """The API's package has no httpx (``LAMBDA_LAZY_OK``: only the notifier, the replier, the models and MCP would
    import it, and no route calls them): its functional tests pass with httpx unimportable. The one test there that
    sends a reply drives ``Runtime.send_reply`` (the record-end function's) directly, not a route."""
    needs = set(_makefile("LAMBDA_NEEDS_ApiFunction"))
    blocked = sorted(set(_makefile("LAMBDA_LAZY_OK")) - needs)
    assert blocked == ["httpx"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n    sys.modules[name] = None  # import raises ImportError\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/functional/test_api.py',"
        " '-k', 'not test_replies_are_signed_with_their_own_key_and_sent_only_where_the_policy_allows']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:]
