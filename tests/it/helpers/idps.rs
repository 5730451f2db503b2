//! The real identity providers the tests sign in at, as child processes on free ports:
//! npm oidc-provider (tests/testbed/op) and Debian's SimpleSAMLphp under `php -S`
//! (tests/testbed/ssp). Each is killed on drop.

use super::*;

/// The real OpenID Provider (npm oidc-provider, tests/testbed/op) on a free port, killed
/// on drop. `redirect` is the broker callback it accepts.
pub struct OidcProvider {
    pub port: u16,
    child: Child,
    pub jwks_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    pub fn start(redirect: &str) -> Self {
        Self::start_with_app(redirect, "http://127.0.0.1/app/callback")
    }

    /// As [`OidcProvider::start`], with the redirect URIs of the public client "app".
    pub fn start_with_app(redirect: &str, app_redirects: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let jwks_file = dir.path().join("jwks.json");
        let port = free_port();
        let child = Self::spawn(port, redirect, app_redirects, &jwks_file, "key-1");
        Self {
            port,
            child,
            jwks_file,
            _dir: dir,
        }
    }

    fn spawn(port: u16, redirect: &str, app_redirects: &str, jwks: &Path, kid: &str) -> Child {
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir("tests/testbed/op")
            .env("OP_PORT", port.to_string())
            .env("OP_REDIRECTS", redirect)
            .env("OP_APP_REDIRECTS", app_redirects)
            .env("OP_JWKS_FILE", jwks)
            .env("OP_KID", kid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run node; tests/run.sh installs the test OP");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("oidc-provider did not start on port {port}");
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes a user at the running provider (`groups`, `disabled`), as an IdP's
    /// administrator would.
    pub async fn change_user(&self, user: &str, change: serde_json::Value) {
        let mut body = change;
        body["user"] = serde_json::json!(user);
        let res = reqwest::Client::new()
            .post(format!("{}/__test/user", self.issuer()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }

    /// Stops the provider (an IdP outage); [`OidcProvider::start_again`] brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Restarts the provider with a brand-new signing key (a new kid): key rotation.
    pub fn rotate_key(&mut self, redirect: &str, kid: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.jwks_file);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Self::spawn(
            self.port,
            redirect,
            "http://127.0.0.1/app/callback",
            &self.jwks_file,
            kid,
        );
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real SAML IdP: Debian's SimpleSAMLphp under `php -S` on a free port, with a fresh
/// signing key and the broker registered as SP. Killed on drop.
pub struct SamlIdp {
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl SamlIdp {
    pub fn start(sp_entity_id: &str, acs_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in [
            "config", "metadata", "cert", "data", "tmp", "log", "sessions",
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let testbed = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testbed/ssp");
        for (file, dest) in [
            ("config.php", "config"),
            ("authsources.php", "config"),
            ("saml20-idp-hosted.php", "metadata"),
        ] {
            std::fs::copy(format!("{testbed}/{file}"), root.join(dest).join(file)).unwrap();
        }
        let sp = std::fs::read_to_string(format!("{testbed}/saml20-sp-remote.php.tmpl"))
            .unwrap()
            .replace("@SP_ENTITY_ID@", sp_entity_id)
            .replace("@ACS_URL@", acs_url);
        std::fs::write(root.join("metadata/saml20-sp-remote.php"), sp).unwrap();
        let pair = crate::saml_fixtures::KeyPair::generate(&root.join("cert"), "idp");
        debug_assert!(pair.cert.ends_with("cert/idp.crt"));
        let port = free_port();
        let child = Command::new("php")
            .args([
                "-S",
                &format!("127.0.0.1:{port}"),
                "-t",
                "/usr/share/simplesamlphp/www",
            ])
            .env("SIMPLESAMLPHP_CONFIG_DIR", root.join("config"))
            .env("SSP_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("php runs (tests/run.sh installs simplesamlphp)");
        wait_until("SimpleSAMLphp", Duration::from_secs(15), || {
            http_answers(port, "/saml2/idp/metadata.php")
        });
        Self { port, child, dir }
    }

    pub fn cert_path(&self) -> std::path::PathBuf {
        self.dir.path().join("cert/idp.crt")
    }

    pub fn metadata_url(&self) -> String {
        format!("http://127.0.0.1:{}/saml2/idp/metadata.php", self.port)
    }

    /// The `[[idp]]` table for this IdP (id "ssp"), its certificate pinned.
    pub fn idp_config(&self) -> String {
        format!(
            "\n[[idp]]\nid = \"ssp\"\nkind = \"saml\"\ndisplay_name = \"Test SAML IdP\"\nmetadata_url = \"{}\"\nsigning_cert_files = [\"{}\"]\ngroups_attribute = \"groups\"\nusername_attribute = \"mail\"\n",
            self.metadata_url(),
            self.cert_path().display()
        )
    }
}

impl Drop for SamlIdp {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
