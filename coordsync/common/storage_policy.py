"""Storage policies: which object ring, and which directory, an object
of a container lives in.

A cluster declares its policies in ``[storage-policy:<index>]``
sections (Swift's ``swift.conf`` shape)::

    [storage-policy:0]
    name = gold
    default = true

    [storage-policy:1]
    name = silver
    ring_file = /etc/coordsync/object-1.ring.json

* ``index`` (in the section name) is what containers and object rows
  store; it never changes. Policy 0 always exists: declared or not, its
  objects are ``objects/`` and its ring is ``ring_file``.
* Objects of policy N > 0 live under ``<device>/objects-N/`` and are
  placed by their own ring, ``object-N.ring.json`` beside ``ring_file``
  unless the section names one.
* ``default``: the policy of a container created without
  ``X-Storage-Policy``. One policy at most says so; with several
  policies one must (with one, it is the default).
* ``deprecated``: existing containers keep working, new containers may
  not choose it. The default may not be deprecated.

A bad declaration (two defaults, a section that does not name an
integer index, a name used twice, a deprecated default) is a
:class:`PolicyError`, which every command reports in one line before
exiting with status 2 (:func:`coordsync.service.prepare_service`); a
policy's missing ring fails the same way where rings are loaded
(:meth:`StoragePolicies.check_rings`).
"""

import dataclasses
import os
import re

from oslo_config import cfg

from coordsync import exceptions
from coordsync.common import ring as ring_mod

SECTION_PREFIX = 'storage-policy:'
_INDEX_RE = re.compile(r'(0|[1-9][0-9]{0,8})\Z')
# NOTE: Swift's rule: letters, digits and '-', and not a number spelled
# differently from an index (names are matched without case).
_NAME_RE = re.compile(r'[A-Za-z0-9-]{1,64}\Z')

POLICY_OPTS = [
    cfg.StrOpt('name',
               help='The name users give in X-Storage-Policy (letters, '
                    'digits and "-"; matched without case). Default: '
                    'Policy-<index>.'),
    cfg.BoolOpt('default',
                default=False,
                help='New containers without X-Storage-Policy get this '
                     'policy. Exactly one policy says so when there are '
                     'several.'),
    cfg.BoolOpt('deprecated',
                default=False,
                help='Existing containers keep it; new containers cannot '
                     'choose it.'),
    cfg.StrOpt('ring_file',
               help='The object ring of this policy. Default: ring_file '
                    'for policy 0, object-<index>.ring.json beside it for '
                    'the others.'),
]


class PolicyError(exceptions.ConfigError):
    """A storage policy declaration that cannot be used."""


@dataclasses.dataclass(frozen=True)
class StoragePolicy:
    index: int
    name: str
    ring_file: str
    is_default: bool = False
    is_deprecated: bool = False

    @property
    def datadir(self):
        return datadir(self.index)

    @property
    def async_dir(self):
        return async_dir(self.index)

    @property
    def section(self):
        return '%s%d' % (SECTION_PREFIX, self.index)

    def load_ring(self, conf):
        """This policy's object ring (RingError if it cannot be read)."""
        return ring_mod.Ring(self.ring_file, conf.hash_path_prefix,
                             conf.hash_path_suffix)


def datadir(index):
    """The directory of a policy's objects on each device."""
    return 'objects' if index == 0 else 'objects-%d' % index


def async_dir(index):
    """The directory of a policy's async pendings on each device."""
    return 'async_pending' if index == 0 else 'async_pending-%d' % index


def index_of_datadir(name):
    """The policy index of an ``objects[-N]`` directory name, or None."""
    if name == 'objects':
        return 0
    if name.startswith('objects-') and _INDEX_RE.match(name[8:]):
        return int(name[8:])
    return None


