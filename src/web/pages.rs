//! Askama page structs. Templates live in `templates/`; every value is HTML-escaped by
//! askama. Secrets are never fields of a page struct, with one deliberate exception:
//! `CredentialsPage`, whose whole purpose is to show a person their own temporary
//! credentials (served with `Cache-Control: no-store`).

use askama::Template;

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub request_id: &'a str,
    pub status: u16,
}

pub struct IdpLink<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignInPage<'a> {
    pub idps: Vec<IdpLink<'a>>,
    /// `?return_to=…` for the sign-in links (empty for the role picker).
    pub query: String,
}

pub struct RoleEntry {
    pub id: String,
    pub display_name: String,
    pub arn: String,
    pub max_duration: String,
    /// Held through an elevation: when it ends and how long is left.
    pub elevated: Option<String>,
    /// The session lengths offered, up to the grant's maximum (selected).
    pub durations: Vec<DurationChoice>,
}

pub struct DurationChoice {
    pub seconds: u32,
    pub label: String,
    pub selected: bool,
}

/// The session lengths a person can pick for a role whose grant allows `max` seconds:
/// the usual steps below it, and the maximum itself (selected).
pub fn duration_choices(max: u32) -> Vec<DurationChoice> {
    const STEPS: [u32; 7] = [900, 1800, 3600, 7200, 14400, 28800, 43200];
    let mut secs: Vec<u32> = STEPS.iter().copied().filter(|s| *s < max).collect();
    secs.push(max);
    secs.into_iter()
        .map(|s| DurationChoice {
            seconds: s,
            label: humantime::format_duration(std::time::Duration::from_secs(s.into())).to_string(),
            selected: s == max,
        })
        .collect()
}

pub struct AccountGroup {
    pub display_name: String,
    pub number: String,
    pub roles: Vec<RoleEntry>,
}

#[derive(Template)]
#[template(path = "roles.html")]
pub struct RolePickerPage<'a> {
    pub username: &'a str,
    pub idp_name: &'a str,
    pub accounts: Vec<AccountGroup>,
    pub groups: Vec<&'a str>,
    pub csrf: &'a str,
    /// Shows the way to the admin area.
    pub is_admin: bool,
    /// Roles they may ask for.
    pub eligible: Vec<EligibleRow>,
    /// Their recent requests.
    pub requests: Vec<RequestRow>,
    /// Requests waiting for them to decide.
    pub to_decide: usize,
    pub notice: Option<String>,
    /// Console services to choose a landing page from.
    pub console_services: Vec<&'static str>,
}

/// An eligible role on the picker, with what asking for it needs.
pub struct EligibleRow {
    pub id: String,
    pub display_name: String,
    pub max: String,
    pub reason_required: bool,
    pub ticket_pattern: Option<String>,
    pub break_glass: bool,
    pub approvers: String,
}

/// A request, on the picker or the approvers' page.
pub struct RequestRow {
    pub id: String,
    pub role: String,
    pub requester: String,
    pub status: String,
    pub length: String,
    pub reason: String,
    pub ticket: String,
    pub detail: String,
    /// The requester may end it now (running).
    pub can_end: bool,
}

#[derive(Template)]
#[template(path = "requests.html")]
pub struct RequestsPage<'a> {
    pub csrf: &'a str,
    pub username: &'a str,
    pub pending: Vec<RequestRow>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "signedout.html")]
pub struct SignedOutPage {
    pub idp_logout_url: Option<String>,
}

#[derive(Template)]
#[template(path = "credentials.html")]
pub struct CredentialsPage<'a> {
    pub role_name: &'a str,
    pub account_name: &'a str,
    pub account_number: &'a str,
    pub assumed_role_arn: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: &'a str,
    pub expiration: &'a str,
    pub time_left: &'a str,
    pub profile: &'a str,
    pub bash: &'a str,
    pub fish: &'a str,
    pub powershell: &'a str,
    pub credentials_file: &'a str,
    pub credential_process: &'a str,
    pub request_id: &'a str,
}

