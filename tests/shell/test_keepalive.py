"""The InfluxDB 1.x sink keeps its connection open between batches, and makes it again when the server closed it.

A small HTTP/1.1 server on loopback stands in for influxd where influxd cannot be made to misbehave on cue: one
that closes each connection after answering (as a server's idle timeout does, without saying so), one that
answers errors. The real influxd's paths (credentials, outages) are in test_influx_sink.py.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from quotad.config.daemon import InfluxSettings
from quotad.shell.sinks import InfluxSink
from quotad.shell.store import Store


class Server(http.server.ThreadingHTTPServer):
    status = 204
    close_after_answer = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.connections = 0
        self.writes: list[tuple[str, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps the connection open unless told otherwise
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.writes.append((self.path, body))
        answer = b"" if self.server.status == 204 else b'{"error":"nope"}'
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.close_connection = self.server.close_after_answer  # closed without a `Connection: close`

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def sink(server: Server, tmp_path: Path) -> InfluxSink:
    return InfluxSink(InfluxSettings(url=server.url, bucket="quotad/short"), Store(tmp_path / "state"))


def test_batches_go_over_one_connection(server: Server, tmp_path: Path) -> None:
    influx = sink(server, tmp_path)
    for n in range(3):
        influx._write(f"m v={n} {n}")
    assert server.connections == 1
    assert [body for _path, body in server.writes] == [b"m v=0 0", b"m v=1 1", b"m v=2 2"]
    assert server.writes[0][0] == "/write?db=quotad&precision=ns&rp=short"


def test_a_connection_the_server_closed_is_made_again(server: Server, tmp_path: Path) -> None:
    server.close_after_answer = True
    influx = sink(server, tmp_path)
    for n in range(3):
        influx._write(f"m v={n} {n}")
    assert [body for _path, body in server.writes] == [b"m v=0 0", b"m v=1 1", b"m v=2 2"]  # none lost, none twice
    assert server.connections == 3


@pytest.mark.parametrize("status", [500, 401])
def test_an_answer_that_is_no_success_raises_as_before(server: Server, tmp_path: Path, status: int) -> None:
    server.status = status
    influx = sink(server, tmp_path)
    with pytest.raises(RuntimeError, match=rf'^HTTP {status} from {server.url}/write: {{"error":"nope"}}$') as info:
        influx._write("m v=1 1")
    assert (type(info.value).__name__ == "_Refused") == (status == 401)  # "not authorized", and the files read again
    server.status = 204
    influx._write("m v=2 2")  # the connection goes on after an error answer
    assert server.connections == 1


def test_a_server_away_is_an_os_error(tmp_path: Path) -> None:
    with Server() as away:
        url = away.url
    influx = InfluxSink(InfluxSettings(url=url), Store(tmp_path / "state"))
    with pytest.raises(OSError, match="Connection refused"):
        influx._write("m v=1 1")
