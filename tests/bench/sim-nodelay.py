#!/usr/bin/env python3
"""tests/sim/zuora_sim.py with TCP_NODELAY on every accepted connection, nothing else changed.

The simulator writes an answer's head and its body with two send() calls on a socket that has
Nagle's algorithm on. When the head is still unacknowledged, the kernel holds the body back until
the client's delayed ACK comes, up to 40 ms later (Linux's minimum delayed-ACK time). refreshd's
firing delay measured at the stock simulator therefore carries a 40 ms step that is the
simulator's, not the daemon's. bench-daemon.py measures at both, and at bench-rx (one send()).
Same command line as zuora_sim.py.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim"))
import zuora_sim  # noqa: E402

_setup = zuora_sim.Handler.setup


def _setup_nodelay(self):
    try:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    _setup(self)


zuora_sim.Handler.setup = _setup_nodelay

if __name__ == "__main__":
    sys.exit(zuora_sim.main())
