"""Sphinx configuration: the documentation site is built from this folder.

``sphinx-build -W -b html tutorials _build/docs`` (warnings are errors; CI runs it).
"""

import cellflow

project = "cellflow"
author = "the cellflow developers"
release = version = cellflow.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "myst_parser"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "*.ipynb"]
myst_enable_extensions = ["dollarmath"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
html_theme = "alabaster"
html_title = "cellflow"
# links from the pages to the notebooks and to repository files are plain links, not documents
suppress_warnings = ["myst.xref_missing"]
