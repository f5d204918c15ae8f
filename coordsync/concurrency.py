"""The one door to eventlet.

Every other module asks this one for green threads, pools, sleeps, events,
timeouts, the thread pool for CPU-heavy work and the WSGI server, so that
a later move away from eventlet (which upstream keeps in maintenance mode)
touches one file. Monkey-patching happens only when a command's ``main()``
calls :func:`monkey_patch`.
"""

import errno
import socket
import warnings

import greenlet

DEPRECATION_NOTICE = r'\s*Eventlet (support )?is deprecated'

# NOTE: eventlet warns on import that it is in maintenance mode; that is a
# known, recorded choice (see the module docstring), not news for operators.
with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message=DEPRECATION_NOTICE)
    import eventlet
    import eventlet.event
    import eventlet.greenpool
    import eventlet.patcher
    import eventlet.semaphore
    import eventlet.timeout
    import eventlet.tpool
    import eventlet.wsgi

# NOTE: a REPLICATE that rehashes every suffix names all 4096 of them in
# its path (16 KiB); eventlet's default limit (8 KiB) would answer 414.
MAX_URL_LENGTH = 32768

GreenPool = eventlet.greenpool.GreenPool
Timeout = eventlet.timeout.Timeout
Event = eventlet.event.Event
Semaphore = eventlet.semaphore.Semaphore
spawn = eventlet.spawn
spawn_after = eventlet.spawn_after
sleep = eventlet.sleep
kill = eventlet.kill
# What a green thread killed with kill() sees raised in it.
GreenletExit = greenlet.GreenletExit


def quiet_deprecation():
    """Hide eventlet's deprecation notice in libraries importing it later.

    Called from commands' ``main()`` only (futurist and kazoo import
    eventlet lazily when a coordination driver loads).
    """
    warnings.filterwarnings('ignore', message=DEPRECATION_NOTICE)


def monkey_patch():
    """Patch the standard library for green threads (commands only)."""
    quiet_deprecation()
    eventlet.monkey_patch()


def is_monkey_patched():
    return eventlet.patcher.is_monkey_patched('socket')


def kazoo_sleep_func():
    """The sleep of kazoo's eventlet handler, which its retries must share.

    Imported here, late, because that kazoo module imports eventlet.
    """
    from kazoo.handlers import eventlet as kazoo_eventlet
    return kazoo_eventlet.SequentialEventletHandler.sleep_func


def run_in_thread(func, *args, **kwargs):
    """Run a blocking or CPU-heavy call in a real OS thread.

    A green thread that does not yield for a whole session timeout kills
    the coordination session, so hashing, fsync and SQLite go here.
    """
    if not is_monkey_patched():
        return func(*args, **kwargs)
    return eventlet.tpool.execute(func, *args, **kwargs)


def listen(address, backlog=128):
    # NOTE: eventlet sets SO_REUSEPORT by default, so a second server on a
    # busy address would start and silently take half its connections.
    return eventlet.listen(address, backlog=backlog, reuse_port=False)


# Errors of accept() that mean "no file descriptor now", not "stop".
_ACCEPT_RETRY = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def serve_wsgi(sock, app, logger, max_connections=1024, client_timeout=60.0,
               when_full=None):
    """Serve ``app`` on ``sock`` until the green thread is killed.

    NOTE: our own accept loop around eventlet.wsgi's connection handler,
    because eventlet.wsgi.server stops accepting while its pool is full:
    enough idle keep-alive connections (or clients that connect and say
    nothing) and the node does not even answer its health check.

    Here at most ``max_connections`` connections are served; one beyond
    that goes to ``when_full(client_socket)`` in a green thread of its
    own (at most ``max_connections`` of those too; past both, it is
    closed unanswered). A connection silent for ``client_timeout``
    seconds (idle between requests, or slow to send) is closed.
    ``logger`` has eventlet's logger methods (info, debug, error) and
    ``warning`` (once when accept() runs out of file descriptors, once
    when it works again).
    """
    server = eventlet.wsgi.Server(
        sock, sock.getsockname(), app, logger, debug=False,
        keepalive=client_timeout, socket_timeout=client_timeout,
        url_length_limit=MAX_URL_LENGTH)
    pool = eventlet.greenpool.GreenPool(max_connections)
    overflow = eventlet.greenpool.GreenPool(max_connections)
    connections = {}

    def forget(_thread, state):
        connections.pop(id(state), None)
        _close(state[1])

    short = False
    try:
        while True:
            try:
                client, address = sock.accept()
            except OSError as err:
                if err.errno not in _ACCEPT_RETRY:
                    raise
                if not short:
                    logger.warning('cannot accept connections: %s' % err)
                short = True
                sleep(0.1)
                continue
            if short:
                logger.warning('accepting connections again')
                short = False
            client.settimeout(client_timeout)
            if pool.free():
                state = [address, client, eventlet.wsgi.STATE_IDLE]
                connections[id(state)] = state
                pool.spawn(server.process_request, state).link(forget,
                                                               state)
            elif when_full is not None and overflow.free():
                overflow.spawn_n(_run_closing, when_full, client)
            else:
                _close(client)
    finally:
        # NOTE: as eventlet.wsgi.server: idle connections are closed,
        # requests in progress finish.
        for state in list(connections.values()):
            if state[2] == eventlet.wsgi.STATE_IDLE:
                _close(state[1])
        pool.waitall()


def _run_closing(func, client):
    try:
        func(client)
    except OSError:
        pass
    finally:
        _close(client)


def _close(client):
    try:
        client.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    client.close()
