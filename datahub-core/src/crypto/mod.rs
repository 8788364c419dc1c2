//! placeholder, replaced by the crypto work
