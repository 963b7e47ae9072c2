"""The last layer: what a learner sees. ``experiments`` (the runs behind each figure and their status lines),
``plots`` (the figures), ``widgets`` (the sliders that rerun an experiment and redraw its figure) and
``exercises`` (checks that say what is wrong). Nothing in the package imports this layer.
"""
