//! The box's own services, as the status page reads them: each serves a local API on
//! 127.0.0.1 and the status page is the only thing facing the LAN.

use minebox_api::ErrorBody;
use serde::de::DeserializeOwned;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Stratum,
    Supervisor,
    Snapshots,
    Updates,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Stratum => "stratum server",
            Service::Supervisor => "node supervisor",
            Service::Snapshots => "snapshot agent",
            Service::Updates => "updater",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Service::Stratum => "minebox-stratum",
            Service::Supervisor => "minebox-supervisor",
            Service::Snapshots => "minebox-snapshot-agent",
            Service::Updates => "minebox-updater",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the {} is not answering ({detail}); see {}'s journal on the System page", .service.name(), .service.unit())]
    Unreachable { service: Service, detail: String },
    #[error("the {} answered {status}: {message}", .service.name())]
    Refused { service: Service, status: u16, message: String },
    #[error("the {}'s answer is larger than the page reads ({} KiB); ask for fewer entries (limit)", .service.name(), .bytes >> 10)]
    TooLarge { service: Service, bytes: usize },
    #[error("the {} answered something this page does not read ({detail}); update the box so its services are one version", .service.name())]
    Unreadable { service: Service, detail: String },
}

impl UpstreamError {
    /// The status code the page gets: the upstream's own 4xx passes through (it is about
    /// the request), anything else is a gateway problem.
    pub fn status(&self) -> u16 {
        match self {
            UpstreamError::Refused { status, .. } if (400..500).contains(status) => *status,
            _ => 502,
        }
    }
}

#[derive(Clone)]
pub struct Upstreams {
    http: reqwest::Client,
    stratum: String,
    supervisor: String,
    snapshots: String,
    updates: String,
}

/// Bounds what an upstream can make us hold (a history or block list is far smaller).
const MAX_BODY: usize = 8 << 20;

impl Upstreams {
    pub fn new(stratum: &str, supervisor: &str, snapshots: &str, updates: &str) -> Upstreams {
        let base =
            |a: &str| if a.starts_with("http") { a.trim_end_matches('/').to_string() } else { format!("http://{a}") };
        Upstreams {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(10))
                .no_proxy()
                .build()
                .expect("http client"),
            stratum: base(stratum),
            supervisor: base(supervisor),
            snapshots: base(snapshots),
            updates: base(updates),
        }
    }

    pub fn url(&self, service: Service, path: &str) -> String {
        let base = match service {
            Service::Stratum => &self.stratum,
            Service::Supervisor => &self.supervisor,
            Service::Snapshots => &self.snapshots,
            Service::Updates => &self.updates,
        };
        format!("{base}{path}")
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// An answer read as the type the service's API module says it is.
    pub async fn get_as<T: DeserializeOwned>(&self, service: Service, path: &str) -> Result<T, UpstreamError> {
        let body = self.body(service, self.http.get(self.url(service, path))).await?;
        read(service, &body)
    }

    /// A `POST` answered with the type the service's API module says.
    pub async fn post_as<T: DeserializeOwned>(&self, service: Service, path: &str) -> Result<T, UpstreamError> {
        let body = self.body(service, self.http.post(self.url(service, path))).await?;
        read(service, &body)
    }

    /// A `POST` whose answer the page does not read, only whether it succeeded.
    pub async fn post_ok(&self, service: Service, path: &str) -> Result<(), UpstreamError> {
        self.body(service, self.http.post(self.url(service, path))).await.map(drop)
    }

    /// The body of a successful answer; a refusal as the error it is.
    async fn body(&self, service: Service, req: reqwest::RequestBuilder) -> Result<Vec<u8>, UpstreamError> {
        let unreachable = |e: reqwest::Error| UpstreamError::Unreachable { service, detail: short(&e) };
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(UpstreamError::TooLarge { service, bytes: MAX_BODY });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = refusal(&body);
            return Err(UpstreamError::Refused { service, status: status.as_u16(), message });
        }
        Ok(body)
    }
}

fn read<T: DeserializeOwned>(service: Service, body: &[u8]) -> Result<T, UpstreamError> {
    serde_json::from_slice(body).map_err(|e| UpstreamError::Unreadable { service, detail: e.to_string() })
}

/// A refusal's sentence: the service's `{"error": ...}`, else the start of what it said.
pub fn refusal(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}

/// One page of a list an upstream serves as a JSON array, its entries read as `T`.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// More entries follow this page.
    pub more: bool,
    /// Entries in the whole list, when the upstream says (its `X-Total-Count`).
    pub total: Option<usize>,
}

/// Largest single entry of a paged list (a worker record is well under 1 KiB).
const MAX_ITEM: usize = 64 << 10;

