//! The MMP protocol with an injected clock: the read-side check, the claim, and the heartbeat
//! of a holder.

pub mod check;
pub mod claim;
pub mod clock;
pub mod heartbeat;
pub mod seq;
