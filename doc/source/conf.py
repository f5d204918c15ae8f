"""Sphinx configuration of coordsync's documentation."""

project = 'coordsync'
copyright = 'coordsync developers'
extensions = ['oslo_config.sphinxext']
html_theme = 'alabaster'
