"""Option groups that are safe to register on several ConfigOpts."""

from oslo_config import cfg


def fresh_group(group):
    """A new OptGroup like ``group``.

    NOTE: ConfigOpts.register_group keeps a *shallow* copy of the group it
    is given, so every ConfigOpts registering one module-level OptGroup
    shares its option table, overrides included. A new object per
    registration keeps two ConfigOpts (tests, tools) independent.
    """
    return cfg.OptGroup(group.name, title=group.title, help=group.help)
