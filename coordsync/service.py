"""Process set-up shared by every coordsync command.

``prepare_service(argv)`` does, in this order: register options and
logging options, set logging defaults, parse the command line and config
files, validate every value, set up logging and warn about options and
sections of the config files that nothing reads (a misspelt option is
otherwise silently ignored). It returns the ConfigOpts that the command
then passes down; nothing else in coordsync reads a global config
object.
"""

import argparse
import difflib
import glob
import os
import sys
import textwrap

from oslo_config import cfg
from oslo_log import _options as log_options
from oslo_log import log

from coordsync import concurrency
from coordsync import conf as coordsync_conf
from coordsync import exceptions
from coordsync import version
from coordsync.common import storage_policy
from coordsync.conf import opts as conf_opts

LOG = log.getLogger(__name__)

PROJECT = 'coordsync'
EXIT_CONFIG_ERROR = 2

# Libraries that log every connection attempt; their warnings still show.
QUIET_LOGGERS = ['kazoo=WARN', 'kazoo.client=WARN', 'tooz=WARN',
                 'stevedore=WARN', 'oslo.privsep=WARN']


# NOTE: oslo.log's command-line flags; --help lists them last, grouped.
LOGGING_FLAGS = frozenset(
    '--' + name for opt in (log_options.common_cli_opts
                            + log_options.logging_cli_opts)
    for name in [opt.name] + ['no' + opt.name] + [
        d.name for d in opt.deprecated_opts])
LOGGING_TITLE = 'logging options'
# oslo.config's own flags other than --config-file, listed after the
# command's options; and shorter help for the two config flags.
GENERAL_FLAGS = frozenset(('--config-dir', '--shell_completion',
                           '--version'))
GENERAL_TITLE = 'general options'
SHORT_HELP = {
    '--config-file': 'A config file to read (may be repeated; later files '
                     'win). Default: coordsync.conf in ~/.coordsync/ or '
                     '/etc/coordsync/, if there is one.',
    '--config-dir': 'Also read every *.conf file of this directory, after '
                    'the --config-file ones.',
}


class _HelpParser(cfg._CachedArgumentParser):
    """oslo.config's parser with a shorter --help.

    The command's own options come first, oslo.log's flags after them
    in a group of their own, and the ``--noX`` negations of boolean
    flags are left out of --help (they still work): a reader wants
    what the command does, not forty logging switches.
    """

    def initialize_parser_arguments(self):
        own, general, logging_args = [], [], []
        for argument in self._args_cache.get(self, []):
            names = argument['args']
            kwargs = argument['kwargs']
            if (kwargs.get('action') == 'store_false'
                    and names[0].startswith('--no')):
                kwargs['help'] = argparse.SUPPRESS
            if names[0] in SHORT_HELP:
                kwargs['help'] = SHORT_HELP[names[0]]
            if any(name in LOGGING_FLAGS for name in names):
                logging_args.append(argument)
            elif names[0] in GENERAL_FLAGS:
                general.append(argument)
            else:
                own.append(argument)
        if general or logging_args:
            self._args_cache[self] = own
        groups = []
        for title, arguments in ((GENERAL_TITLE, general),
                                 (LOGGING_TITLE, logging_args)):
            if arguments:
                group = self.add_argument_group(title)
                self._args_cache[group] = arguments
                groups.append(group)
        super().initialize_parser_arguments()
        if groups and self.usage is None:
            self.usage = self._short_usage(groups)

    def _short_usage(self, groups):
        """The usage line of the command's own options only."""
        tail = {id(action) for group in groups
                for action in group._group_actions}
        formatter = self._get_formatter()
        formatter.add_usage(
            None, [a for a in self._actions if id(a) not in tail], [],
            prefix='')
        words = formatter.format_help().replace('%', '%%').split()[1:]
        words += ['[%s]' % group.title.replace(' ', '\0')
                  for group in groups]
        # Keep each bracketed item on one line: glue its words with a
        # character textwrap does not break at, then restore spaces.
        items, depth = [], 0
        for word in words:
            if depth and items:
                items[-1] += '\0' + word
            else:
                items.append(word)
            depth += word.count('[') - word.count(']')
        indent = ' ' * len('usage: %s ' % self.prog)
        lines = textwrap.wrap(' '.join(items), width=79,
                              initial_indent=indent,
                              subsequent_indent=indent,
                              break_on_hyphens=False)
        return '%(prog)s ' + '\n'.join(lines).strip().replace('\0', ' ')


