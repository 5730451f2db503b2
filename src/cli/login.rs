//! `rolegate login`: the browser loopback flow (default) or the device flow.
//!
//! Both first check that the broker answers, so a wrong or unreachable broker fails at
//! once rather than after the five minutes a login may take.
//!
//! Loopback (RFC 8252 §7.3): listen on `127.0.0.1:{random port}`, open the browser at the
//! broker's `/oauth/authorize` with a PKCE S256 challenge and a random `state`, accept the
//! one redirect back, check `state` and `iss`, exchange the code with the verifier, and only
//! then answer the browser with the outcome (a forged or failed callback never shows
//! "Logged in").
//!
//! Device (RFC 8628): print the address, the complete pre-filled link, the code in large
//! letters and (on a terminal) a QR code of the link, then poll at the broker's interval
//! (slowing down when told), with a spinner on a terminal, until the person approves,
//! denies, or the code expires.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

use super::CliError;
use super::broker::{self, OAuthErrorBody, Tokens};
use super::settings::{self, StoredTokens};
use crate::wire::DeviceAuthorization;

/// How the person approves this login.
pub enum Method {
    /// Open (or, with `open_browser = false`, print) the approval page, come back on a
    /// loopback address.
    Loopback { open_browser: bool },
    /// Print a code to enter at `/device` on any device.
    DeviceCode,
}

