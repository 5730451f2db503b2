//! `[aws]`: the partition and region, STS (mode, deadline, regions and their failover),
//! the console and its destinations, recall, account names.

use std::time::Duration;

use url::Url;

use super::*;

pub(super) fn convert_aws(raw: RawAws, errs: &mut Errors) -> Option<AwsConfig> {
    let partition = errs.check(
        "aws.partition",
        Partition::parse(raw.partition.as_deref().unwrap_or("aws")),
    );
    let region = raw.region.clone().unwrap_or_else(|| "us-east-1".into());
    check_region(errs, "aws.region", &region, partition);
    let sts_endpoint_url = raw
        .sts_endpoint_url
        .as_deref()
        .and_then(|u| errs.check("aws.sts_endpoint_url", secure_url(u)));
    let sts_regions = sts_regions(&raw, &region, sts_endpoint_url.as_ref(), partition, errs);
    let sts_region_retry_after = duration(
        errs,
        "aws.sts_region_retry_after",
        raw.sts_region_retry_after.as_deref(),
        "30s",
    );
    if sts_region_retry_after
        .is_some_and(|d| d < Duration::from_secs(1) || d > Duration::from_secs(3600))
    {
        errs.push("aws.sts_region_retry_after", "must be between 1s and 1h");
    }
    let sts_mode = parse_sts_mode(
        errs,
        "aws.sts_mode",
        raw.sts_mode.as_deref().unwrap_or("assume_role"),
    );
    let sts_timeout = duration(errs, "aws.sts_timeout", raw.sts_timeout.as_deref(), "10s");
    if sts_timeout.is_some_and(|t| t < Duration::from_secs(1) || t > Duration::from_secs(60)) {
        errs.push("aws.sts_timeout", "must be between 1s and 60s");
    }
    let partition = partition?;
    let federation_url = errs.check(
        "aws.federation_url",
        secure_url(
            raw.federation_url
                .as_deref()
                .unwrap_or(partition.federation_url()),
        ),
    );
    let console_url = errs.check(
        "aws.console_url",
        secure_url(
            raw.console_url
                .as_deref()
                .unwrap_or(partition.console_url()),
        ),
    );
    let extra: Vec<Url> = raw
        .console_destinations
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            errs.check(
                format!("aws.console_destinations[{i}]"),
                ConsoleSite::parse_extra(d).map_err(|e| e.to_string()),
            )
        })
        .collect();
    let console_session_duration = duration(
        errs,
        "aws.console_session_duration",
        raw.console_session_duration.as_deref(),
        "1h",
    )
    .and_then(|d| errs.check("aws.console_session_duration", SessionDuration::parse(d)));
    let iam_endpoint_url = raw
        .iam_endpoint_url
        .as_deref()
        .and_then(|u| errs.check("aws.iam_endpoint_url", secure_url(u)));
    if let Some(n) = &raw.recall_role_name
        && (n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)))
    {
        errs.push(
            "aws.recall_role_name",
            "must be an IAM role name: 1 to 64 characters of letters, digits and +=,.@_-",
        );
    }
    let recall_sweep_interval = duration(
        errs,
        "aws.recall_sweep_interval",
        raw.recall_sweep_interval.as_deref(),
        "5m",
    );
    if recall_sweep_interval
        .is_some_and(|d| d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600))
    {
        errs.push("aws.recall_sweep_interval", "must be between 1s and 24h");
    }
    let refresh = duration(
        errs,
        "aws.account_names_refresh",
        raw.account_names_refresh.as_deref(),
        "1h",
    );
    if refresh.is_some_and(|d| d < Duration::from_secs(60) || d > Duration::from_secs(24 * 3600)) {
        errs.push("aws.account_names_refresh", "must be between 1m and 24h");
    }
    let account_names = match raw.account_names.as_deref().unwrap_or("config") {
        "config" => Some(AccountNames::Config),
        "organizations" => refresh.map(|refresh| AccountNames::Organizations { refresh }),
        other => {
            errs.push(
                "aws.account_names",
                format!("{other:?} is not \"config\" or \"organizations\""),
            );
            None
        }
    };
    let organizations_endpoint_url = raw
        .organizations_endpoint_url
        .as_deref()
        .and_then(|u| errs.check("aws.organizations_endpoint_url", secure_url(u)));
    Some(AwsConfig {
        sts_regions: sts_regions?,
        sts_region_retry_after: sts_region_retry_after?,
        account_names: account_names?,
        organizations_endpoint_url,
        recall_issued: raw.recall_issued,
        recall_role_name: raw.recall_role_name,
        recall_sweep_interval: recall_sweep_interval?,
        iam_endpoint_url,
        region,
        sts_endpoint_url,
        partition,
        sts_mode: sts_mode?,
        sts_timeout: sts_timeout?,
        federation_url: federation_url?,
        console: ConsoleSite::new(console_url?, extra),
        console_session_duration: console_session_duration?,
    })
}

