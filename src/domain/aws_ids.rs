//! AWS identifiers: account numbers, partitions and IAM role ARNs.

use std::fmt;

use super::{DomainError, is_aws_name_char};

/// A 12-digit AWS account number. Kept as a string: leading zeros are significant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(DomainError::new(format!(
                "account id {s:?} must be exactly 12 digits"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The AWS partitions rolegate can issue credentials in. Each has its own STS endpoints,
/// federation (console sign-in) endpoint and console host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Partition {
    Aws,
    AwsUsGov,
    AwsCn,
}

impl Partition {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "aws" => Ok(Self::Aws),
            "aws-us-gov" => Ok(Self::AwsUsGov),
            "aws-cn" => Ok(Self::AwsCn),
            other => Err(DomainError::new(format!(
                "partition {other:?} is not one of \"aws\", \"aws-us-gov\", \"aws-cn\""
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::AwsUsGov => "aws-us-gov",
            Self::AwsCn => "aws-cn",
        }
    }

    /// The AWS federation endpoint (`getSigninToken`, `login`) of this partition.
    pub fn federation_url(self) -> &'static str {
        match self {
            Self::Aws => "https://signin.aws.amazon.com/federation",
            Self::AwsUsGov => "https://signin.amazonaws-us-gov.com/federation",
            Self::AwsCn => "https://signin.amazonaws.cn/federation",
        }
    }

    /// The management console's home in this partition.
    pub fn console_url(self) -> &'static str {
        match self {
            Self::Aws => "https://console.aws.amazon.com/",
            Self::AwsUsGov => "https://console.amazonaws-us-gov.com/",
            Self::AwsCn => "https://console.amazonaws.cn/",
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IAM role ARN: `arn:{partition}:iam::{account}:role/{path}{name}`.
///
/// Follows IAM's rules: the path is `/` or `/segment/.../` made of printable ASCII
/// (at most 512 characters), the name is 1 to 64 characters of `[\w+=,.@-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleArn {
    arn: String,
    partition: Partition,
    account: AccountId,
    /// Index into `arn` where the role name starts (after the last `/`).
    name_start: usize,
}

impl RoleArn {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = |why: &str| DomainError::new(format!("role ARN {s:?} is invalid: {why}"));
        let mut parts = s.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(bad("expected arn:PARTITION:iam::ACCOUNT:role/NAME"));
        };
        let partition = Partition::parse(partition).map_err(|e| bad(&e.0))?;
        if service != "iam" {
            return Err(bad("service must be \"iam\""));
        }
        if !region.is_empty() {
            return Err(bad("IAM ARNs have an empty region field"));
        }
        let account = AccountId::parse(account).map_err(|e| bad(&e.0))?;
        let Some(path_and_name) = resource.strip_prefix("role/") else {
            return Err(bad("resource must start with \"role/\""));
        };
        let (path_inner, name) = match path_and_name.rfind('/') {
            Some(i) => (&path_and_name[..i], &path_and_name[i + 1..]),
            None => ("", path_and_name),
        };
        if name.is_empty() || name.len() > 64 || !name.chars().all(is_aws_name_char) {
            return Err(bad(
                "role name must be 1 to 64 characters of letters, digits and +=,.@_-",
            ));
        }
        if !path_inner.is_empty() {
            // Path is "/" + path_inner + "/"; IAM allows printable ASCII without empty segments.
            if path_inner.len() + 2 > 512 {
                return Err(bad("role path is longer than 512 characters"));
            }
            if path_inner.split('/').any(str::is_empty)
                || !path_inner
                    .chars()
                    .all(|c| ('\u{21}'..='\u{7e}').contains(&c))
            {
                return Err(bad(
                    "role path must be printable ASCII with no empty segments",
                ));
            }
        }
        let name_start = s.len() - name.len();
        Ok(Self {
            arn: s.to_owned(),
            partition,
            account,
            name_start,
        })
    }

    pub fn partition(&self) -> Partition {
        self.partition
    }

    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// The role's name, without its path.
    pub fn role_name(&self) -> &str {
        &self.arn[self.name_start..]
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_in_every_partition_parse() {
        let cases = [
            (
                "arn:aws:iam::123456789012:role/Admin",
                Partition::Aws,
                "Admin",
            ),
            (
                "arn:aws-us-gov:iam::123456789012:role/ops/ReadOnly",
                Partition::AwsUsGov,
                "ReadOnly",
            ),
            (
                "arn:aws-cn:iam::000000000001:role/a/b/c/x+=,.@_-",
                Partition::AwsCn,
                "x+=,.@_-",
            ),
        ];
        for (arn, partition, name) in cases {
            let parsed = RoleArn::parse(arn).unwrap_or_else(|e| panic!("{arn}: {e}"));
            assert_eq!(parsed.partition(), partition, "{arn}");
            assert_eq!(parsed.role_name(), name, "{arn}");
            assert_eq!(parsed.as_str(), arn);
        }
    }

    #[test]
    fn malformed_role_arns_are_rejected_with_a_reason() {
        let cases = [
            ("arn:aws:iam::12345678901:role/Admin", "12 digits"),
            ("arn:aws:iam::123456789012:user/Admin", "role/"),
            ("arn:aws:s3::123456789012:role/Admin", "iam"),
            (
                "arn:aws:iam:us-east-1:123456789012:role/Admin",
                "empty region",
            ),
            ("arn:aws-xx:iam::123456789012:role/Admin", "partition"),
            ("arn:aws:iam::123456789012:role/", "role name"),
            ("arn:aws:iam::123456789012:role/a//b", "path"),
            ("arn:aws:iam::123456789012:role/bad name", "role name"),
            ("arn:aws:iam::123456789012", "expected"),
        ];
        for (arn, expected) in cases {
            let err = RoleArn::parse(arn).expect_err(arn).to_string();
            assert!(
                err.contains(expected),
                "{arn}: {err} should mention {expected}"
            );
        }
        let long_name = format!("arn:aws:iam::123456789012:role/{}", "n".repeat(65));
        assert!(RoleArn::parse(&long_name).is_err());
    }

    #[test]
    fn account_ids_must_be_twelve_digits() {
        assert!(AccountId::parse("012345678901").is_ok());
        for bad in ["", "12345678901", "1234567890123", "12345678901a"] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
