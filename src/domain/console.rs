//! Where a console sign-in may land: the one rule for destinations from config (a role's
//! `console_destination`) and from requests (`--service`, `--destination`, the picker,
//! shortcut links).
//!
//! A destination is allowed only on the partition's console (its host or a subdomain such
//! as `eu-west-1.console.aws.amazon.com` or `s3.console.aws.amazon.com`, same scheme and
//! port, no user info) or under one of the operator's `console_destinations` prefixes
//! (same scheme, host and port, path under the prefix's). Everything else is refused, so a
//! crafted link can never make the broker's sign-in an open redirect.

use url::Url;

use super::DomainError;

/// Console services by the name people type, with the console path and whether the
/// service is global (no region in its URL). Others can be reached with a destination URL.
pub const CONSOLE_SERVICES: &[(&str, &str, bool)] = &[
    ("acm", "acm/home", false),
    ("apigateway", "apigateway/main", false),
    ("athena", "athena/home", false),
    ("backup", "backup/home", false),
    ("billing", "billing/home", true),
    ("cloudformation", "cloudformation/home", false),
    ("cloudfront", "cloudfront/v4/home", true),
    ("cloudtrail", "cloudtrail/home", false),
    ("cloudwatch", "cloudwatch/home", false),
    ("codebuild", "codesuite/codebuild/home", false),
    ("codepipeline", "codesuite/codepipeline/home", false),
    ("config", "config/home", false),
    ("dynamodb", "dynamodbv2/home", false),
    ("ec2", "ec2/home", false),
    ("ecr", "ecr/home", false),
    ("ecs", "ecs/v2/home", false),
    ("eks", "eks/home", false),
    ("elasticache", "elasticache/home", false),
    ("events", "events/home", false),
    ("glue", "glue/home", false),
    ("guardduty", "guardduty/home", false),
    ("iam", "iam/home", true),
    ("kinesis", "kinesis/home", false),
    ("kms", "kms/home", false),
    ("lambda", "lambda/home", false),
    ("organizations", "organizations/v2/home", true),
    ("rds", "rds/home", false),
    ("redshift", "redshiftv2/home", false),
    ("route53", "route53/v2/home", true),
    ("s3", "s3/home", false),
    ("sagemaker", "sagemaker/home", false),
    ("secretsmanager", "secretsmanager/home", false),
    ("securityhub", "securityhub/home", false),
    ("sns", "sns/v3/home", false),
    ("sqs", "sqs/v3/home", false),
    ("ssm", "systems-manager/home", false),
    ("stepfunctions", "states/home", false),
    ("vpc", "vpcconsole/home", false),
];

/// Checks an AWS region name (`eu-west-1`, `us-gov-west-1`, `ap-southeast-3`).
pub fn parse_region(raw: &str) -> Result<&str, DomainError> {
    let parts: Vec<&str> = raw.split('-').collect();
    let ok = raw.len() <= 25
        && parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| (1..=2).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(raw)
    } else {
        Err(DomainError::new(format!(
            "{:?} is not an AWS region name (such as eu-west-1)",
            raw.chars().take(40).collect::<String>()
        )))
    }
}

/// The console of one partition and the extra destinations an operator allows.
#[derive(Debug, Clone)]
pub struct ConsoleSite {
    console: Url,
    extra: Vec<Url>,
}

impl ConsoleSite {
    pub fn new(console: Url, extra: Vec<Url>) -> Self {
        Self { console, extra }
    }

    /// The console's home (the default destination).
    pub fn home(&self) -> &Url {
        &self.console
    }

