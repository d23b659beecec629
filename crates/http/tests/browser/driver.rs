//! A headless Chromium for one test, and finding things the way a person
//! does: inputs by their label, buttons and links by their text.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::json;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A browser of its own: ChromeDriver on a free port and one session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(width: u32, height: u32) -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "browser tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
                // The viewport exactly (a window is never narrower than
                // about 500 px, a phone's screen is).
                "mobileEmulation": {
                    "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0},
                },
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// The input a `<label>` with this exact text names.
    pub async fn field(&self, label: &str) -> Element {
        self.client
            .find(Locator::XPath(&format!(
                "//*[@id=//label[normalize-space()='{label}']/@for]"
            )))
            .await
            .unwrap_or_else(|e| panic!("no field labelled {label:?}: {e}"))
    }

    pub async fn fill(&self, label: &str, text: &str) {
        let field = self.field(label).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// The button with this exact text.
    pub async fn button(&self, name: &str) -> Element {
        self.client
            .find(Locator::XPath(&format!(
                "//button[normalize-space()='{name}']"
            )))
            .await
            .unwrap_or_else(|e| panic!("no button {name:?}: {e}"))
    }

    /// Signs in on `base`'s sign-in page, as a person does.
    pub async fn sign_in(&self, base: &str, email: &str, password: &str) {
        self.client.goto(&format!("{base}/sign-in")).await.unwrap();
        self.fill("Email", email).await;
        self.fill("Password", password).await;
        self.press("Sign in").await;
        self.wait_for_heading("Home").await;
    }

    /// Presses the button with this text and waits for the page it
    /// brings (the form posts, the server answers with a new page).
    pub async fn press(&self, name: &str) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.button(name).await.click().await.unwrap();
        self.wait_until_replaced(old).await;
    }

    /// Follows the link with this text and waits for the page.
    pub async fn follow(&self, name: &str) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.link(name).await.click().await.unwrap();
        self.wait_until_replaced(old).await;
    }

    async fn wait_until_replaced(&self, old: Element) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while old.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "the page did not change");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("h1"))
            .await;
    }

    pub async fn link(&self, name: &str) -> Element {
        self.client
            .find(Locator::XPath(&format!("//a[normalize-space()='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("no link {name:?}: {e}"))
    }

    /// The page's one `<h1>`, once the page has one with this text.
    pub async fn wait_for_heading(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let heading = match self.client.find(Locator::Css("h1")).await {
                Ok(h1) => h1.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if heading == text {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page's heading is {heading:?}, not {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element `css` finds says `needle` (a part of the
    /// page that changes without a new page, such as a live region).
    pub async fn wait_for_text(&self, css: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let said = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if said.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} says {said:?}, not {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Writes a screenshot for people to look at (`ATRIUM_SCREENSHOTS`,
    /// else the system's temporary directory).
    pub async fn screenshot(&self, name: &str) {
        let dir = std::env::var_os("ATRIUM_SCREENSHOTS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("atrium-screenshots"));
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(self) {
        let Self {
            client, mut driver, ..
        } = self;
        let _ = client.close().await;
        let _ = driver.kill();
        let _ = driver.wait();
    }
}