class _ConfigOpts(cfg.ConfigOpts):
    """ConfigOpts whose command line parser is a _HelpParser."""

    def _pre_setup(self, *args, **kwargs):
        result = super()._pre_setup(*args, **kwargs)
        old = self._oparser
        parser = _HelpParser(prog=old.prog, usage=old.usage,
                             description=old.description,
                             epilog=old.epilog)
        parser._args_cache = {parser if container is old else container:
                              values for container, values
                              in old._args_cache.items()}
        self._oparser = parser
        return result


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


def _config_files(conf):
    """The config files oslo.config read: --config-file (or the default
    files) and the ``*.conf`` of each --config-dir."""
    files = list(conf.config_file or ())
    for directory in conf.config_dir or ():
        files.extend(sorted(glob.glob(os.path.join(directory, '*.conf'))))
    return [path for path in files if os.path.isfile(path)]


def _known_options(conf):
    """``{section: option names}`` of everything coordsync reads.

    Every registered group and option (the command's own, oslo.log's,
    the ``[storage-policy:N]`` sections found) plus the groups other
    coordsync commands register, with their deprecated names and
    groups: those still work (oslo.config warns about them itself).
    """
    known = {}

    def add(group, opt):
        group = 'DEFAULT' if group is None else str(group)
        for name in (opt.name, opt.dest):
            known.setdefault(group, set()).update(
                (name, name.replace('-', '_')))
        for old in opt.deprecated_opts:
            old_group = group if old.group is None else old.group
            if old.name is not None:
                known.setdefault(str(old_group), set()).update(
                    (old.name, old.name.replace('-', '_')))

    # NOTE: oslo.config has no public listing of registered options;
    # its own generator and validator read these two attributes too.
    for info in conf._opts.values():
        add(None, info['opt'])
    for name, group in conf._groups.items():
        known.setdefault(name, set())
        for info in group._opts.values():
            add(name, info['opt'])
    for group, options in conf_opts.list_opts():
        known.setdefault(str(group), set())
        for opt in options:
            add(group, opt)
    return {_section_key(name): names for name, names in known.items()}


def _section_key(name):
    # oslo.config matches section names without case, DEFAULT aside.
    return name if name == 'DEFAULT' else name.lower()


def unknown_options(conf):
    """One message per option or section of the config files read that
    no registered option matches; [] when all are known."""
    known = _known_options(conf)
    messages = []
    for path in _config_files(conf):
        sections = {}
        try:
            cfg.ConfigParser(path, sections).parse()
        except (OSError, cfg.ParseError, ValueError):
            continue
        for section, options in sections.items():
            names = known.get(_section_key(section))
            if names is None:
                messages.append('unknown section [%s] in %s (ignored%s)' % (
                    section, path, _did_you_mean(section, known)))
                continue
            for option in options:
                if option not in names:
                    messages.append(
                        'unknown option [%s] %s in %s (ignored%s)' % (
                            section, option, path,
                            _did_you_mean(option, names)))
    return messages


def _did_you_mean(word, candidates):
    close = difflib.get_close_matches(word, sorted(candidates), n=1)
    return '; did you mean %s?' % close[0] if close else ''


def prepare_service(argv=None, *, prog, description=None, cli_opts=(),
                    register=None, default_config_files=None,
                    config_exit=EXIT_CONFIG_ERROR):
    """Parse config and set up logging; exit 2 with one line on errors.

    ``cli_opts`` are extra command-line options of this command and
    ``register(conf)`` may register more option groups before parsing.
    ``config_exit`` replaces the exit status of a bad config or command
    line (coordsync-status: 3, the Nagios convention). ``description``
    is the first thing --help says: one sentence of what the command
    does.
    """
    if argv is None:
        argv = sys.argv[1:]
    concurrency.quiet_deprecation()
    conf = _ConfigOpts()
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
        unknown = unknown_options(conf)
    except cfg.ConfigFilesNotFoundError as err:
        _fail(prog, 'config file not found: %s' % ', '.join(
            err.config_files), config_exit)
    except (cfg.Error, ValueError, exceptions.ConfigError) as err:
        _fail(prog, str(err).strip().splitlines()[0], config_exit)
    log.setup(conf, PROJECT)
    for message in unknown:
        LOG.warning('%s', message)
    return conf
