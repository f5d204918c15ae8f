"""What the node-server unit tests share: the cluster secret of the
``conf`` fixture (in conftest.py)."""

SECRET = 'unit-secret'
