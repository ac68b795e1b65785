"""Peer watch: when one process of a multi-process job dies, the others stop within seconds,
each with one line.

JAX finds a dead process by its missed heartbeats (`multihost.HEARTBEAT_TIMEOUT_S`) and then
aborts the survivors with a fatal log line and a stack trace; its hook for that moment
(`missed_heartbeat_callback`) cannot be used from Python in jaxlib 0.10 (the call fails with
`std::bad_cast`). A survivor inside a collective usually fails sooner, when the dead peer's gloo
connections close, but not always: a survivor outside any collective (saving, loading data)
waited for that abort, and so, rarely, did one inside a collective whose failure never came.

The watch is one TCP connection per process to process 0: process 0 listens on a free port,
published with a random token through JAX's key-value store, and every other process connects
and sends the token and its id (anything else that connects is dropped).
The connections stay silent until a process ends. One that finishes its Python program
normally says so with one byte at exit (before JAX's shutdown barrier); one that stops on an
error (`stop_now`) says that instead. A connection that closes without either means its
process was killed or crashed. On a stop or a close without a finish, the watcher prints one
`error:` line and stops too. Process 0 watches every other process and the others watch
process 0, so a death anywhere reaches every process in at most two hops. Process 0 leaves
last (it waits a few seconds for the others to go): it hosts JAX's coordination service, and
a process still running when that service disappears is aborted by JAX with a fatal log and a
stack trace instead of its own line. A host that vanishes without closing its connections
(power, network) is still found by JAX's heartbeats.
"""

import atexit
import os
import secrets
import selectors
import socket
import struct
import sys
import threading
import time

from absl import logging

_KEY = "anchored_jax/peer_watch_port"
_FINISHED = b"F"  # sent by a process whose program ended normally
_STOPPED = b"S"  # sent by a process that stops on an error
_CONNECT_TIMEOUT_S = 30.0
_TOKEN_BYTES = 16
_LAST_TO_LEAVE_S = 5.0  # how long process 0, stopping, waits for the others to leave first
_STOPPING = threading.Lock()
_sockets: list[socket.socket] = []  # this process's watch connections
_finished: set[socket.socket] = set()  # those whose process said it finished
_hub = False  # whether this process is process 0, watching all the others


def stop_now(line: str, traceback_text: str = "") -> None:
    """Writes `traceback_text` and one `error:` line, tells the watched peers, and ends this
    process with exit code 1.

    The first caller wins: an uncaught error and a peer's stop seen at the same moment still
    make one line. No Python clean-up runs, so no shutdown barrier waits for peers that are
    blocked in a collective with this process."""
    _STOPPING.acquire()
    sys.stderr.write(traceback_text + line.rstrip("\n") + "\n")
    sys.stderr.flush()
    sys.stdout.flush()
    _tell_all(_STOPPED)
    if _hub:
        _wait_for_connections_to_close(_LAST_TO_LEAVE_S)
    os._exit(1)


def a_peer_has_ended(wait_s: float = 0.0) -> bool:
    """Whether a watched process has stopped or closed its connection without finishing,
    looking for up to `wait_s` seconds. Reads nothing: the watch thread still sees it."""
    end = time.monotonic() + wait_s
    while True:
        for conn in [c for c in _sockets if c not in _finished]:
            try:
                if conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != _FINISHED:
                    return True
            except BlockingIOError:
                pass
            except OSError:
                return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)


