"""``suricate serve`` under a service manager (contrib/suricate.service, docs/operations.md
"Running under systemd"): the sd_notify(3) datagrams a ``Type=notify`` unit waits for, read
from a real AF_UNIX datagram socket made here as systemd makes its own, and the log lines
written to the journal's stream (``$JOURNAL_STREAM``)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from suricate.cli.logs import JournalFormatter, setup_logging, writes_to_journal
from suricate.cli.sd_notify import Notifier
from tests.e2e.harness import free_port, server_toml

SURICATE = [sys.executable, "-m", "suricate"]


def _receive(sock: socket.socket) -> dict[str, str]:
    """One notification, as its ``KEY=VALUE`` lines."""
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n") if line)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def test_ready_reloading_stopping_over_notify_socket(tmp_path: Path) -> None:
    c2s, tls = free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(server_toml(tmp_path, c2s, tls))
    address = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    # Standard error as systemd's journal stream: $JOURNAL_STREAM names that file.
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err:
        st = os.fstat(err.fileno())
        env = dict(os.environ, NOTIFY_SOCKET=address, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config)], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        ready = _receive(sock)
        # READY=1 comes once the listeners accept: a unit ordered after this one may connect.
        assert ready["READY"] == "1", ready
        assert _accepts(c2s) and _accepts(tls)
        assert ready["STATUS"] == f"serving localhost on c2s:{c2s}, c2s:{tls}", ready

        # systemctl reload (ExecReload=/bin/kill -HUP $MAINPID): the certificates read again.
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        proc.send_signal(signal.SIGHUP)
        reloading = _receive(sock)
        assert reloading["RELOADING"] == "1", reloading
        assert int(reloading["MONOTONIC_USEC"]) >= before // 1000
        assert _receive(sock)["READY"] == "1"

        proc.send_signal(signal.SIGTERM)
        assert _receive(sock)["STOPPING"] == "1"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    log = err_path.read_text()
    lines = log.splitlines()
    # The journal stamps each line: no time of ours, each line with its syslog priority.
    assert f"<6>INFO suricate.net listener_started kind=c2s ip=127.0.0.1 port={c2s} " \
           "tls=starttls" in lines, log
    assert "<6>INFO suricate.server tls_reloaded reloaded=2 failed=0" in lines, log
    assert all(line.startswith(("<3>", "<4>", "<6>", "<7>")) for line in lines), log
    assert "\x1b" not in log


def test_without_journal_lines_carry_their_time_and_no_colours(tmp_path: Path) -> None:
    # Standard error is a pipe here (as under a supervisor that is not systemd): plain lines.
    c2s, tls = free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(server_toml(tmp_path, c2s, tls))
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "serving localhost" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    started = [line for line in err.splitlines() if "listener_started" in line]
    assert len(started) == 2, err
    # 2026-12-05 09:49:58,390 INFO suricate.net listener_started ...
    for line in started:
        date, clock, level, name = line.split(" ")[:4]
        assert len(date) == 10 and date[4] == "-" and clock[2] == ":", line
        assert (level, name) == ("INFO", "suricate.net"), line
    assert "\x1b" not in err


def test_abstract_socket_and_no_socket() -> None:
    # sd_notify(3): "@name" is a name in Linux's abstract namespace, not a file.
    name = f"suricate-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier("@" + name).ready("serving x")
        assert _receive(sock) == {"READY": "1", "STATUS": "serving x"}
    finally:
        sock.close()
    # Without $NOTIFY_SOCKET (a shell), nothing is sent and nothing fails.
    assert not Notifier(None)
    assert Notifier(None).stopping() is False
    # A socket that went away is logged once, and serving goes on.
    gone = Notifier("@" + name)
    assert gone.ready("x") is False and gone.stopping() is False


def test_a_traceback_keeps_its_priority_on_every_line() -> None:
    formatter = JournalFormatter("%(levelname)s %(name)s %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("suricate.server", logging.ERROR, __file__, 1,
                                   "hook_crashed hook=%s", ("x",), sys.exc_info())
    lines = formatter.format(record).split("\n")
    assert lines[0] == "<3>ERROR suricate.server hook_crashed hook=x"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: boom"


def test_journal_stream_must_be_our_standard_error(tmp_path: Path, monkeypatch) -> None:
    # $JOURNAL_STREAM inherited by a process whose standard error was redirected elsewhere
    # (systemd.exec(5)): that file is not the journal, its lines keep their time.
    journal, other = tmp_path / "journal", tmp_path / "other"
    with open(journal, "w") as j, open(other, "w") as o:
        st = os.fstat(j.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert writes_to_journal(j)
        assert not writes_to_journal(o)
        root = logging.getLogger()
        saved = root.handlers[:], root.level
        root.handlers[:] = []
        try:
            handler = setup_logging(logging.INFO, o)
            assert not isinstance(handler.formatter, JournalFormatter)
            root.handlers[:] = []
            handler = setup_logging(logging.INFO, j)
            assert isinstance(handler.formatter, JournalFormatter)
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])


# A server whose last start-up step is slow (gc.freeze made to take 0.5 s): what it says it
# serves must already handle the signals a supervisor sends on reading it.
SLOW_CHILD = """
import gc, sys, time
freeze = gc.freeze
gc.freeze = lambda: (time.sleep(0.5), freeze())
from suricate.__main__ import run
sys.argv[1:] = ["serve", "--config", sys.argv[1]]
sys.exit(run())
"""


def test_a_sigterm_right_after_the_serving_line_is_a_graceful_stop(tmp_path: Path) -> None:
    config = tmp_path / "suricate.toml"
    config.write_text(server_toml(tmp_path, free_port(), free_port()))
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "serving localhost" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)  # as soon as it said so (before: killed, -15)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "suricate: shutting down" in out