    /// Checks one `console_destinations` entry from config: an `https` URL with a host,
    /// without user info, query or fragment.
    pub fn parse_extra(raw: &str) -> Result<Url, DomainError> {
        let url = Url::parse(raw).map_err(|e| DomainError::new(format!("{raw:?}: {e}")))?;
        if url.scheme() != "https"
            || url.host_str().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(DomainError::new(format!(
                "{raw:?} must be an https URL without user info, query or fragment"
            )));
        }
        Ok(url)
    }

    /// A destination from config or a request: a path on the console (`/s3/home`) or a
    /// URL, allowed only where the module's rule says.
    pub fn destination(&self, raw: &str) -> Result<Url, DomainError> {
        let refused = || {
            DomainError::new(format!(
                "{:?} is not on the AWS console ({}) or a configured console destination",
                raw.chars().take(200).collect::<String>(),
                self.console
            ))
        };
        if raw.len() > 2048 {
            return Err(DomainError::new(
                "the destination is longer than 2048 characters",
            ));
        }
        let url = if raw.starts_with('/') && !raw.starts_with("//") {
            self.console
                .join(raw)
                .map_err(|e| DomainError::new(format!("invalid path {raw:?}: {e}")))?
        } else {
            Url::parse(raw).map_err(|_| refused())?
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused());
        }
        let host = self.console.host_str().unwrap_or_default();
        let on_console = url.scheme() == self.console.scheme()
            && url.port_or_known_default() == self.console.port_or_known_default()
            && url
                .host_str()
                .is_some_and(|h| h == host || h.ends_with(&format!(".{host}")));
        let under_extra = self.extra.iter().any(|prefix| {
            url.scheme() == prefix.scheme()
                && url.host_str() == prefix.host_str()
                && url.port_or_known_default() == prefix.port_or_known_default()
                && (prefix.path().ends_with('/') && url.path().starts_with(prefix.path())
                    || url.path() == prefix.path()
                    || url.path().starts_with(&format!("{}/", prefix.path())))
        });
        if on_console || under_extra {
            Ok(url)
        } else {
            Err(refused())
        }
    }

    /// A service's console page in `region` (global services ignore the region).
    pub fn service(&self, service: &str, region: &str) -> Result<Url, DomainError> {
        let name = service.trim().to_ascii_lowercase();
        let Some((_, path, global)) = CONSOLE_SERVICES.iter().find(|(n, ..)| *n == name) else {
            return Err(DomainError::new(format!(
                "{:?} is not a console service rolegate knows ({}); give a console URL with --destination instead",
                service.chars().take(40).collect::<String>(),
                CONSOLE_SERVICES
                    .iter()
                    .map(|(n, ..)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let region = parse_region(region)?;
        // Relative to the console's base (its path, if configured with one).
        let mut url = self
            .console
            .join(path)
            .map_err(|e| DomainError::new(format!("{path}: {e}")))?;
        // A console on an IP address (a test double) has no regional host names.
        let named = matches!(url.host(), Some(url::Host::Domain(_)));
        if !global && named {
            let host = format!("{region}.{}", self.console.host_str().unwrap_or_default());
            url.set_host(Some(&host))
                .map_err(|e| DomainError::new(format!("{host}: {e}")))?;
        }
        if !global {
            url.query_pairs_mut().clear().append_pair("region", region);
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> ConsoleSite {
        ConsoleSite::new(
            Url::parse("https://console.aws.amazon.com/").unwrap(),
            vec![ConsoleSite::parse_extra("https://example.awsapps.com/start").unwrap()],
        )
    }

    #[test]
    fn services_land_in_their_region_and_global_ones_on_the_console() {
        let s = site();
        assert_eq!(
            s.service("s3", "eu-west-1").unwrap().as_str(),
            "https://eu-west-1.console.aws.amazon.com/s3/home?region=eu-west-1"
        );
        assert_eq!(
            s.service("IAM", "eu-west-1").unwrap().as_str(),
            "https://console.aws.amazon.com/iam/home"
        );
        let e = s.service("s4", "eu-west-1").unwrap_err().to_string();
        assert!(
            e.contains("\"s4\" is not a console service") && e.contains("s3"),
            "{e}"
        );
        for bad in [
            "",
            "eu_west_1",
            "EU-WEST-1",
            "eu-west",
            "europe-west-1",
            "eu-west-123",
            "eu-west-1.evil.com",
            "eu--1",
        ] {
            assert!(s.service("ec2", bad).is_err(), "{bad}");
        }
        for good in ["us-gov-west-1", "ap-southeast-3", "il-central-1"] {
            assert!(s.service("ec2", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn destinations_stay_on_the_console_or_the_configured_prefixes() {
        let s = site();
        for ok in [
            "/s3/home",
            "https://console.aws.amazon.com/ec2/home",
            "https://eu-west-1.console.aws.amazon.com/lambda/home?region=eu-west-1#/functions",
            "https://example.awsapps.com/start",
            "https://example.awsapps.com/start/#/apps",
        ] {
            assert!(s.destination(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://evil.example/",
            "https://console.aws.amazon.com.evil.example/",
            "https://evilconsole.aws.amazon.com/",
            "http://console.aws.amazon.com/",
            "https://console.aws.amazon.com:8443/",
            "https://user@console.aws.amazon.com/",
            "//evil.example/",
            "javascript:alert(1)",
            "https://example.awsapps.com/startle",
            "https://example.awsapps.com/",
            "not a url",
        ] {
            let e = s.destination(bad).unwrap_err().to_string();
            assert!(e.contains("is not on the AWS console"), "{bad}: {e}");
        }
    }

    #[test]
    fn extra_destinations_must_be_plain_https_prefixes() {
        for bad in [
            "http://x.example/",
            "https://u@x.example/",
            "https://x.example/?a=1",
            "x.example",
        ] {
            assert!(ConsoleSite::parse_extra(bad).is_err(), "{bad}");
        }
    }
}
