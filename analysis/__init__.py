"""SymPy stability and higher-order analysis of KINN layers, and the golden-reference suite.

This package imports :mod:`kinn_ref`; :mod:`kinn_ref` never imports it.
"""
