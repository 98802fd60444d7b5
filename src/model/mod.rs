//! The engine seam: the network, its named parameters, weights loading and freeze masks.
//! Only `model` and `train` use candle.

pub mod arch;
pub mod freeze;
