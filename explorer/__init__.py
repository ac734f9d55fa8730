"""Streamlit glue shared by the pages: session state, cached engine calls, small widgets.

The engine (``cae_core``) knows nothing of Streamlit; this package is the only bridge.
"""