def _wait_for_connections_to_close(timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    open_conns = list(_sockets)
    while open_conns and time.monotonic() < end:
        for conn in list(open_conns):
            try:
                if not conn.recv(64, socket.MSG_DONTWAIT):
                    open_conns.remove(conn)
            except BlockingIOError:
                pass
            except OSError:
                open_conns.remove(conn)
        time.sleep(0.02)


def start(client, process_id: int, num_processes: int, coordinator_address: str) -> bool:
    """Starts watching the other processes of this job; returns whether the watch is on.

    `client` is JAX's distributed runtime client (its key-value store carries process 0's
    port). A watch that cannot be set up (a firewall between hosts) logs a warning and leaves
    the job as it was: JAX's heartbeats still stop it."""
    if num_processes < 2:
        return False
    try:
        if process_id == 0:
            global _hub
            _hub = True
            listener, token = _listen(), secrets.token_bytes(_TOKEN_BYTES)
            client.key_value_set(_KEY, f"{listener.getsockname()[1]} {token.hex()}")
            target, args = _watch_all, (listener, token, num_processes)
        else:
            published = client.blocking_key_value_get(_KEY, int(_CONNECT_TIMEOUT_S * 1000))
            port, token = published.split()
            host = coordinator_address.rpartition(":")[0].strip("[]")
            conn = socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S)
            conn.settimeout(None)
            conn.sendall(bytes.fromhex(token) + struct.pack("!I", process_id))
            _sockets.append(conn)
            target, args = _watch_process_0, (conn,)
    except Exception as e:  # noqa: BLE001 (any failure here must leave the job running)
        logging.warning("Peer watch off (a dead peer is then found by heartbeats): %s", e)
        return False
    # Registered after jax's own exit hook (its shutdown barrier), so it runs before it:
    # atexit runs hooks in reverse order.
    atexit.register(_say_finished)
    threading.Thread(target=target, args=args, name="peer-watch", daemon=True).start()
    return True


def _listen() -> socket.socket:
    if socket.has_dualstack_ipv6():
        return socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(("", 0))


def _peer_ended(peer: int, said: bytes) -> None:
    import jax  # noqa: PLC0415 (initialized by now)

    how = "stopped on an error" if said == _STOPPED else "ended without finishing"
    stop_now(
        f"error: process {jax.process_index()} of {jax.process_count()} stopped after another "
        f"process of the job stopped (see its log): process {peer} {how}"
    )


def _watch_all(listener: socket.socket, token: bytes, num_processes: int) -> None:
    """Process 0: accepts every other process, then waits for any to close unfinished."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, data=None)
    waiting_for = set(range(1, num_processes))
    while True:
        for key, _ in selector.select():
            if key.data is None:  # a process connects and names itself
                conn, peer = _accept(listener, token)
                if peer not in waiting_for:
                    conn.close()  # not a process of this job, or one already watched
                    continue
                _sockets.append(conn)
                selector.register(conn, selectors.EVENT_READ, data=peer)
                waiting_for.remove(peer)
                if not waiting_for:
                    selector.unregister(listener)
                    listener.close()
                continue
            said = _read_end(key.fileobj)
            if said == _FINISHED:
                _finished.add(key.fileobj)
                selector.unregister(key.fileobj)
            else:
                _peer_ended(key.data, said)


def _accept(listener: socket.socket, token: bytes) -> tuple[socket.socket, int | None]:
    """The next connection and the process id it names (None without this job's token)."""
    conn, _ = listener.accept()
    conn.settimeout(_CONNECT_TIMEOUT_S)
    try:
        hello = _receive_exactly(conn, _TOKEN_BYTES + 4)
    except OSError:
        return conn, None
    conn.settimeout(None)
    if not secrets.compare_digest(hello[:_TOKEN_BYTES], token):
        return conn, None
    return conn, struct.unpack("!I", hello[_TOKEN_BYTES:])[0]


def _watch_process_0(conn: socket.socket) -> None:
    said = _read_end(conn)
    if said == _FINISHED:
        _finished.add(conn)
    else:
        _peer_ended(0, said)


def _read_end(conn: socket.socket) -> bytes:
    """Blocks until the peer says how it ends (`_FINISHED`, `_STOPPED`) or its connection
    closes (b"")."""
    try:
        return conn.recv(1)
    except OSError:
        return b""


def _receive_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed before naming its process")
        data += chunk
    return data


def _say_finished() -> None:
    # A normal end of the program. An uncaught error ends through `stop_now`, a kill or a
    # crash ends with no Python at all: neither gets here.
    _tell_all(_FINISHED)


def _tell_all(said: bytes) -> None:
    for conn in _sockets:
        try:
            conn.sendall(said)
        except OSError:
            pass  # that peer is gone already


def _forget_in_child() -> None:
    # A forked child (a data worker) must not keep the parent's connections open after the
    # parent dies, nor announce a finish that is not the parent's.
    for conn in _sockets:
        conn.close()
    _sockets.clear()
    _finished.clear()


os.register_at_fork(after_in_child=_forget_in_child)