/// `bytes` random bytes as URL-safe base64 (PKCE verifiers, state, endpoint tokens).
pub(super) fn random_b64(bytes: usize) -> String {
    let data: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The machine's name, for the approval page ("which machine is asking?").
fn device_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Logs in at `broker` and saves the tokens (remembering the broker).
pub fn login(broker: &str, method: Method) -> Result<StoredTokens, CliError> {
    let mut config = settings::load_config()?;
    let client_id = config.client_id.clone();
    broker::check_reachable(broker)?;
    let tokens = match method {
        Method::Loopback { open_browser } => loopback(broker, &client_id, open_browser)?,
        Method::DeviceCode => device(broker, &client_id)?,
    };
    settings::forget_login()?;
    let stored = broker::store(broker, &client_id, tokens)?;
    if config.broker.as_deref() != Some(broker) {
        config.broker = Some(broker.to_owned());
        settings::save_config(&config)?;
    }
    Ok(stored)
}

fn loopback(broker: &str, client_id: &str, open_browser: bool) -> Result<Tokens, CliError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(CliError::io("cannot listen on a loopback port"))?;
    let port = listener
        .local_addr()
        .map_err(CliError::io("cannot listen on a loopback port"))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = random_b64(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let state = random_b64(16);
    let mut url = url::Url::parse(&format!("{broker}/oauth/authorize"))
        .map_err(|e| CliError::Login(format!("the broker URL is not valid: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &state)
        .append_pair("device_name", &device_name());
    eprintln!("Approve this login in your browser:\n\n  {url}\n");
    if open_browser && open::that(url.as_str()).is_err() {
        eprintln!("(could not open a browser: open the address above yourself)");
    }
    let (params, browser) = wait_for_redirect(&listener, Duration::from_secs(300))?;
    let result = finish_loopback(broker, client_id, &params, &state, &redirect_uri, &verifier);
    answer_browser(browser, &result);
    result
}

/// Checks the redirect and exchanges the code; the browser is answered with the outcome.
fn finish_loopback(
    broker: &str,
    client_id: &str,
    params: &[(String, String)],
    state: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Tokens, CliError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("state") != Some(state) {
        return Err(CliError::Login(
            "the browser came back with another login's state; start again".into(),
        ));
    }
    // RFC 9207: the answer must come from the broker this login was started at.
    if let Some(iss) = get("iss")
        && iss.trim_end_matches('/') != broker.trim_end_matches('/')
    {
        return Err(CliError::Login(format!(
            "the browser came back from another server ({iss}); start again"
        )));
    }
    if let Some(e) = get("error") {
        return Err(CliError::Login(match e {
            "access_denied" => "the login was denied in the browser".into(),
            other => format!(
                "the broker refused the login ({other}: {})",
                get("error_description").unwrap_or("")
            ),
        }));
    }
    let code = get("code")
        .ok_or_else(|| CliError::Login("the browser came back without a code".into()))?;
    match broker::token_request(
        broker,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )? {
        Ok(t) => Ok(t),
        Err(e) => Err(CliError::Login(format!(
            "{}: {}",
            e.error, e.error_description
        ))),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page the browser sees once the login is done: what happened, as the terminal says.
fn answer_browser(stream: std::net::TcpStream, result: &Result<Tokens, CliError>) {
    let page = match result {
        Ok(_) => "<!DOCTYPE html><title>rolegate</title><h1>Logged in</h1><p>You can close this tab and go back to your terminal.</p>".to_owned(),
        Err(e) => format!(
            "<!DOCTYPE html><title>rolegate</title><h1>Login failed</h1><p>{}</p><p>Go back to your terminal.</p>",
            escape(&e.to_string())
        ),
    };
    let mut w = &stream;
    let _ = write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nContent-Security-Policy: default-src 'none'\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
}

/// Serves the loopback address until the broker's redirect arrives; returns its query and
/// the browser's connection (answered once the login's outcome is known).
fn wait_for_redirect(
    listener: &TcpListener,
    timeout: Duration,
) -> Result<(Vec<(String, String)>, std::net::TcpStream), CliError> {
    let deadline = Instant::now() + timeout;
    listener
        .set_nonblocking(true)
        .map_err(CliError::io("loopback listener"))?;
    loop {
        if Instant::now() > deadline {
            return Err(CliError::Login(
                "no approval within 5 minutes; start again".into(),
            ));
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(CliError::io("loopback listener")(e)),
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        // "GET /callback?code=…&state=… HTTP/1.1"
        let target = line.split_whitespace().nth(1).unwrap_or("");
        let Some(query) = target.strip_prefix("/callback?") else {
            let mut w = &stream;
            let _ = w.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            continue;
        };
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        return Ok((params, stream));
    }
}

/// The code in large letters (a 5-line block font), for reading across a room.
fn big(code: &str) -> String {
    const ROWS: usize = 5;
    let glyph = |c: char| -> [&'static str; ROWS] {
        match c {
            'B' => ["#### ", "#   #", "#### ", "#   #", "#### "],
            'C' => [" ####", "#    ", "#    ", "#    ", " ####"],
            'D' => ["#### ", "#   #", "#   #", "#   #", "#### "],
            'F' => ["#####", "#    ", "#### ", "#    ", "#    "],
            'G' => [" ####", "#    ", "#  ##", "#   #", " ####"],
            'H' => ["#   #", "#   #", "#####", "#   #", "#   #"],
            'J' => ["  ###", "    #", "    #", "#   #", " ### "],
            'K' => ["#   #", "#  # ", "###  ", "#  # ", "#   #"],
            'L' => ["#    ", "#    ", "#    ", "#    ", "#####"],
            'M' => ["#   #", "## ##", "# # #", "#   #", "#   #"],
            'N' => ["#   #", "##  #", "# # #", "#  ##", "#   #"],
            'P' => ["#### ", "#   #", "#### ", "#    ", "#    "],
            'Q' => [" ### ", "#   #", "# # #", "#  # ", " ## #"],
            'R' => ["#### ", "#   #", "#### ", "#  # ", "#   #"],
            'S' => [" ####", "#    ", " ### ", "    #", "#### "],
            'T' => ["#####", "  #  ", "  #  ", "  #  ", "  #  "],
            'V' => ["#   #", "#   #", "#   #", " # # ", "  #  "],
            'W' => ["#   #", "#   #", "# # #", "## ##", "#   #"],
            'X' => ["#   #", " # # ", "  #  ", " # # ", "#   #"],
            'Z' => ["#####", "   # ", "  #  ", " #   ", "#####"],
            '-' => ["     ", "     ", " ### ", "     ", "     "],
            _ => ["     "; ROWS],
        }
    };
    (0..ROWS)
        .map(|r| {
            code.chars()
                .map(|c| glyph(c)[r])
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn qr(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build(),
    )
}

fn device(broker: &str, client_id: &str) -> Result<Tokens, CliError> {
    let url = format!("{broker}/oauth/device_authorization");
    let res = broker::http()
        .post(&url)
        .form(&[("client_id", client_id), ("device_name", &device_name())])
        .send()
        .map_err(|e| CliError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    if !res.status().is_success() {
        let e: OAuthErrorBody = res
            .json()
            .map_err(|_| CliError::Broker("the broker refused a device login".into()))?;
        return Err(CliError::Login(format!(
            "{}: {}",
            e.error, e.error_description
        )));
    }
    let d: DeviceAuthorization = res
        .json()
        .map_err(|e| CliError::Broker(format!("the broker's device answer is not valid: {e}")))?;
    let tty = std::io::stderr().is_terminal();
    eprintln!(
        "On any device, open\n\n  {}\n\nsign in, and enter the code\n\n{}\n\n  {}\n\nor open the complete link:\n\n  {}\n",
        d.verification_uri,
        big(&d.user_code),
        d.user_code,
        d.verification_uri_complete,
    );
    if tty && let Some(q) = qr(&d.verification_uri_complete) {
        eprintln!("or scan this code:\n{q}");
    }
    eprintln!(
        "Only approve a code you see here. It expires in {} minutes.",
        d.expires_in.div_ceil(60)
    );
    let deadline = Instant::now() + Duration::from_secs(d.expires_in);
    let mut interval = d.interval.max(1);
    let spinner = ['|', '/', '-', '\\'];
    let mut tick = 0usize;
    loop {
        let wait_until = Instant::now() + Duration::from_secs(interval);
        while Instant::now() < wait_until {
            if tty {
                eprint!("\r{} waiting for approval… ", spinner[tick % 4]);
                tick += 1;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        if Instant::now() > deadline {
            return Err(CliError::Login(
                "the code expired before it was approved; run `rolegate login` again".into(),
            ));
        }
        match broker::token_request(
            broker,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &d.device_code),
                ("client_id", client_id),
            ],
        )? {
            Ok(t) => {
                if tty {
                    eprintln!("\r                         ");
                }
                return Ok(t);
            }
            Err(e) => match e.error.as_str() {
                "authorization_pending" => {}
                "slow_down" => interval += 5,
                "access_denied" => {
                    return Err(CliError::Login(
                        "the login was denied in the browser".into(),
                    ));
                }
                "expired_token" => {
                    return Err(CliError::Login(
                        "the code expired before it was approved; run `rolegate login` again"
                            .into(),
                    ));
                }
                _ => {
                    return Err(CliError::Login(format!(
                        "{}: {}",
                        e.error, e.error_description
                    )));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::big;

    #[test]
    fn the_code_is_drawn_in_five_rows() {
        let b = big("BCDF-GHJK");
        assert_eq!(b.lines().count(), 5);
        assert!(b.lines().all(|l| l.len() == 9 * 5 + 8 * 2));
    }
}
