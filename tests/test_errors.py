"""One error hierarchy in one module: every exception class of the package is defined
in coordinator/errors.py and is a CoordinatorError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import coordinator
from coordinator import errors
from coordinator.errors import CoordinatorError

NOT_YET_MOVED: set[str] = set()


def exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(coordinator.__path__, "coordinator."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_exception_class_is_defined_in_errors() -> None:
    elsewhere = {name for name, cls in exception_classes().items() if cls.__module__ != errors.__name__}
    assert elsewhere == NOT_YET_MOVED


def test_every_error_is_a_coordinator_error() -> None:
    classes = [cls for name, cls in exception_classes().items() if name not in NOT_YET_MOVED]
    assert len(classes) > 20
    assert [cls.__name__ for cls in classes if not issubclass(cls, CoordinatorError)] == []

