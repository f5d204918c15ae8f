"""The one door to eventlet.

Every other module asks this one for green threads, pools, sleeps, events,
timeouts, the thread pool for CPU-heavy work and the WSGI server, so that
a later move away from eventlet (which upstream keeps in maintenance mode)
touches one file. Monkey-patching happens only when a command's ``main()``
calls :func:`monkey_patch`.
"""

import warnings

DEPRECATION_NOTICE = r'\s*Eventlet (support )?is deprecated'

# NOTE: eventlet warns on import that it is in maintenance mode; that is a
# known, recorded choice (see the module docstring), not news for operators.
with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message=DEPRECATION_NOTICE)
    import eventlet
    import eventlet.event
    import eventlet.greenpool
    import eventlet.patcher
    import eventlet.timeout
    import eventlet.tpool
    import eventlet.wsgi

# NOTE: a REPLICATE that rehashes every suffix names all 4096 of them in
# its path (16 KiB); eventlet's default limit (8 KiB) would answer 414.
MAX_URL_LENGTH = 32768

GreenPool = eventlet.greenpool.GreenPool
Timeout = eventlet.timeout.Timeout
Event = eventlet.event.Event
spawn = eventlet.spawn
spawn_after = eventlet.spawn_after
sleep = eventlet.sleep
kill = eventlet.kill


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


def serve_wsgi(sock, app, logger, max_size=1024):
    """Serve ``app`` on ``sock`` until the green thread is killed."""
    eventlet.wsgi.server(sock, app, log=logger, max_size=max_size,
                         log_output=False, url_length_limit=MAX_URL_LENGTH)
