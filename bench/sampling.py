"""A small sampling profiler for every thread of a Python program (py-spy is not available here).

cProfile sees only the thread it runs in, and the operator spends much of its CPU on pool threads
(the Kubernetes client, prometheus-api-client). This samples ``sys._current_frames()`` of all
threads every ``INTERVAL`` seconds and counts, per function, how often it was on top of a stack
that was not waiting (a thread blocked in select/poll/recv/lock acquire/sleep is idle), and how
often it was anywhere on such a stack (inclusive). Used by ``bench/scale.py --sample FILE``::

    python -m bench.sampling OUT.txt -m checkout_gates.cli.main run ...
"""

from __future__ import annotations

import atexit
import runpy
import sys
import threading
import time
from collections import Counter
from types import FrameType

INTERVAL = 0.005
IDLE = {
    "select",
    "poll",
    "wait",
    "acquire",
    "recv",
    "recv_into",
    "read",
    "readinto",
    "sleep",
    "accept",
    "_worker",
    "get",
    "readline",
    "_wait_for_tstate_lock",
    "connect",
    "do_handshake",
    "sendall",
    "send",
}


def _where(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("site-packages/", "operator/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{code.co_name}"


class Sampler:
    def __init__(self, out: str) -> None:
        self.out = out
        self.self_counts: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()
        self.busy = 0
        self.samples = 0
        self._stop = threading.Event()
        self._me = 0

    def start(self) -> None:
        thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        thread.start()
        atexit.register(self.dump)

    def _run(self) -> None:
        self._me = threading.get_ident()
        while not self._stop.wait(INTERVAL):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == self._me:
                    continue
                leaf = frame.f_code.co_name
                if leaf in IDLE:
                    continue
                self.busy += 1
                self.self_counts[_where(frame)] += 1
                seen = set()
                current: FrameType | None = frame
                while current is not None:
                    where = _where(current)
                    if where not in seen:
                        seen.add(where)
                        self.inclusive[where] += 1
                    current = current.f_back

    def dump(self) -> None:
        self._stop.set()
        lines = [f"{self.samples} sampling rounds, {self.busy} busy thread samples", "", "self:"]
        lines += [
            f"{count:8d} {100 * count / max(1, self.busy):5.1f}% {where}"
            for where, count in self.self_counts.most_common(60)
        ]
        lines += ["", "inclusive:"]
        lines += [
            f"{count:8d} {100 * count / max(1, self.busy):5.1f}% {where}"
            for where, count in self.inclusive.most_common(120)
        ]
        with open(self.out, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")


def main() -> None:
    out, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: python -m bench.sampling OUT -m MODULE ARGS...")
    Sampler(out).start()
    sys.argv = [module, *rest]
    time.sleep(0)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
