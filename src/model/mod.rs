//! The engine seam: the network, its named parameters, weights loading and freeze masks.
//! Only `model` and `train` use candle; everything else sees `Network`, `Batch` and plain numbers.

pub mod arch;
pub mod conv;
pub mod dense;
pub mod device;
pub mod freeze;
pub mod init;
pub mod layers;
pub mod matmul;
pub mod network;
pub mod summary;
pub mod weights;

pub use network::{Mode, Network};

pub use device::{DeviceChoice, DeviceInfo, OpenDevice};

/// The CPU device: where weights are read and checkpoints are written, whatever device trains.
pub fn cpu() -> candle_core::Device {
    candle_core::Device::Cpu
}