/// The approval page of a CLI login (loopback or device code). It names the client, the
/// machine and IP the CLI reported, when, and who will be signed in.
#[derive(Template)]
#[template(path = "approve.html")]
pub struct ApprovePage<'a> {
    pub client_id: &'a str,
    /// The name a client registered through the SSO OIDC API gave itself.
    pub client_name: Option<&'a str>,
    pub device_name: &'a str,
    pub client_ip: &'a str,
    pub started: String,
    pub user_code: Option<&'a str>,
    pub username: &'a str,
    pub idp_name: &'a str,
    pub session_lifetime: String,
    pub csrf: &'a str,
    pub action: &'a str,
    pub key_name: &'a str,
    pub key_value: &'a str,
}

#[derive(Template)]
#[template(path = "device.html")]
pub struct DeviceCodePage<'a> {
    pub csrf: &'a str,
    pub prefill: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "cli_done.html")]
pub struct CliDonePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// A person in the admin area's search results.
pub struct PersonRow {
    pub tag: String,
    pub username: String,
    pub email: Option<String>,
    pub subject: String,
    pub idp: String,
    pub groups: String,
    pub expires: String,
}

/// A lock as the admin area lists it.
pub struct LockRow {
    pub id: String,
    pub target: String,
    pub reason: String,
    pub created_by: String,
    pub created: String,
    pub expires: String,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage<'a> {
    pub csrf: &'a str,
    pub username: &'a str,
    pub query: &'a str,
    pub searched: bool,
    pub people: Vec<PersonRow>,
    pub locks: Vec<LockRow>,
    pub notice: Option<&'a str>,
    pub idps: Vec<&'a str>,
    pub roles: Vec<&'a str>,
    /// Break-glass uses, for review (newest first).
    pub break_glass: Vec<BreakGlassRow>,
}

pub struct BreakGlassRow {
    pub when: String,
    pub who: String,
    pub role: String,
    pub reason: String,
    pub until: String,
}

/// One live item of a person's, in the admin area.
pub struct HoldingRow {
    pub field: String,
    pub kind: String,
    pub client: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
    pub ip: String,
    pub user_agent: String,
}

/// One recent audit event of a person's.
pub struct HistoryRow {
    pub time: String,
    pub event: String,
    pub outcome: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "admin_person.html")]
pub struct AdminPersonPage<'a> {
    /// What the IdP's directory (SCIM) says of them, when the IdP provisions.
    pub directory: Option<String>,
    pub recalls_on: bool,
    /// Recalls of their issued credentials not applied yet (with the last error).
    pub recalls: Vec<RecallRow>,
    pub csrf: &'a str,
    pub tag: &'a str,
    pub username: &'a str,
    pub idp: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub groups: String,
    pub holdings: Vec<HoldingRow>,
    pub history: Vec<HistoryRow>,
    pub locks: Vec<LockRow>,
    pub notice: Option<&'a str>,
}

/// A recall of issued credentials on one role, not applied yet.
pub struct RecallRow {
    pub role_arn: String,
    pub state: String,
    pub next_attempt: String,
    pub until: String,
}

/// The confirmation of a console shortcut link: a GET never issues credentials, so the
/// link shows this page and its button posts the role action.
#[derive(Template)]
#[template(path = "console_confirm.html")]
pub struct ConsoleConfirmPage<'a> {
    pub csrf: &'a str,
    pub role: &'a str,
    pub role_name: &'a str,
    pub account_name: &'a str,
    pub account_number: &'a str,
    pub landing: &'a str,
    pub destination: &'a str,
    pub service: &'a str,
    pub region: &'a str,
}

/// Asks an administrator to confirm a lock that applies to themselves.
#[derive(Template)]
#[template(path = "admin_confirm.html")]
pub struct AdminConfirmPage<'a> {
    pub csrf: &'a str,
    pub target: &'a str,
    pub kind: &'a str,
    pub idp: &'a str,
    pub subject: &'a str,
    pub group: &'a str,
    pub role: &'a str,
    pub reason: &'a str,
    pub expires: &'a str,
}
