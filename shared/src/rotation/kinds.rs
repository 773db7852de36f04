//! The kinds of secret the rotation engine keeps fresh, one file each.

pub mod certificate;