class StoragePolicies:
    """The policies of a cluster, by index and by name."""

    def __init__(self, policies):
        self._by_index = {}
        self._by_name = {}
        for policy in sorted(policies, key=lambda p: p.index):
            if policy.index in self._by_index:
                raise PolicyError('storage policy %d is declared twice'
                                  % policy.index)
            key = policy.name.lower()
            if key in self._by_name:
                raise PolicyError(
                    '[%s] name %r is already the name of storage policy %d'
                    % (policy.section, policy.name,
                       self._by_name[key].index))
            self._by_index[policy.index] = policy
            self._by_name[key] = policy
        if 0 not in self._by_index:
            raise PolicyError('storage policy 0 is missing')
        defaults = [p for p in self if p.is_default]
        if len(defaults) > 1:
            raise PolicyError(
                'more than one default storage policy: %s'
                % ', '.join('[%s]' % p.section for p in defaults))
        if not defaults:
            if len(self._by_index) > 1:
                raise PolicyError(
                    'no default storage policy: mark one of %s with '
                    '"default = true"' % ', '.join(
                        '[%s]' % p.section for p in self))
            only = self._by_index[0]
            self._by_index[0] = self._by_name[only.name.lower()] = (
                dataclasses.replace(only, is_default=True))
            defaults = [self._by_index[0]]
        if defaults[0].is_deprecated:
            raise PolicyError('[%s] the default storage policy cannot be '
                              'deprecated' % defaults[0].section)
        self.default = defaults[0]

    def __iter__(self):
        return iter(self._by_index.values())

    def __len__(self):
        return len(self._by_index)

    def indexes(self):
        return list(self._by_index)

    def get_by_index(self, index):
        """The policy of ``index`` (an int or its digits), or None."""
        if isinstance(index, str):
            if not _INDEX_RE.match(index):
                return None
            index = int(index)
        return self._by_index.get(index)

    def get_by_name(self, name):
        """The policy named ``name`` (any case), or None."""
        return self._by_name.get(str(name).lower())

    def check_rings(self):
        """Raise PolicyError naming the first policy whose ring file is
        missing."""
        for policy in self:
            if not os.path.isfile(policy.ring_file):
                raise PolicyError('[%s] ring file %s does not exist'
                                  % (policy.section, policy.ring_file))

    def load_rings(self, conf):
        """``{index: Ring}`` of every policy; PolicyError on a missing
        ring, RingError on a bad one."""
        self.check_rings()
        return {p.index: p.load_ring(conf) for p in self}


def policy_sections(conf):
    """The ``[storage-policy:...]`` section names of the parsed config."""
    try:
        sections = conf.list_all_sections()
    except (AttributeError, TypeError):
        return []
    return sorted(s for s in sections if s.startswith(SECTION_PREFIX))


def register_opts(conf):
    """Register the options of every policy section the config files
    have (call after parsing them)."""
    for section in policy_sections(conf):
        conf.register_opts(POLICY_OPTS, group=section)


def list_opts():
    """For the sample config: policy 0's section shows the options."""
    return [(SECTION_PREFIX + '0', POLICY_OPTS)]


def _default_ring_file(conf, index):
    if index == 0:
        return conf.ring_file
    return os.path.join(os.path.dirname(conf.ring_file),
                        'object-%d.ring.json' % index)


def from_conf(conf):
    """The cluster's :class:`StoragePolicies`; PolicyError (one line) if
    the declaration cannot be used."""
    policies = []
    for section in policy_sections(conf):
        text = section[len(SECTION_PREFIX):]
        if not _INDEX_RE.match(text):
            raise PolicyError(
                '[%s] is not a storage policy: the section must be '
                'named storage-policy:<index>, an integer >= 0' % section)
        index = int(text)
        try:
            group = conf[section]
        except cfg.NoSuchOptError:
            conf.register_opts(POLICY_OPTS, group=section)
            group = conf[section]
        name = group.name if group.name is not None else 'Policy-%d' % index
        if not _NAME_RE.match(name):
            raise PolicyError('[%s] name %r: use 1 to 64 letters, digits '
                              'and "-"' % (section, name))
        if name.isdigit() and int(name) != index:
            raise PolicyError('[%s] name %r is the index of another policy'
                              % (section, name))
        policies.append(StoragePolicy(
            index, name, group.ring_file or _default_ring_file(conf, index),
            is_default=group.default, is_deprecated=group.deprecated))
    if not any(p.index == 0 for p in policies):
        policies.append(StoragePolicy(0, 'Policy-0',
                                      _default_ring_file(conf, 0)))
    return StoragePolicies(policies)
