"""Streamlit glue shared by the pages: session state (``state.py``), loaded models and uploads
(``resources.py``), the tables and arrays pages draw, memoised per session (``views.py``, which owns
every memo key), the session's runs recorded and stored runs opened (``runs.py``), and small widgets
(``widgets.py``).

The engine (``cae_core``) knows nothing of Streamlit. Pages reach it through this package or through
``cae_core``'s public names (``cae_core``, ``cae_core.inputs``, ``cae_core.method``, ``cae_core.analysis``,
``cae_core.runs``).
"""
