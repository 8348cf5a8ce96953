"""The network fails in one line: an unreachable or silent hub, a Ctrl-C, a bad --to
(loopback servers only; every wait bounded)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


from conftest import ROOT

RECIPE = """
name = "net"
targets = ["udpos"]

[model]
hub = "org/some-model"

[[arms]]
name = "baseline"

[tasks.udpos]
languages = ["de"]
"""


def _env(tmp_path, endpoint):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, XSTILTS_DATA_ROOT=str(tmp_path / "data"),
               HF_HUB_CACHE=str(tmp_path / "hub"), HF_HOME=str(tmp_path / "hf-home"),
               PYTHONPATH=str(ROOT))
    return env


def _fetch(tmp_path, endpoint, *extra, timeout=60):
    recipe = tmp_path / "net.toml"
    recipe.write_text(RECIPE)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "xstilts_tui", "data", "fetch", recipe, *extra],
                          env=_env(tmp_path, endpoint), capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - started


class Silent:
    """A TCP server that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                continue

    @property
    def url(self):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self):
        self.stop = True
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_an_unreachable_hub_is_one_line_at_once(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done, took = _fetch(tmp_path, f"http://127.0.0.1:{port}")
    assert done.returncode == 1 and took < 20
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"the hub at http://127.0.0.1:{port} does not answer" in done.stderr
    assert "HF_ENDPOINT" in done.stderr


def test_a_hub_that_never_answers_is_one_line_in_seconds(tmp_path):
    server = Silent()
    try:
        done, took = _fetch(tmp_path, server.url)
    finally:
        server.close()
    assert done.returncode == 1 and took < 20, took
    assert done.stderr.count("\n") == 1 and "no answer within 3 s" in done.stderr


class Hangs(BaseHTTPRequestHandler):
    """Answers the probe, then hangs on every other request."""

    def do_HEAD(self):
        self.send_response(401)
        self.end_headers()

    def do_GET(self):
        time.sleep(120)

    def log_message(self, *args):
        pass


def test_ctrl_c_during_a_fetch_is_exit_130_and_one_line(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hangs)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    recipe = tmp_path / "net.toml"
    recipe.write_text(RECIPE)
    try:
        process = subprocess.Popen([sys.executable, "-m", "xstilts_tui", "data", "fetch", recipe],
                                   env=_env(tmp_path, f"http://127.0.0.1:{server.server_port}"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        line = process.stdout.readline()  # "fetch   ..." once it is at the network
        assert line.startswith("fetch"), line
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=max(5, deadline - time.monotonic()))
    finally:
        server.shutdown()
    assert process.returncode == 130, (process.returncode, err)
    assert err.strip() == "interrupted" and "Traceback" not in err


def test_to_under_a_file_is_refused_before_the_network(tmp_path):
    (tmp_path / "a-file").write_text("x")
    done, took = _fetch(tmp_path, "http://127.0.0.1:9", "--to", tmp_path / "a-file" / "copy")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"--to {tmp_path / 'a-file' / 'copy'}: {tmp_path / 'a-file'} is a file, not a folder" in done.stderr