impl Upstreams {
    /// Entries `offset..offset + limit` of a list, asked for with `limit` and `offset` in
    /// the query. The array is read entry by entry and the read stops once the page is
    /// full, so a list of any length costs at most the page: an upstream that ignores the
    /// paging (an older one) is paged here instead.
    pub async fn get_page<T: DeserializeOwned + Clone>(
        &self,
        service: Service,
        path: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Page<T>, UpstreamError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = self.url(service, &format!("{path}{sep}limit={limit}&offset={offset}"));
        let unreachable = |e: reqwest::Error| UpstreamError::Unreachable { service, detail: short(&e) };
        let mut resp = self.http.get(url).send().await.map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(self.refused(service, resp).await);
        }
        let total =
            resp.headers().get("x-total-count").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
        let mut split = ArraySplitter::default();
        let (mut first, mut paged) = (Vec::new(), Vec::new());
        let mut seen = 0usize;
        let mut read = 0usize;
        // `first`: what an upstream that honoured the paging sent (at most `limit`); past
        // that it did not, and `paged` is the page cut here.
        'read: while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            read += chunk.len();
            for item in split.feed::<T>(&chunk).map_err(|detail| UpstreamError::Unreachable { service, detail })? {
                if seen <= limit {
                    first.push(item.clone());
                }
                if seen >= offset && seen < offset + limit {
                    paged.push(item);
                }
                seen += 1;
                if seen > limit && seen > offset + limit {
                    break 'read;
                }
            }
            if read > MAX_BODY && seen <= limit {
                return Err(UpstreamError::TooLarge { service, bytes: MAX_BODY });
            }
        }
        if seen > limit {
            Ok(Page { more: seen > offset + limit, items: paged, total })
        } else {
            if !split.done() {
                return Err(UpstreamError::Unreachable { service, detail: "the list ended early".into() });
            }
            // The upstream may cap a page below `limit`: its total says whether more follow.
            let more = total.map_or(first.len() == limit, |t| offset + first.len() < t);
            Ok(Page { more, items: first, total })
        }
    }

    async fn refused(&self, service: Service, resp: reqwest::Response) -> UpstreamError {
        let status = resp.status();
        match resp.bytes().await {
            Ok(body) => UpstreamError::Refused { service, status: status.as_u16(), message: refusal(&body) },
            Err(e) => UpstreamError::Unreachable { service, detail: short(&e) },
        }
    }
}

/// Cuts a JSON array arriving in chunks into its entries, holding one entry at a time.
#[derive(Default)]
struct ArraySplitter {
    started: bool,
    ended: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
    item: Vec<u8>,
}

impl ArraySplitter {
    fn done(&self) -> bool {
        self.ended
    }

    fn feed<T: DeserializeOwned>(&mut self, chunk: &[u8]) -> Result<Vec<T>, String> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.ended {
                if !b.is_ascii_whitespace() {
                    return Err("text after the list".into());
                }
                continue;
            }
            if !self.started {
                match b {
                    b'[' => self.started = true,
                    b if b.is_ascii_whitespace() => {}
                    _ => return Err("the answer is not a list".into()),
                }
                continue;
            }
            if self.in_string {
                self.item.push(b);
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                match b {
                    b'"' => {
                        self.in_string = true;
                        self.item.push(b);
                    }
                    b'{' | b'[' => {
                        self.depth += 1;
                        self.item.push(b);
                    }
                    b'}' | b']' if self.depth > 0 => {
                        self.depth -= 1;
                        self.item.push(b);
                    }
                    b',' | b']' if self.depth == 0 => {
                        if !self.item.iter().all(u8::is_ascii_whitespace) {
                            out.push(serde_json::from_slice(&self.item).map_err(|e| format!("a list entry: {e}"))?);
                        }
                        self.item.clear();
                        self.ended = b == b']';
                    }
                    _ => self.item.push(b),
                }
            }
            if self.item.len() > MAX_ITEM {
                return Err(format!("a list entry is larger than {} KiB", MAX_ITEM >> 10));
            }
        }
        Ok(out)
    }
}

fn short(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_splitter_cuts_entries_across_chunks() {
        let text = br#" [ {"worker":"a,]\"}","n":[1,2]} , {"worker":"b"} ,3 ] "#;
        for cut in 0..text.len() {
            let mut s = ArraySplitter::default();
            let mut items: Vec<serde_json::Value> = s.feed(&text[..cut]).unwrap();
            items.extend(s.feed::<serde_json::Value>(&text[cut..]).unwrap());
            assert!(s.done());
            assert_eq!(items.len(), 3, "cut at {cut}");
            assert_eq!(items[0]["worker"], "a,]\"}");
            assert_eq!(items[2], 3);
        }
        assert!(ArraySplitter::default().feed::<serde_json::Value>(b"{\"error\":1}").is_err());
    }
}
