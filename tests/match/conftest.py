"""The tiny real model of the extraction tests."""

from tests.extract.conftest import tiny_model  # noqa: F401 - a fixture
