"""Serve the example classifier with `fermion serve`, ask it about three images, and stop it.

    python examples/classifier/demo.py build/classifier/classifier.pt

This is what `make demo` runs: a real server process, real HTTP requests in the V2 protocol,
and a clean SIGTERM shutdown.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import LABELS, sample_image  # the script's own folder


def _relay(server: subprocess.Popen[str], announced: threading.Event) -> None:
    """Print the server's lines as they come; set `announced` after its ready block."""
    assert server.stdout is not None
    for line in server.stdout:
        print(line, end="", flush=True)  # noqa: T201
        if line.startswith("Press Ctrl-C"):
            announced.set()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main(model: Path) -> int:
    port = _free_port()
    fermion = Path(sys.executable).with_name("fermion")
    # The server's own lines pass through this script, so that its announcement is printed
    # whole before the first answer below, however the two processes are scheduled.
    server = subprocess.Popen(
        [
            str(fermion),
            "serve",
            str(model),
            "--input",
            "input__0:FP32:-1,3,64,64",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    announced = threading.Event()
    relay = threading.Thread(target=_relay, args=(server, announced), daemon=True)
    relay.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        # `fermion serve` announces the model only once it answers on its port.
        while not announced.wait(0.2):
            if server.poll() is not None or time.monotonic() > deadline:
                print("the server did not become ready", file=sys.stderr)  # noqa: T201
                return 1
        for channel, label in enumerate(LABELS):
            body = {
                "inputs": [
                    {
                        "name": "input__0",
                        "shape": [1, 3, 64, 64],
                        "datatype": "FP32",
                        "data": sample_image(channel),
                    }
                ]
            }
            request = urllib.request.Request(
                f"{base}/v2/models/classifier/infer",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                logits = json.load(answer)["outputs"][0]["data"]
            guess = LABELS[max(range(3), key=lambda i: logits[i])]
            print(f"a mostly {label} image -> {guess}  (logits {[round(v, 3) for v in logits]})")  # noqa: T201
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
        relay.join(timeout=10)
    print(f"server stopped on SIGTERM with exit code {code}")  # noqa: T201
    return code


if __name__ == "__main__":
    sys.exit(
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/classifier/classifier.pt"))
    )
