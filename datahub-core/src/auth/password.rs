//! User passwords: the policy for new ones, argon2id hashing to PHC strings, constant-time
//! verification, rehash detection, and login with uniform timing (SECURITY.md S20).

use std::hint::black_box;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash, Version};

use super::LOGIN_FAILED;
use crate::secret::Password;
use crate::store::StoredUser;
use crate::{Error, ErrorKind, Result, UserId};

/// The fewest bytes a new user password may have.
pub const MIN_PASSWORD_BYTES: usize = 12;

/// The most bytes a user password may have (new or submitted at login).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Salt length in bytes (the PHC recommendation).
const SALT_LEN: usize = 16;

/// Hash output length in bytes.
const OUTPUT_LEN: usize = 32;

/// Cost parameters of argon2id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Number of passes over the memory.
    pub t: u32,
    /// Degree of parallelism (lanes).
    pub p: u32,
}

/// The parameters every new password hash uses: argon2id version 0x13 with 19,456 KiB of memory,
/// 2 passes and 1 lane — OWASP's minimum for argon2id, the floor SECURITY.md S20 sets. A stored
/// hash with weaker parameters is re-hashed at the next successful login ([`needs_rehash`]).
/// Raising them is safe at any time for the same reason.
pub const PASSWORD_HASH_PARAMS: HashParams = HashParams {
    m_kib: 19_456,
    t: 2,
    p: 1,
};

/// The outcome of a successful login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    /// The user who logged in.
    pub user: UserId,
    /// Whether the stored hash is weaker than [`PASSWORD_HASH_PARAMS`]: the Hub should store
    /// [`hash_password`] of the password just verified.
    pub needs_rehash: bool,
}

/// Checks a new user password against the policy: 12 to 1,024 bytes, not only whitespace.
///
/// Errors: `InvalidInput` on the field `password`; the message never contains the password.
pub fn check_password_policy(password: &Password) -> Result<()> {
    let text = password.expose_secret();
    if text.len() < MIN_PASSWORD_BYTES {
        return Err(Error::invalid("password", "must be at least 12 bytes long"));
    }
    if text.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            "must be at most 1024 bytes long",
        ));
    }
    if text.chars().all(char::is_whitespace) {
        return Err(Error::invalid("password", "must not be only whitespace"));
    }
    Ok(())
}

/// Hashes a user password with argon2id and [`PASSWORD_HASH_PARAMS`] and a random 16-byte salt
/// from the operating system, as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
///
/// It does not apply the policy (a login may rehash a password older than the policy): call
/// [`check_password_policy`] first for a new password. Errors: `Internal` when the operating
/// system's generator fails.
pub fn hash_password(password: &Password) -> Result<String> {
    let mut salt = [0u8; SALT_LEN];
    super::fill_random(&mut salt)?;
    hash_with(
        password.expose_secret().as_bytes(),
        &salt,
        PASSWORD_HASH_PARAMS,
    )
}

/// The deterministic twin of [`hash_password`]: salt and parameters given (known answers, and
/// weaker hashes for rehash tests).
pub(crate) fn hash_with(password: &[u8], salt: &[u8], params: HashParams) -> Result<String> {
    hasher(params)?
        .hash_password_with_salt(password, salt)
        .map(|h| h.to_string())
        .map_err(|_| Error::new(ErrorKind::Internal, "password hashing failed"))
}

