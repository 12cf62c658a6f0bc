"""The app layer: the `mmt` command line and the demo.

These join the library (`mmt`), the dataset readers (`data_prep`) and the analysis tools
(`analysis`); the library itself imports neither of the other two, so it stays usable
(and light) on its own.
"""
