//! The kinds of secret the rotation engine keeps fresh, one file each: the
//! engine knows them only through [`SecretKind`](super::SecretKind).

pub mod certificate;
pub mod provenance_key;
pub mod token;
