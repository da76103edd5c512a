//! okta-phone-migrate: bulk-update Okta SMS and voice factor phone numbers
//! without ever leaving a user worse off.

pub mod input;
pub mod okta;
pub mod outcome;
pub mod phone;
pub mod simulator;
