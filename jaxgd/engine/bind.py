"""From a run's settings to the science it runs: every component the spec chose, its
settings bound (`Config.bind`), gathered in one `Science` that the training loops (the
XLA loop in jaxgd.engine.loop, the fused kernel in jaxgd.engine.fused) read like the equations."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp

from jaxgd.science import data as datasets
from jaxgd.science import models, registry
from jaxgd.sweep.plan import Config


class Science(NamedTuple):
    """The science pieces of one run, built from its settings: every component the spec
    chose, its settings bound, so the loop below reads like the equations."""

    network: models.Network  # f(params, X)
    source: datasets.Source  # the data set
    loss: Callable  # (f, y) -> the training loss
    step_size: Callable  # t -> lr_t
    constrain: Callable  # (W, W0) -> W after a step
    trained: tuple[str, ...]  # the layers gradient descent updates
    lr_scales: dict[str, jnp.ndarray]  # layer -> the factor of its step size (optimizer.lr_scale_<layer>)
    metrics: dict[str, Callable]  # name -> metric(snapshot)
    tracks: frozenset  # what the loop tracks step by step for the metrics: "hessian", "increases"

    def loss_of(self, params, X, y):
        return self.loss(self.network(params, X), y)


def lipschitz_constant(cfg: Config, activation: registry.Component):
    """sup |act'| as the activation declares it (inf where it is not Lipschitz)."""
    declared = activation.declared("lipschitz")
    if declared is None:
        return jnp.inf
    return declared(**cfg.settings_of(activation)) if callable(declared) else declared


def data_source(cfg: Config) -> datasets.Source:
    """The run's data set, its settings bound (given data: arrays only)."""
    common = dict(noise=cfg.data.noise, sign=cfg.data.labels == "sign", dtype=cfg.dtype)
    if cfg.data.name in datasets.GIVEN:
        return datasets.Source(sample=None, draw_teacher=None, **common)
    chosen = cfg.chosen("dataset")
    teacher = chosen.declared("teacher")
    sample, draw_teacher = datasets.samplers(cfg.bind(chosen), teacher and cfg.bind(chosen, teacher), cfg.data.d)
    return datasets.Source(sample=sample, draw_teacher=draw_teacher, **common)


def science(cfg: Config) -> Science:
    activation = cfg.chosen("activation")
    chosen_metrics = {name: registry.get("metric", name) for name in cfg.metrics}
    schedule = cfg.component("schedule")
    return Science(
        network=models.Network(
            act=cfg.bind(activation),
            output_scale=models.SCALINGS[cfg.model.scaling](cfg.model.width),
            input_scale=models.INPUT_SCALINGS[cfg.model.input_scaling](cfg.data.d),
            lipschitz=lipschitz_constant(cfg, activation),
            homogeneity=activation.declared("homogeneity"),
        ),
        source=data_source(cfg),
        loss=cfg.component("loss"),
        step_size=lambda t: schedule(jnp.asarray(t, cfg.dtype), cfg.optimizer.lr),
        constrain=cfg.component("constraint"),
        trained=models.trainable_layers(bias=cfg.model.bias, train_W=cfg.model.train_W,
                                        train_a=cfg.model.train_a, train_b=cfg.model.train_b),
        lr_scales={layer: cfg.value(f"optimizer.lr_scale_{layer}") for layer in models.LAYERS},
        metrics={name: cfg.bind(metric) for name, metric in chosen_metrics.items()},
        tracks=frozenset(m.declared("tracks") for m in chosen_metrics.values()) - {None},
    )
