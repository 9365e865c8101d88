"""An HTTP(S) connection kept open between requests, for the InfluxDB v1 sink (`quotad.shell.sinks`)."""

from __future__ import annotations

import http.client
import urllib.parse
import urllib.request

__all__ = ["TIMEOUT_S", "KeptAlive"]

TIMEOUT_S = 5.0  # a request's connect, send and answer, each


class KeptAlive:
    """POSTs to one HTTP(S) server over one connection kept open between batches (InfluxDB 1.x keeps it alive):
    batches a few milliseconds apart no longer pay a connection and urllib's handlers each (5% of the daemon's
    samples on a live stream, bench/mqtt_live.py, 2% in connecting). A connection the server closed meanwhile is
    made again once, at once; any other failure closes it and raises an OSError, as urllib did, and the next batch
    opens a new one."""

    def __init__(self, scheme: str, host: str, port: int | None) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self._connection: http.client.HTTPConnection | None = None

    @classmethod
    def for_url(cls, url: str) -> KeptAlive | None:
        """None when urllib must do it: a proxy the environment names for it, or credentials in the URL."""
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None or parts.hostname is None:
            return None
        if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname):
            return None
        return cls(parts.scheme, parts.hostname, parts.port)

    def post(self, url: str, data: bytes, authorization: str | None) -> tuple[int, bytes]:
        """The answer's status and body (read whole: the connection stays usable)."""
        parts = urllib.parse.urlsplit(url)
        target = f"{parts.path}?{parts.query}"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}  # what urllib sent
        if authorization:
            headers["Authorization"] = authorization
        for _attempt in range(2):
            reused = self._connection is not None
            connection = self._connect()
            try:
                connection.request("POST", target, body=data, headers=headers)
                response = connection.getresponse()
                answer = response.read()
            except (ConnectionResetError, BrokenPipeError):  # (http.client.RemoteDisconnected among them)
                self.close()
                if reused:
                    continue  # the server closed the connection kept open: once more, on a new one
                raise
            except http.client.HTTPException as exc:  # a malformed answer: the sink says "unavailable", tries again
                self.close()
                msg = f"{type(exc).__name__}: {exc}"
                raise OSError(msg) from None
            except BaseException:
                self.close()
                raise
            if response.will_close:
                self.close()
            return response.status, answer
        raise AssertionError  # (the second attempt returns or raises)

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._connection = kind(self.host, self.port, timeout=TIMEOUT_S)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
