//! Password hashes: argon2id in PHC string form (algorithm, parameters and salt included).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};

/// The argon2id hash of `password` with a fresh random salt, as a PHC string.
pub(crate) fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        // Hashing fails only on parameters out of range; the defaults are in range.
        .expect("argon2 default parameters hash any password")
}

/// True when `password` matches `phc`; the comparison inside is constant time. A hash that
/// does not parse matches nothing.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = super::hash("changeit");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(super::verify("changeit", &phc));
        assert!(!super::verify("changeiT", &phc));
        assert!(!super::verify("changeit", "not a hash"));
        assert_ne!(phc, super::hash("changeit"), "salts differ");
    }
}
