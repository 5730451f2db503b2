//! Accounts' names as people see them (role picker, JSON API, SSO portal, admin pages):
//! a configured `display_name` first, then AWS Organizations' name when
//! `[aws] account_names = "organizations"`, then the account's id at the broker.
//!
//! Organizations is read in the background (at start, then every `account_names_refresh`),
//! never on a request's path: a failure keeps the last good list, is logged once (and its
//! end once), and never stops anyone getting credentials.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::Account;
use crate::sts::organizations::Organizations;

/// The last good names from Organizations, by account number.
#[derive(Default)]
pub struct AccountNames {
    from_organizations: RwLock<Arc<HashMap<String, String>>>,
}

impl AccountNames {
    /// The name to show for `account`.
    pub fn name_of(&self, account: &Account) -> String {
        if account.named {
            return account.display_name.clone();
        }
        self.from_organizations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(account.number.as_str())
            .cloned()
            .unwrap_or_else(|| account.display_name.clone())
    }

    fn replace(&self, names: HashMap<String, String>) {
        *self
            .from_organizations
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(names);
    }

    /// Reads Organizations now and every `refresh`, forever (a background task).
    pub async fn run(self: Arc<Self>, org: Organizations, refresh: Duration) {
        let mut failing = false;
        let mut tick = tokio::time::interval(refresh);
        loop {
            tick.tick().await;
            match org.account_names().await {
                Ok(names) => {
                    if failing {
                        tracing::info!(
                            accounts = names.len(),
                            "AWS Organizations answers again: account names refreshed"
                        );
                    } else {
                        tracing::debug!(
                            accounts = names.len(),
                            "account names refreshed from AWS Organizations"
                        );
                    }
                    failing = false;
                    self.replace(names);
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "account names from AWS Organizations: keeping the last good list");
                    }
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, Identifier};

    fn account(id: &str, number: &str, name: Option<&str>) -> Account {
        Account {
            id: Identifier::parse(id).unwrap(),
            number: AccountId::parse(number).unwrap(),
            display_name: name.unwrap_or(id).to_owned(),
            named: name.is_some(),
        }
    }

    #[test]
    fn configured_names_win_then_organizations_then_the_id() {
        let names = AccountNames::default();
        let named = account("prod", "111122223333", Some("Production"));
        let unnamed = account("dev", "444455556666", None);
        let unknown = account("lab", "777788889999", None);
        assert_eq!(names.name_of(&unnamed), "dev");
        names.replace(HashMap::from([
            ("111122223333".to_owned(), "org-prod".to_owned()),
            ("444455556666".to_owned(), "Development (org)".to_owned()),
        ]));
        assert_eq!(names.name_of(&named), "Production");
        assert_eq!(names.name_of(&unnamed), "Development (org)");
        assert_eq!(names.name_of(&unknown), "lab");
    }
}