fn hasher(params: HashParams) -> Result<Argon2<'static>> {
    let params = Params::new(params.m_kib, params.t, params.p, Some(OUTPUT_LEN))
        .map_err(|_| Error::new(ErrorKind::Internal, "invalid argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Whether `password` matches the stored PHC string `phc`. The comparison is constant-time.
///
/// A stored string that does not parse, is not argon2id, or has parameters beyond sane bounds,
/// and a submitted password longer than [`MAX_PASSWORD_BYTES`], all answer `false` after the
/// same work as a real verification, so timing tells nothing.
pub fn verify_password(password: &Password, phc: &str) -> bool {
    let text = password.expose_secret().as_bytes();
    let parsed = match PasswordHash::new(phc) {
        Ok(h) if text.len() <= MAX_PASSWORD_BYTES && is_sane(&h) => h,
        _ => return dummy_verify(password),
    };
    // Verification re-hashes with the stored salt and parameters; argon2id itself comes from
    // the stored string, checked above.
    match Argon2::default().verify_password(text, &parsed) {
        Ok(()) => true,
        Err(_) => false,
    }
}

/// The same work as verifying a password against a hash with [`PASSWORD_HASH_PARAMS`], always
/// answering `false`: run it when the user is unknown, so a login takes as long whether or not
/// the account exists.
pub fn dummy_verify(password: &Password) -> bool {
    let text = password.expose_secret().as_bytes();
    // A fixed salt is fine: the output is thrown away. Over-long input is cut so an attacker
    // cannot make the dummy path slower or faster than the real one.
    let text = &text[..text.len().min(MAX_PASSWORD_BYTES)];
    let out = hash_with(text, &[0u8; SALT_LEN], PASSWORD_HASH_PARAMS);
    let _ = black_box(out);
    false
}

/// Whether a stored hash should be replaced at the next successful login: it does not parse, is
/// not argon2id version 0x13, or its memory or passes are below [`PASSWORD_HASH_PARAMS`], its
/// lanes differ, or its salt or output is shorter than this crate writes.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return true;
    };
    if hash.algorithm != ARGON2ID_IDENT || hash.version != Some(Version::V0x13.into()) {
        return true;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return true;
    };
    let current = PASSWORD_HASH_PARAMS;
    params.m_cost() < current.m_kib
        || params.t_cost() < current.t
        || params.p_cost() != current.p
        || hash.salt.as_ref().is_none_or(|s| s.len() < SALT_LEN)
        || hash.hash.as_ref().is_none_or(|o| o.len() < OUTPUT_LEN)
}

/// Upper bounds on the parameters of a stored hash (256 MiB, 64 passes, 16 lanes), so a corrupt
/// or planted row cannot make one login allocate gigabytes or spin for minutes.
const MAX_STORED: HashParams = HashParams {
    m_kib: 262_144,
    t: 64,
    p: 16,
};

// Raising the current parameters past the bounds would make every new hash fail to verify.
const _: () = assert!(
    PASSWORD_HASH_PARAMS.m_kib <= MAX_STORED.m_kib
        && PASSWORD_HASH_PARAMS.t <= MAX_STORED.t
        && PASSWORD_HASH_PARAMS.p <= MAX_STORED.p
);

fn is_sane(hash: &PasswordHash) -> bool {
    hash.algorithm == ARGON2ID_IDENT
        && Params::try_from(hash).is_ok_and(|p| {
            p.m_cost() <= MAX_STORED.m_kib
                && p.t_cost() <= MAX_STORED.t
                && p.p_cost() <= MAX_STORED.p
        })
}

