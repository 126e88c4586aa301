"""The backend contract (nin_common.engine.contract) and the registry, checked for every registered backend."""
import importlib.util
import types

import pytest

from nin_common.engine import contract, registry


def test_backend_meets_the_contract(backend):
    assert contract.check(backend.BACKEND) == []


def test_built_model_carries_what_the_contract_says(backend):
    model = backend.NiN(seed=0, image_size=67)
    assert contract.check_model(model, len(model.spec.layers)) == []
    assert (model.image_size, model.lr, model.num_classes, model.in_channels) == (67, 0.1, 10, 1)


def test_built_trainer_carries_what_the_contract_says(backend):
    from nin_common.engine import training

    model = backend.NiN(seed=0, image_size=67)
    trainer = training.make_trainer(backend.BACKEND, model, 0.05, "cpu", "fp32")
    assert contract.check_trainer(trainer) == []
    assert trainer.model is model and trainer.precision == "fp32"


def test_contract_check_reports_what_is_missing_or_misshapen():
    """The checker can fail: a module without a function, and one whose function takes other arguments."""
    fake = types.ModuleType("fake.checkpoint")
    fake.save_native = lambda model, path: None
    assert contract.check_module(fake, contract.CheckpointModule) == ["fake.checkpoint lacks the function load_native"]
    fake.load_native = lambda filename, model=None: None
    [problem] = contract.check_module(fake, contract.CheckpointModule)
    assert problem.startswith("fake.checkpoint.load_native takes no parameter(s) path")
    fake.load_native = lambda path, model, strict: None
    [problem] = contract.check_module(fake, contract.CheckpointModule)
    assert "requires parameter(s) strict" in problem


def test_registry_is_the_one_list_of_backends():
    assert registry.BACKENDS == tuple(b.name for b in registry.REGISTERED)
    assert len({b.package for b in registry.REGISTERED}) == len(registry.REGISTERED)
    assert registry.parse_list("all") == [n for n in registry.BACKENDS
                                          if importlib.util.find_spec(registry.info(n).module) is not None]
    assert registry.parse_list(f" {registry.BACKENDS[-1]} ,{registry.BACKENDS[0]}") == [registry.BACKENDS[-1],
                                                                                        registry.BACKENDS[0]]
    with pytest.raises(ValueError, match="expected backends among"):
        registry.parse_list("torch,nope")
    with pytest.raises(ValueError, match="expected a backend among"):
        registry.load("nope")
    for entry in registry.REGISTERED:
        assert registry.of_suffix("dir/model" + entry.native_suffix) == entry.name


def test_missing_framework_names_the_extra(monkeypatch):
    """A framework that fails to import (ImportError or OSError from a shared library) -> BackendUnavailable."""
    import importlib

    def broken(name, *args, **kwargs):
        raise OSError("libfoo.so: cannot open shared object file")

    entry = registry.REGISTERED[0]
    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(registry.BackendUnavailable, match=rf"pip install 'nin\[{entry.extra}\]'"):
        registry.load(entry.name)
