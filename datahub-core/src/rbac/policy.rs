//! The permission table: every [`Action`] the Hub performs, and one [`Rule`] per action saying
//! who may do it. The table is data ([`RULES`]); the checks in `principal.rs` only read it.
//!
//! It must never grow a code path that allows an action its row does not list.

use std::fmt;

use super::{GrantLevel, Role};

/// Whether an action changes what the Hub stores, which decides what a read-only API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Changes nothing the Hub stores (apart from the audit log and health records). Testing,
    /// revealing and opening a pool are reads in this sense: they act on the target database,
    /// not on the Hub, and are what a read-only notebook token is for.
    Read,
    /// Creates, changes or deletes something the Hub stores.
    Write,
}

/// A global action: checked on the role alone, with [`Principal::check`](super::Principal::check).
/// Implemented by the marker types in [`act`] only.
pub trait GlobalAction: sealed::Sealed {
    /// The action this marker stands for.
    const ACTION: Action;
}

/// An action on one saved connection: checked on the role and the grants on that connection,
/// with [`Principal::check_on`](super::Principal::check_on). Implemented by the marker types in
/// [`act`] only.
pub trait ConnectionAction: sealed::Sealed {
    /// The action this marker stands for.
    const ACTION: Action;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! actions {
    (
        global { $($(#[$gdoc:meta])* $g:ident => $gname:literal,)* }
        connection { $($(#[$cdoc:meta])* $c:ident => $cname:literal,)* }
    ) => {
        /// Every operation of the Hub. The stable dotted name ([`Action::as_str`]) is also the
        /// action name written to the audit log.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $($(#[$gdoc])* $g,)*
            $($(#[$cdoc])* $c,)*
        }

        impl Action {
            /// Every action, in the order of [`RULES`].
            pub const ALL: &'static [Self] = &[$(Self::$g,)* $(Self::$c,)*];

            /// The stable dotted name, e.g. `connection.create`; used in the audit log.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$g => $gname,)*
                    $(Self::$c => $cname,)*
                }
            }

            /// Whether the action targets one saved connection (and so needs a grant on it).
            pub const fn is_connection_scoped(self) -> bool {
                match self {
                    $(Self::$g => false,)*
                    $(Self::$c => true,)*
                }
            }

            /// This action's row of the permission table.
            pub const fn rule(self) -> &'static Rule {
                &RULES[self as usize]
            }
        }

        /// Marker types, one per [`Action`], that name the action a proof was checked for, e.g.
        /// `Allowed<'_, act::KeysRotate>` or `AllowedOn<'_, act::ConnectionReveal>`.
        pub mod act {
            use super::{Action, ConnectionAction, GlobalAction, sealed::Sealed};

            $(
                $(#[$gdoc])*
                #[derive(Debug, Clone, Copy, PartialEq, Eq)]
                pub struct $g;
                impl Sealed for $g {}
                impl GlobalAction for $g {
                    const ACTION: Action = Action::$g;
                }
            )*
            $(
                $(#[$cdoc])*
                #[derive(Debug, Clone, Copy, PartialEq, Eq)]
                pub struct $c;
                impl Sealed for $c {}
                impl ConnectionAction for $c {
                    const ACTION: Action = Action::$c;
                }
            )*
        }
    };
}

actions! {
    global {
        /// Save a new connection (the creator becomes its owner).
        ConnectionCreate => "connection.create",
        /// List and count connections (filtered to those the caller may view).
        ConnectionList => "connection.list",
        /// Test settings that are not saved yet.
        ConnectionTestDraft => "connection.test_draft",
        /// List user accounts.
        UserList => "user.list",
        /// Create a user account.
        UserCreate => "user.create",
        /// Change another account: role, disabled flag, password reset.
        UserUpdate => "user.update",
        /// Change one's own password.
        PasswordChangeOwn => "user.change_password",
        /// List teams and their members.
        TeamList => "team.list",
        /// Create, rename, delete teams and change their members.
        TeamManage => "team.manage",
        /// Find enabled users and teams by name (ids and names only), to pick a grantee.
        DirectoryRead => "directory.read",
        /// Create an API token acting as oneself.
        TokenCreateOwn => "token.create",
        /// List one's own API tokens.
        TokenListOwn => "token.list",
        /// Revoke one of one's own API tokens.
        TokenRevokeOwn => "token.revoke",
        /// Create, list and revoke anyone's API tokens.
        TokenManageAny => "token.manage",
        /// Read the target policy (allowed and denied CIDRs, lowest TLS mode).
        PolicyRead => "policy.read",
        /// Change the target policy.
        PolicyWrite => "policy.write",
        /// Read the audit log.
        AuditRead => "audit.read",
        /// Verify the audit log's hash chain.
        AuditVerify => "audit.verify",
        /// Show the keyring's status (key ids and how many rows each wraps).
        KeysStatus => "keys.status",
        /// Re-wrap every data key under the active key-encryption key.
        KeysRotate => "keys.rotate",
        /// Retire a key-encryption key no row refers to any more.
        KeysRetire => "keys.retire",
        /// Read the server's metrics (counts of connections by status, requests, checks).
        MetricsRead => "metrics.read",
    }
    connection {
        /// Show one connection: metadata, health and history, never a secret.
        ConnectionView => "connection.view",
        /// Edit a connection.
        ConnectionUpdate => "connection.update",
        /// Delete a connection.
        ConnectionDelete => "connection.delete",
        /// Test a saved connection.
        ConnectionTest => "connection.test",
        /// Reveal a connection's credentials or DSN.
        ConnectionReveal => "connection.reveal",
        /// Open a connection pool to it.
        ConnectionPool => "connection.pool",
        /// Read who holds which grant on it.
        GrantsRead => "grants.read",
        /// Grant and revoke access to it.
        GrantsWrite => "grants.write",
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The action this row is about.
    pub action: Action,
    /// Read or write; a read-only token may only do reads.
    pub access: Access,
    /// The roles that may do it by role alone, whatever their grants.
    pub by_role: &'static [Role],
    /// For an action on one connection, the lowest grant level on it that allows the action;
    /// `None` for a global action, which only [`Rule::by_role`] decides.
    pub grant: Option<GrantLevel>,
}

use Access::{Read, Write};
use GrantLevel::{Manage, Use, View};
use Role::{Admin, Auditor, Editor, Viewer};

const EVERYONE: &[Role] = &[Admin, Editor, Viewer, Auditor];
const ADMIN: &[Role] = &[Admin];

const fn global(action: Action, access: Access, by_role: &'static [Role]) -> Rule {
    Rule {
        action,
        access,
        by_role,
        grant: None,
    }
}

/// On a connection, admins may everything by role; anyone else needs the grant level.
const fn on_connection(action: Action, access: Access, grant: GrantLevel) -> Rule {
    Rule {
        action,
        access,
        by_role: ADMIN,
        grant: Some(grant),
    }
}

/// The permission table: one row per [`Action`], in the order of [`Action::ALL`]. Anything not
/// listed is denied. The owner of a connection holds `manage` on it; admins hold `manage` on
/// every connection.
pub const RULES: [Rule; Action::ALL.len()] = [
    global(Action::ConnectionCreate, Write, &[Admin, Editor]),
    global(Action::ConnectionList, Read, EVERYONE),
    global(Action::ConnectionTestDraft, Read, &[Admin, Editor]),
    global(Action::UserList, Read, ADMIN),
    global(Action::UserCreate, Write, ADMIN),
    global(Action::UserUpdate, Write, ADMIN),
    global(Action::PasswordChangeOwn, Write, EVERYONE),
    global(Action::TeamList, Read, EVERYONE),
    global(Action::TeamManage, Write, ADMIN),
    global(Action::DirectoryRead, Read, EVERYONE),
    global(Action::TokenCreateOwn, Write, EVERYONE),
    global(Action::TokenListOwn, Read, EVERYONE),
    global(Action::TokenRevokeOwn, Write, EVERYONE),
    global(Action::TokenManageAny, Write, ADMIN),
    global(Action::PolicyRead, Read, EVERYONE),
    global(Action::PolicyWrite, Write, ADMIN),
    global(Action::AuditRead, Read, &[Admin, Auditor]),
    global(Action::AuditVerify, Read, &[Admin, Auditor]),
    global(Action::KeysStatus, Read, ADMIN),
    global(Action::KeysRotate, Write, ADMIN),
    global(Action::KeysRetire, Write, ADMIN),
    global(Action::MetricsRead, Read, ADMIN),
    on_connection(Action::ConnectionView, Read, View),
    on_connection(Action::ConnectionUpdate, Write, Manage),
    on_connection(Action::ConnectionDelete, Write, Manage),
    on_connection(Action::ConnectionTest, Read, Use),
    on_connection(Action::ConnectionReveal, Read, Use),
    on_connection(Action::ConnectionPool, Read, Use),
    on_connection(Action::GrantsRead, Read, Manage),
    on_connection(Action::GrantsWrite, Write, Manage),
];

// The table is checked when the crate compiles: one row per action, in order, and a grant level
// exactly on the actions scoped to a connection. `Action::rule` indexes by discriminant.
const _: () = {
    let mut i = 0;
    while i < RULES.len() {
        let rule = &RULES[i];
        assert!(rule.action as usize == i, "RULES is out of order");
        assert!(
            rule.grant.is_some() == rule.action.is_connection_scoped(),
            "a connection action needs a grant level, a global one none"
        );
        i += 1;
    }
};

impl Rule {
    /// Whether `role` may do this by role alone.
    pub fn allows_role(&self, role: Role) -> bool {
        self.by_role.contains(&role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_dotted_and_rules_line_up() {
        let mut names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
        for (i, a) in Action::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i);
            assert_eq!(a.rule().action, *a);
            assert!(a.as_str().contains('.'), "{a}");
            assert_eq!(a.to_string(), a.as_str());
        }
    }

    #[test]
    fn admins_may_everything_and_markers_name_their_action() {
        for a in Action::ALL {
            assert!(a.rule().allows_role(Role::Admin), "{a}");
        }
        assert_eq!(
            <act::KeysRotate as GlobalAction>::ACTION,
            Action::KeysRotate
        );
        assert_eq!(
            <act::ConnectionReveal as ConnectionAction>::ACTION,
            Action::ConnectionReveal
        );
    }
}
