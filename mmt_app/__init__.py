"""The app layer: the `mmt` command line and the demo.

These join the library (`mmt`), the dataset readers (`mmt.data_prep`, the repository's
data_prep/) and the analysis tools (`mmt.analysis`, its analysis/); the library's core
imports neither, so it stays usable (and light) on its own.
"""
