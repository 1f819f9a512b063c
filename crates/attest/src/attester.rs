//! Attesters: make evidence for given report data.

use crate::{Result, Tee};

/// Produces evidence binding `report_data` (up to 64 bytes).
pub trait Attester: Send + Sync {
    /// The TEE this attester speaks for.
    fn tee(&self) -> Tee;
    /// Evidence whose report data is `report_data` (zero-padded to 64 bytes).
    fn evidence(&self, report_data: &[u8]) -> Result<Vec<u8>>;
}
