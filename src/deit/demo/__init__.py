"""The experiment behind `deit demo`: settings, runs, report and plots, built on the library."""
