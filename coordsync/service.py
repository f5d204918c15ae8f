"""Process set-up shared by every coordsync command.

``prepare_service(argv)`` does, in this order: register options and
logging options, set logging defaults, parse the command line and config
files, validate every value, and set up logging. It returns the
ConfigOpts that the command then passes down; nothing else in coordsync
reads a global config object.
"""

import sys

from oslo_config import cfg
from oslo_log import log

from coordsync import concurrency
from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync import version
from coordsync.common import storage_policy

PROJECT = 'coordsync'
EXIT_CONFIG_ERROR = 2

# Libraries that log every connection attempt; their warnings still show.
QUIET_LOGGERS = ['kazoo=WARN', 'kazoo.client=WARN', 'tooz=WARN',
                 'stevedore=WARN', 'oslo.privsep=WARN']


class ConfigExit(SystemExit):
    """Raised (exit status 2, or the command's ``config_exit``) after
    printing one line about a bad config or command line."""


def _fail(prog, message, code=EXIT_CONFIG_ERROR):
    print('%s: error: %s' % (prog, message), file=sys.stderr)
    raise ConfigExit(code)


def _read(section, name, read, *args):
    try:
        return read(*args)
    except (cfg.Error, ValueError) as err:
        reason = str(err).split('is not valid: ')[-1].strip()
        raise ValueError('[%s] %s: %s' % (section, name, reason)) from err


def _validate(conf):
    """Read every option once so a bad value fails now, not mid-pass."""
    for name in list(conf):
        value = _read('DEFAULT', name, getattr, conf, name)
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            for opt_name in list(value):
                _read(name, opt_name, getattr, value, opt_name)
    backoff = conf.coordination
    if backoff.initial_reconnect_backoff > backoff.max_reconnect_backoff:
        raise ValueError(
            '[coordination] initial_reconnect_backoff (%s) is larger than '
            'max_reconnect_backoff (%s)' % (
                backoff.initial_reconnect_backoff,
                backoff.max_reconnect_backoff))


def prepare_service(argv=None, *, prog, description=None, cli_opts=(),
                    register=None, default_config_files=None,
                    config_exit=EXIT_CONFIG_ERROR):
    """Parse config and set up logging; exit 2 with one line on errors.

    ``cli_opts`` are extra command-line options of this command and
    ``register(conf)`` may register more option groups before parsing.
    ``config_exit`` replaces the exit status of a bad config or command
    line (coordsync-status: 3, the Nagios convention).
    """
    if argv is None:
        argv = sys.argv[1:]
    concurrency.quiet_deprecation()
    conf = cfg.ConfigOpts()
    coordsync_conf.register_opts(conf)
    if register is not None:
        register(conf)
    conf.register_cli_opts(list(cli_opts))
    log.register_options(conf)
    log.set_defaults(default_log_levels=(
        log.get_default_log_levels() + QUIET_LOGGERS))
    try:
        try:
            conf(argv, project=PROJECT, prog=prog,
                 version=version.version_string(),
                 description=description,
                 default_config_files=default_config_files)
        except SystemExit as err:
            # NOTE: argparse printed the usage error already; --help and
            # --version exit 0 and stay so.
            if err.code:
                raise ConfigExit(config_exit) from err
            raise
        storage_policy.register_opts(conf)
        _validate(conf)
        storage_policy.from_conf(conf)
    except cfg.ConfigFilesNotFoundError as err:
        _fail(prog, 'config file not found: %s' % ', '.join(
            err.config_files), config_exit)
    except (cfg.Error, ValueError, exceptions.ConfigError) as err:
        _fail(prog, str(err).strip().splitlines()[0], config_exit)
    log.setup(conf, PROJECT)
    return conf
