"""coordsync-proxy: the Swift-compatible API.

    coordsync-proxy --config-file F

Serves ``/auth/v1.0``, ``/info`` and ``/v1/...`` on ``[proxy] bind_ip:
bind_port`` (see :mod:`coordsync.proxy.server`), talking to the node
servers placed by the object, container and account rings. It joins no
coordination group: it is a client of the nodes, like Swift's proxy.
Stops on SIGTERM or SIGINT (requests in flight finish).
"""

import sys

from coordsync import concurrency
from coordsync import exceptions
from coordsync import service
from coordsync.common import daemon
from coordsync.common import wsgi
from coordsync.proxy import server

DESCRIPTION = ('Serve the Swift-compatible object storage API, talking to '
               'the node servers the rings name.')


class ProxyService:
    """Serves the proxy app in a green thread (start/stop)."""

    def __init__(self, conf, app, logger=None):
        self.conf = conf
        self.app = app
        self.log = logger or server.LOG
        self._sock = None
        self._thread = None

    def start(self):
        opts = self.conf.proxy
        address = (opts.bind_ip, opts.bind_port)
        self._sock = concurrency.listen(address, backlog=opts.backlog)
        self.log.info('Swift API listening on %s:%d', *address)
        self._thread = concurrency.spawn(
            concurrency.serve_wsgi, self._sock, self.app,
            wsgi.EventletLog(self.log), opts.max_connections,
            opts.client_timeout, wsgi.answer_when_full)

    def stop(self):
        if self._thread is not None:
            concurrency.kill(self._thread)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def main(argv=None):
    concurrency.monkey_patch()
    conf = service.prepare_service(argv, prog='coordsync-proxy',
                                   description=DESCRIPTION)
    try:
        app = server.ProxyApp.from_conf(conf)
    except exceptions.CoordsyncError as err:
        print('coordsync-proxy: error: %s' % err, file=sys.stderr)
        return service.EXIT_CONFIG_ERROR
    svc = ProxyService(conf, app)
    stop = daemon.StopFlag()
    stop.install()
    try:
        svc.start()
    except OSError as err:
        print('coordsync-proxy: error: cannot listen on %s:%s: %s'
              % (conf.proxy.bind_ip, conf.proxy.bind_port,
                 err.strerror or err), file=sys.stderr)
        return 1
    try:
        while not stop.is_set:
            concurrency.sleep(0.1)
        server.LOG.info('Signal %s received, stopping', stop.signum)
    finally:
        svc.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
