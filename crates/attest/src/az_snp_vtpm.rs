//! Azure vTPM (placeholder).
use crate::{Claims, Collateral, Error, Result, Tee, UnixTime, Verifier};
/// Azure verifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct AzSnpVtpmVerifier;
impl Verifier for AzSnpVtpmVerifier {
    fn tee(&self) -> Tee { Tee::AzSnpVtpm }
    fn verify(&self, _e: &[u8], _c: &Collateral, _n: UnixTime) -> Result<Claims> { Err(Error::malformed(Tee::AzSnpVtpm, "todo")) }
}
