"""Every entry point in setup.cfg resolves to the function its decorator registers,
and every name the package registers is advertised as an entry point."""

import configparser
import importlib
from pathlib import Path

import pytest
from spacy.util import registry

import spacy_bertcat  # noqa: F401  (registers everything)

SETUP_CFG = Path(__file__).parent.parent / "setup.cfg"
REGISTRIES = {
    "spacy_factories": registry.factories,
    "spacy_architectures": registry.architectures,
    "spacy_misc": registry.misc,
    "spacy_callbacks": registry.callbacks,
    "spacy_scorers": registry.scorers,
    "spacy_batchers": registry.batchers,
    "spacy_loggers": registry.loggers,
}


def entry_points():
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    section = parser["options.entry_points"]
    for group in REGISTRIES:
        for line in section[group].strip().splitlines():
            name, target = (part.strip() for part in line.split("="))
            yield group, name, target


@pytest.mark.parametrize("group,name,target", list(entry_points()))
def test_entry_point_matches_registration(group, name, target):
    module_name, attr = target.split(":")
    function = getattr(importlib.import_module(module_name), attr)
    assert REGISTRIES[group].get(name) is function


@pytest.mark.parametrize("group", [g for g in REGISTRIES if g != "spacy_factories"])
def test_every_registered_name_is_an_entry_point(group):
    advertised = {name for g, name, _ in entry_points() if g == group}
    registered = {name for name in REGISTRIES[group].get_all() if name.startswith("spacy-bertcat.")}
    assert registered == advertised


def test_factories_are_entry_points():
    advertised = {name for g, name, _ in entry_points() if g == "spacy_factories"}
    assert advertised == {"bertcat", "bertcat_multilabel"}


def test_names_are_versioned():
    for group, name, _ in entry_points():
        if group != "spacy_factories":
            assert name.startswith("spacy-bertcat.") and name.rsplit(".", 1)[-1].startswith("v")


def test_console_script_points_at_cli():
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    scripts = parser["options.entry_points"]["console_scripts"]
    module_name, attr = scripts.split("=")[1].strip().split(":")
    assert callable(getattr(importlib.import_module(module_name), attr))