pub(super) fn parse_sts_mode(errs: &mut Errors, key: &str, s: &str) -> Option<StsMode> {
    match s {
        "assume_role" => Some(StsMode::AssumeRole),
        "web_identity" => Some(StsMode::WebIdentity),
        other => {
            errs.push(
                key,
                format!("{other:?} is not \"assume_role\" or \"web_identity\""),
            );
            None
        }
    }
}

/// A role's console destination from config: a path on the console, or a URL the
/// console's one rule ([`ConsoleSite::destination`]) allows.
pub(super) fn console_destination(console: &ConsoleSite, raw: Option<&str>) -> Result<Url, String> {
    match raw {
        None => Ok(console.home().clone()),
        Some(raw) => console.destination(raw).map_err(|e| e.to_string()),
    }
}

/// A region name, and that it is in the partition.
fn check_region(errs: &mut Errors, key: &str, region: &str, partition: Option<Partition>) -> bool {
    if let Err(e) = crate::domain::parse_region(region) {
        errs.push(key, e.to_string());
        return false;
    }
    if let Some(p) = partition {
        let fits = match p {
            Partition::Aws => !region.starts_with("cn-") && !region.starts_with("us-gov-"),
            Partition::AwsCn => region.starts_with("cn-"),
            Partition::AwsUsGov => region.starts_with("us-gov-"),
        };
        if !fits {
            errs.push(key, format!("region {region:?} is not in partition {p}"));
            return false;
        }
    }
    true
}

/// `sts_regions` (default: `[region]`), each with its endpoint: `sts_endpoint_urls`'
/// entry for it, else `sts_endpoint_url` (tests), else the region's own.
fn sts_regions(
    raw: &RawAws,
    region: &str,
    default_endpoint: Option<&Url>,
    partition: Option<Partition>,
    errs: &mut Errors,
) -> Option<Vec<StsRegion>> {
    let names: Vec<String> = match &raw.sts_regions {
        Some(list) if list.is_empty() => {
            errs.push("aws.sts_regions", "must name at least one region");
            return None;
        }
        Some(list) => list.clone(),
        None => vec![region.to_owned()],
    };
    let mut ok = true;
    let mut out: Vec<StsRegion> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = format!("aws.sts_regions[{i}]");
        if !check_region(errs, &key, name, partition) {
            ok = false;
            continue;
        }
        if out.iter().any(|r| &r.name == name) {
            errs.push(&key, format!("{name:?} is listed twice"));
            ok = false;
            continue;
        }
        out.push(StsRegion {
            name: name.clone(),
            endpoint_url: default_endpoint.cloned(),
        });
    }
    for (name, url) in &raw.sts_endpoint_urls {
        let key = format!("aws.sts_endpoint_urls.{name}");
        let Some(url) = errs.check(&key, secure_url(url)) else {
            ok = false;
            continue;
        };
        match out.iter_mut().find(|r| &r.name == name) {
            Some(r) => r.endpoint_url = Some(url),
            None => {
                errs.push(&key, format!("{name:?} is not in sts_regions"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}