/// Verifies a login: `user` is the account found by name (`None` when there is none).
///
/// An unknown user runs [`dummy_verify`]; a disabled user is verified like any other and then
/// refused; so every failure costs one hash and answers the same. Errors: `Unauthenticated`
/// with the message [`LOGIN_FAILED`], whatever the cause.
pub fn verify_login(user: Option<&StoredUser>, password: &Password) -> Result<Login> {
    let failed = || Error::new(ErrorKind::Unauthenticated, LOGIN_FAILED);
    let Some(user) = user else {
        dummy_verify(password);
        return Err(failed());
    };
    let phc = user.password_hash.as_str();
    let ok = verify_password(password, phc);
    if !ok || user.user.disabled {
        return Err(failed());
    }
    Ok(Login {
        user: user.user.id,
        needs_rehash: needs_rehash(phc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use crate::rbac::Role;
    use time::OffsetDateTime;

    const CANARY: &str = "canary-pw-4e1f-ünï code";

    fn user(phc: String, disabled: bool) -> StoredUser {
        StoredUser {
            user: User {
                id: UserId::new(),
                username: "alice".into(),
                role: Role::Viewer,
                disabled,
                created_at: OffsetDateTime::UNIX_EPOCH,
                updated_at: OffsetDateTime::UNIX_EPOCH,
            },
            password_hash: phc,
        }
    }

    fn phc_number(phc: &str, name: &str) -> u32 {
        let params = phc.split('$').nth(3).unwrap();
        params
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn policy() {
        for ok in [
            "twelve bytes",
            "correct horse battery staple",
            &"x".repeat(1024),
        ] {
            check_password_policy(&Password::from(ok)).unwrap();
        }
        // 12 bytes but 6 characters: the limit is in bytes.
        check_password_policy(&Password::from("ääääää")).unwrap();
        for bad in [
            "",
            "short",
            "elevenbytes",
            &"x".repeat(1025),
            "            ",
            "\t\n \u{3000}    ",
        ] {
            let e = check_password_policy(&Password::from(bad)).unwrap_err();
            assert_eq!(e.field(), Some("password"));
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
        let e = check_password_policy(&Password::from("canary-x")).unwrap_err();
        assert!(!e.to_string().contains("canary") && !format!("{e:?}").contains("canary"));
    }

    #[test]
    fn hash_meets_the_minimums_and_verifies() {
        let started = std::time::Instant::now();
        let phc = hash_password(&Password::from(CANARY)).unwrap();
        eprintln!("argon2id hash took {:?}", started.elapsed());
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(phc_number(&phc, "m") >= 19_456);
        assert!(phc_number(&phc, "t") >= 2);
        assert_eq!(phc_number(&phc, "p"), 1);
        assert!(!phc.contains(CANARY));
        assert!(!needs_rehash(&phc));

        let started = std::time::Instant::now();
        assert!(verify_password(&Password::from(CANARY), &phc));
        eprintln!("argon2id verify took {:?}", started.elapsed());
        assert!(!verify_password(
            &Password::from("canary-pw-4e1f-ünï codE"),
            &phc
        ));
        // Two hashes of one password differ (random salt).
        assert_ne!(phc, hash_password(&Password::from(CANARY)).unwrap());
    }

    #[test]
    fn known_answer_is_stable() {
        // Cheap parameters: this pins the encoding (PHC string, argon2id, v=19), not the cost.
        let weak = HashParams {
            m_kib: 64,
            t: 1,
            p: 1,
        };
        let a = hash_with(b"password", b"somesaltsomesalt", weak).unwrap();
        let b = hash_with(b"password", b"somesaltsomesalt", weak).unwrap();
        assert_eq!(a, b);
        assert!(
            a.starts_with("$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$"),
            "{a}"
        );
    }

    #[test]
    fn weaker_or_foreign_hashes_need_rehash() {
        let weak_m = HashParams {
            m_kib: 64,
            t: 2,
            p: 1,
        };
        let weak_t = HashParams {
            m_kib: 19_456,
            t: 1,
            p: 1,
        };
        let other_p = HashParams {
            m_kib: 64,
            t: 2,
            p: 2,
        };
        for params in [weak_m, weak_t, other_p] {
            let phc = hash_with(CANARY.as_bytes(), &[7u8; 16], params).unwrap();
            assert!(needs_rehash(&phc), "{phc}");
        }
        // A weak hash still verifies (so the login succeeds and triggers the rehash).
        let weak = hash_with(CANARY.as_bytes(), &[7u8; 16], weak_m).unwrap();
        assert!(verify_password(&Password::from(CANARY), &weak));
        let login = verify_login(Some(&user(weak, false)), &Password::from(CANARY)).unwrap();
        assert!(login.needs_rehash);
        // Short salt, other algorithms, garbage.
        let short_salt = hash_with(CANARY.as_bytes(), &[7u8; 8], weak_m).unwrap();
        assert!(needs_rehash(&short_salt));
        for foreign in [
            "",
            "not a hash",
            "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2d$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=16$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$2b$12$abcdefghijklmnopqrstuu5Xq0sXQkYVf2Xb3V0i5wWm6gq6Xh8Ka",
        ] {
            assert!(needs_rehash(foreign), "{foreign}");
        }
    }

    #[test]
    fn malformed_or_foreign_stored_hashes_never_verify() {
        let pw = Password::from(CANARY);
        for stored in [
            "",
            "garbage",
            // argon2i of some other input: refused before hashing, whatever it holds.
            "$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            // Absurd memory cost: refused, not allocated.
            "$argon2id$v=19$m=4294967295,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!verify_password(&pw, stored), "{stored}");
        }
    }

    #[test]
    fn login_failures_are_uniform() {
        let pw = Password::from(CANARY);
        let weak = HashParams {
            m_kib: 64,
            t: 2,
            p: 1,
        };
        let phc = hash_with(CANARY.as_bytes(), &[9u8; 16], weak).unwrap();
        let enabled = user(phc.clone(), false);
        let disabled = user(phc, true);
        assert!(!dummy_verify(&pw));
        let ok = verify_login(Some(&enabled), &pw).unwrap();
        assert_eq!(ok.user, enabled.user.id);
        let errors = [
            verify_login(None, &pw).unwrap_err(),
            verify_login(Some(&enabled), &Password::from("wrong password!")).unwrap_err(),
            verify_login(Some(&disabled), &pw).unwrap_err(),
            verify_login(Some(&enabled), &Password::from("x".repeat(5000))).unwrap_err(),
        ];
        for e in &errors {
            assert_eq!(e.kind(), ErrorKind::Unauthenticated);
            assert_eq!(e.to_string(), LOGIN_FAILED);
            assert_eq!(e.field(), None);
            assert!(!format!("{e:?}").contains(CANARY));
        }
    }
}
