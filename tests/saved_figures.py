"""A fixture for tests of figures: the matplotlib figures saved while a test runs (a PNG says nothing about its
axes, lines and colour bars). A plugin of the root conftest: any test may ask for `drawn`."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every `Figure` saved during the test, in order (still saved to its file)."""
    figures: list[Figure] = []
    save = Figure.savefig

    def keep(self: Figure, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures
