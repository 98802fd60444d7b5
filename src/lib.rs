//! `runner`: declarative, reproducible transfer-learning experiments.
//!
//! The pipeline, one module per stage: `config` (experiment file -> typed configuration) ->
//! `plan` (resolved and checked: every cell's architecture, trainable layers and keys) ->
//! `dataset` (+ `augment`) -> `model` (the engine seam: network, weights, freeze masks) ->
//! `train` (optimizers, loss, epoch loop) -> `store` (results on disk) -> `sweep` (the matrix).

pub mod augment;
pub mod base;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dataset;
pub mod evaluate;
pub mod export;
pub mod fingerprint;
pub mod image;
pub mod model;
pub mod plan;
pub mod provenance;
pub mod report;
pub mod reproduce;
pub mod slurm;
pub mod store;
pub mod sweep;
pub mod track;
pub mod train;
