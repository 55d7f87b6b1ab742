"""SIGTERM under load: every request that reaches the server before its listener closes is
answered, keep-alive connections close cleanly, and the server exits 0."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .conftest import start_server, v2_input

CLIENTS = 32
REQUESTS_PER_CLIENT = 5000  # a bound; the listener closes long before
TIME_LIMIT_S = 30.0


def test_sigterm_under_32_keep_alive_clients_loses_no_request(
    models: dict[str, Path], logs: Path, tmp_path: Path
) -> None:
    config = tmp_path / "serving.json"
    config.write_text(
        json.dumps(
            {
                "drain_delay_s": 1.0,
                "grace_period_s": 10,
                "models": [
                    {
                        "name": "affine",
                        "path": str(models["affine"]),
                        "inputs": ["input__0:FP32:-1,4"],
                        "max_batch_size": 32,
                        "max_delay_ms": 2,
                    }
                ],
            }
        )
    )
    server = start_server(["--config", str(config)], logs)
    body = json.dumps({"inputs": [v2_input("input__0", [1, 2, 3, 4], [1, 4])]}).encode()
    headers = {"Content-Type": "application/json"}
    started = threading.Barrier(CLIENTS + 1)
    stop_at = time.monotonic() + TIME_LIMIT_S
    answered = [0] * CLIENTS

    def client(index: int) -> list[tuple[float, str]]:
        """(when sent, outcome) of each request: a status, `refused`, or the error's name."""
        outcomes: list[tuple[float, str]] = []
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        started.wait()
        try:
            for _ in range(REQUESTS_PER_CLIENT):
                if time.monotonic() > stop_at:
                    break
                sent = time.monotonic()
                try:
                    conn.request("POST", "/v2/models/affine/infer", body, headers)
                    answer = conn.getresponse()
                    answer.read()
                except ConnectionRefusedError:  # the listener has closed: the drain is over
                    outcomes.append((sent, "refused"))
                    break
                except (OSError, http.client.HTTPException) as exc:
                    outcomes.append((sent, type(exc).__name__))
                    conn.close()
                    continue
                outcomes.append((sent, str(answer.status)))
                answered[index] += 1
        finally:
            conn.close()
        return outcomes

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(client, i) for i in range(CLIENTS)]
            started.wait()
            deadline = time.monotonic() + 10
            while sum(answered) < 20 * CLIENTS and time.monotonic() < deadline:
                time.sleep(0.01)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.1)
            try:
                ready: int | None = server.request("GET", "/v2/health/ready").status
            except ConnectionRefusedError:
                ready = None
            outcomes = [o for f in futures for o in f.result()]
        code = server.process.wait(timeout=15)
    finally:
        server.stop()
    lost = [(round(sent - signalled, 3), what) for sent, what in outcomes if what != "200"]
    lost = [entry for entry in lost if entry[1] != "refused"]
    assert lost == [], f"requests lost around SIGTERM (seconds after it, outcome): {lost[:20]}"
    assert ready == 503  # not ready at once, while still serving
    refused = [sent for sent, what in outcomes if what == "refused"]
    assert refused and min(refused) > signalled + 0.9  # only once the drain delay was over
    served_after = sum(1 for sent, what in outcomes if what == "200" and sent > signalled)
    assert served_after >= CLIENTS  # the drain served requests, not just the ones in flight
    assert code == 0, server.output()
